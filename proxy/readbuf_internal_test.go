package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/metrics"
)

// TestDatagramLookupWildcard: the read filter finds a UDP listener's
// datagramConn by the address sipgo reports for it, also when the listener
// is bound to a wildcard address (0.0.0.0 is bound dual-stack as [::] by
// Go), so that a datagram over sipgo's buffer is still handed over whole.
func TestDatagramLookupWildcard(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "127.0.0.1:0"} {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Logf("%s: %v (skipped)", addr, err)
			continue
		}
		s := &Server{cfg: &config.Config{Limits: config.Limits{MaxMessageBytes: 65535}}, m: metrics.New(),
			datagrams: make(map[netip.AddrPort]*datagramConn)}
		bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		dc := newDatagramConn(pc, s.cfg.Limits.MaxMessageBytes)
		s.datagrams[bound] = dc
		// sipgo reads through its UDPConnection and reports its LocalAddr.
		sc := &sip.UDPConnection{PacketConn: dc, PacketAddr: dc.LocalAddr().String(), Listener: true}
		to, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(int(bound.Port())))
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Repeat([]byte("x"), 10000)
		if _, err := to.Write(want); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, sip.TransportBufferReadSize)
		n, raddr, err := sc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.readFilter(sip.TransportReadProps{Transport: "UDP", LocalAddr: sc.LocalAddr(), RemoteAddr: raddr}, buf[:n])
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s (bound %v): filter gave %d bytes (err %v), want the whole %d", addr, bound, len(got), err, len(want))
		}
		to.Close()
		pc.Close()
	}
}
