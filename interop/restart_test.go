//go:build interop

package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestSippStateSurvivesRestart (issue 10): the built binary with the file
// state backend. bob (a sipp UAS) registers once; the proxy is stopped with
// SIGTERM and started again, then killed with SIGKILL and started again, and
// after each restart a sipp caller reaches bob without a new REGISTER.
// Last, a call is answered and the proxy is killed (SIGKILL) while it is up:
// the caller, unidentified (no credentials, a domain not ours, a BYE that
// carries none), hangs up after the restart and its BYE is relayed to bob.
func TestSippStateSurvivesRestart(t *testing.T) {
	sipp := need(t, "sipp")
	dir := t.TempDir()
	scen, _ := filepath.Abs("scenarios")
	bin := buildProxy(t, dir)
	sipPort := freePort(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:%d"}
    - {transport: udp, addr: "127.0.0.1:%d"}
  record_route: true
auth:
  realm: contoso.com
  algorithms: [MD5]
  secret: "restart-test-secret-keys-record-route-tokens"
  users:
    - {user: bob, password: bob-secret}
state: {backend: file, path: state.db}
limits: {requests_per_second: 0}
metrics: {listen: %q}
log: {level: info, format: text}
`, sipPort, sipPort, metricsAddr)
	path := filepath.Join(dir, "sipproxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() *proc {
		p := start(t, dir, bin, "run", "-config", path)
		waitReady(t, metricsAddr, p)
		return p
	}
	px := run()

	// bob: a UAS on UDP for three calls (no connection for a restart to
	// break), registered once over TCP with that UDP Contact.
	bobPort := freePort(t)
	bob := start(t, dir, sipp, "-sf", filepath.Join(scen, "uas.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort),
		"-m", "3", "-nostdin", "-timeout", "120", "-trace_err")
	time.Sleep(300 * time.Millisecond) // sipp binds its UDP socket at start
	reg := start(t, dir, sipp, "-sf", filepath.Join(scen, "register-udp-contact.xml"), "-t", "t1", "-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t)),
		fmt.Sprintf("127.0.0.1:%d", sipPort), "-m", "1", "-nostdin", "-timeout", "10",
		"-key", "user", "bob", "-au", "bob", "-ap", "bob-secret", "-key", "contact_port", strconv.Itoa(bobPort))
	if err := reg.wait(t, 20*time.Second); err != nil {
		t.Fatalf("register: %v\n%s\n%s", err, reg.log(), px.log())
	}

	// The caller: sipp over UDP (no connection to lose when the proxy
	// restarts), From a domain not ours, so never challenged nor identified.
	call := func(holdMs int) *proc {
		return start(t, dir, sipp, "-sf", filepath.Join(scen, "uac.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t)),
			fmt.Sprintf("127.0.0.1:%d", sipPort), "-s", "bob", "-m", "1", "-d", strconv.Itoa(holdMs), "-nostdin", "-timeout", "30", "-trace_err")
	}
	restart := func(sig syscall.Signal) {
		t.Helper()
		if err := px.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case <-px.done:
		case <-time.After(15 * time.Second):
			t.Fatalf("proxy did not exit after %v", sig)
		}
		px = run()
		if got := metric(t, metricsAddr, "sipproxy_registrations_active"); got != "1" {
			t.Errorf("after %v and a new start: registrations_active = %q, want 1 (loaded from the state file)", sig, got)
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		restart(sig)
		if err := call(100).wait(t, 40*time.Second); err != nil {
			t.Fatalf("call to bob after %v and a new start, without a new REGISTER: %v\n%s", sig, err, px.log())
		}
		t.Logf("after %v: the call reached bob without a new REGISTER", sig)
	}

	// A call in progress across a SIGKILL: its BYE after the restart.
	c := call(6000)
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, metricsAddr, `sipproxy_responses_total{code="200",method="INVITE"}`) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("the call was not answered\n%s", px.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the ACK passes
	restart(syscall.SIGKILL)
	if err := c.wait(t, 40*time.Second); err != nil {
		t.Fatalf("the caller's BYE after the restart was not relayed: %v\n%s\nproxy:\n%s", err, c.log(), px.log())
	}
	if got := metric(t, metricsAddr, `sipproxy_responses_total{code="200",method="BYE"}`); got != "1" {
		t.Errorf("BYE 200 relayed by the restarted proxy: %q, want 1", got)
	}
	if err := bob.wait(t, 20*time.Second); err != nil {
		t.Fatalf("bob (3 calls, each with its BYE): %v\n%s", err, bob.log())
	}
}
