package auth

import (
	"testing"

	"github.com/sipproxy/sipproxy/internal/config"
)

func TestSourceString(t *testing.T) {
	tests := []struct {
		s    Source
		want string
	}{
		{SourceNone, "none"},
		{SourceDigest, "digest"},
		{SourceCertificate, "certificate"},
		{SourcePeer, "peer"},
		{Source(42), "Source(42)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Source(%d).String() = %q, want %q", int(tt.s), got, tt.want)
		}
	}
}

func TestIdentityAuthenticated(t *testing.T) {
	um := &config.Peer{Name: "exchange-um"}
	tests := []struct {
		name     string
		id       Identity
		want     bool
		wantText string
	}{
		{"zero", Identity{}, false, "none"},
		{"digest", Identity{Source: SourceDigest, AOR: "alice@contoso.com"}, true, "digest:alice@contoso.com"},
		{"certificate", Identity{Source: SourceCertificate, AOR: "bob@contoso.com"}, true, "certificate:bob@contoso.com"},
		{"peer", Identity{Source: SourcePeer, Peer: um}, true, "peer:exchange-um"},
		{"digest without AOR", Identity{Source: SourceDigest}, false, "none"},
		{"certificate without AOR", Identity{Source: SourceCertificate}, false, "none"},
		{"peer without peer", Identity{Source: SourcePeer, AOR: "x@y"}, false, "none"},
		{"none with AOR", Identity{Source: SourceNone, AOR: "alice@contoso.com"}, false, "none"},
		{"unknown source", Identity{Source: Source(9), AOR: "alice@contoso.com"}, false, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.id.Authenticated(); got != tt.want {
				t.Errorf("Authenticated() = %v, want %v", got, tt.want)
			}
			if got := tt.id.String(); got != tt.wantText {
				t.Errorf("String() = %q, want %q", got, tt.wantText)
			}
		})
	}
}

func TestResultIdentity(t *testing.T) {
	tests := []struct {
		name   string
		r      Result
		domain string
		want   Identity
	}{
		{"ok", Result{Status: OK, User: "alice", Algorithm: "MD5"}, "Contoso.COM",
			Identity{Source: SourceDigest, AOR: "alice@contoso.com"}},
		{"user part kept as written", Result{Status: OK, User: "Alice"}, "contoso.com",
			Identity{Source: SourceDigest, AOR: "Alice@contoso.com"}},
		{"failed", Result{Status: Failed, User: "alice"}, "contoso.com", Identity{}},
		{"stale", Result{Status: Stale, User: "alice"}, "contoso.com", Identity{}},
		{"missing", Result{}, "contoso.com", Identity{}},
		{"ok without user", Result{Status: OK}, "contoso.com", Identity{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Identity(tt.domain); got != tt.want {
				t.Errorf("Identity(%q) = %+v, want %+v", tt.domain, got, tt.want)
			}
		})
	}
}
