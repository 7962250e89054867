package auth

import (
	"container/heap"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"sync"
	"time"
)

// A nonce is base64url(timestamp || random || MAC || bind MAC): the issue
// time in Unix nanoseconds (8 bytes, big-endian), 16 random bytes, the first
// 16 bytes of HMAC-SHA256(secret, timestamp || random || realm), and the
// first 8 bytes of HMAC-SHA256(secret, "bind" || timestamp || random ||
// binding). It needs no server state to check and is bound to the realm
// and, through the binding, to where it was issued (the connection or
// source of the challenged request): an answer to it that arrives anywhere
// else is Stale, so credentials seen on one hop cannot be replayed on
// another (over TLS, say, to earn skip-pin).
const (
	nonceTimeLen = 8
	nonceRandLen = 16
	nonceMACLen  = 16
	nonceBindLen = 8
	nonceLen     = nonceTimeLen + nonceRandLen + nonceMACLen + nonceBindLen
	nonceBodyLen = nonceTimeLen + nonceRandLen
)

var nonceEncoding = base64.RawURLEncoding.Strict()

// nonceBytes is a decoded nonce; it keys the replay table.
type nonceBytes [nonceLen]byte

// newNonce mints a nonce issued now, bound to bind.
func (d *Digest) newNonce(bind string) string {
	var n nonceBytes
	binary.BigEndian.PutUint64(n[:nonceTimeLen], uint64(d.now().UnixNano()))
	rand.Read(n[nonceTimeLen:nonceBodyLen])
	d.nonceMAC(n[nonceBodyLen:nonceBodyLen+nonceMACLen], n[:nonceBodyLen])
	d.bindMAC(n[nonceBodyLen+nonceMACLen:], n[:nonceBodyLen], bind)
	return nonceEncoding.EncodeToString(n[:])
}

// bindMAC writes the truncated MAC binding body to bind into dst.
func (d *Digest) bindMAC(dst, body []byte, bind string) {
	m := hmac.New(sha256.New, d.secret)
	m.Write([]byte("bind"))
	m.Write(body)
	m.Write([]byte(bind))
	var sum [sha256.Size]byte
	copy(dst, m.Sum(sum[:0]))
}

// openNonce decodes s and checks its MAC. It reports false for anything we
// did not mint for this realm under this secret, and bound whether it was
// minted for bind.
func (d *Digest) openNonce(s, bind string) (n nonceBytes, issued time.Time, bound, ok bool) {
	if len(s) != nonceEncoding.EncodedLen(nonceLen) {
		return n, issued, false, false
	}
	if m, err := nonceEncoding.Decode(n[:], []byte(s)); err != nil || m != nonceLen {
		return n, issued, false, false
	}
	var mac [nonceMACLen]byte
	d.nonceMAC(mac[:], n[:nonceBodyLen])
	if !hmac.Equal(mac[:], n[nonceBodyLen:nonceBodyLen+nonceMACLen]) {
		return n, issued, false, false
	}
	var bm [nonceBindLen]byte
	d.bindMAC(bm[:], n[:nonceBodyLen], bind)
	bound = hmac.Equal(bm[:], n[nonceBodyLen+nonceMACLen:])
	issued = time.Unix(0, int64(binary.BigEndian.Uint64(n[:nonceTimeLen])))
	return n, issued, bound, true
}

// nonceMAC writes the truncated MAC of body (timestamp || random) into dst.
func (d *Digest) nonceMAC(dst, body []byte) {
	m := hmac.New(sha256.New, d.secret)
	m.Write(body)
	m.Write([]byte(d.realm))
	var sum [sha256.Size]byte
	copy(dst, m.Sum(sum[:0]))
}

// replayGuard remembers the highest nonce count accepted per nonce until the
// nonce expires, in a table of at most limit entries.
type replayGuard struct {
	mu     sync.Mutex
	limit  int
	now    func() time.Time
	nc     map[nonceBytes]int
	expiry expiryQueue
}

func newReplayGuard(limit int, now func() time.Time) *replayGuard {
	return &replayGuard{limit: limit, now: now, nc: make(map[nonceBytes]int)}
}

// advance records nonce count nc for nonce n, which expires at expires. It
// returns OK when nc is higher than any count accepted for n before, Failed
// when it is not (a replay), and Stale when n cannot be tracked: it has
// expired or the table is full.
//
// The clock is read under the lock, so that expiring entries and deciding
// that a nonce is fresh see the same time: a nonce is never forgotten while
// it can still be accepted (short of the wall clock stepping back).
func (g *replayGuard) advance(n nonceBytes, nc int, expires time.Time) Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for len(g.expiry) > 0 && !g.expiry[0].expires.After(now) {
		e := heap.Pop(&g.expiry).(expiring)
		delete(g.nc, e.nonce)
	}
	if !expires.After(now) {
		return Stale
	}
	if last, ok := g.nc[n]; ok {
		if nc <= last {
			return Failed
		}
		g.nc[n] = nc
		return OK
	}
	if len(g.nc) >= g.limit {
		return Stale
	}
	g.nc[n] = nc
	heap.Push(&g.expiry, expiring{expires: expires, nonce: n})
	return OK
}

// size returns the number of nonces tracked.
func (g *replayGuard) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.nc)
}

// expiring is a tracked nonce and when it expires.
type expiring struct {
	expires time.Time
	nonce   nonceBytes
}

// expiryQueue is a min-heap of tracked nonces by expiry (container/heap).
type expiryQueue []expiring

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].expires.Before(q[j].expires) }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(expiring)) }
func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
