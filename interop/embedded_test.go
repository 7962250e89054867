//go:build interop

package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSippRegistersWithEmbeddedDefault is README tour step 2 with the real
// tool: sipp answers only the first digest challenge of a 401, and only
// with MD5, and registers against the embedded default as it is (started
// with -free-ports, its rules file in a temporary state directory), over
// UDP and over TCP.
func TestSippRegistersWithEmbeddedDefault(t *testing.T) {
	sipp := need(t, "sipp")
	dir := t.TempDir()
	scen, err := filepath.Abs("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildProxy(t, dir)
	t.Setenv("XDG_STATE_HOME", dir) // inherited by the proxy: no rules file in the real home
	px := start(t, dir, bin, "-free-ports")
	defer px.cmd.Process.Signal(os.Interrupt)

	banner := regexp.MustCompile(`SIP +udp (\S+) +tcp (\S+)`)
	metricsRe := regexp.MustCompile(`metrics +http://(\S+)/metrics`)
	var m, mm []string
	deadline := time.Now().Add(20 * time.Second)
	for m == nil || mm == nil || !strings.Contains(px.log(), "Stop with Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner from the embedded default:\n%s", px.log())
		}
		time.Sleep(50 * time.Millisecond)
		m, mm = banner.FindStringSubmatch(px.log()), metricsRe.FindStringSubmatch(px.log())
	}
	for i, tc := range []struct{ transport, addr, user string }{
		{"u1", m[1], "alice"},
		{"t1", m[2], "bob"},
	} {
		reg := start(t, dir, sipp, "-sf", filepath.Join(scen, "register.xml"), "-t", tc.transport, "-i", "127.0.0.1",
			"-p", fmt.Sprint(freePort(t)), tc.addr, "-m", "1", "-key", "user", tc.user, "-au", tc.user, "-ap", tc.user+"-secret",
			"-key", "contact_port", fmt.Sprint(freePort(t)), "-nostdin", "-timeout", "20")
		if err := reg.wait(t, 30*time.Second); err != nil {
			t.Fatalf("sipp register %s over %s: %v\n%s\nproxy:\n%s", tc.user, tc.transport, err, reg.log(), px.log())
		}
		if got, want := metric(t, mm[1], "sipproxy_registrations_active"), fmt.Sprint(i+1); got != want {
			t.Fatalf("registrations_active = %q after sipp registered %s, want %s", got, tc.user, want)
		}
	}
}
