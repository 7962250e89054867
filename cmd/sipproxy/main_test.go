package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:5060"}
    - {transport: sctp, addr: "127.0.0.1:5062"}
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
    - {transport: tcp, addr: "127.0.0.1:5060"}
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
// drains on SIGTERM with exit 0.
func TestEmbeddedDefault(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sipproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill() // only the process this test started
			<-exited
		}
	}()

	tour := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Stop with Ctrl-C") {
				tour <- b.String()
				io.Copy(io.Discard, stdout)
				return
			}
		}
		tour <- b.String()
	}()
	var text string
	select {
	case text = <-tour:
	case <-time.After(20 * time.Second):
		t.Fatalf("no tour printed; stderr:\n%s", stderr.String())
	}
	for _, w := range []string{"udp 127.0.0.1:5060", "tcp 127.0.0.1:5060", "tls 127.0.0.1:5061", "http://127.0.0.1:9090/metrics", "alice"} {
		if !strings.Contains(text, w) {
			t.Errorf("tour lacks %q:\n%s", w, text)
		}
	}

	// A real SIP OPTIONS over UDP, answered by the proxy itself.
	ua, _ := sipgo.NewUA()
	defer ua.Close()
	client, _ := sipgo.NewClient(ua)
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060})
	req.SetTransport("UDP")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %v %v\nstderr:\n%s", res, err, stderr.String())
	}

	hr, err := http.Get("http://127.0.0.1:9090/metrics")
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

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}
