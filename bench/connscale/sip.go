package main

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// msg is a parsed SIP message: just enough for REGISTER, INVITE, ACK and BYE.
type msg struct {
	request bool
	method  string // request method
	uri     string // request URI
	status  int    // response status
	reason  string
	hdrs    []hdr
	body    []byte
}

type hdr struct{ name, value string }

var compact = map[string]string{
	"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact",
	"l": "Content-Length", "c": "Content-Type", "k": "Supported", "s": "Subject",
}

func canon(name string) string {
	if full, ok := compact[strings.ToLower(name)]; ok {
		return full
	}
	return name
}

// get returns the first value of header name (case-insensitive).
func (m *msg) get(name string) string {
	for _, h := range m.hdrs {
		if strings.EqualFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

// all returns every value of header name, comma-separated values split.
func (m *msg) all(name string) []string {
	var out []string
	for _, h := range m.hdrs {
		if strings.EqualFold(h.name, name) {
			out = append(out, splitComma(h.value)...)
		}
	}
	return out
}

// splitComma splits a header value at commas outside <> and quotes.
func splitComma(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case ',':
			if !quoted && depth == 0 {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

const maxMsg = 65535

var errTooBig = errors.New("SIP message too large")

// readMsg reads one message from a stream transport (Content-Length framing).
// CRLF keep-alives before the start line are skipped.
func readMsg(r *bufio.Reader) (*msg, error) {
	var line string
	var err error
	for {
		line, err = readLine(r)
		if err != nil {
			return nil, err
		}
		if line != "" {
			break
		}
	}
	m := &msg{}
	if strings.HasPrefix(line, "SIP/2.0 ") {
		rest := line[len("SIP/2.0 "):]
		code, reason, _ := strings.Cut(rest, " ")
		if m.status, err = strconv.Atoi(code); err != nil {
			return nil, fmt.Errorf("bad status line %q", line)
		}
		m.reason = reason
	} else {
		parts := strings.SplitN(line, " ", 3)
		if len(parts) != 3 || parts[2] != "SIP/2.0" {
			return nil, fmt.Errorf("bad request line %q", line)
		}
		m.request, m.method, m.uri = true, parts[0], parts[1]
	}
	size := len(line)
	for {
		line, err = readLine(r)
		if err != nil {
			return nil, err
		}
		size += len(line)
		if size > maxMsg {
			return nil, errTooBig
		}
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(m.hdrs) > 0 {
			m.hdrs[len(m.hdrs)-1].value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("bad header line %q", line)
		}
		m.hdrs = append(m.hdrs, hdr{canon(strings.TrimSpace(name)), strings.TrimSpace(value)})
	}
	if cl := m.get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 || n > maxMsg {
			return nil, fmt.Errorf("bad Content-Length %q", cl)
		}
		if n > 0 {
			m.body = make([]byte, n)
			if _, err := io.ReadFull(r, m.body); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errTooBig
		}
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// builder writes a message; Content-Length is added by done.
type builder struct{ sb strings.Builder }

func (b *builder) line(format string, args ...any) *builder {
	fmt.Fprintf(&b.sb, format, args...)
	b.sb.WriteString("\r\n")
	return b
}

func (b *builder) done(body string) []byte {
	b.line("Content-Length: %d", len(body))
	b.sb.WriteString("\r\n")
	b.sb.WriteString(body)
	return []byte(b.sb.String())
}

func randHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// challenge is a parsed WWW-Authenticate: Digest ... header.
type challenge struct {
	realm, nonce, opaque, algorithm string
	qopAuth                         bool
}

func parseChallenge(v string) (challenge, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return challenge{}, false
	}
	var c challenge
	for _, p := range splitComma(rest) {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "opaque":
			c.opaque = val
		case "algorithm":
			c.algorithm = val
		case "qop":
			for _, q := range strings.Split(val, ",") {
				if strings.TrimSpace(q) == "auth" {
					c.qopAuth = true
				}
			}
		}
	}
	if c.algorithm == "" {
		c.algorithm = "MD5"
	}
	return c, c.nonce != ""
}

// authorization answers c for user with MD5 (nc is the nonce count).
func authorization(c challenge, user, password, method, uri string, nc int) string {
	ha1 := md5hex(user + ":" + c.realm + ":" + password)
	ha2 := md5hex(method + ":" + uri)
	var sb strings.Builder
	fmt.Fprintf(&sb, `Digest username="%s", realm="%s", nonce="%s", uri="%s", algorithm=MD5`, user, c.realm, c.nonce, uri)
	if c.qopAuth {
		cnonce := randHex(8)
		ncs := fmt.Sprintf("%08x", nc)
		resp := md5hex(ha1 + ":" + c.nonce + ":" + ncs + ":" + cnonce + ":auth:" + ha2)
		fmt.Fprintf(&sb, `, qop=auth, nc=%s, cnonce="%s", response="%s"`, ncs, cnonce, resp)
	} else {
		fmt.Fprintf(&sb, `, response="%s"`, md5hex(ha1+":"+c.nonce+":"+ha2))
	}
	if c.opaque != "" {
		fmt.Fprintf(&sb, `, opaque="%s"`, c.opaque)
	}
	return sb.String()
}

// uriOf returns the URI inside a name-addr (<...>) or the addr-spec itself,
// without header parameters.
func uriOf(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	if i := strings.IndexByte(v, ';'); i >= 0 {
		return strings.TrimSpace(v[:i])
	}
	return strings.TrimSpace(v)
}
