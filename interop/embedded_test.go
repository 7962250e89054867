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

// embeddedLab is the embedded default started as a newcomer starts it,
// on free ports (-free-ports), its rules file in a temporary state
// directory, with the addresses its banner names.
type embeddedLab struct {
	dir, udp, tcp, metrics string
	px                     *proc
}

func startEmbedded(t *testing.T) *embeddedLab {
	t.Helper()
	dir := t.TempDir()
	bin := buildProxy(t, dir)
	t.Setenv("XDG_STATE_HOME", dir) // inherited by the proxy: no rules file in the real home
	px := start(t, dir, bin, "-free-ports")
	t.Cleanup(func() { px.cmd.Process.Signal(os.Interrupt) })

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
	return &embeddedLab{dir: dir, udp: m[1], tcp: m[2], metrics: mm[1], px: px}
}

// TestSippRegistersWithEmbeddedDefault is README tour step 2 with the real
// tool: sipp answers only the first digest challenge of a 401, and only
// with MD5, and registers against the embedded default as it is, over UDP
// and over TCP.
func TestSippRegistersWithEmbeddedDefault(t *testing.T) {
	sipp := need(t, "sipp")
	scen, err := filepath.Abs("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	l := startEmbedded(t)
	for i, tc := range []struct{ transport, addr, user string }{
		{"u1", l.udp, "alice"},
		{"t1", l.tcp, "bob"},
	} {
		reg := start(t, l.dir, sipp, "-sf", filepath.Join(scen, "register.xml"), "-t", tc.transport, "-i", "127.0.0.1",
			"-p", fmt.Sprint(freePort(t)), tc.addr, "-m", "1", "-key", "user", tc.user, "-au", tc.user, "-ap", tc.user+"-secret",
			"-key", "contact_port", fmt.Sprint(freePort(t)), "-nostdin", "-timeout", "20")
		if err := reg.wait(t, 30*time.Second); err != nil {
			t.Fatalf("sipp register %s over %s: %v\n%s\nproxy:\n%s", tc.user, tc.transport, err, reg.log(), l.px.log())
		}
		if got, want := metric(t, l.metrics, "sipproxy_registrations_active"), fmt.Sprint(i+1); got != want {
			t.Fatalf("registrations_active = %q after sipp registered %s, want %s", got, tc.user, want)
		}
	}
}

// TestBaresipRegistersWithEmbeddedDefault: baresip (libre) gives up on a
// 401 that carries a SHA-256 challenge or a second challenge for the
// realm; it registers against the embedded default as it is.
func TestBaresipRegistersWithEmbeddedDefault(t *testing.T) {
	baresip := need(t, "baresip")
	l := startEmbedded(t)
	home := filepath.Join(l.dir, "baresip")
	config := fmt.Sprintf(`poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:%d
module_path		/usr/lib/baresip/modules
module			g711.so
module_tmp		uuid.so
module_tmp		account.so
`, freePort(t))
	accounts := fmt.Sprintf("<sip:carol@contoso.com;transport=tcp>;auth_pass=carol-secret;outbound=\"sip:%s;transport=tcp\";regint=600\n", l.tcp)
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"config": config, "accounts": accounts, "contacts": ""} {
		if err := os.WriteFile(filepath.Join(home, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ua := start(t, l.dir, baresip, "-f", home, "-t", "30", "-v")
	deadline := time.Now().Add(15 * time.Second)
	for metric(t, l.metrics, "sipproxy_registrations_active") != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not register\n--- baresip:\n%s\n--- proxy:\n%s", ua.log(), l.px.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
