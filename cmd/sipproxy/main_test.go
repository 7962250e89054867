package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/config"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:0"}
    - {transport: sctp, addr: "127.0.0.1:0"}
  lisen: []
voicemail:
  uri: "sip:um contoso"
auth:
  realm: contoso.com
  users:
    - {user: alice, password: a}
    - {user: alice, password: b}
`), 0o600)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:0"}
voicemail:
  uri: "sip:um.contoso.com:5066;transport=tcp"
`), 0o600)

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr []string
		stdout []string
	}{
		{"invalid config lists every error with file:line", []string{"check", "-config", bad}, 1,
			[]string{bad + ":5:", "sctp", bad + ":6:", "lisen", bad + ":8:", "voicemail.uri", bad + ":13:", "alice"}, nil},
		{"valid config with a warning", []string{"check", "-config", good}, 0,
			[]string{"warning: " + good + ":6:", "TLS"}, []string{good + ": ok"}},
		{"missing file", []string{"check", "-config", filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml"}, nil},
		{"check needs -config", []string{"check"}, 2, []string{"-config FILE is required"}, nil},
		{"run refuses an invalid config", []string{"run", "-config", bad}, 1, []string{"refusing to start", bad + ":5:"}, nil},
		{"-free-ports is for the embedded default", []string{"run", "-config", good, "-free-ports"}, 2, []string{"write port 0 in the file"}, nil},
		{"version", []string{"version"}, 0, nil, []string{"sipproxy "}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestEmbeddedDefault is the README's first command: the binary with no
// arguments serves the loopback demo, answers SIP, exports metrics, and
// drains on SIGTERM with exit 0. The embedded default's fixed addresses are
// checked in its configuration; the process runs on free ports, so that
// `go test ./...` passes beside a running `go run ./cmd/sipproxy`.
func TestEmbeddedDefault(t *testing.T) {
	def, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	var listeners []string
	for _, l := range def.Server.Listen {
		listeners = append(listeners, l.Transport+" "+l.Addr)
	}
	if got, want := strings.Join(listeners, ", "), "tcp 127.0.0.1:5060, udp 127.0.0.1:5060, tls 127.0.0.1:5061"; got != want {
		t.Errorf("embedded default listeners %q, want %q", got, want)
	}
	if def.Metrics.Listen != "127.0.0.1:9090" {
		t.Errorf("embedded default metrics %q, want 127.0.0.1:9090", def.Metrics.Listen)
	}

	p := startEmbedded(t, t.TempDir())
	if regexp.MustCompile(`:(5060|5061|9090)\b`).MatchString(p.banner) {
		t.Errorf("-free-ports still uses a default port:\n%s", p.banner)
	}
	for _, w := range []string{"udp 127.0.0.1:", "tcp 127.0.0.1:", "tls 127.0.0.1:", "http://127.0.0.1:", "alice"} {
		if !strings.Contains(p.banner, w) {
			t.Errorf("tour lacks %q:\n%s", w, p.banner)
		}
	}

	// A real SIP OPTIONS over UDP, answered by the proxy itself.
	host, port, _ := net.SplitHostPort(p.udp)
	portN, _ := strconv.Atoi(port)
	ua, _ := sipgo.NewUA()
	defer ua.Close()
	client, _ := sipgo.NewClient(ua)
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: host, Port: portN})
	req.SetTransport("UDP")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %v %v\nstderr:\n%s", res, err, p.stderr.String())
	}

	hr, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if !strings.Contains(string(body), `sipproxy_requests_total{method="OPTIONS",transport="udp"} 1`) {
		t.Fatalf("OPTIONS not counted:\n%s", body)
	}
	if !strings.Contains(string(body), "sipproxy_rules_loaded 2") {
		t.Fatalf("embedded rules not loaded:\n%s", body)
	}

	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
	}
}

// TestSIGHUPReloadsRules: SIGHUP reloads the rules file (even unchanged);
// a broken file is refused and the old rules keep serving.
func TestSIGHUPReloadsRules(t *testing.T) {
	dir := t.TempDir()
	bin := sipproxyBinary(t)
	rulesPath := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesPath, []byte("rules:\n  - user: sip:carol@contoso.com\n    immediate: sip:dave@contoso.com\n"), 0o600)
	metricsAddr := freeAddr(t)
	cfgPath := filepath.Join(dir, "sipproxy.yaml")
	os.WriteFile(cfgPath, []byte(`server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:0"}
forwarding: {rules_file: rules.yaml}
metrics: {listen: "`+metricsAddr+`"}
`), 0o600)
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	scrape := func(series string) string {
		res, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
				return v
			}
		}
		return ""
	}
	wait := func(series, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for scrape(series) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %q, want %q\nlogs:\n%s", series, scrape(series), want, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait(`sipproxy_rules_reload_total{result="ok"}`, "1")
	wait("sipproxy_rules_loaded", "1")

	cmd.Process.Signal(syscall.SIGHUP)
	wait(`sipproxy_rules_reload_total{result="ok"}`, "2")

	// The watcher sees the broken write (an error), and SIGHUP rereads it
	// (another error); the loaded rules never change.
	os.WriteFile(rulesPath, []byte("rules:\n  - user: sip:carol@contoso.com\n    immediate: sip:carol@contoso.com\n"), 0o600)
	wait(`sipproxy_rules_reload_total{result="error"}`, "1")
	cmd.Process.Signal(syscall.SIGHUP)
	wait(`sipproxy_rules_reload_total{result="error"}`, "2")
	wait("sipproxy_rules_loaded", "1")
	wait(`sipproxy_rules_reload_total{result="ok"}`, "2")
	if !strings.Contains(logs.String(), "rules.yaml:3") {
		t.Fatalf("the reload error does not name rules.yaml:3:\n%s", logs.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer is written by exec's copying goroutine while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
