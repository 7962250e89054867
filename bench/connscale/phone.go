package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// phone is one registered user agent on its own TLS connection. Nobody
// listens on the port its Contact names: requests reach it only over the
// connection it registered on.
type phone struct {
	r     *run
	idx   int
	user  string
	conn  *tls.Conn
	local *net.TCPAddr

	wmu sync.Mutex // serialises writes

	mu       sync.Mutex
	callID   string
	cseq     int
	regCh    chan *msg // the REGISTER response awaited (one REGISTER at a time)
	chal     challenge
	haveChal bool
	nc       int

	registered atomic.Bool
	inFlight   atomic.Bool
	closed     atomic.Bool
}

func (p *phone) write(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := p.conn.Write(b)
	return err
}

// dial opens the phone's TLS connection from src.
func (p *phone) dial(ctx context.Context, src net.IP) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", p.r.cfg.proxy)
	if err != nil {
		return err
	}
	c := tls.Client(raw, p.r.tlsConf)
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		raw.Close()
		return fmt.Errorf("TLS handshake: %w", err)
	}
	p.conn = c
	p.local = raw.LocalAddr().(*net.TCPAddr)
	p.callID = randHex(12) + "@" + p.local.IP.String()
	p.regCh = make(chan *msg, 4)
	p.r.wg.Add(1)
	go p.readLoop()
	return nil
}

func (p *phone) close() {
	if p.conn != nil && p.closed.CompareAndSwap(false, true) {
		_ = p.conn.Close()
	}
}

func (p *phone) contact() string {
	return fmt.Sprintf("<sip:%s@%s:%d;transport=tls>", p.user, p.local.IP, p.local.Port)
}

func (p *phone) readLoop() {
	defer p.r.wg.Done()
	br := bufio.NewReaderSize(p.conn, 4096)
	for {
		m, err := readMsg(br)
		if err != nil {
			if !p.closed.Load() && !p.r.stopping.Load() {
				p.r.st.connLost.Add(1)
				p.r.noteErr("phone %s: connection lost: %v", p.user, err)
			}
			p.registered.Store(false)
			return
		}
		if !m.request {
			if strings.HasSuffix(m.get("CSeq"), "REGISTER") {
				select {
				case p.regCh <- m:
				default:
				}
			}
			continue
		}
		p.handleRequest(m)
	}
}

// reply builds a response to req (Via, From, To, Call-ID, CSeq, and for
// INVITE the Record-Route set) with toTag added to To when To has none.
func (p *phone) reply(req *msg, code int, reason, toTag string, withContact bool) []byte {
	b := &builder{}
	b.line("SIP/2.0 %d %s", code, reason)
	for _, h := range req.hdrs {
		if h.name == "Via" || strings.EqualFold(h.name, "Via") {
			b.line("Via: %s", h.value)
		}
	}
	if req.method == "INVITE" {
		for _, h := range req.hdrs {
			if strings.EqualFold(h.name, "Record-Route") {
				b.line("Record-Route: %s", h.value)
			}
		}
	}
	b.line("From: %s", req.get("From"))
	to := req.get("To")
	if toTag != "" && !strings.Contains(strings.ToLower(to), ";tag=") {
		to += ";tag=" + toTag
	}
	b.line("To: %s", to)
	b.line("Call-ID: %s", req.get("Call-ID"))
	b.line("CSeq: %s", req.get("CSeq"))
	if withContact {
		b.line("Contact: %s", p.contact())
	}
	return b.done("")
}

func (p *phone) handleRequest(m *msg) {
	st := &p.r.st
	switch m.method {
	case "INVITE":
		st.invitesIn.Add(1)
		p.r.phoneSaw.LoadOrStore(m.get("Call-ID"), time.Now()) // for the split of the setup time
		if !strings.Contains(uriOf(m.get("To")), "sip:"+p.user+"@") {
			st.misdelivered.Add(1)
		}
		tag := randHex(6)
		if err := p.write(p.reply(m, 180, "Ringing", tag, true)); err != nil {
			return
		}
		_ = p.write(p.reply(m, 200, "OK", tag, true))
	case "ACK":
		st.acksIn.Add(1)
	case "BYE":
		st.byesIn.Add(1)
		_ = p.write(p.reply(m, 200, "OK", "", false))
	case "CANCEL":
		_ = p.write(p.reply(m, 200, "OK", "", false))
	default:
		_ = p.write(p.reply(m, 200, "OK", "", false))
	}
}

var errTimeout = errors.New("no final response within 10s")

// register sends one REGISTER transaction (answering a 401 once, and
// answering the last challenge pre-emptively on refreshes) and waits for
// its final response.
func (p *phone) register(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for attempt := 0; attempt < 3; attempt++ {
		p.mu.Lock()
		p.cseq++
		cseq := p.cseq
		auth := ""
		uri := "sip:" + p.r.cfg.domain
		if p.haveChal {
			p.nc++
			auth = authorization(p.chal, p.user, p.r.password(p.idx), "REGISTER", uri, p.nc)
		}
		p.mu.Unlock()
		b := &builder{}
		b.line("REGISTER %s SIP/2.0", uri)
		b.line("Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK%s;rport", p.local.IP, p.local.Port, randHex(8))
		b.line("Max-Forwards: 70")
		b.line("From: <sip:%s@%s>;tag=%s", p.user, p.r.cfg.domain, p.callID[:8])
		b.line("To: <sip:%s@%s>", p.user, p.r.cfg.domain)
		b.line("Call-ID: %s", p.callID)
		b.line("CSeq: %d REGISTER", cseq)
		b.line("Contact: %s", p.contact())
		b.line("Expires: %d", int(p.r.cfg.expires/time.Second))
		b.line("User-Agent: sipproxy-connscale")
		if auth != "" {
			b.line("Authorization: %s", auth)
		}
		// Drop a stale response of an earlier, timed-out transaction.
		for len(p.regCh) > 0 {
			<-p.regCh
		}
		if err := p.write(b.done("")); err != nil {
			return 0, err
		}
		var resp *msg
		t := time.NewTimer(10 * time.Second)
	wait:
		for {
			select {
			case resp = <-p.regCh:
				if !strings.HasPrefix(resp.get("CSeq"), fmt.Sprintf("%d ", cseq)) {
					continue
				}
				if resp.status < 200 {
					continue
				}
				break wait
			case <-t.C:
				return 0, errTimeout
			case <-ctx.Done():
				t.Stop()
				return 0, ctx.Err()
			}
		}
		t.Stop()
		switch {
		case resp.status >= 200 && resp.status < 300:
			return time.Since(start), nil
		case resp.status == 401:
			c, ok := parseChallenge(resp.get("WWW-Authenticate"))
			if !ok {
				return 0, fmt.Errorf("401 without a digest challenge")
			}
			p.mu.Lock()
			p.chal, p.haveChal, p.nc = c, true, 0
			p.mu.Unlock()
			continue
		default:
			return 0, fmt.Errorf("%d %s", resp.status, resp.reason)
		}
	}
	return 0, errors.New("challenged three times")
}
