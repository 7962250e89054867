package auth

import (
	"fmt"

	"github.com/sipproxy/sipproxy/internal/config"
)

// Source is how an Identity was established.
type Source int

// The sources of an identity. SourceNone, the zero value, means the sender
// is anonymous.
const (
	SourceNone        Source = iota
	SourceDigest             // SIP digest authentication against a local user
	SourceCertificate        // SAN URI of a verified TLS client certificate
	SourcePeer               // trusted peer, by source address and/or certificate name
)

// String returns the name used in logs and metrics: "none", "digest",
// "certificate" or "peer".
func (s Source) String() string {
	switch s {
	case SourceNone:
		return "none"
	case SourceDigest:
		return "digest"
	case SourceCertificate:
		return "certificate"
	case SourcePeer:
		return "peer"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Identity is who the proxy believes sent a request.
type Identity struct {
	Source Source
	// AOR is the authenticated address of record "user@domain", normalised
	// like internal/aor.Of (host lower-cased), for SourceDigest and
	// SourceCertificate.
	AOR string
	// Peer is the matched trusted peer for SourcePeer.
	Peer *config.Peer
}

// Authenticated reports whether the identity names someone: a user (digest
// or certificate, with an AOR) or a trusted peer. The zero Identity and
// inconsistent ones (a digest source without an AOR, a peer source without a
// peer) are not authenticated.
func (i Identity) Authenticated() bool {
	switch i.Source {
	case SourceDigest, SourceCertificate:
		return i.AOR != ""
	case SourcePeer:
		return i.Peer != nil
	}
	return false
}

// String describes the identity for logs, e.g. "digest:alice@contoso.com"
// or "peer:exchange-um".
func (i Identity) String() string {
	switch {
	case !i.Authenticated():
		return SourceNone.String()
	case i.Source == SourcePeer:
		return i.Source.String() + ":" + i.Peer.Name
	}
	return i.Source.String() + ":" + i.AOR
}
