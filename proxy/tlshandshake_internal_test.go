package proxy

import (
	"crypto/tls"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/internal/pki"
)

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := pki.SelfSigned("proxy")
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// TestTLSHandshakeBounded: the handshake, on a goroutine of its own, is
// still bounded by the handshake timeout for a client that never speaks and
// for one that stops mid-ClientHello; a connection closed while its
// handshake waits (by the server, or by the client) ends the handshake at
// once; and no handshake goroutine outlives its connection.
func TestTLSHandshakeBounded(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const timeout = 300 * time.Millisecond
	l := &tlsListener{Listener: stallGuardListener{Listener: raw, timeout: writeTimeout}, config: selfSignedTLS(t),
		handshakeTimeout: timeout, certs: newPeerCerts()}
	base := runtime.NumGoroutine()

	accept := func() (net.Conn, net.Conn) {
		t.Helper()
		client, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return client, c
	}
	readReturns := func(c net.Conn) (time.Duration, error) {
		start := time.Now()
		done := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 16)); done <- err }()
		select {
		case err := <-done:
			return time.Since(start), err
		case <-time.After(5 * time.Second):
			t.Fatal("Read still blocked in the handshake after 5 s")
			return 0, nil
		}
	}

	// Silent client.
	client, c := accept()
	if d, err := readReturns(c); err == nil || d > timeout+time.Second {
		t.Errorf("silent client: Read returned after %v with %v, want an error within the timeout", d, err)
	}
	c.Close()
	client.Close()

	// Half a ClientHello, then nothing.
	client, c = accept()
	client.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
	if d, err := readReturns(c); err == nil || d > timeout+time.Second {
		t.Errorf("stalled ClientHello: Read returned after %v with %v", d, err)
	}
	c.Close()
	client.Close()

	// The server closes the connection while the handshake waits.
	l.handshakeTimeout = time.Minute
	client, c = accept()
	go func(c net.Conn) { time.Sleep(50 * time.Millisecond); c.Close() }(c)
	if d, err := readReturns(c); err == nil || d > time.Second {
		t.Errorf("closed by the server: Read returned after %v with %v", d, err)
	}
	client.Close()

	// The client goes away while the handshake waits.
	client, c = accept()
	go func(client net.Conn) { time.Sleep(50 * time.Millisecond); client.Close() }(client)
	if d, err := readReturns(c); err == nil || d > time.Second {
		t.Errorf("closed by the client: Read returned after %v with %v", d, err)
	}
	c.Close()

	// A Write before the first Read (the handshake then runs under Write,
	// without the Read's timeout): a later Read still returns when the
	// connection is closed.
	client, c = accept()
	wrote := make(chan error, 1)
	go func(c net.Conn) { _, err := c.Write([]byte("x")); wrote <- err }(c)
	time.Sleep(50 * time.Millisecond)
	go func(c net.Conn) { time.Sleep(50 * time.Millisecond); c.Close() }(c)
	if d, err := readReturns(c); err == nil || d > time.Second {
		t.Errorf("write first: Read returned after %v with %v", d, err)
	}
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Error("the Write's handshake still blocked after the connection closed")
	}
	client.Close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines left over (%d before):\n%s", n-base, base, buf[:runtime.Stack(buf, true)])
	}
}
