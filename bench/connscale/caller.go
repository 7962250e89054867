package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// caller places calls from a trusted peer address over one TCP connection.
type caller struct {
	r     *run
	conn  net.Conn
	local *net.TCPAddr
	wmu   sync.Mutex

	mu    sync.Mutex
	calls map[string]*call // by Call-ID
}

type call struct {
	id       string
	target   int
	start    time.Time
	fromTag  string
	branch   string
	answered bool
	done     bool
	byeSent  bool
	timer    *time.Timer
}

func (c *caller) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

func dialCaller(ctx context.Context, r *run) (*caller, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: r.callerIP}, Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", r.cfg.callProxy)
	if err != nil {
		return nil, err
	}
	c := &caller{r: r, conn: conn, local: conn.LocalAddr().(*net.TCPAddr), calls: map[string]*call{}}
	r.wg.Add(1)
	go c.readLoop()
	return c, nil
}

func (c *caller) via(branch string) string {
	return fmt.Sprintf("Via: SIP/2.0/TCP %s:%d;branch=z9hG4bK%s;rport", c.local.IP, c.local.Port, branch)
}

// place starts one call to phone target.
func (c *caller) place(target int) {
	r := c.r
	k := &call{id: randHex(12) + "@connscale", target: target, fromTag: randHex(6), branch: randHex(8)}
	user := r.user(target)
	b := &builder{}
	b.line("INVITE sip:%s@%s SIP/2.0", user, r.cfg.domain)
	b.line("%s", c.via(k.branch))
	b.line("Max-Forwards: 70")
	b.line("From: <sip:load@%s>;tag=%s", r.cfg.domain, k.fromTag)
	b.line("To: <sip:%s@%s>", user, r.cfg.domain)
	b.line("Call-ID: %s", k.id)
	b.line("CSeq: 1 INVITE")
	b.line("Contact: <sip:load@%s:%d;transport=tcp>", c.local.IP, c.local.Port)
	b.line("Content-Type: application/sdp")
	body := fmt.Sprintf("v=0\r\no=load 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", c.local.IP, c.local.IP)
	c.mu.Lock()
	c.calls[k.id] = k
	k.start = time.Now()
	k.timer = time.AfterFunc(32*time.Second, func() { c.fail(k, "no final response to INVITE within 32s") })
	c.mu.Unlock()
	r.st.callsPlaced.Add(1)
	if err := c.write(b.done(body)); err != nil {
		c.fail(k, "write INVITE: "+err.Error())
	}
}

// fail ends call k as failed (once).
func (c *caller) fail(k *call, why string) {
	c.mu.Lock()
	if k.done {
		c.mu.Unlock()
		return
	}
	k.done = true
	delete(c.calls, k.id)
	if k.timer != nil {
		k.timer.Stop()
	}
	answered := k.answered
	c.mu.Unlock()
	if answered {
		c.r.st.byeFailed.Add(1)
	} else {
		c.r.st.callsFailed.Add(1)
	}
	c.r.noteErr("call %s to %s: %s", k.id, c.r.user(k.target), why)
}

func (c *caller) readLoop() {
	defer c.r.wg.Done()
	br := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		m, err := readMsg(br)
		if err != nil {
			if !c.r.stopping.Load() {
				c.r.st.connLost.Add(1)
				c.r.noteErr("caller connection lost: %v", err)
			}
			c.mu.Lock()
			var open []*call
			for _, k := range c.calls {
				open = append(open, k)
			}
			c.mu.Unlock()
			for _, k := range open {
				c.fail(k, "caller connection closed")
			}
			return
		}
		if m.request {
			c.answerRequest(m)
			continue
		}
		c.mu.Lock()
		k := c.calls[m.get("Call-ID")]
		c.mu.Unlock()
		if k == nil {
			continue
		}
		cseq := m.get("CSeq")
		switch {
		case strings.HasSuffix(cseq, "INVITE"):
			c.onInviteResponse(k, m)
		case strings.HasSuffix(cseq, "BYE") && m.status >= 200:
			if m.status >= 300 {
				c.fail(k, fmt.Sprintf("BYE answered %d %s", m.status, m.reason))
				continue
			}
			c.mu.Lock()
			fresh := !k.done
			k.done = true
			delete(c.calls, k.id)
			if k.timer != nil {
				k.timer.Stop()
			}
			c.mu.Unlock()
			if fresh {
				c.r.st.callsDone.Add(1)
			}
		}
	}
}

func (c *caller) answerRequest(m *msg) {
	if m.method == "ACK" {
		return
	}
	b := &builder{}
	b.line("SIP/2.0 200 OK")
	for _, h := range m.hdrs {
		if strings.EqualFold(h.name, "Via") {
			b.line("Via: %s", h.value)
		}
	}
	b.line("From: %s", m.get("From"))
	b.line("To: %s", m.get("To"))
	b.line("Call-ID: %s", m.get("Call-ID"))
	b.line("CSeq: %s", m.get("CSeq"))
	_ = c.write(b.done(""))
}

func (c *caller) onInviteResponse(k *call, m *msg) {
	r := c.r
	if m.status < 200 {
		if m.status == 180 {
			r.st.ringing.Add(1)
		}
		return
	}
	c.mu.Lock()
	if k.answered || k.done {
		c.mu.Unlock()
		return // a retransmitted 200 (none expected on TCP)
	}
	if m.status >= 300 {
		c.mu.Unlock()
		// ACK to a non-2xx final: same branch, hop by hop.
		b := &builder{}
		b.line("ACK sip:%s@%s SIP/2.0", r.user(k.target), r.cfg.domain)
		b.line("%s", c.via(k.branch))
		b.line("Max-Forwards: 70")
		b.line("From: <sip:load@%s>;tag=%s", r.cfg.domain, k.fromTag)
		b.line("To: %s", m.get("To"))
		b.line("Call-ID: %s", k.id)
		b.line("CSeq: 1 ACK")
		_ = c.write(b.done(""))
		c.fail(k, fmt.Sprintf("INVITE answered %d %s", m.status, m.reason))
		return
	}
	k.answered = true
	k.timer.Stop()
	c.mu.Unlock()
	r.recordSetup(k.id, k.start, time.Since(k.start))

	// The route set is the Record-Route of the 200, reversed; the request
	// URI is the phone's Contact.
	rr := m.all("Record-Route")
	route := make([]string, 0, len(rr))
	for i := len(rr) - 1; i >= 0; i-- {
		route = append(route, rr[i])
	}
	target := uriOf(m.get("Contact"))
	to := m.get("To")
	inDialog := func(method string, cseq int) []byte {
		b := &builder{}
		b.line("%s %s SIP/2.0", method, target)
		b.line("%s", c.via(randHex(8)))
		b.line("Max-Forwards: 70")
		for _, rt := range route {
			b.line("Route: %s", rt)
		}
		b.line("From: <sip:load@%s>;tag=%s", r.cfg.domain, k.fromTag)
		b.line("To: %s", to)
		b.line("Call-ID: %s", k.id)
		b.line("CSeq: %d %s", cseq, method)
		return b.done("")
	}
	if err := c.write(inDialog("ACK", 1)); err != nil {
		c.fail(k, "write ACK: "+err.Error())
		return
	}
	bye := inDialog("BYE", 2)
	time.AfterFunc(r.cfg.hold, func() {
		c.mu.Lock()
		if k.done {
			c.mu.Unlock()
			return
		}
		k.byeSent = true
		k.timer = time.AfterFunc(32*time.Second, func() { c.fail(k, "no final response to BYE within 32s") })
		c.mu.Unlock()
		if err := c.write(bye); err != nil {
			c.fail(k, "write BYE: "+err.Error())
		}
	})
}

// open reports the calls still in progress.
func (c *caller) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}
