package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTLSServerProvesItsName: a TLS server the proxy reaches by address
// must prove the name the address was resolved from (RFC 5922 4), or the
// address itself when that is what was configured; a certificate that
// merely chains to a trusted CA is not enough. Go checks no name when it
// dials an address (no SNI, an empty ServerName), so the proxy must.
//
// "resolved name": the voicemail name and a partner's next hop
// (edge.fabrikam.com, whose owner holds a valid certificate for it)
// resolve to one address; the server there shows edge.fabrikam.com's
// certificate and must not get the skip-pin INVITE meant for
// um.contoso.com. "configured address": voicemail.uri is an address; a
// server there whose certificate does not name it gets nothing either.
func TestTLSServerProvesItsName(t *testing.T) {
	t.Run("resolved name", func(t *testing.T) {
		evil := oxListen(t, "evil", "tls")
		edgePort := closedPort(t)
		d := startDNS(t, nil, map[string]string{"um.contoso.com.": "127.0.0.1", "edge.fabrikam.com.": "127.0.0.1"})
		px := startProxy(t, proxyOpts{
			voicemail:   fmt.Sprintf("sips:um.contoso.com:%d", evil.port),
			serverExtra: fmt.Sprintf("  resolver: %q", d.addr),
			routes:      fmt.Sprintf("  - {domain: fabrikam.com, next_hop: \"sip:edge.fabrikam.com:%d;transport=tls\"}", edgePort),
		})
		mailboxServer(t, px, evil, "edge.fabrikam.com")

		// alice calls the partner once: its name is resolved (to
		// 127.0.0.1) and dialled; nobody answers there.
		caller := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}.phone(t, px)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if sess, err := caller.call(ctx, sip.Uri{Scheme: "sip", User: "bob", Host: "fabrikam.com"}); err == nil {
			_ = sess.Bye(ctx)
		}

		code, _ := callMailbox(t, px)
		if n := len(evil.requests("INVITE")); n != 0 {
			t.Fatalf("a server showing edge.fabrikam.com's certificate got %d INVITEs for um.contoso.com (call: %d)", n, code)
		}
		if code == 200 {
			t.Fatalf("the voicemail call was answered by a server that is not um.contoso.com")
		}
	})
	t.Run("configured address", func(t *testing.T) {
		evil := oxListen(t, "evil", "tls")
		px := startProxy(t, proxyOpts{voicemail: tlsURI(evil.port)})
		mailboxServer(t, px, evil, "um.contoso.com") // names no address
		code, _ := callMailbox(t, px)
		if n := len(evil.requests("INVITE")); n != 0 {
			t.Fatalf("a server whose certificate does not name 127.0.0.1 got %d INVITEs (call: %d)", n, code)
		}
	})
}

// TestRedirectLoopByNameNotFollowed: a Mailbox server that redirects to
// itself by name (a loop) is not called again: its Contact resolves to the
// address the proxy has just tried, whichever spelling the 3xx uses. The
// loop is counted as such, and the caller gets the 3xx.
func TestRedirectLoopByNameNotFollowed(t *testing.T) {
	const mbxName = "mbx1.contoso.com"
	router := oxListen(t, "call-router", "tls")
	mbx := oxListen(t, "mailbox", "tls")
	contact := fmt.Sprintf("<sip:%s:%d;transport=tls>", mbxName, mbx.port)
	redirect := func(tx *oxTx) {
		res := sip.NewResponseFromRequest(tx.req, 302, "Moved Temporarily", nil)
		res.To().Params.Add("tag", tx.tag)
		res.AppendHeader(sip.NewHeader("Contact", contact))
		_ = tx.c.write([]byte(res.String()))
	}
	router.onInvite, mbx.onInvite = redirect, redirect
	d := startDNS(t, nil, map[string]string{mbxName + ".": "127.0.0.1"})
	px := startProxy(t, proxyOpts{
		voicemail:   router.uri(),
		serverExtra: fmt.Sprintf("  resolver: %q", d.addr),
		peers:       "peers:\n  - {name: exchange, tls_names: [" + mbxName + "]}\n",
	})
	router.serve(t, px)
	mailboxServer(t, px, mbx, mbxName)
	code, _ := callMailbox(t, px)
	if code != 302 {
		t.Errorf("caller got %d, want the 302", code)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(mbx.requests("INVITE")); n != 1 {
		t.Errorf("the Mailbox server redirecting to itself got %d INVITEs, want 1", n)
	}
	if n := testutil.ToFloat64(px.m.Redirects.WithLabelValues("loop")); n != 1 {
		t.Errorf("redirects_total{loop} = %v, want 1", n)
	}
}

// TestVoicemailNotSentOverCallersConnection: sipgo keeps the connections
// clients open to us in the same pool as the ones it dials, by remote
// address. A client that connects to our TLS listener from the address
// and port the voicemail name resolves to (DNS spoofed: no certificate
// needed at all) must not receive the skip-pin INVITE over its own
// connection in place of a server that proves um.contoso.com.
func TestVoicemailNotSentOverCallersConnection(t *testing.T) {
	port := freePort(t, "tcp")
	d := startDNS(t, nil, map[string]string{"um.contoso.com.": "127.0.0.1"})
	px := startProxy(t, proxyOpts{
		voicemail:   fmt.Sprintf("sips:um.contoso.com:%d", port),
		serverExtra: fmt.Sprintf("  resolver: %q", d.addr),
	})
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	raw, err := dialer.Dial("tcp", px.Addr("tls"))
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the impostor does not care who we are
	t.Cleanup(func() { conn.Close() })
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	time.Sleep(100 * time.Millisecond) // the proxy has the connection in its pool

	code, _ := callMailbox(t, px)
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case m := <-got:
			if strings.HasPrefix(m, "INVITE ") {
				t.Fatalf("the impostor's own connection carried the voicemail INVITE (call: %d):\n%s", code, m)
			}
		case <-deadline:
			return
		}
	}
}
