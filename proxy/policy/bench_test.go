package policy_test

import (
	"testing"

	"github.com/sipproxy/sipproxy/proxy/policy"
)

// benchSkipPin gives the common shapes of request the pipeline decides on.
func benchSkipPin() []struct {
	name string
	in   policy.SkipPinInput
} {
	return []struct {
		name string
		in   policy.SkipPinInput
	}{
		{"kept/own_mailbox", policy.SkipPinInput{
			Method: "INVITE", Transport: "TLS", Values: []string{" Skip-Pin "},
			Identity: "alice@contoso.com", FromAOR: "alice@contoso.com", MailboxAOR: "alice@Contoso.com", ToVoicemail: true,
		}},
		{"stripped/identity_mismatch", policy.SkipPinInput{
			Method: "INVITE", Transport: "TLS", Values: []string{"skip-pin"},
			Identity: "bob@contoso.com", FromAOR: "alice@contoso.com", MailboxAOR: "alice@contoso.com", ToVoicemail: true,
		}},
		{"absent", policy.SkipPinInput{Method: "INVITE", Transport: "UDP"}},
	}
}

func benchNoDiversion() []struct {
	name   string
	values []string
} {
	return []struct {
		name   string
		values []string
	}{
		{"token", []string{"private-no-diversion"}},
		{"list", []string{"normal", ` "x, y" , foo,, Private-No-Diversion `}},
		{"other", []string{"private"}},
	}
}

func BenchmarkSkipPin(b *testing.B) {
	for _, bc := range benchSkipPin() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				policy.SkipPin(bc.in)
			}
		})
	}
}

func BenchmarkNoDiversion(b *testing.B) {
	for _, bc := range benchNoDiversion() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				policy.NoDiversion(bc.values)
			}
		})
	}
}

// TestNoAllocs holds the benchmarks' 0 allocs/op: the decisions run on every
// request and must not make garbage.
func TestNoAllocs(t *testing.T) {
	for _, bc := range benchSkipPin() {
		if n := testing.AllocsPerRun(100, func() { policy.SkipPin(bc.in) }); n != 0 {
			t.Errorf("SkipPin %s: %v allocs/op, want 0", bc.name, n)
		}
	}
	for _, bc := range benchNoDiversion() {
		if n := testing.AllocsPerRun(100, func() { policy.NoDiversion(bc.values) }); n != 0 {
			t.Errorf("NoDiversion %s: %v allocs/op, want 0", bc.name, n)
		}
	}
}
