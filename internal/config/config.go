// Package config is the sipproxy configuration file: its types, the embedded
// default, strict decoding and validation. Every error names the file and
// line it comes from, so that `sipproxy check` can point operators at it.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Config is a whole, validated configuration. Fields tagged yaml:"-" are
// derived during Load (parsed URIs, loaded certificates) so that nothing
// downstream re-parses or re-reads files.
type Config struct {
	// Path is the file the configuration came from ("" for the embedded default).
	Path string `yaml:"-"`

	Server     Server     `yaml:"server"`
	Voicemail  Voicemail  `yaml:"voicemail"`
	Peers      []Peer     `yaml:"peers"`
	Auth       Auth       `yaml:"auth"`
	Routes     []Route    `yaml:"routes"`
	Forwarding Forwarding `yaml:"forwarding"`
	Metrics    Metrics    `yaml:"metrics"`
	Log        Log        `yaml:"log"`
	Limits     Limits     `yaml:"limits"`
}

// Server holds the SIP side: domains we are responsible for and listeners.
type Server struct {
	Domains     []string   `yaml:"domains"`
	Listen      []Listener `yaml:"listen"`
	RecordRoute bool       `yaml:"record_route"`
	// Advertise is the host written into our Via and Record-Route headers
	// when a listener binds a wildcard address. Default: the listener IP.
	Advertise string `yaml:"advertise"`
	// TimerC is the proxy INVITE timer (RFC 3261 16.8). Default 180s; must be > 3m
	// per the RFC, but smaller values are accepted (>= 1s) for tests.
	TimerC Duration `yaml:"timer_c"`
	// TLSClient is how the proxy dials TLS next hops (voicemail, routes).
	TLSClient TLSClient `yaml:"tls_client"`
}

// Listener is one socket the proxy serves SIP on.
type Listener struct {
	Transport string `yaml:"transport"` // udp, tcp or tls
	Addr      string `yaml:"addr"`      // host:port
	Cert      string `yaml:"cert"`      // tls only: PEM certificate chain
	Key       string `yaml:"key"`       // tls only: PEM private key
	ClientCA  string `yaml:"client_ca"` // tls only: CA bundle verifying client certificates
	// SelfSigned generates a throw-away certificate at start (tls only, no cert/key).
	SelfSigned bool `yaml:"self_signed"`
	// Advertise overrides Server.Advertise for this listener.
	Advertise string `yaml:"advertise"`

	// Derived by Load.
	AddrPort    netip.AddrPort   `yaml:"-"`
	Certificate *tls.Certificate `yaml:"-"` // nil until generated when SelfSigned
	ClientCAs   *x509.CertPool   `yaml:"-"` // nil when ClientCA is empty
	Line        int              `yaml:"-"` // line of this entry in the file
}

// TLSClient configures outbound TLS connections.
type TLSClient struct {
	CA                 string `yaml:"ca"`   // PEM bundle of CAs trusted for next hops; default: system roots
	Cert               string `yaml:"cert"` // optional client certificate presented to next hops
	Key                string `yaml:"key"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`

	// Derived by Load.
	RootCAs     *x509.CertPool   `yaml:"-"`
	Certificate *tls.Certificate `yaml:"-"`
}

// Voicemail is the Exchange UM server that `opaque=app:voicemail` requests go to.
type Voicemail struct {
	URI string `yaml:"uri"`

	// Derived by Load.
	Parsed sip.Uri `yaml:"-"`
}

// Peer is a trusted neighbour (UM, gateway, another proxy): requests from it
// are not challenged.
type Peer struct {
	Name         string   `yaml:"name"`
	Sources      []string `yaml:"sources"`   // CIDRs
	TLSNames     []string `yaml:"tls_names"` // names in a verified client certificate (DNS SAN or CN)
	TrustSkipPin bool     `yaml:"trust_skip_pin"`

	// Derived by Load.
	Prefixes []netip.Prefix `yaml:"-"`
	Line     int            `yaml:"-"`
}

// Auth holds the digest realm and local users.
type Auth struct {
	Realm string `yaml:"realm"`
	Users []User `yaml:"users"`
	// NonceTTL is how long a digest nonce stays fresh. Default 5m.
	NonceTTL Duration `yaml:"nonce_ttl"`
	// Secret keys nonce HMACs; when empty a random one is made at start
	// (then instances behind one DNS name do not share nonces).
	Secret string `yaml:"secret"`
}

// User is one local account. Exactly one of HA1 or Password is set; HA1SHA256
// may be added so that SHA-256 digest works without a plain password.
type User struct {
	User      string `yaml:"user"`
	HA1       string `yaml:"ha1"`        // hex MD5(user:realm:password)
	HA1SHA256 string `yaml:"ha1_sha256"` // hex SHA-256(user:realm:password)
	Password  string `yaml:"password"`

	Line int `yaml:"-"`
}

// Route sends requests for a domain to a next hop; first match wins, "*" matches all.
type Route struct {
	Domain  string `yaml:"domain"`
	NextHop string `yaml:"next_hop"`

	// Derived by Load.
	Parsed sip.Uri `yaml:"-"`
	Line   int     `yaml:"-"`
}

// Forwarding configures the forwarding engine.
type Forwarding struct {
	RulesFile     string   `yaml:"rules_file"` // resolved against the config file's directory by Load
	DefaultAfter  Duration `yaml:"default_after"`
	MaxDiversions int      `yaml:"max_diversions"`

	// EmbeddedRules is the rules document of the embedded default config
	// (RulesFile is then empty). Not settable from YAML.
	EmbeddedRules []byte `yaml:"-"`
}

// Metrics configures the HTTP server for /metrics, /healthz and /readyz.
type Metrics struct {
	Listen string `yaml:"listen"` // "" disables it
}

// Log configures slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// Limits bounds what one peer can make the proxy do.
type Limits struct {
	MaxMessageBytes int      `yaml:"max_message_bytes"` // default 65535
	MaxHeaders      int      `yaml:"max_headers"`       // default 100
	IdleTimeout     Duration `yaml:"idle_timeout"`      // TCP/TLS connection read idle; default 5m
	TLSHandshake    Duration `yaml:"tls_handshake_timeout"`
}

// Duration is a time.Duration written as "15s", "2m" in YAML.
type Duration struct{ time.Duration }
