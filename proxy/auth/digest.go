package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/icholy/digest"

	"github.com/sipproxy/sipproxy/internal/config"
)

// Defaults applied by NewDigest to zero DigestConfig fields.
const (
	DefaultNonceTTL  = 5 * time.Minute
	DefaultMaxNonces = 100_000
)

// Credentials are a user's digest secrets: the hex HA1 = H(user:realm:password)
// for each algorithm, "" when that algorithm is unavailable for the user.
type Credentials struct {
	MD5    string
	SHA256 string
}

// CredentialsFor derives a configured user's credentials for realm. A stored
// HA1 wins over the password; the password fills in whatever is missing. A
// user configured with only an MD5 HA1 therefore cannot use SHA-256: their
// SHA-256 answers fail like a wrong password (the proxy cannot compute a
// SHA-256 HA1 without the password).
func CredentialsFor(realm string, u config.User) Credentials {
	c := Credentials{MD5: strings.ToLower(u.HA1), SHA256: strings.ToLower(u.HA1SHA256)}
	if u.Password != "" {
		if c.MD5 == "" {
			c.MD5 = algMD5.hexHash(u.User, ":", realm, ":", u.Password)
		}
		if c.SHA256 == "" {
			c.SHA256 = algSHA256.hexHash(u.User, ":", realm, ":", u.Password)
		}
	}
	return c
}

// DigestConfig configures a Digest.
type DigestConfig struct {
	Realm string
	// Users maps user names (the digest username, case-sensitive) to their
	// credentials.
	Users map[string]Credentials
	// Secret keys the nonce MAC. Instances sharing it accept each other's
	// nonces. Empty means a random secret private to this Digest.
	Secret []byte
	// NonceTTL is how long a nonce stays fresh. Zero means DefaultNonceTTL.
	NonceTTL time.Duration
	// MaxNonces bounds the table of nonce counts kept against replays. Zero
	// means DefaultMaxNonces. When it is full of unexpired nonces, answers
	// to nonces not yet in it are Stale until entries expire.
	MaxNonces int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Algorithms lists the algorithms offered, in challenge order ("SHA-256",
	// "MD5"). Empty means both, SHA-256 first as RFC 8760 asks. Clients that
	// only take the first challenge and only speak MD5 (sipp, old phones)
	// need MD5 first. Answers with an algorithm not offered are Malformed.
	Algorithms []string
}

// Digest issues digest challenges and verifies the answers for one realm.
// It is safe for concurrent use.
type Digest struct {
	realm  string
	users  map[string]Credentials
	dummy  Credentials // answers for unknown users are checked against these
	secret []byte
	algs   []algorithm
	ttl    time.Duration
	now    func() time.Time
	seen   *replayGuard
}

// NewDigest returns a Digest for c. It copies c.Users.
func NewDigest(c DigestConfig) *Digest {
	d := &Digest{
		realm:  c.Realm,
		users:  make(map[string]Credentials, len(c.Users)),
		secret: c.Secret,
		ttl:    c.NonceTTL,
		now:    c.Now,
	}
	for _, name := range c.Algorithms {
		if a, ok := parseAlgorithm(name); ok && name != "" && !slices.Contains(d.algs, a) {
			d.algs = append(d.algs, a)
		}
	}
	if len(d.algs) == 0 {
		d.algs = []algorithm{algSHA256, algMD5}
	}
	for name, cred := range c.Users {
		d.users[name] = Credentials{MD5: strings.ToLower(cred.MD5), SHA256: strings.ToLower(cred.SHA256)}
	}
	if len(d.secret) == 0 {
		d.secret = make([]byte, 32)
		rand.Read(d.secret)
	} else {
		d.secret = append([]byte(nil), c.Secret...)
	}
	pw := rand.Text()
	d.dummy = Credentials{
		MD5:    algMD5.hexHash("", ":", c.Realm, ":", pw),
		SHA256: algSHA256.hexHash("", ":", c.Realm, ":", pw),
	}
	if d.ttl <= 0 {
		d.ttl = DefaultNonceTTL
	}
	if d.now == nil {
		d.now = time.Now
	}
	maxNonces := c.MaxNonces
	if maxNonces <= 0 {
		maxNonces = DefaultMaxNonces
	}
	d.seen = newReplayGuard(maxNonces, d.now)
	return d
}

// Challenge returns the values for WWW-Authenticate (401) or
// Proxy-Authenticate (407) headers, one per algorithm, SHA-256 first and MD5
// after as RFC 8760 asks, sharing one fresh nonce:
//
//	Digest realm="contoso.com", nonce="...", algorithm=SHA-256, qop="auth"
//
// stale adds stale=true, telling the client its credentials were right and
// only the nonce was old (Verify returned Stale).
func (d *Digest) Challenge(stale bool) []string { return d.ChallengeFor(stale, "") }

// ChallengeFor is Challenge with a nonce bound to bind: where the challenged
// request came from (its connection, or its source for UDP). VerifyFor with
// another binding finds the answer Stale.
func (d *Digest) ChallengeFor(stale bool, bind string) []string {
	nonce := d.newNonce(bind)
	out := make([]string, 0, 2)
	for _, a := range d.algs {
		var b strings.Builder
		b.WriteString(`Digest realm=`)
		writeQuoted(&b, d.realm)
		b.WriteString(`, nonce="`)
		b.WriteString(nonce) // base64url: nothing to escape
		b.WriteString(`", algorithm=`)
		b.WriteString(a.String())
		b.WriteString(`, qop="auth"`)
		if stale {
			b.WriteString(`, stale=true`)
		}
		out = append(out, b.String())
	}
	return out
}

// Status is the outcome of Verify.
type Status int

// Verify outcomes and what the pipeline does with them.
const (
	// Missing: no digest credentials for our realm (none at all, other
	// schemes, or only other realms'). Challenge.
	Missing Status = iota
	// OK: the user proved knowledge of the password.
	OK
	// Stale: right credentials, but the nonce has expired (or the replay
	// table is full). Challenge again with stale=true.
	Stale
	// Failed: wrong password, unknown user, an algorithm the user has no
	// HA1 for (SHA-256 for an MD5-only user), forged nonce or replayed nonce
	// count. All are indistinguishable to the client.
	Failed
	// Malformed: unparseable credentials for our realm, or missing or
	// unsupported parameters (no qop=auth, an algorithm we never offered,
	// no cnonce, a response of the wrong length). Answer 400.
	Malformed
)

// String returns "missing", "ok", "stale", "failed" or "malformed".
func (s Status) String() string {
	switch s {
	case Missing:
		return "missing"
	case OK:
		return "ok"
	case Stale:
		return "stale"
	case Failed:
		return "failed"
	case Malformed:
		return "malformed"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Result is the outcome of Verify. User and Algorithm ("MD5" or "SHA-256")
// are filled in as far as the credentials could be read, also when the
// status is not OK, for logging; only an OK result authenticates User.
type Result struct {
	Status    Status
	User      string
	Algorithm string
	// URI is the digest-uri the credentials were computed for; the caller
	// checks that it names the Request-URI (RFC 2617 3.2.2.5).
	URI string
}

// Identity returns the identity an OK result establishes, the user's address
// of record in domain (lower-cased), or the zero Identity for any other
// status.
func (r Result) Identity(domain string) Identity {
	if r.Status != OK || r.User == "" {
		return Identity{}
	}
	return Identity{Source: SourceDigest, AOR: r.User + "@" + strings.ToLower(domain)}
}

// Verify checks the credentials among headerValues (the values of all
// Authorization or all Proxy-Authorization headers of a request) for our
// realm, for a request with the given method. The first digest credentials
// whose realm is ours are used; those for other realms belong to other hops
// and are ignored. The response is checked per RFC 7616 with qop=auth:
// H(HA1:nonce:nc:cnonce:qop:H(method:uri)), with uri exactly as sent in the
// credentials (comparing it with the Request-URI is the caller's choice).
//
// A wrong password and an unknown user cost the same work and both give
// Failed, so answers do not reveal which users exist. Each nonce count may be
// used once and must increase: a repeated or lower nc is Failed.
func (d *Digest) Verify(headerValues []string, method string) Result {
	return d.VerifyFor(headerValues, method, "")
}

// VerifyFor is Verify for credentials that must answer a nonce bound to
// bind (see ChallengeFor): right credentials for a nonce issued elsewhere
// are Stale.
func (d *Digest) VerifyFor(headerValues []string, method, bind string) Result {
	cred, st := d.pick(headerValues)
	if st != OK {
		return Result{Status: st}
	}
	res := Result{User: cred.Username, URI: cred.URI}
	alg, ok := parseAlgorithm(cred.Algorithm)
	if !ok || !slices.Contains(d.algs, alg) {
		res.Status = Malformed
		return res
	}
	res.Algorithm = alg.String()
	given, ok := checkCredentials(cred, alg)
	if !ok {
		res.Status = Malformed
		return res
	}
	nonce, issued, bound, ok := d.openNonce(cred.Nonce, bind)
	if !ok {
		res.Status = Failed
		return res
	}

	ha1 := alg.ha1(d.users[cred.Username])
	known := ha1 != ""
	if !known {
		ha1 = alg.ha1(d.dummy)
	}
	want := alg.response(ha1, cred, method)
	if subtle.ConstantTimeCompare(want, given) != 1 || !known {
		res.Status = Failed
		return res
	}

	now := d.now()
	expires := issued.Add(d.ttl)
	if !now.Before(expires) || now.Before(issued.Add(-d.ttl)) || !bound {
		// Old, minted by an instance whose clock is far ahead of ours, or
		// issued to another connection: right credentials, wrong nonce.
		res.Status = Stale
		return res
	}
	res.Status = d.seen.advance(nonce, cred.Nc, expires)
	return res
}

// ForUs reports whether a credentials header value answers our realm's
// challenge. Such credentials end at this proxy (RFC 3261 22.3); those for
// other realms belong to the hops behind us.
func (d *Digest) ForUs(value string) bool {
	v := strings.TrimSpace(value)
	scheme, _, _ := strings.Cut(v, " ")
	scheme, _, _ = strings.Cut(scheme, "\t")
	if !strings.EqualFold(scheme, "Digest") {
		return false
	}
	c, err := digest.ParseCredentials(v)
	return err == nil && c.Realm == d.realm
}

// pick returns the first parseable digest credentials for our realm.
// Credentials in other schemes are skipped; a digest header that cannot be
// parsed (so its realm is unknown) makes the answer Malformed unless one for
// our realm is found.
func (d *Digest) pick(values []string) (*digest.Credentials, Status) {
	malformed := false
	for _, v := range values {
		v = strings.TrimSpace(v)
		scheme, _, _ := strings.Cut(v, " ")
		scheme, _, _ = strings.Cut(scheme, "\t")
		if !strings.EqualFold(scheme, "Digest") {
			continue
		}
		c, err := digest.ParseCredentials(v)
		if err != nil {
			malformed = true
			continue
		}
		if c.Realm == d.realm {
			return c, OK
		}
	}
	if malformed {
		return nil, Malformed
	}
	return nil, Missing
}

// checkCredentials checks that c carries everything a qop=auth answer needs
// and returns the decoded response.
func checkCredentials(c *digest.Credentials, alg algorithm) ([]byte, bool) {
	if c.Username == "" || c.Nonce == "" || c.URI == "" || c.Cnonce == "" ||
		!strings.EqualFold(c.QOP, "auth") || c.Nc <= 0 || c.Userhash {
		return nil, false
	}
	if len(c.Response) != 2*alg.size() {
		return nil, false
	}
	given, err := hex.DecodeString(c.Response)
	if err != nil {
		return nil, false
	}
	return given, true
}

// algorithm is a digest hash algorithm we offer.
type algorithm int

const (
	algMD5 algorithm = iota
	algSHA256
)

// parseAlgorithm reads the algorithm parameter; absent means MD5 (RFC 7616
// 3.4.6). Lower-case tokens are accepted: some clients echo them.
func parseAlgorithm(s string) (algorithm, bool) {
	switch {
	case s == "", strings.EqualFold(s, "MD5"):
		return algMD5, true
	case strings.EqualFold(s, "SHA-256"):
		return algSHA256, true
	}
	return 0, false
}

func (a algorithm) String() string {
	if a == algSHA256 {
		return "SHA-256"
	}
	return "MD5"
}

func (a algorithm) newHash() hash.Hash {
	if a == algSHA256 {
		return sha256.New()
	}
	return md5.New()
}

func (a algorithm) size() int {
	if a == algSHA256 {
		return sha256.Size
	}
	return md5.Size
}

func (a algorithm) ha1(c Credentials) string {
	if a == algSHA256 {
		return c.SHA256
	}
	return c.MD5
}

// hexHash returns the lower-case hex hash of the concatenated parts.
func (a algorithm) hexHash(parts ...string) string {
	h := a.newHash()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// response computes the expected qop=auth response (raw bytes):
// H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
func (a algorithm) response(ha1 string, c *digest.Credentials, method string) []byte {
	var sum [sha256.Size]byte
	var ha2 [2 * sha256.Size]byte
	h := a.newHash()
	writeJoined(h, method, c.URI)
	hex.Encode(ha2[:], h.Sum(sum[:0]))
	h.Reset()
	var nc [8]byte
	writeJoined(h, ha1, c.Nonce, string(hex8(nc[:], uint32(c.Nc))), c.Cnonce, c.QOP, string(ha2[:2*a.size()]))
	return h.Sum(nil)
}

// writeJoined writes parts separated by colons.
func writeJoined(h hash.Hash, parts ...string) {
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
}

// hex8 formats v as the 8 lower-case hex digits of a nonce count into b.
func hex8(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return b[:8]
}

// writeQuoted writes s as a SIP quoted-string (RFC 3261 25.1).
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}
