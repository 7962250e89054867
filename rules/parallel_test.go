package rules

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// variants of a large generated file in shapes operators write.
func largeFiles(t *testing.T) map[string][]byte {
	t.Helper()
	base := rulesFile(5000)
	if len(base) < minParallelBytes {
		t.Fatalf("generated file of %d bytes is below the parallel threshold", len(base))
	}
	col0 := bytes.ReplaceAll(base, []byte("\n  - "), []byte("\n- "))
	col0 = bytes.ReplaceAll(col0, []byte("\n    "), []byte("\n  "))
	return map[string][]byte{
		"indented list":        base,
		"list at column 0":     col0,
		"comment header, CRLF": append([]byte("# forwarding rules\n\n"), bytes.ReplaceAll(base, []byte("\n"), []byte("\r\n"))...),
		"comments between":     bytes.ReplaceAll(base, []byte("\n  - user: sip:user4"), []byte("\n  # next\n  - user: sip:user4")),
		"rules line comment":   append([]byte("rules:   # all of them"), base[len("rules:"):]...),
	}
}

func TestParseParallelMatchesSequential(t *testing.T) {
	for name, data := range largeFiles(t) {
		t.Run(name, func(t *testing.T) {
			starts := chunkStarts(data, 3)
			if len(starts) != 3 {
				t.Fatalf("chunkStarts = %v, want 3 pieces", starts)
			}
			for _, s := range starts[1:] {
				if line := firstLine(data[s:]); !bytes.Contains(line, []byte("- user: sip:")) {
					t.Errorf("piece starts at %q, not at an item", line)
				}
			}
			par, ok := parseParallel("rules.yaml", data, starts, defaultAfter)
			if !ok {
				t.Fatal("parseParallel refused a clean file")
			}
			seq, err := parseWhole("rules.yaml", data, defaultAfter)
			if err != nil {
				t.Fatal(err)
			}
			if len(par) != 5000 || !reflect.DeepEqual(par, seq) {
				t.Fatalf("parallel and sequential decodes differ (%d vs %d rules)", len(par), len(seq))
			}
			got, err := Parse("rules.yaml", data, defaultAfter)
			if err != nil || !reflect.DeepEqual(got, seq) {
				t.Fatalf("Parse differs from the sequential decode: %v", err)
			}
		})
	}
}

// TestParseParallelErrors: a large file with problems gets exactly the
// errors, lines included, of the one-document decode.
func TestParseParallelErrors(t *testing.T) {
	base := rulesFile(5000)
	lastUser := []byte("  - user: sip:user4999@contoso.com\n")
	at := bytes.Index(base, lastUser)
	if at < 0 {
		t.Fatal("generator changed")
	}
	line := bytes.Count(base[:at], []byte("\n")) + 1 // of the last rule
	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{
			name: "user listed twice across pieces",
			data: bytes.Replace(base, lastUser, []byte("  - user: sip:user0@contoso.com\n"), 1),
			want: []string{fmt.Sprintf("rules.yaml:%d: user user0@contoso.com listed twice (lines 2 and %[1]d)", line)},
		},
		{
			name: "bad rule near the end",
			data: bytes.Replace(base, lastUser, []byte("  - user: sip:user4999@contoso.com\n    immediate: sip:user4999@contoso.com\n"), 1),
			want: []string{fmt.Sprintf("rules.yaml:%d: immediate: user4999@contoso.com forwards to themselves", line+1)},
		},
		{
			name: "unknown key after the list",
			data: append(bytes.Clone(base), "rulez: []\n"...),
			want: []string{fmt.Sprintf("rules.yaml:%d: unknown key \"rulez\" at top level (want rules)", bytes.Count(base, []byte("\n"))+1)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if chunkStarts(tc.data, 2) == nil {
				t.Fatal("file not split: the test does not exercise the parallel path")
			}
			_, err := Parse("rules.yaml", tc.data, defaultAfter)
			if err == nil {
				t.Fatal("Parse accepted the file")
			}
			if got := err.Error(); got != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestParseParallelRefusesSplitScalar: a piece boundary inside a quoted
// scalar that spans lines makes the pieces fail, so Parse falls back to
// the one-document decode, which reads the scalar whole.
func TestParseParallelRefusesSplitScalar(t *testing.T) {
	data := []byte("rules:\n  - user: sip:a@contoso.com\n    busy: \"sip:b@contoso.com;x=1\n  - 2\"\n  - user: sip:c@contoso.com\n    busy: sip:d@contoso.com\n")
	split := bytes.Index(data, []byte("\n  - 2")) + 1
	if _, ok := parseParallel("rules.yaml", data, []int{0, split}, defaultAfter); ok {
		t.Fatal("parseParallel accepted a split inside a quoted scalar")
	}
	rs, err := parseWhole("rules.yaml", data, defaultAfter)
	if err != nil || len(rs) != 2 || rs[0].Busy.URI != "sip:b@contoso.com;x=1 - 2" {
		t.Fatalf("one-document decode: %v, %v", summary(rs), err)
	}
}

func TestChunkStartsDeclines(t *testing.T) {
	big := rulesFile(5000)
	tests := []struct {
		name string
		data []byte
		n    int
	}{
		{"small file", rulesFile(10), 2},
		{"one processor", big, 1},
		{"document marker first", append([]byte("---\n"), big...), 2},
		{"another key first", append([]byte("other: 1\n"), big...), 2},
		{"flow list", append([]byte("rules: ["), bytes.Repeat([]byte("{user: sip:a@b.c, busy: sip:d@e.f},\n"), 10000)...), 2},
		{"indented rules key", append([]byte(" "), big...), 2},
		{"no list after rules", append([]byte("rules:\n"), bytes.Repeat([]byte("# comment\n"), 40000)...), 2},
	}
	for _, tc := range tests {
		if got := chunkStarts(tc.data, tc.n); got != nil {
			t.Errorf("%s: chunkStarts = %v, want nil", tc.name, got)
		}
	}
}
