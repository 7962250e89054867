//go:build interop

// Package interop drives a built sipproxy binary with real third-party SIP
// tools (sipp from Debian's sip-tester). It needs them installed, so it runs
// only with -tags interop (.ci/run installs them first); a missing tool is a
// failure, never a skip.
package interop

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a process we started; Stop ends exactly it, by PID.
type proc struct {
	cmd  *exec.Cmd
	out  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // its exit error, once done is closed
}

func start(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	out, err := os.Create(filepath.Join(dir, filepath.Base(name)+fmt.Sprintf("-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		out.Close()
	})
	return p
}

// wait waits for the process to exit by itself within d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not finish within %v; log:\n%s", p.cmd.Path, d, p.log())
		return nil
	}
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.out.Name())
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1, for a
// process the test starts to bind later. It is drawn from below the
// kernel's ephemeral range (portPool): a port taken from the ephemeral range (bind to
// :0, close, hand over) can be given by the kernel to any outgoing
// connection (sipp's, socat's, a Redis client's) before the process binds
// it, which failed CI runs with "address already in use". Ports handed out
// once are not handed out again by this process.
func freePort(t *testing.T) int {
	t.Helper()
	lo, span := portPool()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := lo + rand.IntN(span)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatal("no free port")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// portPool is the range freePort draws from: 10000-19999, below Linux's
// default ephemeral range (32768-60999), above the demo's 5060/5061/9090
// and CI's Redis (6390-6409), and clear of the bench scripts' ports
// (25060-28099).
func portPool() (lo, span int) { return 10000, 10000 }

// buildProxy compiles ./cmd/sipproxy into dir.
func buildProxy(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "sipproxy")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/sipproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is not installed (Debian package %s); .ci/run installs it", tool, map[string]string{"sipp": "sip-tester"}[tool])
	}
	return p
}

// metric scrapes one sample value ("" when absent).
func metric(t *testing.T, addr, series string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
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

func waitReady(t *testing.T, addr string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("sipproxy exited: %v\n%s", p.err, p.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("sipproxy not ready; log:\n%s", p.log())
}

// TestSippRegisterCallBye: sipp registers bob with MD5 digest over TCP
// (Contact pointing at a sipp UAS), then a sipp UAC places calls to bob
// through the proxy: INVITE/100/180/200/ACK/BYE following Record-Route.
func TestSippRegisterCallBye(t *testing.T) {
	sipp := need(t, "sipp")
	dir := t.TempDir()
	bin := buildProxy(t, dir)
	sipPort, metricsPort, uasPort, regPort, uacPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", metricsPort)
	cfg := fmt.Sprintf(`
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:%d"}
    - {transport: udp, addr: "127.0.0.1:%d"}
  record_route: true
auth:
  realm: contoso.com
  algorithms: [MD5, SHA-256]   # sipp answers only the first challenge, and only MD5
  users:
    - {user: bob, password: bob-secret}
metrics: {listen: "%s"}
log: {level: info, format: text}
`, sipPort, sipPort, metricsAddr)
	cfgPath := filepath.Join(dir, "sipproxy.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	px := start(t, dir, bin, "run", "-config", cfgPath)
	waitReady(t, metricsAddr, px)

	scen, _ := filepath.Abs("scenarios")
	const calls = 20
	uas := start(t, dir, sipp, "-sf", filepath.Join(scen, "uas.xml"), "-t", "t1", "-i", "127.0.0.1", "-p", fmt.Sprint(uasPort),
		"-m", fmt.Sprint(calls), "-nostdin", "-timeout", "60")
	reg := start(t, dir, sipp, "-sf", filepath.Join(scen, "register.xml"), "-t", "t1", "-i", "127.0.0.1", "-p", fmt.Sprint(regPort),
		fmt.Sprintf("127.0.0.1:%d", sipPort), "-m", "1", "-key", "user", "bob", "-au", "bob", "-ap", "bob-secret",
		"-key", "contact_port", fmt.Sprint(uasPort), "-nostdin", "-timeout", "20")
	if err := reg.wait(t, 30*time.Second); err != nil {
		t.Fatalf("sipp register failed: %v\n%s\nproxy:\n%s", err, reg.log(), px.log())
	}
	if got := metric(t, metricsAddr, "sipproxy_registrations_active"); got != "1" {
		t.Fatalf("registrations_active = %q after sipp registered", got)
	}
	uac := start(t, dir, sipp, "-sf", filepath.Join(scen, "uac.xml"), "-t", "t1", "-i", "127.0.0.1", "-p", fmt.Sprint(uacPort),
		fmt.Sprintf("127.0.0.1:%d", sipPort), "-s", "bob", "-m", fmt.Sprint(calls), "-r", "10", "-nostdin", "-timeout", "60")
	if err := uac.wait(t, 90*time.Second); err != nil {
		t.Fatalf("sipp uac failed: %v\n%s\nproxy:\n%s", err, uac.log(), px.log())
	}
	if err := uas.wait(t, 30*time.Second); err != nil {
		t.Fatalf("sipp uas failed: %v\n%s", err, uas.log())
	}
	if got := metric(t, metricsAddr, `sipproxy_responses_total{code="200",method="INVITE"}`); got != fmt.Sprint(calls) {
		t.Fatalf("INVITE 200s relayed = %q, want %d", got, calls)
	}
	if got := metric(t, metricsAddr, `sipproxy_responses_total{code="200",method="BYE"}`); got != fmt.Sprint(calls) {
		t.Fatalf("BYE 200s relayed = %q, want %d", got, calls)
	}

	// SIGTERM drains and exits 0.
	if err := px.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-px.done:
		if px.err != nil {
			t.Fatalf("sipproxy exit after SIGTERM: %v\n%s", px.err, px.log())
		}
	case <-ctx.Done():
		t.Fatal("sipproxy did not exit after SIGTERM")
	}
}
