package proxy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// A caller the proxy cannot identify (a digest-only phone: its BYE carries
// no credentials) calls a mailbox; the proxy restarts at the same address.
// With a state file the restarted proxy still knows the call and relays
// the caller's BYE; with memory state it refuses it, as before.
func TestRestartRelaysUnidentifiedBYE(t *testing.T) {
	for _, tc := range []struct {
		name    string
		state   string // %s: a path in the test's directory
		relayed bool
	}{
		{"memory state forgets the call", "", false},
		{"file state keeps it", "state: {backend: file, path: %q}\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			um := oxListen(t, "um", "tcp")
			o := proxyOpts{
				voicemail: um.uri(),
				tcpPort:   freePort(t, "tcp"),
				authExtra: "  secret: restart-test-secret", // Record-Route tokens outlive the process
			}
			if tc.state != "" {
				o.state = fmt.Sprintf(tc.state, filepath.Join(t.TempDir(), "state.db"))
			}
			before := startProxy(t, o)
			um.serve(t, before)

			caller := oxNewUA(t, "caller")
			c := caller.dial(t, before, "tcp", nil)
			mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
			inv := rvRequest(c, "tcp", "INVITE", mailbox, "<sip:ext@fabrikam.com>", "<"+mailbox+">")
			res := c.do(t, inv)
			if res.StatusCode != 200 {
				t.Fatalf("INVITE: %d %s", res.StatusCode, res.Reason)
			}
			dlg := rvDialogOf(c, inv, res)
			if err := c.write(oxAck(inv, res).bytes()); err != nil {
				t.Fatal(err)
			}
			um.wait(t, "ACK", 1)

			// Stop without waiting for the call's BYE (the drain would).
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			_ = before.Shutdown(ctx)
			cancel()

			after := startProxy(t, o)
			c2 := caller.dial(t, after, "tcp", nil)
			dlg.c = c2
			r := rvSend(t, c2, dlg.request("BYE", "", 2), 5*time.Second)
			got := rvAt(um.oxUA, "BYE", inv.value("Call-ID"), time.Second)
			switch {
			case tc.relayed && len(got) == 0:
				t.Fatalf("the restarted proxy did not relay the BYE (answered %v)", r)
			case !tc.relayed && len(got) != 0:
				t.Fatalf("the BYE was relayed without state")
			case !tc.relayed && (r == nil || r.StatusCode != 481):
				t.Fatalf("BYE without state answered %v, want the proxy's 481", r)
			}
			if tc.relayed && (r == nil || r.StatusCode != 200) {
				t.Errorf("BYE answered %v, want UM's 200", r)
			}
		})
	}
}
