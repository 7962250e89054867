package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/internal/config"
)

// The tests that run sipproxy as a user would share one build of it.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sipproxyBinary builds the command once per test run and returns its path.
func sipproxyBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "sipproxy-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sipproxy")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// process is a sipproxy started by a test; only it is ever signalled.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	exited         chan error
}

// startProcess runs the built binary with args, its state (the embedded
// default's rules file) under stateDir, and stops it when the test ends.
func startProcess(t *testing.T, stateDir string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(sipproxyBinary(t), args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+stateDir)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.exited:
			p.exited <- err
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
		}
	})
	return p
}

// waitFor waits until the process has written want to w.
func (p *process) waitFor(t *testing.T, w *lockedBuffer, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(w.String(), want) {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("sipproxy exited (%v) before writing %q\nstdout:\n%s\nstderr:\n%s", err, want, p.stdout.String(), p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipproxy did not write %q\nstdout:\n%s\nstderr:\n%s", want, p.stdout.String(), p.stderr.String())
		}
	}
	return w.String()
}

// stop sends SIGTERM and returns how the process exited.
func (p *process) stop(t *testing.T) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
		return nil
	}
}

// embedded is the embedded default running on free ports, with the
// addresses its banner names.
type embedded struct {
	*process
	banner                 string
	udp, tcp, tls, metrics string
	rulesFile              string
}

var (
	bannerSIP     = regexp.MustCompile(`SIP +udp (\S+) +tcp (\S+) +tls (\S+)`)
	bannerMetrics = regexp.MustCompile(`metrics +http://(\S+)/metrics`)
	bannerRules   = regexp.MustCompile(`rules +(/\S+)`)
)

// startEmbedded runs `sipproxy -free-ports`: the README's first command,
// on free loopback ports so that it runs beside a proxy a developer
// started with `go run ./cmd/sipproxy` (on 5060, 5061 and 9090).
func startEmbedded(t *testing.T, stateDir string) *embedded {
	t.Helper()
	p := startProcess(t, stateDir, "-free-ports")
	e := &embedded{process: p}
	e.banner = p.waitFor(t, p.stdout, "Stop with Ctrl-C")
	m := bannerSIP.FindStringSubmatch(e.banner)
	mm := bannerMetrics.FindStringSubmatch(e.banner)
	if m == nil || mm == nil {
		t.Fatalf("the banner names no SIP or metrics addresses:\n%s", e.banner)
	}
	e.udp, e.tcp, e.tls, e.metrics = m[1], m[2], m[3], mm[1]
	if r := bannerRules.FindStringSubmatch(e.banner); r != nil {
		e.rulesFile = r[1]
	}
	return e
}

// scrape returns the value of one series on the proxy's /metrics ("" when absent).
func (e *embedded) scrape(series string) string {
	res, err := http.Get("http://" + e.metrics + "/metrics")
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

// defaultConfig is the embedded default configuration.
func defaultConfig(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
