package rules

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOutsideDomains(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		domains []string
		want    []string // warnings, as printed
	}{
		{"all ours", fileV1, []string{"contoso.com"}, nil},
		{"domains compared case-insensitively", fileV1, []string{"Contoso.COM"}, nil},
		{"one rule elsewhere", `rules:
  - user: sip:alice@contoso.com
    immediate: sip:bob@contoso.com
  - user: sip:carol@fabrikam.com
    busy: sip:bob@contoso.com
`, []string{"contoso.com"}, []string{
			"rules.yaml:4: rule for carol@fabrikam.com: fabrikam.com is not one of server.domains (contoso.com); the proxy never looks this rule up",
		}},
		{"a typo and an address", `rules:
  - user: sip:alice@contoso.con
    immediate: sip:bob@contoso.com
  - user: "sip:dave@10.0.0.1"
    immediate: sip:bob@contoso.com
  - user: sip:erin@corp.contoso.com
    immediate: sip:bob@contoso.com
`, []string{"contoso.com", "corp.contoso.com"}, []string{
			"rules.yaml:2: rule for alice@contoso.con: contoso.con is not one of server.domains (contoso.com, corp.contoso.com); the proxy never looks this rule up",
			"rules.yaml:4: rule for dave@10.0.0.1: 10.0.0.1 is not one of server.domains (contoso.com, corp.contoso.com); the proxy never looks this rule up",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := OutsideDomains("rules.yaml", mustParse(t, tc.file), tc.domains)
			var got []string
			for _, w := range ws {
				got = append(got, w.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestReloaderWarnsOutsideDomains: the file is loaded (a warning, not a
// refusal) and every load logs a WARN naming file and line.
func TestReloaderWarnsOutsideDomains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	file := "rules:\n  - user: sip:alice@contoso.com\n    immediate: sip:bob@contoso.com\n  - user: sip:carol@fabrikam.com\n    busy: sip:bob@contoso.com\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	store := New()
	r := NewReloader(path, store, defaultAfter, slog.New(slog.NewTextHandler(logs, nil)), nil, WithDomains([]string{"contoso.com"}))
	for _, load := range []func() error{r.Load, r.Reload} {
		if err := load(); err != nil {
			t.Fatal(err)
		}
	}
	if store.Snapshot().Count() != 2 {
		t.Errorf("%d rules serving, want both", store.Snapshot().Count())
	}
	out := logs.String()
	want := "level=WARN msg=\"rules file warning\" file=" + path + " line=4 warning=\"rule for carol@fabrikam.com: fabrikam.com is not one of server.domains"
	if n := strings.Count(out, want); n != 2 {
		t.Errorf("want the warning on both loads; log:\n%s", out)
	}
	// Without WithDomains there is no check.
	logs2 := &syncBuffer{}
	if err := NewReloader(path, New(), defaultAfter, slog.New(slog.NewTextHandler(logs2, nil)), nil).Load(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs2.String(), "WARN") {
		t.Errorf("warned without domains:\n%s", logs2.String())
	}
}
