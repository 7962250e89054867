package resolve

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is an authoritative-looking DNS server for tests: records by name
// and type, NXDOMAIN for names it has nothing for, NOERROR/no data for
// names that have other types. It counts the questions it gets.
type zone struct {
	mu       sync.Mutex
	records  map[question][]dns.RR
	queries  map[question]int
	tcp      int  // questions asked over TCP
	truncate bool // answer UDP questions with TC set and no records
	servfail bool // answer everything with SERVFAIL
}

type question struct {
	name  string
	qtype uint16
}

// startZone serves z over UDP and TCP on one loopback port, until the
// test ends, and returns its address.
func startZone(t *testing.T, z *zone) string {
	t.Helper()
	if z.records == nil {
		z.records = map[question][]dns.RR{}
	}
	z.queries = map[question]int{}
	var pc net.PacketConn
	var ln net.Listener
	// The TCP port must be the UDP one: a busy one means trying again.
	for range 10 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no loopback port free for both UDP and TCP")
	}
	udp := &dns.Server{PacketConn: pc, Handler: z}
	tcp := &dns.Server{Listener: ln, Handler: z}
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return pc.LocalAddr().String()
}

// add parses zone-file lines ("a.test. 60 IN A 10.0.0.1") into z.
func (z *zone) add(t *testing.T, lines ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.records == nil {
		z.records = map[question][]dns.RR{}
	}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		q := question{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		z.records[q] = append(z.records[q], rr)
	}
}

// set replaces the records of one name and type.
func (z *zone) set(t *testing.T, lines ...string) {
	t.Helper()
	rr, err := dns.NewRR(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	z.mu.Lock()
	delete(z.records, question{strings.ToLower(rr.Header().Name), rr.Header().Rrtype})
	z.mu.Unlock()
	z.add(t, lines...)
}

func (z *zone) count(name string, qtype uint16) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[question{name, qtype}]
}

// srvTotal counts the SRV questions asked.
func (z *zone) srvTotal() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := 0
	for q, c := range z.queries {
		if q.qtype == dns.TypeSRV {
			n += c
		}
	}
	return n
}

func (z *zone) total() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := 0
	for _, c := range z.queries {
		n += c
	}
	return n
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := question{strings.ToLower(req.Question[0].Name), req.Question[0].Qtype}
	z.queries[q]++
	overTCP := w.RemoteAddr().Network() == "tcp"
	if overTCP {
		z.tcp++
	}
	switch rrs := z.records[q]; {
	case z.servfail:
		m.Rcode = dns.RcodeServerFailure
	case len(rrs) > 0 && z.truncate && !overTCP:
		m.Truncated = true
	case len(rrs) > 0:
		m.Answer = rrs
	default:
		m.Rcode = dns.RcodeNameError
		for k := range z.records {
			if k.name == q.name {
				m.Rcode = dns.RcodeSuccess
			}
		}
		// Negative answers may be cached for 10s (RFC 2308: the smaller
		// of the SOA's TTL and its minimum field).
		soa, _ := dns.NewRR("test. 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 10")
		m.Ns = []dns.RR{soa}
	}
	w.WriteMsg(m)
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
