// Command connscale is the connection-scale load generator of issue 11
// point 5: N phones, each on its own TLS connection from its own port,
// register with MD5 digest and refresh at a steady rate, while a trusted
// peer places calls to random phones, which the proxy must deliver over
// the phones' connections (nobody listens on the ports their Contacts name).
//
// It talks plain crypto/tls and hand-written SIP text: 20,000 sipgo user
// agents would measure sipgo as much as the proxy. Loopback only; every
// loop is bounded by count and by -duration / -timeout; it stops by itself
// and closes every connection it opened.
//
// bench/connscale.sh runs it against a freshly built sipproxy; see
// docs/performance.md, "Connection scale".
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	proxy, callProxy, serverName, domain string
	phones                               int
	registerRate, callRate, refreshRate  float64
	duration, hold, expires, timeout     time.Duration
	settle                               time.Duration
	usersPrefix, password, ca            string
	srcIPs, callerSrc                    string
	report                               string
	proxyPID                             int
	proxyChildren                        bool
	proxyName                            string
	heapURL, heapOut                     string
	metricsURL, gcURL                    string
	label                                string
	maxConcurrentRamp                    int
}

type stats struct {
	connectOK, connectFail    atomic.Int64
	regOK, regFail            atomic.Int64
	refreshOK, refreshFail    atomic.Int64
	refreshSkipped            atomic.Int64
	connLost                  atomic.Int64
	callsPlaced, callsFailed  atomic.Int64
	callsDone, byeFailed      atomic.Int64
	ringing                   atomic.Int64
	invitesIn, acksIn, byesIn atomic.Int64
	misdelivered              atomic.Int64
	callsSkippedNoPhone       atomic.Int64
}

type sample struct {
	label        string
	conns        int
	rssKiB       int64
	hwmKiB       int64
	fds          int
	at           time.Duration
	goroutineErr string
	heapInuse    int64 // bytes, after -gc-url: spans holding any live object
	heapAlloc    int64 // bytes, after -gc-url: the live objects themselves
	stackInuse   int64
	goroutines   int64
	pssKiB       int64 // sum of Pss over the proxy's processes
	fdsMax       int
	procs        int
	proxyCPU     time.Duration // CPU time used so far, by the proxy and by this tool
	selfCPU      time.Duration
	// From /metrics: the runtime's scheduling-latency histogram (cumulative
	// counts by upper bound, seconds) and collections so far.
	sched map[float64]float64
	gcs   int64
}

type run struct {
	cfg      config
	tlsConf  *tls.Config
	srcIPs   []net.IP
	callerIP net.IP
	phones   []*phone
	st       stats
	wg       sync.WaitGroup
	stopping atomic.Bool
	t0       time.Time

	mu                            sync.Mutex
	setups                        []time.Duration
	setupAt                       []time.Time     // when each of setups' INVITEs was sent
	setupOut                      []time.Duration // of each setup: INVITE sent -> read by the phone (the rest is 200 written -> read by the caller)
	phoneSaw                      sync.Map        // Call-ID -> time.Time the phone read the INVITE
	regLat                        []time.Duration
	refLat                        []time.Duration
	errs                          []string
	errCount                      int
	samples                       []sample
	rampTime                      time.Duration
	steadyDur                     time.Duration
	refreshAchieved, callAchieved float64
}

func (r *run) user(i int) string { return r.cfg.usersPrefix + strconv.Itoa(i) }
func (r *run) password(i int) string {
	return strings.ReplaceAll(r.cfg.password, "{i}", strconv.Itoa(i))
}

func (r *run) noteErr(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errCount++
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf("%7.1fs ", time.Since(r.t0).Seconds())+fmt.Sprintf(format, args...))
	}
}

func (r *run) recordSetup(id string, start time.Time, d time.Duration) {
	var out time.Duration = -1
	if v, ok := r.phoneSaw.LoadAndDelete(id); ok {
		out = v.(time.Time).Sub(start)
	}
	r.mu.Lock()
	r.setups = append(r.setups, d)
	r.setupAt = append(r.setupAt, start)
	r.setupOut = append(r.setupOut, out)
	r.mu.Unlock()
}

// slowCalls says whether the slowest calls (at or above p99) bunch together
// in time, as behind a pause of the proxy or of this tool, or spread over the
// run, as behind CPU contention: how many 100 ms windows (by INVITE sent)
// they fall in.
func (r *run) slowCalls() string {
	if len(r.setups) < 100 {
		return ""
	}
	s := append([]time.Duration(nil), r.setups...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	p99 := s[int(.99*float64(len(s))+0.999999)-1]
	windows := map[int64]bool{}
	n := 0
	for i, d := range r.setups {
		if d >= p99 {
			n++
			windows[r.setupAt[i].UnixMilli()/100] = true
		}
	}
	return fmt.Sprintf("%d calls at or above p99 (%.2f ms) started in %d distinct 100 ms windows", n, float64(p99.Microseconds())/1000, len(windows))
}

// writeSetups writes every call's INVITE time (Unix ms) and setup time (ms),
// for lining the slow ones up with the proxy's GC log (GODEBUG=gctrace=1).
func (r *run) writeSetups(path string) {
	var b strings.Builder
	b.WriteString("invite_unix_ms,setup_ms,invite_to_phone_ms\n")
	for i, d := range r.setups {
		fmt.Fprintf(&b, "%d,%.3f,%.3f\n", r.setupAt[i].UnixMilli(), float64(d.Microseconds())/1000, float64(r.setupOut[i].Microseconds())/1000)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "connscale:", err)
	}
}

func main() {
	var c config
	flag.StringVar(&c.proxy, "proxy", "127.0.0.1:5061", "the proxy's TLS listener (host:port, loopback only); the phones connect here")
	flag.StringVar(&c.callProxy, "call-proxy", "127.0.0.1:5060", "the proxy's TCP listener the caller connects to (loopback only), from -caller-src, a trusted peer address")
	flag.StringVar(&c.serverName, "server-name", "bench.test", "the name the proxy's certificate is verified against")
	flag.StringVar(&c.domain, "domain", "bench.test", "SIP domain of the users")
	flag.IntVar(&c.phones, "phones", 2000, "phones: users PREFIX0..PREFIX(N-1), one TLS connection each")
	flag.Float64Var(&c.registerRate, "register-rate", 1000, "REGISTER transactions per second: the initial registrations (one new connection each), then the refreshes")
	flag.Float64Var(&c.refreshRate, "refresh-rate", -1, "refresh REGISTERs per second in the steady phase (default: -register-rate; 0: none, as for a calls-only baseline)")
	flag.Float64Var(&c.callRate, "call-rate", 200, "calls per second to random registered phones, during -duration")
	flag.DurationVar(&c.duration, "duration", 30*time.Second, "steady phase: refreshes and calls for this long once every phone is registered")
	flag.DurationVar(&c.hold, "hold", time.Second, "time between a call's ACK and its BYE")
	flag.DurationVar(&c.expires, "expires", 10*time.Minute, "Expires of the registrations")
	flag.DurationVar(&c.settle, "settle", 3*time.Second, "pause before each RSS sample (at N/2 and N connections)")
	flag.DurationVar(&c.timeout, "timeout", 0, "hard bound on the whole run (default: 2*N/register-rate + duration + 90s)")
	flag.StringVar(&c.usersPrefix, "users-prefix", "phone", "user name prefix")
	flag.StringVar(&c.password, "password", "pw-{i}", "password of every user; {i} is replaced by the phone's index")
	flag.StringVar(&c.ca, "ca", "", "PEM CA bundle that verifies the proxy's certificate (required)")
	flag.StringVar(&c.srcIPs, "src-ips", "127.0.0.2-127.0.0.11", "phones' source addresses, round robin: a list (a,b,c) or a range (first-last) of loopback IPv4 addresses")
	flag.StringVar(&c.callerSrc, "caller-src", "127.0.0.1", "the caller's source address (configure it as a peer)")
	flag.StringVar(&c.report, "report", "", "write a markdown report here (default: stdout only), and each call's INVITE time and setup time next to it (<report>-setups.csv)")
	flag.IntVar(&c.proxyPID, "proxy-pid", 0, "sample VmRSS/VmHWM and open files of this PID at 0, N/2, N connections and at the end")
	flag.BoolVar(&c.proxyChildren, "proxy-children", false, "also sample the processes whose parent is -proxy-pid (Kamailio's workers) and report the sums; the memory per connection is then the slope of the sum of Pss")
	flag.StringVar(&c.proxyName, "proxy-name", "sipproxy", "the proxy's name in the report")
	flag.StringVar(&c.heapURL, "heap-url", "", "fetch this URL (a pprof heap endpoint) when N connections are held, into -heap-out, and again after the loaded phase, into -heap-out with \"-end\" before .pprof")
	flag.StringVar(&c.heapOut, "heap-out", "heap.pprof", "where -heap-url's answer is written")
	flag.StringVar(&c.metricsURL, "metrics-url", "", "the proxy's Prometheus /metrics: go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes and go_goroutines are read at each sample")
	flag.StringVar(&c.gcURL, "gc-url", "", "fetched after each RSS sample and before -metrics-url (e.g. the pprof heap endpoint with ?gc=1, which runs a GC): the metrics then show the live heap")
	flag.StringVar(&c.label, "label", "", "label of this run in the report")
	flag.IntVar(&c.maxConcurrentRamp, "ramp-concurrency", 512, "connections being opened and registered at once, at most")
	flag.Parse()
	if err := c.check(); err != nil {
		fmt.Fprintln(os.Stderr, "connscale:", err)
		os.Exit(2)
	}
	r, err := newRun(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connscale:", err)
		os.Exit(2)
	}
	ok := r.main()
	if !ok {
		os.Exit(1)
	}
}

func loopbackAddr(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only loopback IP literals are allowed", hostport)
	}
	return nil
}

func (c *config) check() error {
	if err := loopbackAddr(c.proxy); err != nil {
		return fmt.Errorf("-proxy %w", err)
	}
	if c.callRate > 0 {
		if err := loopbackAddr(c.callProxy); err != nil {
			return fmt.Errorf("-call-proxy %w", err)
		}
	}
	if c.phones < 1 || c.phones > 200000 {
		return errors.New("-phones must be 1..200000")
	}
	if c.registerRate <= 0 || c.registerRate > 100000 || c.callRate < 0 || c.callRate > 10000 {
		return errors.New("-register-rate must be in (0, 100000], -call-rate in [0, 10000]")
	}
	if c.refreshRate < 0 {
		c.refreshRate = c.registerRate
	}
	if c.refreshRate > 100000 {
		return errors.New("-refresh-rate must be at most 100000")
	}
	if c.duration < 0 || c.duration > time.Hour {
		return errors.New("-duration must be 0..1h")
	}
	if c.ca == "" {
		return errors.New("-ca is required (the proxy's certificate is verified)")
	}
	if c.timeout == 0 {
		c.timeout = 2*time.Duration(float64(c.phones)/c.registerRate*float64(time.Second)) + c.duration + 90*time.Second
	}
	if c.maxConcurrentRamp < 1 {
		c.maxConcurrentRamp = 1
	}
	return nil
}

func parseIPs(s string) ([]net.IP, error) {
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if first, last, ok := strings.Cut(part, "-"); ok {
			a, b := net.ParseIP(first).To4(), net.ParseIP(last).To4()
			if a == nil || b == nil || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] > b[3] {
				return nil, fmt.Errorf("bad range %q (a.b.c.x-a.b.c.y)", part)
			}
			for x := int(a[3]); x <= int(b[3]); x++ {
				out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)).To4())
			}
			continue
		}
		ip := net.ParseIP(part)
		if ip == nil {
			return nil, fmt.Errorf("bad address %q", part)
		}
		out = append(out, ip)
	}
	for _, ip := range out {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("%s is not a loopback address", ip)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no source addresses")
	}
	return out, nil
}

func newRun(c config) (*run, error) {
	pem, err := os.ReadFile(c.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", c.ca)
	}
	src, err := parseIPs(c.srcIPs)
	if err != nil {
		return nil, fmt.Errorf("-src-ips: %w", err)
	}
	cip := net.ParseIP(c.callerSrc)
	if cip == nil || !cip.IsLoopback() {
		return nil, errors.New("-caller-src must be a loopback address")
	}
	r := &run{
		cfg: c,
		// A session cache would let phones resume; real phones each do a
		// full handshake on their first connection, and so do these.
		tlsConf:  &tls.Config{RootCAs: pool, ServerName: c.serverName, MinVersion: tls.VersionTLS12},
		srcIPs:   src,
		callerIP: cip,
	}
	return r, nil
}

// procStatus reads VmRSS and VmHWM (KiB) and the open files of pid.
func procStatus(pid int) (rss, hwm int64, fds int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return rss, hwm, len(ents), nil
}

// procCPU is the CPU time (user + system) a process has used, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), ") ") // the command may hold spaces
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

func (r *run) sample(ctx context.Context, label string, conns int, wait bool) {
	if r.cfg.proxyPID == 0 {
		return
	}
	if wait {
		select {
		case <-time.After(r.cfg.settle):
		case <-ctx.Done():
		}
	}
	s := sample{label: label, conns: conns, at: time.Since(r.t0), selfCPU: procCPU(os.Getpid())}
	pm, err := readProcMem(r.cfg.proxyPID, r.cfg.proxyChildren)
	s.proxyCPU = pm.cpu
	if err != nil {
		s.goroutineErr = err.Error()
	}
	rss, hwm, fds := pm.rss, pm.hwm, pm.fds
	s.rssKiB, s.hwmKiB, s.fds = rss, hwm, fds
	s.pssKiB, s.fdsMax, s.procs = pm.pss, pm.fdsMax, pm.procs
	if r.cfg.gcURL != "" {
		_, _ = r.get(ctx, r.cfg.gcURL)
	}
	if r.cfg.metricsURL != "" {
		if body, err := r.get(ctx, r.cfg.metricsURL); err == nil {
			s.heapInuse = metricValue(body, "go_memstats_heap_inuse_bytes")
			s.heapAlloc = metricValue(body, "go_memstats_heap_alloc_bytes")
			s.stackInuse = metricValue(body, "go_memstats_stack_inuse_bytes")
			s.goroutines = metricValue(body, "go_goroutines")
			s.sched = histogram(body, "go_sched_latencies_seconds")
			s.gcs = metricValue(body, "go_gc_duration_seconds_count")
		}
	}
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
	fmt.Printf("connscale: %6.1fs sample %-14s conns=%d VmRSS=%d KiB VmHWM=%d KiB Pss=%d KiB fds=%d procs=%d heap_inuse=%d KiB heap_alloc=%d KiB stack_inuse=%d KiB goroutines=%d\n",
		s.at.Seconds(), label, conns, rss, hwm, s.pssKiB, fds, s.procs, s.heapInuse>>10, s.heapAlloc>>10, s.stackInuse>>10, s.goroutines)
}

// get fetches a loopback URL (bounded in time and size).
func (r *run) get(ctx context.Context, url string) (string, error) {
	if !strings.HasPrefix(url, "http://127.") {
		return "", errors.New("only http://127.x.x.x URLs")
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(hctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return string(b), err
}

// metricValue returns the value of an unlabelled metric in a Prometheus text exposition.
func metricValue(body, name string) int64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return int64(f)
			}
		}
	}
	return 0
}

// histogram reads the cumulative buckets of a Prometheus histogram (upper
// bound -> count); nil when the body has none.
func histogram(body, name string) map[float64]float64 {
	var h map[float64]float64
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		le, v, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			bound, err1 = math.Inf(1), nil
		}
		count, err2 := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if h == nil {
			h = make(map[float64]float64)
		}
		h[bound] = count
	}
	return h
}

// schedReport says how long the proxy's runnable goroutines waited for a
// thread between two samples: the Go runtime's own share of a call's delay.
func schedReport(from, to *sample) string {
	if from.sched == nil || to.sched == nil {
		return ""
	}
	total := to.sched[math.Inf(1)] - from.sched[math.Inf(1)]
	if total <= 0 {
		return ""
	}
	bounds := make([]float64, 0, len(to.sched))
	for b := range to.sched {
		if !math.IsInf(b, 1) && b >= 50e-6 {
			bounds = append(bounds, b)
		}
	}
	sort.Float64s(bounds)
	var parts []string
	for _, b := range bounds {
		over := total - (to.sched[b] - from.sched[b])
		parts = append(parts, fmt.Sprintf("over %s: %.3f%%", time.Duration(b*float64(time.Second)).Round(time.Microsecond), 100*over/total))
	}
	return fmt.Sprintf("\nScheduling latency in the loaded phase (go_sched_latencies_seconds, the time runnable goroutines waited for a thread; %.0f waits sampled by the runtime): %s. Collections in the phase: %d (and one forced for the last sample).\n",
		total, strings.Join(parts, ", "), to.gcs-from.gcs-1)
}

func (r *run) liveConns() int {
	n := 0
	for _, p := range r.phones {
		if p != nil && p.conn != nil && !p.closed.Load() && p.registered.Load() {
			n++
		}
	}
	return n
}

// ramp opens and registers phones [from, to) at -register-rate.
// pacer spaces events 1/rate apart from its start; behind schedule, it
// lets the next event go at once (catching up) instead of skipping it.
type pacer struct {
	next     time.Time
	interval time.Duration
}

func newPacer(rate float64) *pacer {
	return &pacer{next: time.Now(), interval: time.Duration(float64(time.Second) / rate)}
}

// wait blocks until the next event is due; false if ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	if d := time.Until(p.next); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return false
		}
	}
	p.next = p.next.Add(p.interval)
	return true
}

func (r *run) ramp(ctx context.Context, from, to int) {
	pace := newPacer(r.cfg.registerRate)
	sem := make(chan struct{}, r.cfg.maxConcurrentRamp)
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		if ctx.Err() != nil || !pace.wait(ctx) {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			p := &phone{r: r, idx: i, user: r.user(i)}
			r.phones[i] = p
			if err := p.dial(ctx, r.srcIPs[i%len(r.srcIPs)]); err != nil {
				r.st.connectFail.Add(1)
				r.st.regFail.Add(1)
				r.noteErr("%s: connect: %v", p.user, err)
				return
			}
			r.st.connectOK.Add(1)
			p.inFlight.Store(true)
			d, err := p.register(ctx)
			p.inFlight.Store(false)
			if err != nil {
				r.st.regFail.Add(1)
				r.noteErr("%s: REGISTER: %v", p.user, err)
				return
			}
			p.registered.Store(true)
			r.st.regOK.Add(1)
			r.mu.Lock()
			r.regLat = append(r.regLat, d)
			r.mu.Unlock()
		}(i)
	}
	wg.Wait()
}

// steady refreshes registrations at -register-rate and places calls at
// -call-rate for -duration.
func (r *run) steady(ctx context.Context, cl *caller) {
	end := time.Now().Add(r.cfg.duration)
	sctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	var refreshes, calls atomic.Int64
	// Refreshes, round robin over the phones.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if r.cfg.refreshRate == 0 {
			return
		}
		pace := newPacer(r.cfg.refreshRate)
		for i := 0; sctx.Err() == nil; i++ {
			if !pace.wait(sctx) {
				return
			}
			p := r.phones[i%len(r.phones)]
			if p == nil || p.conn == nil || p.closed.Load() {
				r.st.refreshSkipped.Add(1)
				continue
			}
			if !p.inFlight.CompareAndSwap(false, true) {
				r.st.refreshSkipped.Add(1)
				continue
			}
			refreshes.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer p.inFlight.Store(false)
				d, err := p.register(ctx)
				if err != nil {
					r.st.refreshFail.Add(1)
					r.noteErr("%s: refresh REGISTER: %v", p.user, err)
					return
				}
				r.st.refreshOK.Add(1)
				r.mu.Lock()
				r.refLat = append(r.refLat, d)
				r.mu.Unlock()
			}()
		}
	}()
	// Calls to random registered phones.
	if cl != nil && r.cfg.callRate > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := newPacer(r.cfg.callRate)
			for sctx.Err() == nil {
				if !pace.wait(sctx) {
					return
				}
				target := -1
				for try := 0; try < 10; try++ {
					k := rand.IntN(len(r.phones))
					if p := r.phones[k]; p != nil && p.registered.Load() && !p.closed.Load() {
						target = k
						break
					}
				}
				if target < 0 {
					r.st.callsSkippedNoPhone.Add(1)
					continue
				}
				calls.Add(1)
				cl.place(target)
			}
		}()
	}
	<-sctx.Done()
	el := time.Since(start)
	wg.Wait()
	r.mu.Lock()
	r.steadyDur = el
	r.refreshAchieved = float64(refreshes.Load()) / el.Seconds()
	r.callAchieved = float64(calls.Load()) / el.Seconds()
	r.mu.Unlock()
}

// fetchHeap writes the proxy's heap profile to out (-heap-out, or its "-end"
// variant after the loaded phase: what the load left behind, not the connections).
func (r *run) fetchHeap(ctx context.Context, out string) {
	if r.cfg.heapURL == "" {
		return
	}
	if !strings.HasPrefix(r.cfg.heapURL, "http://127.") {
		r.noteErr("-heap-url must be http://127.x.x.x:...")
		return
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(hctx, http.MethodGet, r.cfg.heapURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.noteErr("heap profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(out)
	if err != nil {
		r.noteErr("heap profile: %v", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, io.LimitReader(resp.Body, 256<<20))
	fmt.Printf("connscale: heap profile at %d connections written to %s\n", r.liveConns(), out)
}

func (r *run) main() bool {
	c := r.cfg
	r.t0 = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ctx, stopSig := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSig()
	r.phones = make([]*phone, c.phones)
	fmt.Printf("connscale: %d phones from %d source address(es) to %s, REGISTER %.0f/s, calls %.0f/s for %s (bound %s)\n",
		c.phones, len(r.srcIPs), c.proxy, c.registerRate, c.callRate, c.duration, c.timeout)

	var cl *caller
	if c.callRate > 0 {
		var err error
		if cl, err = dialCaller(ctx, r); err != nil {
			fmt.Fprintln(os.Stderr, "connscale: caller:", err)
			return false
		}
	}
	r.sample(ctx, "idle", 0, false)
	half := c.phones / 2
	if half > 0 {
		r.ramp(ctx, 0, half)
		fmt.Printf("connscale: %6.1fs %d/%d registered (%d failed)\n", time.Since(r.t0).Seconds(), r.st.regOK.Load(), half, r.st.regFail.Load())
		r.sample(ctx, "N/2", r.liveConns(), true)
	}
	r.ramp(ctx, half, c.phones)
	r.mu.Lock()
	r.rampTime = time.Since(r.t0)
	r.mu.Unlock()
	fmt.Printf("connscale: %6.1fs %d/%d registered (%d failed)\n", time.Since(r.t0).Seconds(), r.st.regOK.Load(), c.phones, r.st.regFail.Load())
	r.sample(ctx, "N", r.liveConns(), true)
	r.fetchHeap(ctx, c.heapOut)

	if ctx.Err() == nil {
		r.steady(ctx, cl)
	}
	fmt.Printf("connscale: %6.1fs steady phase over; waiting for open calls\n", time.Since(r.t0).Seconds())
	// Let the calls in progress end (hold + BYE), bounded.
	if cl != nil {
		deadline := time.Now().Add(c.hold + 35*time.Second)
		for cl.open() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.sample(ctx, "end (N, loaded)", r.liveConns(), false)
	r.fetchHeap(ctx, strings.TrimSuffix(c.heapOut, ".pprof")+"-end.pprof")

	r.stopping.Store(true)
	for _, p := range r.phones {
		if p != nil {
			p.close()
		}
	}
	if cl != nil {
		_ = cl.conn.Close()
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "connscale: readers did not end within 10s")
	}
	if cl != nil {
		// Calls still open after the wait count as failed.
		cl.mu.Lock()
		var open []*call
		for _, k := range cl.calls {
			open = append(open, k)
		}
		cl.mu.Unlock()
		for _, k := range open {
			cl.fail(k, "still open at the end")
		}
	}
	rep := r.reportText()
	fmt.Print(rep)
	if c.report != "" {
		if err := os.WriteFile(c.report, []byte(rep), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "connscale:", err)
		}
		r.writeSetups(strings.TrimSuffix(c.report, ".md") + "-setups.csv")
	}
	return r.passed()
}

func (r *run) passed() bool {
	s := &r.st
	return s.regFail.Load() == 0 && s.refreshFail.Load() == 0 && s.callsFailed.Load() == 0 &&
		s.byeFailed.Load() == 0 && s.connLost.Load() == 0 && s.misdelivered.Load() == 0
}

func pct(d []time.Duration, p float64) string {
	if len(d) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return fmt.Sprintf("%.2f", float64(s[i].Microseconds())/1000)
}

func (r *run) reportText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, s := r.cfg, &r.st
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	title := "connscale run"
	if c.label != "" {
		title += ": " + c.label
	}
	w("### %s\n\n", title)
	w("%d phones over TLS to %s from %d source address(es) (%s); REGISTER %.0f/s (ramp), refreshes %.0f/s; calls %.0f/s for %s from %s over TCP to %s; hold %s.\n\n",
		c.phones, c.proxy, len(r.srcIPs), c.srcIPs, c.registerRate, c.refreshRate, c.callRate, c.duration, c.callerSrc, c.callProxy, c.hold)
	verdict := "PASS (no failed REGISTER, call or BYE; no connection lost)"
	if !r.passed() {
		verdict = "FAIL (see the counts)"
	}
	w("Result: **%s**\n\n", verdict)
	w("| what | count |\n|---|---|\n")
	w("| connections opened / failed | %d / %d |\n", s.connectOK.Load(), s.connectFail.Load())
	w("| initial REGISTER ok / failed | %d / %d |\n", s.regOK.Load(), s.regFail.Load())
	w("| refresh REGISTER ok / failed / skipped (previous still in flight) | %d / %d / %d |\n", s.refreshOK.Load(), s.refreshFail.Load(), s.refreshSkipped.Load())
	w("| connections lost | %d |\n", s.connLost.Load())
	w("| calls placed / answered and ended / failed before 200 / failed after 200 (BYE) | %d / %d / %d / %d |\n",
		s.callsPlaced.Load(), s.callsDone.Load(), s.callsFailed.Load(), s.byeFailed.Load())
	w("| INVITE / ACK / BYE received by phones (misdelivered INVITEs) | %d / %d / %d (%d) |\n",
		s.invitesIn.Load(), s.acksIn.Load(), s.byesIn.Load(), s.misdelivered.Load())
	w("\n| timing | value |\n|---|---|\n")
	w("| ramp (connect + register all N) | %.1f s |\n", r.rampTime.Seconds())
	w("| steady phase | %.1f s; refreshes offered %.0f/s, calls offered %.0f/s |\n", r.steadyDur.Seconds(), r.refreshAchieved, r.callAchieved)
	w("| initial REGISTER (with 401 round) p50 / p99 ms | %s / %s |\n", pct(r.regLat, .5), pct(r.regLat, .99))
	w("| refresh REGISTER p50 / p99 ms | %s / %s |\n", pct(r.refLat, .5), pct(r.refLat, .99))
	w("| call setup INVITE->200 p50 / p99 / max ms (%d calls) | %s / %s / %s |\n", len(r.setups), pct(r.setups, .5), pct(r.setups, .99), pct(r.setups, 1))
	if sc := r.slowCalls(); sc != "" {
		w("| slowest calls | %s |\n", sc)
	}
	var out, back []time.Duration
	for i, o := range r.setupOut {
		if o >= 0 {
			out = append(out, o)
			back = append(back, r.setups[i]-o)
		}
	}
	w("| call setup split: INVITE sent -> read by the phone / 180+200 from the phone -> 200 read by the caller, p50 / p99 ms | %s / %s; %s / %s |\n", pct(out, .5), pct(out, .99), pct(back, .5), pct(back, .99))
	if len(r.samples) > 0 && c.proxyChildren {
		b.WriteString(r.treeReport())
	} else if len(r.samples) > 0 {
		w("\nsipproxy (PID %d) memory, from /proc/PID/status:\n\n", c.proxyPID)
		w("| sample | at | held phone connections | VmRSS KiB | VmHWM KiB | open files | heap in use KiB (after GC) | live objects KiB (after GC) | stacks KiB | goroutines |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, sm := range r.samples {
			w("| %s | %.1f s | %d | %d | %d | %d | %d | %d | %d | %d |\n", sm.label, sm.at.Seconds(), sm.conns, sm.rssKiB, sm.hwmKiB, sm.fds, sm.heapInuse>>10, sm.heapAlloc>>10, sm.stackInuse>>10, sm.goroutines)
		}
		var half, full *sample
		for i := range r.samples {
			switch r.samples[i].label {
			case "N/2":
				half = &r.samples[i]
			case "N":
				full = &r.samples[i]
			}
		}
		if last := r.samples[len(r.samples)-1]; full != nil && last.at > full.at {
			wall := (last.at - full.at).Seconds()
			w("\nCPU from N to the end (%.1f s, the loaded phase): sipproxy %.2f CPUs, this load generator %.2f CPUs (of %d).\n",
				wall, (last.proxyCPU-full.proxyCPU).Seconds()/wall, (last.selfCPU-full.selfCPU).Seconds()/wall, runtime.NumCPU())
			b.WriteString(schedReport(full, &last))
		}
		if half != nil && full != nil && full.conns > half.conns {
			slope := float64(full.rssKiB-half.rssKiB) / float64(full.conns-half.conns)
			w("\nKiB per held connection (VmRSS slope N/2 -> N): **%.1f**", slope)
			if idle := r.samples[0]; idle.label == "idle" && full.conns > 0 {
				w("; (VmRSS at N - idle) / N: %.1f", float64(full.rssKiB-idle.rssKiB)/float64(full.conns))
			}
			w("\n")
			if full.heapInuse > 0 {
				dc := float64(full.conns - half.conns)
				w("\nHeap in use per held connection (after a forced GC, slope N/2 -> N): **%.1f KiB** (live objects %.1f KiB; the rest is free space in spans that still hold a live object); goroutine stacks: **%.1f KiB**; goroutines: **%.2f** per connection. VmRSS also holds garbage not yet collected (sipproxy sets GOGC=400 unless GOGC is set) and freed memory not yet returned to the OS.\n",
					float64(full.heapInuse-half.heapInuse)/1024/dc, float64(full.heapAlloc-half.heapAlloc)/1024/dc, float64(full.stackInuse-half.stackInuse)/1024/dc, float64(full.goroutines-half.goroutines)/dc)
			}
		}
	}
	if r.errCount > 0 {
		w("\n%d errors; the first %d:\n\n```\n%s\n```\n", r.errCount, len(r.errs), strings.Join(r.errs, "\n"))
	}
	w("\n")
	return b.String()
}
