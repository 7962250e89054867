// Package config is the sipproxy configuration file: its types, the embedded
// default, strict decoding and validation. Every error names the file and
// line it comes from, so that `sipproxy check` can point operators at it.
package config

import (
	"time"
)

// Config is a whole, validated configuration: what the file says, with
// defaults filled in and relative paths resolved. It holds no runtime
// values: parsed URIs and prefixes, loaded or generated certificates are
// the Runtime that Provision builds from it (validating a file touches
// nothing). Fields tagged yaml:"-" only say where things are in the file.
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
	State      State      `yaml:"state"`

	// source names the configuration in errors and warnings
	// ("embedded:default.yaml" for the embedded default).
	source string
	// lines maps key paths such as "server.listen[1].addr" to their line.
	lines map[string]int
}

// Server holds the SIP side: domains we are responsible for and listeners.
type Server struct {
	Domains     []string   `yaml:"domains"` // lower-cased by Load
	Listen      []Listener `yaml:"listen"`
	RecordRoute bool       `yaml:"record_route"`
	// Advertise is the host written into our Via and Record-Route headers
	// when a listener binds a wildcard address. Default: the listener IP.
	Advertise string `yaml:"advertise"`
	// TimerC is the proxy INVITE timer (RFC 3261 16.8). Default 180s; must be > 3m
	// per the RFC, but smaller values are accepted (>= 1s) for tests.
	TimerC Duration `yaml:"timer_c"`
	// NoResponseTimeout ends an INVITE branch whose next hop sends nothing
	// at all, not even 100 Trying, with 408 (default 10s) instead of
	// waiting for Timer B (32s): a dead voicemail server or gateway then
	// fails the call (or lets forwarding move on) promptly.
	NoResponseTimeout Duration `yaml:"no_response_timeout"`
	// TLSClient is how the proxy dials TLS next hops (voicemail, routes).
	TLSClient TLSClient `yaml:"tls_client"`
	// Resolver is the DNS server (ip:port) asked for the SRV and A/AAAA
	// records of next hops named by a host name (RFC 3263). Default: the
	// system's, from /etc/resolv.conf. Load only checks it: nothing is
	// resolved while a configuration is validated.
	Resolver string `yaml:"resolver"`
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

	// Cert, Key and ClientCA are rewritten by Load to paths resolved
	// against the config file's directory.
	Line int `yaml:"-"` // line of this entry in the file
}

// TLSClient configures outbound TLS connections.
type TLSClient struct {
	CA                 string `yaml:"ca"`   // PEM bundle of CAs trusted for next hops; default: system roots
	Cert               string `yaml:"cert"` // optional client certificate presented to next hops
	Key                string `yaml:"key"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`

	// CA, Cert and Key are rewritten by Load to resolved paths.
	Line int `yaml:"-"` // line of the tls_client mapping
}

// Voicemail is the Exchange UM server that `opaque=app:voicemail` requests go to.
type Voicemail struct {
	URI string `yaml:"uri"`
	// URIs is an ordered pool of UM servers, instead of URI (exactly one
	// of the two is set). Each entry, like URI, may name a host without a
	// port, to be resolved with SRV (RFC 3263).
	URIs []string `yaml:"uris"`
	// ProbeInterval is how often every voicemail target is sent an OPTIONS
	// probe; a target failing two in a row is skipped until it answers.
	// Default 10s; 0 turns probing off.
	ProbeInterval Duration `yaml:"probe_interval"`

	Line int `yaml:"-"` // line of the voicemail mapping
}

// Peer is a trusted neighbour (UM, gateway, another proxy): requests from it
// are not challenged.
type Peer struct {
	Name         string   `yaml:"name"`
	Sources      []string `yaml:"sources"`   // CIDRs
	TLSNames     []string `yaml:"tls_names"` // names in a verified client certificate (DNS SAN or CN)
	TrustSkipPin bool     `yaml:"trust_skip_pin"`

	Line int `yaml:"-"`
}

// Auth holds the digest realm and local users.
type Auth struct {
	Realm string `yaml:"realm"`
	Users []User `yaml:"users"`
	// NonceTTL is how long a digest nonce stays fresh. Default 5m.
	NonceTTL Duration `yaml:"nonce_ttl"`
	// Algorithms are the digest algorithms offered, in challenge order.
	// Default [SHA-256, MD5] (RFC 8760). Put MD5 first for clients that
	// answer only the first challenge and only know MD5 (sipp, old phones).
	Algorithms []string `yaml:"algorithms"`
	// Secret keys nonce HMACs; when empty a random one is made at start
	// (then instances behind one DNS name do not share nonces).
	Secret string `yaml:"secret"`
}

// User is one local account. Exactly one of HA1 or Password is set; HA1SHA256
// may be added so that SHA-256 digest works without a plain password.
type User struct {
	User      string `yaml:"user"`
	HA1       string `yaml:"ha1"`        // hex MD5(user:realm:password), lower-cased by Load
	HA1SHA256 string `yaml:"ha1_sha256"` // hex SHA-256(user:realm:password), lower-cased by Load
	Password  string `yaml:"password"`

	Line int `yaml:"-"`
}

// Route sends requests for a domain to a next hop; first match wins, "*" matches all.
type Route struct {
	Domain  string `yaml:"domain"` // lower-cased by Load
	NextHop string `yaml:"next_hop"`

	Line int `yaml:"-"`
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
	MaxMessageBytes int      `yaml:"max_message_bytes"`     // default 65535
	MaxHeaders      int      `yaml:"max_headers"`           // default 100
	IdleTimeout     Duration `yaml:"idle_timeout"`          // TCP/TLS connection read idle; default 5m
	TLSHandshake    Duration `yaml:"tls_handshake_timeout"` // default 10s

	// Per-source request rate (token bucket; 503 with Retry-After beyond
	// it). A source is an IPv4 address or an IPv6 /64. Trusted peers'
	// sources are exempt. 0 disables.
	RequestsPerSecond int `yaml:"requests_per_second"` // default 20
	Burst             int `yaml:"burst"`               // default 100
	// Digest brute-force throttling: a source with AuthFailures wrong
	// answers within AuthFailureWindow is refused (403) for AuthBlock.
	// 0 disables.
	AuthFailures      int      `yaml:"auth_failures"`       // default 5
	AuthFailureWindow Duration `yaml:"auth_failure_window"` // default 10m
	AuthBlock         Duration `yaml:"auth_block"`          // default 15m
	// Open TCP/TLS connections per source. 0 disables.
	ConnectionsPerSource int `yaml:"connections_per_source"` // default 64
}

// State is where registrations and dialogs outlive the process.
type State struct {
	// Backend is memory (the default: state ends with the process), file
	// (an embedded bbolt file at Path) or redis (shared by a pool).
	Backend string `yaml:"backend"`
	// Path is the state file (file); resolved against the config file's
	// directory by Load.
	Path string `yaml:"path"`

	// Redis: Addrs are host:port of the server, of the Sentinels (with
	// SentinelMaster) or of Cluster seed nodes (with Cluster).
	Addrs          []string `yaml:"addrs"`
	Username       string   `yaml:"username"`
	Password       string   `yaml:"password"`
	DB             int      `yaml:"db"`
	TLS            StateTLS `yaml:"tls"`
	SentinelMaster string   `yaml:"sentinel_master"`
	Cluster        bool     `yaml:"cluster"`
	// Prefix starts every Redis key and the channel (default "sipproxy:").
	Prefix string `yaml:"prefix"`

	// Timeout bounds one backend operation (default 1s): a REGISTER the
	// backend does not take in time is answered 503.
	Timeout Duration `yaml:"timeout"`
	// Instance names this proxy in the records it writes (default: the
	// host name).
	Instance string `yaml:"instance"`

	Line int `yaml:"-"` // line of the state mapping
}

// StateTLS is TLS towards Redis; set (any key, or an empty mapping) means on.
type StateTLS struct {
	CA         string `yaml:"ca"`   // PEM bundle trusted for the server; default: system roots
	Cert       string `yaml:"cert"` // optional client certificate
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"` // default: the host of each address

	// Enabled: the file has a tls mapping (even an empty one). CA, Cert
	// and Key are rewritten by Load to resolved paths; Config loads them.
	Enabled bool `yaml:"-"`
	Line    int  `yaml:"-"`
}

// Duration is a time.Duration written as "15s", "2m" in YAML.
type Duration struct{ time.Duration }
