package proxy

import (
	"net"

	"github.com/emiago/sipgo/sip"
)

// streamReadBuffer is the size of the buffer sipgo reads each TCP and TLS
// connection into. sipgo allocates it when a connection opens and keeps it
// for the connection's lifetime: at its default of 32 KiB it was two thirds
// of what a held phone connection cost (docs/performance.md, "Connection
// scale"). A stream does not need it large: sipgo's stream parser copies
// every read into a buffer of its own and assembles messages across reads,
// so the read buffer only bounds the bytes taken per read call. 4 KiB holds
// a REGISTER or an INVITE with its SDP in one read; a larger message takes
// more reads, and its size is still bounded by the parser
// (limits.max_message_bytes).
const streamReadBuffer = 4096

// maxDatagram is the largest UDP payload there is (65,535 less the headers),
// rounded up.
const maxDatagram = 1 << 16

func init() {
	// A package variable of sipgo, read when each transport's reader starts.
	// Set here, before main and before any test runs, so that no reader
	// races the write. It also sizes sipgo's UDP datagram buffer:
	// datagramConn below keeps UDP listeners reading datagrams whole.
	sip.TransportBufferReadSize = streamReadBuffer
}

// datagramConn is a UDP listener's socket as sipgo reads it. sipgo reads
// datagrams into a buffer of sip.TransportBufferReadSize bytes, and the
// kernel cuts a datagram longer than the buffer. datagramConn reads each
// datagram whole into its own buffer (max_message_bytes plus one byte, so
// that a longer datagram is still seen to be too long), gives sipgo what fits
// in sipgo's buffer, and whole, called by the read filter on the same
// goroutine right after the read, hands back the whole datagram. sipgo
// reads each UDP listener on one goroutine, reads then filters then parses,
// and copies what it keeps (the parser copies the body), so one buffer per
// listener is enough and needs no lock.
//
// A UDP socket sipgo opens itself (for a UDP next hop when the proxy has no
// UDP listener) is not wrapped: datagrams it receives are cut at
// streamReadBuffer bytes and then fail to parse (their Content-Length is
// longer than what arrived). Exchange UM speaks TCP and TLS only.
type datagramConn struct {
	net.PacketConn
	buf []byte
	n   int // length of the datagram last read
}

func newDatagramConn(pc net.PacketConn, maxMessage int) *datagramConn {
	return &datagramConn{PacketConn: pc, buf: make([]byte, min(maxMessage+1, maxDatagram))}
}

func (c *datagramConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(c.buf)
	c.n = n
	return copy(p, c.buf[:n]), addr, err
}

// whole returns the datagram last read, of which read is what sipgo got.
func (c *datagramConn) whole(read []byte) []byte {
	if c.n <= len(read) {
		return read
	}
	return c.buf[:c.n]
}
