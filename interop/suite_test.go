//go:build interop

// The real-peer suite: sipp (Debian's sip-tester, built without TLS) as user
// agents and as a stand-in for Exchange UM, socat as the TLS ends sipp
// lacks, and the built sipproxy binary in the middle. Each test starts its
// own proxy (so its metrics are its own), drives the tools, then asserts on
// what the tools saw (sipp's exit status: a call that missed a <recv> or
// failed a check_it regexp makes sipp exit 1) and on the proxy's metrics.
//
// Helpers here are methods of peerLab or carry a "lab" prefix so that they
// cannot collide with helpers in the other files of this package.
package interop

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/internal/pki"
)

// peerLab is one sipproxy process with TCP and UDP on sipPort, TLS (client
// certificates verified against the lab CA) on tlsPort, and the PKI the
// tools around it use.
type peerLab struct {
	t           *testing.T
	dir         string // temp dir: config, certificates, tool logs
	scen        string // absolute path of interop/scenarios
	sipp, socat string
	bin         string

	sipPort, tlsPort int
	metricsAddr      string
	px               *proc
	tunnels          []*proc // socat processes, logged when a tool fails

	pki labPKI

	// algorithms is auth.algorithms; newPeerLab sets [MD5, SHA-256]
	// (sipp answers only the first challenge, and only MD5).
	algorithms string
}

// labPKI names the PEM files of the lab CA and what it issued.
type labPKI struct {
	ca                 string // CA certificate: client_ca, tls_client.ca, socat cafile
	proxyCrt, proxyKey string // the proxy's TLS listener (localhost, 127.0.0.1)
	aliceCrt, aliceKey string // client certificate, SAN URI sip:alice@contoso.com
	umCrt, umKey       string // the voicemail server's TLS end (127.0.0.1)
}

// newPeerLab checks the tools, builds the binary, picks ports and writes the
// PKI. tools are extra executables the test needs besides sipp.
func newPeerLab(t *testing.T, tools ...string) *peerLab {
	t.Helper()
	l := &peerLab{t: t, dir: t.TempDir()}
	l.sipp = need(t, "sipp")
	for _, tool := range tools {
		p := labNeed(t, tool)
		if tool == "socat" {
			l.socat = p
		}
	}
	var err error
	if l.scen, err = filepath.Abs("scenarios"); err != nil {
		t.Fatal(err)
	}
	l.bin = buildProxy(t, l.dir)
	l.sipPort, l.tlsPort = freePort(t), freePort(t)
	l.metricsAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l.writePKI()
	l.algorithms = "[MD5, SHA-256]"
	return l
}

// labNeed is need with the Debian package named for every tool the suite uses.
func labNeed(t *testing.T, tool string) string {
	t.Helper()
	pkg := map[string]string{"sipp": "sip-tester", "socat": "socat", "baresip": "baresip-core"}[tool]
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is not installed (Debian package %s); .ci/run installs it", tool, pkg)
	}
	return p
}

func (l *peerLab) writePKI() {
	t := l.t
	t.Helper()
	dir := filepath.Join(l.dir, "pki")
	ca, err := pki.NewCA("sipproxy interop CA")
	if err != nil {
		t.Fatal(err)
	}
	if l.pki.ca, err = ca.WritePEM(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, name string, o pki.IssueOptions) (string, string) {
		c, err := ca.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		crt, key, err := pki.WritePEM(dir, name, c)
		if err != nil {
			t.Fatal(err)
		}
		return crt, key
	}
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	l.pki.proxyCrt, l.pki.proxyKey = issue(ca, "proxy", pki.IssueOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: loop, Server: true})
	l.pki.aliceCrt, l.pki.aliceKey = issue(ca, "alice", pki.IssueOptions{CommonName: "alice", URIs: []string{"sip:alice@contoso.com"}, Client: true})
	l.pki.umCrt, l.pki.umKey = issue(ca, "um", pki.IssueOptions{CommonName: "um.contoso.com", DNSNames: []string{"um.contoso.com", "localhost"}, IPs: loop, Server: true})
}

// start writes the configuration (the common part plus extra top-level
// sections such as voicemail, peers, forwarding) and starts the proxy.
func (l *peerLab) start(extra string) {
	t := l.t
	t.Helper()
	cfg := fmt.Sprintf(`
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:%d"}
    - {transport: udp, addr: "127.0.0.1:%d"}
    - {transport: tls, addr: "127.0.0.1:%d", cert: %q, key: %q, client_ca: %q}
  record_route: true
  tls_client: {ca: %q}
auth:
  realm: contoso.com
  algorithms: %s
  users:
    - {user: alice, password: alice-secret}
    - {user: bob, password: bob-secret}
    - {user: carol, password: carol-secret}
metrics: {listen: %q}
log: {level: info, format: text}
%s`, l.sipPort, l.sipPort, l.tlsPort, l.pki.proxyCrt, l.pki.proxyKey, l.pki.ca, l.pki.ca, l.algorithms, l.metricsAddr, extra)
	path := filepath.Join(l.dir, "sipproxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l.px = start(t, l.dir, l.bin, "run", "-config", path)
	waitReady(t, l.metricsAddr, l.px)
}

// check runs `sipproxy check` on the lab's configuration and returns its
// combined output; it fails the test unless the exit status is 0.
func (l *peerLab) check() string {
	l.t.Helper()
	out, err := exec.Command(l.bin, "check", "-config", filepath.Join(l.dir, "sipproxy.yaml")).CombinedOutput()
	if err != nil {
		l.t.Fatalf("sipproxy check: %v\n%s", err, out)
	}
	return string(out)
}

// stop sends SIGTERM and expects the proxy to drain and exit 0.
func (l *peerLab) stop() {
	t := l.t
	t.Helper()
	if err := l.px.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.px.done:
		if l.px.err != nil {
			t.Fatalf("sipproxy exit after SIGTERM: %v\n%s", l.px.err, l.px.log())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("sipproxy did not exit within 15s of SIGTERM\n%s", l.px.log())
	}
}

// sippArgs are the arguments every sipp run gets: scenario, TCP (t1: one
// connection for all calls), the local address, no keyboard, a global
// timeout, and an error trace in the lab directory.
func (l *peerLab) sippArgs(scenario, ip string, port int, timeout time.Duration) []string {
	return []string{"-sf", filepath.Join(l.scen, scenario), "-t", "t1", "-i", ip, "-p", strconv.Itoa(port),
		"-nostdin", "-timeout", strconv.Itoa(int(timeout / time.Second)), "-trace_err"}
}

// uas starts a sipp UAS listening on ip:port for calls calls, writes the
// messages it sees to msgFile (in the lab directory) and waits until it
// listens.
func (l *peerLab) uas(scenario, ip string, port, calls int, msgFile string, extra ...string) *proc {
	l.t.Helper()
	args := append(l.sippArgs(scenario, ip, port, 60*time.Second), "-m", strconv.Itoa(calls),
		"-trace_msg", "-message_file", filepath.Join(l.dir, msgFile))
	p := start(l.t, l.dir, l.sipp, append(args, extra...)...)
	labWaitListening(l.t, ip, port, p)
	return p
}

// register runs the register scenario for user (digest, password
// "<user>-secret") with the Contact pointing at contactPort, and waits for
// its 200.
func (l *peerLab) register(user string, contactPort int) {
	l.t.Helper()
	args := append(l.sippArgs("register.xml", "127.0.0.1", freePort(l.t), 20*time.Second),
		fmt.Sprintf("127.0.0.1:%d", l.sipPort), "-m", "1", "-key", "user", user,
		"-au", user, "-ap", user+"-secret", "-key", "contact_port", strconv.Itoa(contactPort))
	reg := start(l.t, l.dir, l.sipp, args...)
	l.ok(reg, "sipp register "+user, 30*time.Second)
}

// ok waits for a tool to exit 0 within d; otherwise the test fails with the
// tool's log and the proxy's.
func (l *peerLab) ok(p *proc, what string, d time.Duration, more ...*proc) {
	l.t.Helper()
	if err := p.wait(l.t, d); err != nil {
		var b strings.Builder
		for _, m := range append(more, l.tunnels...) {
			fmt.Fprintf(&b, "\n--- %s:\n%s", filepath.Base(m.out.Name()), m.log())
		}
		l.t.Fatalf("%s failed: %v\n%s%s\n--- errors:\n%s\n--- proxy:\n%s", what, err, p.log(), b.String(), l.sippErrors(), l.px.log())
	}
}

// sippErrors returns the sipp error traces (-trace_err) in the lab dir.
func (l *peerLab) sippErrors() string {
	files, _ := filepath.Glob(filepath.Join(l.dir, "*_errors.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "%s:\n%s\n", filepath.Base(f), data)
	}
	return b.String()
}

// metric returns one sample of the proxy's metrics ("" when absent).
func (l *peerLab) metric(series string) string {
	l.t.Helper()
	return metric(l.t, l.metricsAddr, series)
}

// expect fails the test unless series has the value want ("" = absent).
func (l *peerLab) expect(series, want string) {
	l.t.Helper()
	if got := l.metric(series); got != want {
		l.t.Errorf("%s = %q, want %q", series, got, want)
	}
}

// eventually polls series until it has the value want, for at most d.
func (l *peerLab) eventually(series, want string, d time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := l.metric(series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			l.t.Errorf("%s = %q after %v, want %q", series, got, d, want)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsClientTunnel starts socat as the TLS end of a TCP-only client: it
// listens for TCP on a free loopback port and carries each connection to
// the proxy's TLS listener, verifying the proxy against the lab CA and, when
// cert is not empty, presenting that client certificate.
func (l *peerLab) tlsClientTunnel(cert, key string) int {
	l.t.Helper()
	port := freePort(l.t)
	remote := fmt.Sprintf("OPENSSL:127.0.0.1:%d,cafile=%s,verify=1", l.tlsPort, l.pki.ca)
	if cert != "" {
		remote += fmt.Sprintf(",cert=%s,key=%s", cert, key)
	}
	l.socatRun(fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", port), remote, port)
	return port
}

// tlsServerTunnel starts socat as the TLS end of a TCP-only server (the
// voicemail stand-in): it accepts TLS with the UM certificate on a free
// loopback port and carries each connection to 127.0.0.1:backend over TCP.
func (l *peerLab) tlsServerTunnel(backend int) int {
	l.t.Helper()
	port := freePort(l.t)
	l.socatRun(fmt.Sprintf("OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,cert=%s,key=%s,verify=0", port, l.pki.umCrt, l.pki.umKey),
		fmt.Sprintf("TCP:127.0.0.1:%d", backend), port)
	return port
}

func (l *peerLab) socatRun(listen, connect string, port int) {
	l.t.Helper()
	if l.socat == "" {
		l.socat = labNeed(l.t, "socat")
	}
	// -T: a relay idle for a minute ends, so no forked child outlives the
	// test by much even if its peer never closes.
	p := start(l.t, l.dir, l.socat, "-d", "-d", "-T", "60", listen, connect)
	l.tunnels = append(l.tunnels, p)
	// Registered after start's own cleanup, so it runs first: SIGTERM lets
	// socat end its forked relays; start's cleanup then kills what is left.
	l.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(2 * time.Second):
			}
		}
	})
	labWaitListening(l.t, "127.0.0.1", port, p)
}

// labWaitListening waits (at most 10s) until a TCP socket listens on
// ip:port, reading /proc/net/tcp so that the check opens no connection.
func labWaitListening(t *testing.T, ip string, port int, p *proc) {
	t.Helper()
	want := labProcNetAddr(net.ParseIP(ip).To4(), port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			// sl local_address rem_address st ...; st 0A is LISTEN.
			if len(f) > 3 && (f[1] == want || f[1] == labProcNetAddr(net.IPv4zero.To4(), port)) && f[3] == "0A" {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before listening on %s:%d: %v\n%s", filepath.Base(p.cmd.Path), ip, port, p.err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening on %s:%d after 10s\n%s", filepath.Base(p.cmd.Path), ip, port, p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// labProcNetAddr renders ip:port as /proc/net/tcp does on a little-endian
// machine ("0100007F:1F90" for 127.0.0.1:8080).
func labProcNetAddr(ip net.IP, port int) string {
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port)
}

// labReceived returns the SIP messages sipp traced (-trace_msg) as
// received whose start line begins with prefix, e.g. "INVITE " for every
// INVITE it got.
func labReceived(t *testing.T, file, prefix string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	// Each traced message: a line of dashes and a timestamp, a line such as
	// "TCP message received [350] bytes :", an empty line, the message.
	for _, m := range strings.Split("\n"+string(data), "\n-----------------------------------------------") {
		head, msg, ok := strings.Cut(m, "\n\n")
		if !ok || !strings.Contains(head, "message received") {
			continue
		}
		if strings.HasPrefix(msg, prefix) {
			out = append(out, msg)
		}
	}
	return out
}

// logMetrics logs the proxy's sipproxy_* samples whose line contains one of
// the substrings (all of them when none is given): the figures of a run.
func (l *peerLab) logMetrics(substr ...string) {
	l.t.Helper()
	res, err := http.Get("http://" + l.metricsAddr + "/metrics")
	if err != nil {
		l.t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		ln := sc.Text()
		if !strings.HasPrefix(ln, "sipproxy_") || strings.Contains(ln, "_bucket{") {
			continue
		}
		keep := len(substr) == 0
		for _, s := range substr {
			keep = keep || strings.Contains(ln, s)
		}
		if keep {
			b.WriteString("\n  " + ln)
		}
	}
	l.t.Logf("proxy metrics:%s", b.String())
}

// voicemailTLS starts the Exchange UM stand-in: a sipp UAS running
// scenario on TCP behind a socat TLS end with the UM certificate. Its
// scenario takes only the calls: configurations give it probe_interval: 0s
// (an OPTIONS probe would be an unexpected message to it). It
// returns the UAS and the voicemail.uri for the configuration; the UAS's
// message trace goes to msgFile.
func (l *peerLab) voicemailTLS(scenario string, calls int, msgFile string) (um *proc, uri string) {
	l.t.Helper()
	tcpPort := freePort(l.t)
	tlsPort := l.tlsServerTunnel(tcpPort)
	um = l.uas(scenario, "127.0.0.1", tcpPort, calls, msgFile, "-key", "vm_port", strconv.Itoa(tlsPort))
	return um, fmt.Sprintf("sip:127.0.0.1:%d;transport=tls", tlsPort)
}

// noVoicemailWarning runs `sipproxy check` and fails the test if it warns
// about the voicemail hop (it does when voicemail.uri is not TLS).
func (l *peerLab) noVoicemailWarning() {
	l.t.Helper()
	if out := l.check(); strings.Contains(out, "voicemail.uri") {
		l.t.Errorf("sipproxy check warns about the voicemail hop:\n%s", out)
	}
}

// TestSippCancel: bob's phone (sipp UAS, registered with digest) rings and
// never answers; a sipp UAC calls bob, waits for the 180, sends CANCEL and
// expects 200 for the CANCEL and 487 for the INVITE (checked by CSeq), then
// ACKs the 487. The UAS expects the CANCEL from the proxy, answers it 200
// and the INVITE 487 and gets the proxy's ACK.
func TestSippCancel(t *testing.T) {
	l := newPeerLab(t)
	l.start("")
	const calls = 10
	phonePort := freePort(t)
	phone := l.uas("suite-uas-cancel.xml", "127.0.0.1", phonePort, calls, "phone-msg.log")
	l.register("bob", phonePort)

	uac := start(t, l.dir, l.sipp, append(l.sippArgs("suite-uac-cancel.xml", "127.0.0.1", freePort(t), 60*time.Second),
		fmt.Sprintf("127.0.0.1:%d", l.sipPort), "-s", "bob", "-m", strconv.Itoa(calls), "-r", "5",
		"-trace_msg", "-message_file", filepath.Join(l.dir, "uac-msg.log"))...)
	l.ok(uac, "sipp uac (CANCEL)", 60*time.Second, phone)
	l.ok(phone, "sipp uas (ringing, cancelled)", 30*time.Second)

	n := strconv.Itoa(calls)
	l.expect(`sipproxy_responses_total{code="180",method="INVITE"}`, n)
	l.expect(`sipproxy_responses_total{code="487",method="INVITE"}`, n)
	// One CANCEL per call reached the phone, and one ACK: the proxy's own
	// for the 487 (the caller's ACK ends at the proxy).
	for _, m := range []string{"CANCEL ", "ACK "} {
		if got := len(labReceived(t, filepath.Join(l.dir, "phone-msg.log"), m)); got != calls {
			t.Errorf("the phone received %d %srequests, want %d", got, m, calls)
		}
	}
	// Every INVITE and CANCEL transaction ends (the ACK for the 487 is
	// absorbed, no client transaction waits for a response).
	l.eventually("sipproxy_transactions_active", "0", 10*time.Second)
	l.logMetrics("requests_total", "responses_total", "transactions_active")
	l.stop()
}

// TestSkipPinTLSClientCertificate: alice's client (sipp, its TCP carried
// to the TLS listener by socat, which presents alice's client certificate,
// SAN URI sip:alice@contoso.com) calls her own mailbox,
// sip:alice@contoso.com;opaque=app:voicemail, with
// Ms-Exchange-Command: skip-pin. The proxy identifies her by the
// certificate (no challenge), keeps the header and relays the call over
// TLS to the UM stand-in (socat TLS end, sipp UAS), which checks that the
// header arrived unchanged; the call is answered, ACKed and hung up.
func TestSkipPinTLSClientCertificate(t *testing.T) {
	l := newPeerLab(t, "socat")
	um, vmURI := l.voicemailTLS("suite-uas-vm-kept.xml", 1, "um-msg.log")
	l.start(fmt.Sprintf("voicemail: {uri: %q, probe_interval: 0s}\n", vmURI))
	l.noVoicemailWarning()
	tunnel := l.tlsClientTunnel(l.pki.aliceCrt, l.pki.aliceKey)

	uac := start(t, l.dir, l.sipp, append(l.sippArgs("suite-uac-skippin-tls.xml", "127.0.0.1", freePort(t), 30*time.Second),
		fmt.Sprintf("127.0.0.1:%d", tunnel), "-m", "1")...)
	l.ok(uac, "sipp uac (alice, client certificate, skip-pin)", 40*time.Second, um)
	l.ok(um, "UM stand-in (expects skip-pin)", 20*time.Second)

	l.expect(`sipproxy_skip_pin_total{decision="kept",reason="own_mailbox"}`, "1")
	l.expect(`sipproxy_requests_total{method="INVITE",transport="tls"}`, "1")
	l.expect(`sipproxy_auth_total{result="challenged"}`, "0") // the certificate named her
	l.expect(`sipproxy_responses_total{code="200",method="INVITE"}`, "1")
	l.expect(`sipproxy_responses_total{code="200",method="BYE"}`, "1")
	if got := labReceived(t, filepath.Join(l.dir, "um-msg.log"), "INVITE "); len(got) != 1 {
		t.Errorf("UM received %d INVITEs, want 1", len(got))
	}
	l.logMetrics("skip_pin", "requests_total", "responses_total", "auth_total")
	l.stop()
}

// TestSkipPinTCPDigest: the same subscriber-access INVITE from alice over
// plain TCP. The proxy challenges it (407); sipp ACKs the 407 and sends the
// INVITE again with digest credentials (MD5) and CSeq 2. Alice is
// authenticated and calls her own mailbox, but the request did not arrive
// over TLS, so the proxy strips the header: the UM stand-in (over TLS)
// checks that no Ms-Exchange-Command header arrived. The call itself goes
// through (UM would ask for the PIN).
func TestSkipPinTCPDigest(t *testing.T) {
	l := newPeerLab(t, "socat")
	um, vmURI := l.voicemailTLS("suite-uas-vm-stripped.xml", 1, "um-msg.log")
	l.start(fmt.Sprintf("voicemail: {uri: %q, probe_interval: 0s}\n", vmURI))

	uac := start(t, l.dir, l.sipp, append(l.sippArgs("suite-uac-skippin-digest.xml", "127.0.0.1", freePort(t), 30*time.Second),
		fmt.Sprintf("127.0.0.1:%d", l.sipPort), "-m", "1", "-au", "alice", "-ap", "alice-secret")...)
	l.ok(uac, "sipp uac (alice, digest over TCP, skip-pin)", 40*time.Second, um)
	l.ok(um, "UM stand-in (expects no skip-pin)", 20*time.Second)

	l.expect(`sipproxy_skip_pin_total{decision="stripped",reason="not_tls"}`, "1")
	l.expect(`sipproxy_skip_pin_total{decision="kept",reason="own_mailbox"}`, "")
	l.expect(`sipproxy_responses_total{code="407",method="INVITE"}`, "1")
	l.expect(`sipproxy_auth_total{result="ok"}`, "1")
	l.expect(`sipproxy_responses_total{code="200",method="INVITE"}`, "1")
	l.expect(`sipproxy_responses_total{code="200",method="BYE"}`, "1")
	l.logMetrics("skip_pin", "requests_total", "responses_total", "auth_total")
	l.stop()
}

// TestPlayOnPhoneNoDiversion: UM (a sipp UAC on 127.0.0.2, the only
// trusted peer: peers[].sources 127.0.0.2/32) places a Play-On-Phone call
// to carol: From URI = To URI = carol, Contact with ;automata,
// Ms-Sensitivity: private-no-diversion. Carol is registered (sipp, digest,
// from 127.0.0.1) with a phone that answers 486, and her rules forward
// busy and unanswered calls to her voicemail (a sipp UAS behind TLS).
// The caller must get carol's 486 and voicemail must get nothing; then the
// same call without Ms-Sensitivity (the control) is forwarded on busy and
// answered by voicemail, which proves the suppression is real.
func TestPlayOnPhoneNoDiversion(t *testing.T) {
	l := newPeerLab(t, "socat")
	// Voicemail takes exactly one call and fails a Play-On-Phone INVITE:
	// if the first call leaked to it, its one call would fail.
	vm, vmURI := l.voicemailTLS("suite-uas-vm-diverted.xml", 1, "vm-msg.log")
	rules := `rules:
  - user: sip:carol@contoso.com
    unanswered: {target: "sip:carol@contoso.com;opaque=app:voicemail", after: 15s}
    busy: "sip:carol@contoso.com;opaque=app:voicemail"
`
	if err := os.WriteFile(filepath.Join(l.dir, "rules.yaml"), []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	l.start(fmt.Sprintf(`voicemail: {uri: %q, probe_interval: 0s}
peers:
  - {name: um, sources: ["127.0.0.2/32"]}
forwarding: {rules_file: rules.yaml}
`, vmURI))
	l.expect("sipproxy_rules_loaded", "1")

	phonePort := freePort(t)
	phone := l.uas("suite-uas-phone-busy.xml", "127.0.0.1", phonePort, 2, "phone-msg.log")
	l.register("carol", phonePort)

	// 1. Play-On-Phone: carol's own 486, no forwarding.
	umCall := func(scenario, what string) {
		t.Helper()
		uac := start(t, l.dir, l.sipp, append(l.sippArgs(scenario, "127.0.0.2", freePort(t), 30*time.Second),
			fmt.Sprintf("127.0.0.1:%d", l.sipPort), "-s", "carol", "-m", "1")...)
		l.ok(uac, what, 40*time.Second, phone, vm)
	}
	umCall("suite-uac-pop.xml", "UM Play-On-Phone call (expects carol's 486)")
	l.expect(`sipproxy_forwarding_total{kind="busy",outcome="suppressed"}`, "1")
	l.expect(`sipproxy_forwarding_total{kind="busy",outcome="applied"}`, "0")
	l.expect(`sipproxy_responses_total{code="486",method="INVITE"}`, "1")
	l.expect(`sipproxy_auth_total{result="challenged"}`, "1") // carol's REGISTER only: UM is a peer
	if got := labReceived(t, filepath.Join(l.dir, "vm-msg.log"), ""); len(got) != 0 {
		t.Errorf("voicemail received %d messages during the Play-On-Phone call, want none:\n%s", len(got), strings.Join(got, "\n"))
	}
	l.logMetrics("forwarding_total", "responses_total")

	// 2. Control: the same call without Ms-Sensitivity is forwarded.
	umCall("suite-uac-pop-control.xml", "UM call without Ms-Sensitivity (expects voicemail's 200)")
	l.ok(phone, "carol's phone (busy twice)", 20*time.Second)
	l.ok(vm, "voicemail (one forwarded call, not Play-On-Phone)", 20*time.Second)
	l.expect(`sipproxy_forwarding_total{kind="busy",outcome="applied"}`, "1")
	l.expect(`sipproxy_forwarding_total{kind="busy",outcome="suppressed"}`, "1")

	// Carol's phone saw Ms-Sensitivity unchanged on the first call, and
	// not on the second; voicemail saw only the second.
	invites := labReceived(t, filepath.Join(l.dir, "phone-msg.log"), "INVITE ")
	if len(invites) != 2 {
		t.Fatalf("carol's phone received %d INVITEs, want 2", len(invites))
	}
	if !strings.Contains(invites[0], "\r\nMs-Sensitivity: private-no-diversion\r\n") {
		t.Errorf("the Play-On-Phone INVITE reached carol without its Ms-Sensitivity header:\n%s", invites[0])
	}
	if strings.Contains(strings.ToLower(invites[1]), "ms-sensitivity") {
		t.Errorf("the control INVITE reached carol with Ms-Sensitivity:\n%s", invites[1])
	}
	if got := labReceived(t, filepath.Join(l.dir, "vm-msg.log"), "INVITE "); len(got) != 1 {
		t.Errorf("voicemail received %d INVITEs in all, want 1 (the control call)", len(got))
	}
	l.logMetrics("forwarding_total", "responses_total")
	l.stop()
}
