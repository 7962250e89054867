// Package auth establishes who sent a request, for the identify stage of the
// request pipeline. It answers with an Identity from one of three sources:
//
//   - a trusted peer (Peers.Match): the packet came from one of a peer's
//     source prefixes and/or over TLS with a client certificate carrying one
//     of the peer's tls_names;
//   - a TLS client certificate (CertificateIdentity): a verified certificate
//     whose SAN URI sip:user@domain names a user of one of our domains;
//   - SIP digest authentication (Digest): RFC 3261 section 22 with the
//     RFC 8760 / RFC 7616 algorithms SHA-256 and MD5 and qop=auth.
//
// The package makes decisions only: it never reads or writes SIP messages,
// sockets or metrics. The pipeline hands it header values, addresses and
// certificates and turns the answers into 401/407 challenges, 403s and
// identities. Digest nonces are stateless (an HMAC under a secret), so a
// restart or a second instance sharing the secret accepts them; the only
// state is the bounded table of nonce counts that defeats replays.
package auth
