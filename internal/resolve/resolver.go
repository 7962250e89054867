package resolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

const (
	// defaultTimeout bounds one question to one server.
	defaultTimeout = 2 * time.Second
	// maxTTL bounds how long an answer is kept, whatever its TTL says, so
	// that a mistaken week-long TTL does not pin a pool member.
	maxTTL = time.Hour
	// Negative answers (no SRV, no AAAA: the common case) are kept
	// briefly: long enough that every call does not ask again, short
	// enough that a record just added is used soon.
	maxNegativeTTL     = 30 * time.Second
	defaultNegativeTTL = 5 * time.Second
	// staleFor is how long past its TTL an answer may still be used when
	// every server fails (RFC 8767 "serve stale"): a DNS outage should not
	// take the voicemail pool down with it.
	staleFor = time.Hour
	// staleRetry is how long a stale answer is used before DNS is asked
	// again (RFC 8767 4 suggests 30s): during an outage, calls do not each
	// wait for every server to time out.
	staleRetry = 30 * time.Second
	// maxEntries bounds the cache; the names asked about come from the
	// configuration and the SRV targets its names point to.
	maxEntries = 4096
)

// ErrNotFound is wrapped by Resolve's error when DNS says a name has no
// usable records (as opposed to DNS not answering).
var ErrNotFound = errors.New("not found")

// Options configure a Resolver. The zero value asks the system's servers.
type Options struct {
	// Server is the DNS server to ask, host:port. "" reads the nameservers
	// of /etc/resolv.conf (127.0.0.1:53 when it lists none or cannot be
	// read, as Go's own resolver does).
	Server string
	// Transports are the transports tried, in this order, for a URI that
	// names neither a transport nor a port (RFC 3263 4.1 without NAPTR).
	// Default tls, tcp, udp.
	Transports []string
	// Timeout bounds one question to one server. Default 2s.
	Timeout time.Duration
	// Now is the clock TTLs are measured with. Default time.Now.
	Now func() time.Time
	// HostsFile is read once, by New: a name it lists is answered from it
	// and DNS is not asked (not even for SRV), as the system's resolver
	// and so every other program on the machine does. Default /etc/hosts;
	// os.DevNull for none.
	HostsFile string
	// Rand draws the weighted SRV order. Default: a randomly seeded source.
	// It is used under the Resolver's lock (rand.Rand is not safe for
	// concurrent use), so a test may pass a seeded one.
	Rand *rand.Rand
}

// Resolver resolves SIP URIs to endpoints. It is safe for concurrent use.
type Resolver struct {
	servers    []string
	transports []string
	timeout    time.Duration
	now        func() time.Time
	udp, tcp   *dns.Client
	flights    singleflight.Group
	hosts      map[string][]netip.Addr // from the hosts file, by lower-case name

	mu         sync.Mutex
	rand       *rand.Rand
	cache      map[cacheKey]cacheEntry
	maxEntries int // maxEntries; smaller in tests
}

type cacheKey struct {
	name  string // fully qualified, lower case
	qtype uint16
}

type cacheEntry struct {
	answer
	expires    time.Time // the answer is fresh until then
	staleUntil time.Time // and may stand in for a failed query until then
}

// New returns a Resolver asking opts.Server, or the system's servers.
func New(opts Options) (*Resolver, error) {
	r := &Resolver{
		transports: opts.Transports,
		timeout:    opts.Timeout,
		now:        opts.Now,
		rand:       opts.Rand,
		udp:        &dns.Client{Net: "udp"},
		tcp:        &dns.Client{Net: "tcp"},
		cache:      map[cacheKey]cacheEntry{},
		maxEntries: maxEntries,
	}
	if r.transports == nil {
		r.transports = []string{"tls", "tcp", "udp"}
	}
	for _, t := range r.transports {
		if !validTransport(t) {
			return nil, fmt.Errorf("resolver: transport %q is not udp, tcp or tls", t)
		}
	}
	if r.timeout <= 0 {
		r.timeout = defaultTimeout
	}
	if r.now == nil {
		r.now = time.Now
	}
	hostsFile := opts.HostsFile
	if hostsFile == "" {
		hostsFile = "/etc/hosts"
	}
	r.hosts = readHosts(hostsFile)
	if r.rand == nil {
		r.rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if opts.Server != "" {
		host, port, err := net.SplitHostPort(opts.Server)
		if err != nil {
			return nil, fmt.Errorf("resolver: server %q is not host:port: %w", opts.Server, err)
		}
		r.servers = []string{net.JoinHostPort(host, port)}
		return r, nil
	}
	r.servers = systemServers("/etc/resolv.conf")
	return r, nil
}

// systemServers lists the nameservers of a resolv.conf file.
func systemServers(path string) []string {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil || len(cfg.Servers) == 0 {
		return []string{"127.0.0.1:53"}
	}
	out := make([]string, len(cfg.Servers))
	for i, s := range cfg.Servers {
		out[i] = net.JoinHostPort(s, cfg.Port)
	}
	return out
}

// Resolve returns the endpoints of u in the order to try them (RFC 3263
// without NAPTR):
//
//   - the transport is the URI's transport parameter, TLS for sips:, or
//     for a name without port the first of Options.Transports that has
//     SRV records (_sips._tcp for TLS, _sip._tcp, _sip._udp), or else UDP
//     (TLS for sips:);
//   - a numeric IP is the only endpoint (no query at all), and so are the
//     addresses of a name in the hosts file (Options.HostsFile);
//   - a name with a port is looked up with A and AAAA only (4.2);
//   - a name without a port is looked up with SRV; the targets come in RFC
//     2782 order (priority, then a weighted draw made on every call), each
//     with its A then AAAA addresses; without SRV records, the name's own
//     A and AAAA addresses on the transport's default port.
//
// The error wraps ErrNotFound when DNS says there is nothing to reach.
func (r *Resolver) Resolve(ctx context.Context, u sip.Uri) ([]Endpoint, error) {
	eps, err := r.resolve(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", u.String(), err)
	}
	return eps, nil
}

func (r *Resolver) resolve(ctx context.Context, u sip.Uri) ([]Endpoint, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]")
	if host == "" {
		return nil, errors.New("no host")
	}
	sips := strings.EqualFold(u.Scheme, "sips")
	transport, err := uriTransport(u, sips)
	if err != nil {
		return nil, err
	}
	// Without a transport parameter, a numeric IP or an explicit port
	// means UDP, or TLS for sips: (RFC 3263 4.1).
	fallback := transport
	if fallback == "" {
		fallback = "udp"
		if sips {
			fallback = "tls"
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []Endpoint{{Host: ip.String(), Port: portOr(u.Port, fallback), Transport: fallback, Name: host}}, nil
	}
	if addrs, ok := r.hosts[strings.TrimSuffix(strings.ToLower(host), ".")]; ok {
		return endpoints(addrs, portOr(u.Port, fallback), fallback, host, ""), nil
	}
	if u.Port != 0 {
		return r.hostEndpoints(ctx, host, u.Port, fallback, host, "")
	}
	candidates := r.transports
	if transport != "" {
		candidates = []string{transport}
	}
	for _, t := range candidates {
		if sips && t != "tls" {
			continue
		}
		srv, err := r.lookup(ctx, service(t)+host, dns.TypeSRV)
		if err != nil {
			return nil, err
		}
		records := usable(srv.srv)
		if len(records) == 0 {
			if len(srv.srv) > 0 && transport != "" {
				// A lone "." target: "decidedly not available" (RFC 2782).
				return nil, fmt.Errorf("SRV %s%s says the service is not available: %w", service(t), host, ErrNotFound)
			}
			continue
		}
		return r.srvEndpoints(ctx, records, t, host)
	}
	return r.hostEndpoints(ctx, host, 0, fallback, host, "")
}

// srvEndpoints resolves the SRV targets in RFC 2782 order. A target that
// does not resolve is left out; it is an error only when none does (RFC
// 3263 4.2: with SRV records present, the name's own addresses are not
// used).
func (r *Resolver) srvEndpoints(ctx context.Context, records []srvRecord, transport, name string) ([]Endpoint, error) {
	r.mu.Lock()
	ordered := orderSRV(records, r.rand.IntN)
	r.mu.Unlock()
	var out []Endpoint
	var errs []error
	for _, rec := range ordered {
		eps, err := r.hostEndpoints(ctx, rec.Target, int(rec.Port), transport, name, rec.Target)
		if err != nil {
			errs = append(errs, fmt.Errorf("SRV target %s: %w", rec.Target, err))
			continue
		}
		out = append(out, eps...)
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// hostEndpoints returns an endpoint for every A, then AAAA, address of
// host. port 0 means the transport's default.
func (r *Resolver) hostEndpoints(ctx context.Context, host string, port int, transport, name, srv string) ([]Endpoint, error) {
	var addrs []netip.Addr
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.lookup(ctx, host, qtype)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		addrs = append(addrs, a.addrs...)
	}
	if len(addrs) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("%s has no A or AAAA record: %w", host, ErrNotFound)
	}
	return endpoints(addrs, portOr(port, transport), transport, name, srv), nil
}

// endpoints makes an endpoint of every address.
func endpoints(addrs []netip.Addr, port int, transport, name, srv string) []Endpoint {
	out := make([]Endpoint, len(addrs))
	for i, ip := range addrs {
		out[i] = Endpoint{Host: ip.String(), Port: port, Transport: transport, Name: name, SRV: srv}
	}
	return out
}

// lookup answers one question from the cache while its TTL lasts, else
// from DNS; concurrent lookups of one question share one query. When DNS
// fails, an answer expired less than staleFor ago is used instead. A
// negative answer is returned as an answer, not an error.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (answer, error) {
	key := cacheKey{name: dns.Fqdn(strings.ToLower(name)), qtype: qtype}
	r.mu.Lock()
	e, cached := r.cache[key]
	now := r.now()
	r.mu.Unlock()
	if cached && now.Before(e.expires) {
		return e.answer, nil
	}
	flight := key.name + "/" + dns.TypeToString[qtype]
	ch := r.flights.DoChan(flight, func() (any, error) {
		// The query outlives a caller that gives up, so that the others
		// waiting on it (and the cache) still get its answer.
		a, err := r.exchange(context.WithoutCancel(ctx), key.name, qtype)
		if err != nil {
			return answer{}, err
		}
		r.store(key, a)
		return a, nil
	})
	select {
	case res := <-ch:
		if res.Err == nil {
			return res.Val.(answer), nil
		}
		if cached && r.now().Before(e.staleUntil) {
			r.mu.Lock()
			if cur, ok := r.cache[key]; ok && cur.staleUntil.Equal(e.staleUntil) {
				cur.expires = r.now().Add(staleRetry)
				r.cache[key] = cur
			}
			r.mu.Unlock()
			return e.answer, nil
		}
		return answer{}, fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], key.name, res.Err)
	case <-ctx.Done():
		return answer{}, fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], key.name, ctx.Err())
	}
}

// store caches an answer; when the cache is full, entries too old to be
// served even stale go first, then any.
func (r *Resolver) store(key cacheKey, a answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if _, ok := r.cache[key]; !ok && len(r.cache) >= r.maxEntries {
		for k, e := range r.cache {
			if now.After(e.staleUntil) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < r.maxEntries {
				break
			}
			delete(r.cache, k)
		}
	}
	exp := now.Add(a.ttl)
	r.cache[key] = cacheEntry{answer: a, expires: exp, staleUntil: exp.Add(staleFor)}
}

// uriTransport is the transport a URI asks for, "" when it leaves the
// choice to DNS. sips: means TLS; sips with transport=tcp is TLS over TCP
// (RFC 3261 26.2.2), with UDP it is a contradiction.
func uriTransport(u sip.Uri, sips bool) (string, error) {
	t, _ := u.UriParams.Get("transport")
	t = strings.ToLower(t)
	switch {
	case t == "" && sips:
		return "tls", nil
	case t == "":
		return "", nil
	case !validTransport(t):
		return "", fmt.Errorf("transport %q is not udp, tcp or tls", t)
	case sips && t == "udp":
		return "", errors.New("sips: cannot be reached over UDP")
	case sips:
		return "tls", nil
	}
	return t, nil
}

// service is the SRV owner-name prefix for a transport (RFC 3263 4.2).
func service(transport string) string {
	switch transport {
	case "tls":
		return "_sips._tcp."
	case "tcp":
		return "_sip._tcp."
	default:
		return "_sip._udp."
	}
}

// usable drops SRV records whose target is "." (RFC 2782: the service is
// not offered).
func usable(rs []srvRecord) []srvRecord {
	var out []srvRecord
	for _, r := range rs {
		if r.Target != "" {
			out = append(out, r)
		}
	}
	return out
}

func portOr(port int, transport string) int {
	if port != 0 {
		return port
	}
	return sip.DefaultPort(transport)
}

func validTransport(t string) bool {
	return t == "udp" || t == "tcp" || t == "tls"
}
