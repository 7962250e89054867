package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestResponseVersionIsSIP20: a request in another SIP version is refused
// with 505, and the status line still says SIP/2.0 (RFC 3261 7.2: this
// proxy speaks SIP/2.0; echoing the request's version claimed otherwise).
func TestResponseVersionIsSIP20(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	request := func(transport, via string) string {
		return "OPTIONS sip:" + px.Addr(transport) + " SIP/3.0\r\n" +
			"Via: SIP/2.0/" + strings.ToUpper(transport) + " " + via + ";branch=z9hG4bK-v3" + transport + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:x@fabrikam.com>;tag=v3\r\nTo: <sip:y@contoso.com>\r\n" +
			"Call-ID: v3-" + transport + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	}
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			c, err := net.Dial(transport, px.Addr(transport))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(request(transport, c.LocalAddr().String()))); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var raw []byte
			if transport == "udp" {
				buf := make([]byte, 65535)
				n, err := c.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				raw = buf[:n]
			} else if raw, err = readResponse(bufio.NewReader(c)); err != nil {
				t.Fatal(err)
			}
			if status, _ := statusLineOf(raw); status != "SIP/2.0 505 Version Not Supported" {
				t.Errorf("status line %q, want SIP/2.0 505 Version Not Supported", status)
			}
		})
	}
}

// statusLineOf is the status line and Call-ID of a raw response.
func statusLineOf(raw []byte) (status, callID string) {
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	for _, l := range lines[1:] {
		if name, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Call-ID") {
			callID = strings.TrimSpace(v)
		}
	}
	return lines[0], callID
}

// readResponse reads one SIP message with a Content-Length framing from br.
func readResponse(br *bufio.Reader) ([]byte, error) {
	var msg bytes.Buffer
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		msg.WriteString(line)
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			fmt.Sscan(strings.TrimSpace(v), &length)
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	msg.Write(body)
	return msg.Bytes(), nil
}
