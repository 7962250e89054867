package auth

import (
	"testing"
	"time"
)

func TestOpenNonce(t *testing.T) {
	clk := newClock()
	d := newTestDigest(clk, "s3cret")
	good := d.newNonce("")
	bound := d.newNonce("tls 10.0.0.1:5555")
	// Base64 character 45 lies in the realm MAC (bytes 24-39); the last
	// characters in the binding MAC (bytes 40-47).
	tests := []struct {
		name  string
		nonce string
		bind  string
		ok    bool
		bound bool
	}{
		{"minted", good, "", true, true},
		{"empty", "", "", false, false},
		{"truncated", good[:len(good)-1], "", false, false},
		{"extended", good + "A", "", false, false},
		{"standard base64 alphabet", "+" + good[1:], "", false, false},
		{"padded", good[:len(good)-2] + "==", "", false, false},
		{"mac flipped", good[:45] + flip(good[45]) + good[46:], "", false, false},
		{"binding mac flipped", good[:len(good)-3] + flip(good[len(good)-3]) + good[len(good)-2:], "", true, false},
		{"random part flipped", good[:20] + flip(good[20]) + good[21:], "", false, false},
		{"other secret", newTestDigest(clk, "other").newNonce(""), "", false, false},
		{"bound, same binding", bound, "tls 10.0.0.1:5555", true, true},
		{"bound, other binding", bound, "tcp 10.0.0.1:5555", true, false},
		{"bound, no binding", bound, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, issued, isBound, ok := d.openNonce(tt.nonce, tt.bind)
			if ok != tt.ok || isBound != tt.bound {
				t.Fatalf("openNonce(%q, %q) = bound %v ok %v, want bound %v ok %v", tt.nonce, tt.bind, isBound, ok, tt.bound, tt.ok)
			}
			if ok && !issued.Equal(clk.Now()) {
				t.Errorf("issued = %v, want %v", issued, clk.Now())
			}
		})
	}
}

// flip returns a different base64url character.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// TestReplayGuardExpiryOrder tracks nonces used in an order different from
// their expiry and checks each is forgotten exactly when it expires.
func TestReplayGuardExpiryOrder(t *testing.T) {
	clk := newClock()
	t0 := clk.Now()
	g := newReplayGuard(10, clk.Now)
	a, b, c := nonceBytes{1}, nonceBytes{2}, nonceBytes{3}
	expires := map[nonceBytes]time.Time{
		a: t0.Add(30 * time.Second),
		b: t0.Add(10 * time.Second),
		c: t0.Add(20 * time.Second),
	}
	steps := []struct {
		name    string
		advance time.Duration
		n       nonceBytes
		nc      int
		want    Status
		size    int
	}{
		{"a", 0, a, 1, OK, 1},
		{"b", 0, b, 1, OK, 2},
		{"c", 0, c, 3, OK, 3},
		{"c lower", 0, c, 2, Failed, 3},
		{"b expires first", 15 * time.Second, a, 1, Failed, 2},
		{"b is stale", 0, b, 2, Stale, 2},
		{"c still tracked", 0, c, 3, Failed, 2},
		{"c expires at its time", 5 * time.Second, a, 2, OK, 1},
		{"a expires last", 10 * time.Second, a, 3, Stale, 0},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		if got := g.advance(s.n, s.nc, expires[s.n]); got != s.want {
			t.Errorf("%s: advance = %v, want %v", s.name, got, s.want)
		}
		if n := g.size(); n != s.size {
			t.Errorf("%s: size = %d, want %d", s.name, n, s.size)
		}
	}
}
