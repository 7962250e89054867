package policy_test

import (
	"testing"

	"github.com/sipproxy/sipproxy/proxy/policy"
)

func TestNoDiversion(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   bool
	}{
		{"no header", nil, false},
		{"empty slice", []string{}, false},
		{"empty value", []string{""}, false},
		{"blank value", []string{" \t "}, false},
		{"only commas", []string{" , ,, "}, false},

		{"spec 4.2", []string{"private-no-diversion"}, true},
		{"upper case", []string{"PRIVATE-NO-DIVERSION"}, true},
		{"mixed case", []string{"Private-No-Diversion"}, true},
		{"spaces and tabs", []string{"  private-no-diversion\t"}, true},
		{"list, last", []string{"foo, private-no-diversion"}, true},
		{"list, first", []string{"private-no-diversion,foo"}, true},
		{"list with spaces around commas", []string{"foo ,  private-no-diversion  , bar"}, true},
		{"empty elements", []string{"foo,,private-no-diversion,"}, true},
		{"leading empty elements", []string{" , ,private-no-diversion"}, true},
		{"second header line", []string{"private", "private-no-diversion"}, true},
		{"first of two header lines", []string{"private-no-diversion", "normal"}, true},
		{"after a closed quoted string", []string{`"a, b", private-no-diversion`}, true},

		{"other value", []string{"private"}, false},
		{"other values on two lines", []string{"normal", "private"}, false},
		{"token plus s", []string{"private-no-diversions"}, false},
		{"suffix only", []string{"no-diversion"}, false},
		{"spaces for hyphens", []string{"private no diversion"}, false},
		{"two tokens without comma", []string{"private-no-diversion private"}, false},
		{"with parameter", []string{"private-no-diversion;x=1"}, false},
		{"quoted token", []string{`"private-no-diversion"`}, false},
		{"inside a quoted list", []string{`"a,private-no-diversion"`}, false},
		{"after an escaped quote, still quoted", []string{`"a\",private-no-diversion"`}, false},
		{"escaped quote does not end the quoted string", []string{`"a\", private-no-diversion, b"`}, false},
		{"CR inside is not a hyphen", []string{"private\rno\rdiversion"}, false},
		{"unterminated quote", []string{`"a, private-no-diversion`}, false},
		{"unicode long s", []string{"private-no-diver\u017fion"}, false},
		{"no-break space", []string{"private-no-diversion\u00a0"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.NoDiversion(tt.values); got != tt.want {
				t.Errorf("NoDiversion(%q) = %t, want %t", tt.values, got, tt.want)
			}
		})
	}
}
