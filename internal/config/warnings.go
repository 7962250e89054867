package config

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Warnings returns findings that do not stop the proxy but that an operator
// should know about, each with the file and line it concerns, in file order.
func (c *Config) Warnings() []Error {
	file := c.source
	if file == "" {
		file = c.Path
	}
	var ws []Error
	warn := func(path string, fallback int, format string, args ...any) {
		line, ok := c.lines[path]
		if !ok {
			line = fallback
		}
		ws = append(ws, Error{File: file, Line: line, Msg: path + ": " + fmt.Sprintf(format, args...)})
	}
	if c.Voicemail.URI != "" && !isTLS(c.Voicemail.Targets()[0]) {
		warn("voicemail.uri", c.Voicemail.Line,
			"%q is not a TLS URI (neither sips: nor transport=tls): skip-pin can never be honoured end to end", c.Voicemail.URI)
	}
	if len(c.Voicemail.URIs) > 0 {
		// A loaded pool has every entry parsed, in order.
		for i, u := range c.Voicemail.Targets() {
			if !isTLS(u) {
				warn(fmt.Sprintf("voicemail.uris[%d]", i), c.Voicemail.Line,
					"%q is not a TLS URI (neither sips: nor transport=tls): skip-pin can never be honoured end to end through it", c.Voicemail.URIs[i])
			}
		}
	}
	for i, p := range c.Peers {
		if p.TrustSkipPin && len(p.TLSNames) == 0 {
			warn(fmt.Sprintf("peers[%d].trust_skip_pin", i), p.Line,
				"peer %q trusts skip-pin but has no tls_names: it is recognised by source address alone", p.Name)
		}
	}
	if c.Server.TLSClient.InsecureSkipVerify {
		warn("server.tls_client.insecure_skip_verify", c.Server.TLSClient.Line,
			"certificates of TLS next hops (voicemail, routes) are not verified")
	}
	for i, u := range c.Auth.Users {
		if u.Password != "" {
			warn(fmt.Sprintf("auth.users[%d].password", i), u.Line,
				"user %q has a plain password; prefer ha1 (and ha1_sha256)", u.User)
		}
	}
	sortByLine(ws)
	return ws
}

// isTLS reports whether a next hop URI is reached over TLS.
func isTLS(u sip.Uri) bool {
	if strings.EqualFold(u.Scheme, "sips") {
		return true
	}
	for _, kv := range u.UriParams {
		if strings.EqualFold(kv.K, "transport") && strings.EqualFold(kv.V, "tls") {
			return true
		}
	}
	return false
}
