package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
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
