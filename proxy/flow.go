package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strings"
	"sync"

	"github.com/sipproxy/sipproxy/proxy/router"
)

// Flow is the path a neighbour reached us on (see router.Flow).
type Flow = router.Flow

// flowTokens seal, into every Record-Route entry we insert, the flow of
// that entry's side (empty when the side has none), bound to the dialog's
// Call-ID.
// An in-dialog request is ours to route only when its Route names us with a
// token valid for its own Call-ID: a forged or copied Route can neither
// make us relay for strangers nor steer requests into another client's
// connection. The token is MACed.
type flowTokens struct {
	key  []byte
	macs *sync.Pool // of hash.Hash: keying HMAC-SHA256 costs more than using it
}

func newFlowTokens(key []byte) flowTokens {
	return flowTokens{key: key, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// sum is the truncated MAC of payload, bound to the dialog's Call-ID.
func (t flowTokens) sum(payload []byte, callID string) []byte {
	mac := t.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(payload)
	mac.Write([]byte{0})
	mac.Write([]byte(callID))
	out := mac.Sum(make([]byte, 0, sha256.Size))[:12]
	t.macs.Put(mac)
	return out
}

const flowParam = "flow"

// encode seals a flow for one dialog. The Call-ID is under the MAC but not
// in the token: the request carries it anyway, and a long Call-ID written
// into both Record-Route entries would swell every message of the dialog.
func (t flowTokens) encode(f Flow, callID string) string {
	payload := []byte(f.Transport + "|" + f.Remote)
	return base64.RawURLEncoding.EncodeToString(append(payload, t.sum(payload, callID)...))
}

func (t flowTokens) decode(tok, callID string) (Flow, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 12 {
		return Flow{}, false
	}
	payload, sum := raw[:len(raw)-12], raw[len(raw)-12:]
	if !hmac.Equal(sum, t.sum(payload, callID)) {
		return Flow{}, false
	}
	tr, remote, ok := strings.Cut(string(payload), "|")
	if !ok {
		return Flow{}, false
	}
	return Flow{Transport: tr, Remote: remote}, true
}
