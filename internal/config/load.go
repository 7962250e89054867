package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/sipproxy/sipproxy/internal/aor"
)

// Load reads, decodes and validates the configuration file at path. On
// failure the error is an Errors value holding every problem found, each
// with the file and line it is on. Relative paths in the file (certificates,
// CA bundles, the rules file) are resolved against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: "cannot read configuration: " + osError(err)}}
	}
	c, err := LoadBytes(path, data, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.Path = path
	return c, nil
}

// LoadBytes is Load for a document already in memory: name is used in
// errors and baseDir resolves relative paths ("" means the working
// directory). Config.Path is left empty.
func LoadBytes(name string, data []byte, baseDir string) (*Config, error) {
	r := newReport(name)
	doc, ok := r.parse(data)
	if !ok {
		return nil, r.errs
	}
	c := &Config{source: name}
	r.decode(doc, reflect.ValueOf(c).Elem(), "")
	v := &validator{report: r, base: baseDir, c: c}
	v.validate()
	if len(r.errs) > 0 {
		sortByLine(r.errs)
		return nil, r.errs
	}
	c.lines = r.lines
	return c, nil
}

// validator checks a decoded Config, fills in defaults and derived fields.
type validator struct {
	*report
	base string // directory relative paths are resolved against
	c    *Config
}

func (v *validator) validate() {
	v.server()
	v.tlsClient()
	v.voicemail()
	v.peers()
	v.auth()
	v.routes()
	v.forwarding()
	v.metrics()
	v.log()
	v.limits()
	v.state()
}

func (v *validator) server() {
	s := &v.c.Server
	if len(s.Domains) == 0 {
		v.errorf("server.domains", "at least one domain is required (the SIP domains this proxy serves)")
	}
	first := map[string]int{}
	for i, d := range s.Domains {
		p := fmt.Sprintf("server.domains[%d]", i)
		d = strings.ToLower(d)
		s.Domains[i] = d
		if !validHostName(d) {
			v.errorf(p, "%q is not a valid host name", d)
		} else if j, dup := first[d]; dup {
			v.errorf(p, "%q is listed twice (first at line %d)", d, v.line(fmt.Sprintf("server.domains[%d]", j)))
		} else {
			first[d] = i
		}
	}
	if s.Advertise != "" && !validHost(s.Advertise) {
		v.errorf("server.advertise", "%q is not a host name or IP address", s.Advertise)
	}
	v.listeners()
	if s.Resolver != "" {
		v.resolverAddr("server.resolver", s.Resolver)
	}
	v.duration(&s.TimerC, "server.timer_c", 180*time.Second, time.Second, 0)
	v.duration(&s.NoResponseTimeout, "server.no_response_timeout", 10*time.Second, time.Second, 32*time.Second)
}

func (v *validator) listeners() {
	ls := v.c.Server.Listen
	if len(ls) == 0 {
		v.errorf("server.listen", "at least one listener is required")
	}
	addrs := make([]netip.AddrPort, len(ls)) // valid ones, for conflicts
	for i := range ls {
		l := &ls[i]
		p := fmt.Sprintf("server.listen[%d]", i)
		switch {
		case validTransport(l.Transport):
		case l.Transport == "":
			v.requiredf(p, []string{"transport"}, "transport is required (udp, tcp or tls)")
		default:
			v.errorf(p+".transport", "%q is not a transport; use udp, tcp or tls", l.Transport)
		}
		var addr netip.AddrPort
		addrOK := false
		if l.Addr == "" {
			v.requiredf(p, []string{"addr"}, "addr is required (ip:port)")
		} else {
			addr, addrOK = v.addr(p+".addr", l.Addr)
			addrs[i] = addr
		}
		if l.Advertise != "" && !validHost(l.Advertise) {
			v.errorf(p+".advertise", "%q is not a host name or IP address", l.Advertise)
		}
		switch l.Transport {
		case "tls":
			v.listenerTLS(l, p)
		case "udp", "tcp":
			for _, f := range []struct {
				key string
				set bool
			}{{"cert", l.Cert != ""}, {"key", l.Key != ""}, {"client_ca", l.ClientCA != ""}, {"self_signed", l.SelfSigned}} {
				if f.set {
					v.errorf(p+"."+f.key, "only valid on a tls listener")
				}
			}
		default:
			continue
		}
		if !addrOK || addr.Port() == 0 {
			continue // port 0 picks a free port: never a conflict
		}
		for j := range i {
			o := &ls[j]
			oa := addrs[j]
			if !oa.IsValid() || !validTransport(o.Transport) || socketNetwork(o.Transport) != socketNetwork(l.Transport) || !overlap(oa, addr) {
				continue
			}
			switch {
			case o.Transport == l.Transport && oa == addr:
				v.errorf(p, "duplicate listener %s %s (first at line %d)", l.Transport, addr, o.Line)
			case oa == addr:
				v.errorf(p, "%s listener %s conflicts with the %s listener at line %d: both bind %s port %d",
					l.Transport, addr, o.Transport, o.Line, strings.ToUpper(socketNetwork(l.Transport)), addr.Port())
			default:
				v.errorf(p, "%s listener %s overlaps the %s listener %s at line %d (a wildcard address binds every interface)",
					l.Transport, addr, o.Transport, oa, o.Line)
			}
			break
		}
	}
}

func (v *validator) listenerTLS(l *Listener, p string) {
	switch {
	case l.SelfSigned && (l.Cert != "" || l.Key != ""):
		v.errorf(p+".self_signed", "self_signed cannot be combined with cert and key")
	case l.SelfSigned:
		// Generated once the whole file is known to be valid.
	case l.Cert == "" && l.Key == "":
		v.requiredf(p, []string{"cert", "key", "self_signed"}, "a tls listener needs cert and key (or self_signed: true)")
	case l.Key == "":
		v.requiredf(p, []string{"key"}, "key is required with cert")
	case l.Cert == "":
		v.requiredf(p, []string{"cert"}, "cert is required with key")
	default:
		v.keyPair(p, &l.Cert, &l.Key)
	}
	if l.ClientCA != "" {
		v.pool(p+".client_ca", &l.ClientCA)
	}
}

func (v *validator) tlsClient() {
	t := &v.c.Server.TLSClient
	const p = "server.tls_client"
	if t.CA != "" {
		v.pool(p+".ca", &t.CA)
	}
	switch {
	case t.Cert != "" && t.Key != "":
		v.keyPair(p, &t.Cert, &t.Key)
	case t.Cert != "":
		v.requiredf(p, []string{"key"}, "key is required with cert")
	case t.Key != "":
		v.requiredf(p, []string{"cert"}, "cert is required with key")
	}
}

func (v *validator) voicemail() {
	vm := &v.c.Voicemail
	v.probeInterval()
	switch {
	case vm.URI != "" && v.set["voicemail.uris"]:
		v.errorf("voicemail.uris", "set uri (line %d) or uris, not both", v.line("voicemail.uri"))
	case v.set["voicemail.uris"]:
		v.voicemailPool()
	case vm.URI != "":
		if _, _, err := aor.Parse(vm.URI); err != nil {
			v.errorf("voicemail.uri", "%v", err)
		}
	case v.set["voicemail"]:
		v.requiredf("voicemail", []string{"uri", "uris"}, "uri or uris is required when voicemail is set")
	}
}

// voicemailPool parses voicemail.uris: each entry as voicemail.uri, none
// twice (the second would only be tried after the first had just failed).
func (v *validator) voicemailPool() {
	vm := &v.c.Voicemail
	if len(vm.URIs) == 0 {
		v.errorf("voicemail.uris", "the list is empty; name at least one SIP URI")
		return
	}
	first := map[string]int{}
	for i, s := range vm.URIs {
		p := fmt.Sprintf("voicemail.uris[%d]", i)
		u, _, err := aor.Parse(s)
		if err != nil {
			v.errorf(p, "%v", err)
			continue
		}
		key := strings.ToLower(u.String())
		if line, dup := first[key]; dup {
			v.errorf(p, "%q is listed twice (first at line %d)", s, line)
			continue
		}
		first[key] = v.line(p)
	}
}

// probeInterval checks voicemail.probe_interval: 0 turns probing off, so
// only a negative or a sub-100ms value (a typo for seconds, and a flood of
// OPTIONS) is refused.
func (v *validator) probeInterval() {
	const path = "voicemail.probe_interval"
	d := &v.c.Voicemail.ProbeInterval
	switch {
	case !v.set[path]:
		d.Duration = 10 * time.Second
	case d.Duration < 0:
		v.errorf(path, "%s is negative; write 0 to turn probing off", d)
	case d.Duration > 0 && d.Duration < 100*time.Millisecond:
		v.errorf(path, "%s is too short (at least 100ms, or 0 to turn probing off)", d)
	}
}

func (v *validator) peers() {
	names := map[string]int{}
	for i := range v.c.Peers {
		pr := &v.c.Peers[i]
		p := fmt.Sprintf("peers[%d]", i)
		switch first, dup := names[pr.Name]; {
		case pr.Name == "":
			v.requiredf(p, []string{"name"}, "name is required")
		case dup:
			v.errorf(p+".name", "peer %q is defined twice (lines %d and %d)", pr.Name, first, pr.Line)
		default:
			names[pr.Name] = pr.Line
		}
		if len(pr.Sources) == 0 && len(pr.TLSNames) == 0 {
			v.requiredf(p, []string{"sources", "tls_names"}, "a peer needs sources, tls_names or both")
		}
		for j, src := range pr.Sources {
			sp := fmt.Sprintf("%s.sources[%d]", p, j)
			pfx, err := netip.ParsePrefix(src)
			switch {
			case err != nil:
				if ip, ipErr := netip.ParseAddr(src); ipErr == nil {
					v.errorf(sp, "%q is an address, not a CIDR; write %s/%d", src, ip, ip.BitLen())
				} else {
					v.errorf(sp, "%q is not a CIDR such as 10.0.0.5/32 or 2001:db8::/64", src)
				}
			case pfx != pfx.Masked():
				v.errorf(sp, "%q has bits set beyond the prefix length; did you mean %s?", src, pfx.Masked())
			}
		}
		for j, name := range pr.TLSNames {
			if strings.TrimSpace(name) == "" {
				v.errorf(fmt.Sprintf("%s.tls_names[%d]", p, j), "empty name")
			}
		}
	}
}

func (v *validator) auth() {
	a := &v.c.Auth
	if len(a.Users) > 0 && a.Realm == "" {
		v.requiredf("auth", []string{"realm"}, "realm is required when users are defined")
	}
	users := map[string]int{}
	for i := range a.Users {
		u := &a.Users[i]
		p := fmt.Sprintf("auth.users[%d]", i)
		switch first, dup := users[u.User]; {
		case u.User == "":
			v.requiredf(p, []string{"user"}, "user is required")
		case strings.ContainsAny(u.User, "@:;<> \t"):
			v.errorf(p+".user", "%q must be the user part only (alice, not sip:alice@contoso.com)", u.User)
		case dup:
			v.errorf(p+".user", "user %q is defined twice (lines %d and %d)", u.User, first, u.Line)
		default:
			users[u.User] = u.Line
		}
		switch {
		case u.HA1 != "" && u.Password != "":
			v.errorf(p, "set ha1 or password, not both")
		case u.HA1 == "" && u.Password == "":
			v.requiredf(p, []string{"ha1", "password"}, "one of ha1 or password is required")
		}
		u.HA1 = strings.ToLower(u.HA1)
		u.HA1SHA256 = strings.ToLower(u.HA1SHA256)
		if u.HA1 != "" && !isHex(u.HA1, 32) {
			v.errorf(p+".ha1", "must be 32 hexadecimal digits: MD5(user:realm:password)")
		}
		switch {
		case u.HA1SHA256 == "":
		case !isHex(u.HA1SHA256, 64):
			v.errorf(p+".ha1_sha256", "must be 64 hexadecimal digits: SHA-256(user:realm:password)")
		case u.Password != "":
			v.errorf(p+".ha1_sha256", "only goes with ha1; with a password it is computed")
		}
	}
	v.duration(&a.NonceTTL, "auth.nonce_ttl", 5*time.Minute, time.Second, 0)
	if len(a.Algorithms) == 0 {
		a.Algorithms = []string{"SHA-256", "MD5"}
	}
	seen := map[string]bool{}
	for i, alg := range a.Algorithms {
		p := fmt.Sprintf("auth.algorithms[%d]", i)
		switch {
		case alg != "SHA-256" && alg != "MD5":
			v.errorf(p, "%q is not a digest algorithm; use SHA-256 or MD5", alg)
		case seen[alg]:
			v.errorf(p, "%s is listed twice", alg)
		}
		seen[alg] = true
	}
}

func (v *validator) routes() {
	domains := map[string]int{}
	for i := range v.c.Routes {
		rt := &v.c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		rt.Domain = strings.ToLower(rt.Domain)
		switch first, dup := domains[rt.Domain]; {
		case rt.Domain == "":
			v.requiredf(p, []string{"domain"}, "domain is required (a host name or \"*\")")
		case rt.Domain != "*" && !validHostName(rt.Domain):
			v.errorf(p+".domain", "%q is not a host name or \"*\"", rt.Domain)
		case dup:
			v.errorf(p+".domain", "%q is already routed at line %d; the first match wins, so this route is never used", rt.Domain, first)
		default:
			domains[rt.Domain] = rt.Line
		}
		if rt.NextHop == "" {
			v.requiredf(p, []string{"next_hop"}, "next_hop is required")
			continue
		}
		if _, _, err := aor.Parse(rt.NextHop); err != nil {
			v.errorf(p+".next_hop", "%v", err)
		}
	}
}

func (v *validator) forwarding() {
	f := &v.c.Forwarding
	if f.RulesFile != "" {
		f.RulesFile = v.resolve(f.RulesFile)
		if _, err := os.ReadFile(f.RulesFile); err != nil {
			v.errorf("forwarding.rules_file", "cannot read rules file %s: %s", f.RulesFile, osError(err))
		}
	}
	v.duration(&f.DefaultAfter, "forwarding.default_after", 20*time.Second, time.Second, 300*time.Second)
	v.intRange(&f.MaxDiversions, "forwarding.max_diversions", 5, 1, 20)
}

func (v *validator) metrics() {
	if v.c.Metrics.Listen != "" {
		v.addr("metrics.listen", v.c.Metrics.Listen)
	}
}

func (v *validator) log() {
	l := &v.c.Log
	switch l.Level {
	case "":
		l.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "%q is not a level; use debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "":
		l.Format = "json"
	case "json", "text":
	default:
		v.errorf("log.format", "%q is not a format; use json or text", l.Format)
	}
}

func (v *validator) limits() {
	l := &v.c.Limits
	v.intRange(&l.MaxMessageBytes, "limits.max_message_bytes", 65535, 1, 0)
	v.intRange(&l.MaxHeaders, "limits.max_headers", 100, 1, 0)
	v.duration(&l.IdleTimeout, "limits.idle_timeout", 5*time.Minute, time.Second, 0)
	v.duration(&l.TLSHandshake, "limits.tls_handshake_timeout", 10*time.Second, time.Second, 0)
	v.intRange(&l.RequestsPerSecond, "limits.requests_per_second", 20, 0, 0)
	v.intRange(&l.Burst, "limits.burst", 100, 1, 0)
	v.intRange(&l.AuthFailures, "limits.auth_failures", 5, 0, 0)
	v.duration(&l.AuthFailureWindow, "limits.auth_failure_window", 10*time.Minute, time.Second, 0)
	v.duration(&l.AuthBlock, "limits.auth_block", 15*time.Minute, time.Second, 0)
	v.intRange(&l.ConnectionsPerSource, "limits.connections_per_source", 64, 0, 0)
}

// duration applies a default when path is absent from the file and checks
// the range otherwise (max 0: no upper bound).
func (v *validator) duration(d *Duration, path string, def, lo, hi time.Duration) {
	if !v.set[path] {
		d.Duration = def
		return
	}
	if d.Duration < lo || hi > 0 && d.Duration > hi {
		if hi > 0 {
			v.errorf(path, "%s is out of range (%s to %s)", d, Duration{lo}, Duration{hi})
		} else {
			v.errorf(path, "%s is too short (at least %s)", d, Duration{lo})
		}
	}
}

// intRange is duration for integers.
func (v *validator) intRange(n *int, path string, def, lo, hi int) {
	if !v.set[path] {
		*n = def
		return
	}
	if *n < lo || hi > 0 && *n > hi {
		if hi > 0 {
			v.errorf(path, "%d is out of range (%d to %d)", *n, lo, hi)
		} else {
			v.errorf(path, "%d is too small (at least %d)", *n, lo)
		}
	}
}

// addr checks an "ip:port" listen address.
func (v *validator) addr(path, s string) (netip.AddrPort, bool) {
	ap, err := parseListenAddr(s)
	if err != nil {
		v.errorf(path, "%v", err)
		return netip.AddrPort{}, false
	}
	return ap, true
}

// parseListenAddr parses an "ip:port" listen address: an IP literal (names
// are not resolved) and a port, 0 picking a free one.
func parseListenAddr(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ip:port", s)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: the host must be an IP literal such as 0.0.0.0, 127.0.0.1 or [::1]; names are not resolved", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%q: the port must be 0-65535 (0 picks a free port)", s)
	}
	return netip.AddrPortFrom(ip, uint16(n)), nil
}

// resolverAddr parses the "ip:port" of a DNS server. The host must be an
// IP literal: a name would need a resolver to find the resolver.
func (v *validator) resolverAddr(path, s string) netip.AddrPort {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if ip, ipErr := netip.ParseAddr(strings.Trim(s, "[]")); ipErr == nil {
			v.errorf(path, "%q has no port; write %s", s, netip.AddrPortFrom(ip, 53))
		} else {
			v.errorf(path, "%q is not ip:port", s)
		}
		return netip.AddrPort{}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		v.errorf(path, "%q: the host must be an IP literal such as 10.0.0.53 or [2001:db8::53]; names are not resolved", s)
		return netip.AddrPort{}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		v.errorf(path, "%q: the port must be 1-65535 (DNS is 53)", s)
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, uint16(n))
}

// keyPair checks that a PEM certificate chain and its private key load,
// rewriting both fields to their resolved paths. path names the mapping
// holding cert and key.
func (v *validator) keyPair(path string, cert, key *string) *tls.Certificate {
	*cert, *key = v.resolve(*cert), v.resolve(*key)
	certPEM, certErr := os.ReadFile(*cert)
	if certErr != nil {
		v.errorf(path+".cert", "cannot read certificate %s: %s", *cert, osError(certErr))
	}
	keyPEM, keyErr := os.ReadFile(*key)
	if keyErr != nil {
		v.errorf(path+".key", "cannot read key %s: %s", *key, osError(keyErr))
	}
	if certErr != nil || keyErr != nil {
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		v.errorf(path+".cert", "certificate %s and key %s are not a usable pair: %v", *cert, *key, err)
		return nil
	}
	return &pair
}

// pool checks that a PEM bundle of CA certificates loads, rewriting the
// field to its resolved path.
func (v *validator) pool(path string, file *string) *x509.CertPool {
	*file = v.resolve(*file)
	data, err := os.ReadFile(*file)
	switch {
	case err != nil:
		v.errorf(path, "cannot read CA bundle %s: %s", *file, osError(err))
		return nil
	case len(bytes.TrimSpace(data)) == 0:
		v.errorf(path, "CA bundle %s is empty", *file)
		return nil
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		v.errorf(path, "CA bundle %s holds no PEM certificate", *file)
		return nil
	}
	return p
}

// resolve makes a relative path relative to the configuration's directory.
func (v *validator) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.base, p)
}

// osError is the operating system's reason without the path, which the
// callers already name.
func osError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func validTransport(t string) bool {
	return t == "udp" || t == "tcp" || t == "tls"
}

// socketNetwork is the kind of socket a transport binds.
func socketNetwork(transport string) string {
	if transport == "udp" {
		return "udp"
	}
	return "tcp"
}

// overlap reports whether two listen addresses cannot both be bound: the
// same address and port, or the same port where one is a wildcard covering
// the other (:: covers IPv4 too, as Go listens dual-stack).
func overlap(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	covers := func(w, o netip.Addr) bool {
		return w.IsUnspecified() && (w.Is6() || o.Is4())
	}
	return x == y || covers(x, y) || covers(y, x)
}

// validHostName accepts DNS names (letters, digits and hyphens in labels
// of at most 63 characters, no leading or trailing hyphen), which includes
// IPv4 literals.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validHost accepts a host name or an IP literal.
func validHost(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil || validHostName(s)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// loadKeyPair loads a PEM certificate chain and its private key (Provision).
func loadKeyPair(cert, key string) (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("certificate %s and key %s: %w", cert, key, err)
	}
	return &pair, nil
}

// loadPool loads a PEM bundle of CA certificates (Provision).
func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", file)
	}
	return p, nil
}
