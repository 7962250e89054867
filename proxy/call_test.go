package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestRegisterCallBye registers bob, has alice call him and hang up, over
// each transport, with both phones authenticating by digest.
func TestRegisterCallBye(t *testing.T) {
	for _, tr := range []string{"tcp", "udp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			px := startProxy(t, proxyOpts{})
			bob := newPhone(t, px, "bob", tr, phoneOpts{listen: true})
			bob.mustRegister(t)
			alice := newPhone(t, px, "alice", tr, phoneOpts{listen: true})

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sess, err := alice.call(ctx, uri("bob"))
			if err != nil {
				t.Fatalf("call: %v (status %d)", err, statusOf(err))
			}
			if got := sess.InviteResponse.StatusCode; got != 200 {
				t.Fatalf("answer: %d", got)
			}
			rr := sess.InviteResponse.GetHeaders("Record-Route")
			if len(rr) != 2 {
				t.Fatalf("want double Record-Route, got %d: %v", len(rr), rr)
			}
			if err := sess.Ack(ctx); err != nil {
				t.Fatalf("ack: %v", err)
			}
			if err := sess.Bye(ctx); err != nil {
				t.Fatalf("bye: %v", err)
			}
			select {
			case bye := <-bob.byes:
				if bye.CallID().Value() != sess.InviteRequest.CallID().Value() {
					t.Fatalf("BYE for another call: %s", bye.CallID().Value())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("bob never received the BYE")
			}
		})
	}
}

// TestUnknownAndUnregistered: 404 for a user we do not have, 480 for one
// with no bindings.
func TestUnknownAndUnregistered(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := alice.call(ctx, uri("nobody"))
	if got := statusOf(err); got != sip.StatusNotFound {
		t.Fatalf("unknown user: want 404, got %d (%v)", got, err)
	}
	_, err = alice.call(ctx, uri("bob"))
	if got := statusOf(err); got != sip.StatusTemporarilyUnavailable {
		t.Fatalf("unregistered user: want 480, got %d (%v)", got, err)
	}
}
