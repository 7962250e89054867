package proxy

import "testing"

func TestFlowTokens(t *testing.T) {
	a := newFlowTokens([]byte("key-a"))
	b := newFlowTokens([]byte("key-b"))
	for _, f := range []Flow{{Transport: "tcp", Remote: "10.0.0.1:40000"}, {Transport: "tls", Remote: "[2001:db8::1]:5061"}, {Transport: "udp", Remote: "192.0.2.7:5060"}} {
		tok := a.encode(f, "call-1")
		got, ok := a.decode(tok, "call-1")
		if !ok || got != f {
			t.Fatalf("round trip %v: %v %v", f, got, ok)
		}
		if _, ok := a.decode(tok, "call-2"); ok {
			t.Fatalf("token for %v accepted for another dialog", f)
		}
		if _, ok := b.decode(tok, "call-1"); ok {
			t.Fatalf("token for %v accepted under another key", f)
		}
		bad := []byte(tok)
		bad[len(bad)/2] ^= 1
		if _, ok := a.decode(string(bad), "call-1"); ok {
			t.Fatalf("tampered token for %v accepted", f)
		}
	}
	for _, junk := range []string{"", "!!", "AAAA", "not-base64*"} {
		if _, ok := a.decode(junk, ""); ok {
			t.Fatalf("junk %q accepted", junk)
		}
	}
}
