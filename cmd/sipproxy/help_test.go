package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelp: asking for help is not an error. `sipproxy -h` and its other
// spellings print every subcommand on stdout and exit 0 (they used to print
// only run's flags and exit 2); a subcommand's -h prints its own flags.
func TestHelp(t *testing.T) {
	subcommands := []string{"sipproxy [run]", "sipproxy check", "sipproxy certs", "sipproxy demo", "sipproxy version"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, subcommands},
		{[]string{"--help"}, subcommands},
		{[]string{"-help"}, subcommands},
		{[]string{"help"}, subcommands},
		{[]string{"run", "-h"}, []string{"-config", "-drain-timeout"}},
		{[]string{"check", "--help"}, []string{"-config"}},
		{[]string{"demo", "-h"}, []string{"usage: sipproxy demo", "-free-ports"}},
		{[]string{"certs", "-h"}, []string{"usage: sipproxy certs", "-users", "clients-ca"}},
		{[]string{"healthcheck", "-h"}, []string{"-addr"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 0 {
				t.Errorf("exit %d, want 0\nstderr:\n%s", code, errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			if errb.Len() != 0 {
				t.Errorf("help went to stderr:\n%s", errb.String())
			}
		})
	}
	// A flag that does not exist is still a usage error, on stderr.
	var out, errb bytes.Buffer
	if code := run([]string{"-no-such-flag"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "-no-such-flag") || out.Len() != 0 {
		t.Errorf("-no-such-flag: exit %d, stdout %q, stderr %q; want 2 and the error on stderr", code, out.String(), errb.String())
	}
}
