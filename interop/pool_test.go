//go:build interop

package interop

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestSippVoicemailPool: sipp as both servers of a voicemail pool
// (voicemail.uris), each behind a socat TLS end. The first answers every
// INVITE 503; alice (her client certificate, through socat) calls her
// mailbox with skip-pin, and the proxy fails over to the second, which
// checks that skip-pin arrived. The caller sees only the second's 200.
func TestSippVoicemailPool(t *testing.T) {
	l := newPeerLab(t, "socat")
	um1, uri1 := l.voicemailTLS("suite-uas-vm-503.xml", 1, "um1-msg.log")
	um2, uri2 := l.voicemailTLS("suite-uas-vm-kept.xml", 1, "um2-msg.log")
	// Probing off: a sipp UAS fails on a request its scenario does not expect.
	l.start(fmt.Sprintf("voicemail: {uris: [%q, %q], probe_interval: 0s}\n", uri1, uri2))
	tunnel := l.tlsClientTunnel(l.pki.aliceCrt, l.pki.aliceKey)

	uac := start(t, l.dir, l.sipp, append(l.sippArgs("suite-uac-skippin-tls.xml", "127.0.0.1", freePort(t), 30*time.Second),
		fmt.Sprintf("127.0.0.1:%d", tunnel), "-m", "1")...)
	l.ok(uac, "sipp uac (alice, skip-pin, answered by the second server)", 40*time.Second, um1, um2)
	l.ok(um1, "UM 1 (answers 503)", 20*time.Second)
	l.ok(um2, "UM 2 (expects skip-pin)", 20*time.Second)

	l.expect(`sipproxy_skip_pin_total{decision="kept",reason="own_mailbox"}`, "1")
	l.expect(`sipproxy_responses_total{code="200",method="INVITE"}`, "1")
	l.expect(`sipproxy_responses_total{code="503",method="INVITE"}`, "")
	port1 := uri1[len("sip:127.0.0.1:") : len(uri1)-len(";transport=tls")]
	l.expect(fmt.Sprintf(`sipproxy_upstream_failover_total{reason="503",target="tls:127.0.0.1:%s"}`, port1), "1")
	l.logMetrics("skip_pin", "responses_total", "upstream")
	l.stop()
}

// TestSippCallRouterRedirect: the Exchange 2013+ topology with sipp as both
// UM servers. The Call Router (voicemail.uri) answers 302 with the Mailbox
// server's UM service, sip:localhost:PORT;transport=tls, a configured peer
// (tls_names: [localhost]); the proxy follows it over TLS, verifying the
// Mailbox server's certificate for localhost, and the Mailbox server checks
// that skip-pin arrived. The caller never sees the 302.
func TestSippCallRouterRedirect(t *testing.T) {
	l := newPeerLab(t, "socat")
	mbx, mbxURI := l.voicemailTLS("suite-uas-mbx-kept.xml", 1, "mbx-msg.log")
	mbxPort := mbxURI[len("sip:127.0.0.1:") : len(mbxURI)-len(";transport=tls")]
	tcpPort := freePort(t)
	routerTLS := l.tlsServerTunnel(tcpPort)
	router := l.uas("suite-uas-vm-302.xml", "127.0.0.1", tcpPort, 1, "router-msg.log", "-key", "mbx_port", mbxPort)
	l.start(fmt.Sprintf(`voicemail: {uri: "sip:127.0.0.1:%d;transport=tls", probe_interval: 0s}
peers:
  - {name: exchange-mailbox, tls_names: [localhost]}
`, routerTLS))
	tunnel := l.tlsClientTunnel(l.pki.aliceCrt, l.pki.aliceKey)

	uac := start(t, l.dir, l.sipp, append(l.sippArgs("suite-uac-skippin-tls.xml", "127.0.0.1", freePort(t), 30*time.Second),
		fmt.Sprintf("127.0.0.1:%d", tunnel), "-m", "1")...)
	l.ok(uac, "sipp uac (alice, skip-pin, through the Call Router's 302)", 40*time.Second, router, mbx)
	l.ok(router, "Call Router (answers 302)", 20*time.Second)
	l.ok(mbx, "Mailbox server (expects skip-pin)", 20*time.Second)

	l.expect(`sipproxy_redirects_total{outcome="followed"}`, "1")
	l.expect(`sipproxy_responses_total{code="302",method="INVITE"}`, "")
	l.expect(`sipproxy_responses_total{code="200",method="INVITE"}`, "1")
	if got := labReceived(t, filepath.Join(l.dir, "mbx-msg.log"), "INVITE "); len(got) != 1 {
		t.Errorf("the Mailbox server received %d INVITEs, want 1", len(got))
	}
	l.logMetrics("redirects", "skip_pin", "responses_total")
	l.stop()
}
