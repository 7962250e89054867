package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/sipproxy/sipproxy/internal/config"
)

const testRealm = "contoso.com"

// clock is a settable clock for DigestConfig.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func hexOf(sum []byte) string { return hex.EncodeToString(sum) }

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hexOf(sum[:])
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hexOf(sum[:])
}

// testUsers: alice has a password (both algorithms), bob only an MD5 HA1,
// carol only a SHA-256 HA1.
func testUsers() []config.User {
	return []config.User{
		{User: "alice", Password: "wonderland"},
		{User: "bob", HA1: md5Hex("bob:" + testRealm + ":builder")},
		{User: "carol", HA1SHA256: sha256Hex("carol:" + testRealm + ":singer")},
	}
}

func newTestDigest(clk *clock, secret string) *Digest {
	users := make(map[string]Credentials)
	for _, u := range testUsers() {
		users[u.User] = CredentialsFor(testRealm, u)
	}
	return NewDigest(DigestConfig{
		Realm:    testRealm,
		Users:    users,
		Secret:   []byte(secret),
		NonceTTL: time.Minute,
		Now:      clk.Now,
	})
}

// login is what a client answers a challenge with.
type login struct {
	user, pass string
	method     string // default REGISTER
	uri        string // default sip:contoso.com
	nc         int    // default 1
	algorithm  string // the challenge to answer: "SHA-256" or "MD5"
	// keepCase answers with the challenge's algorithm token as sent instead
	// of upper-casing it first like sipgo does.
	keepCase bool
	// editChallenge changes the parsed challenge before answering.
	editChallenge func(*digest.Challenge)
}

// answer produces the Authorization value a sipgo client sends for chal:
// digest.ParseChallenge, upper-cased algorithm, digest.Digest, String.
func answer(t testing.TB, chal []string, l login) string {
	t.Helper()
	if l.method == "" {
		l.method = "REGISTER"
	}
	if l.uri == "" {
		l.uri = "sip:" + testRealm
	}
	var c *digest.Challenge
	for _, v := range chal {
		p, err := digest.ParseChallenge(v)
		if err != nil {
			t.Fatalf("ParseChallenge(%q): %v", v, err)
		}
		if p.Algorithm == l.algorithm {
			c = p
		}
	}
	if c == nil {
		t.Fatalf("no %s challenge in %q", l.algorithm, chal)
	}
	if l.editChallenge != nil {
		l.editChallenge(c)
	}
	if !l.keepCase {
		c.Algorithm = strings.ToUpper(c.Algorithm)
	}
	cred, err := digest.Digest(c, digest.Options{
		Method:   l.method,
		URI:      l.uri,
		Username: l.user,
		Password: l.pass,
		Count:    l.nc,
	})
	if err != nil {
		t.Fatalf("digest.Digest: %v", err)
	}
	return cred.String()
}

func TestCredentialsFor(t *testing.T) {
	tests := []struct {
		name string
		u    config.User
		want Credentials
	}{
		{"password gives both",
			config.User{User: "alice", Password: "wonderland"},
			Credentials{MD5: md5Hex("alice:contoso.com:wonderland"), SHA256: sha256Hex("alice:contoso.com:wonderland")}},
		{"md5 ha1 only",
			config.User{User: "bob", HA1: "0123456789ABCDEF0123456789abcdef"},
			Credentials{MD5: "0123456789abcdef0123456789abcdef"}},
		{"sha256 ha1 only",
			config.User{User: "carol", HA1SHA256: sha256Hex("x")},
			Credentials{SHA256: sha256Hex("x")}},
		{"ha1 wins over password, password fills sha-256",
			config.User{User: "dave", HA1: md5Hex("stored"), Password: "pw"},
			Credentials{MD5: md5Hex("stored"), SHA256: sha256Hex("dave:contoso.com:pw")}},
		{"nothing", config.User{User: "eve"}, Credentials{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CredentialsFor(testRealm, tt.u); got != tt.want {
				t.Errorf("CredentialsFor = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestResponseRFC7616 checks the response computation against the worked
// examples of RFC 7616 section 3.9.1, independently of any client library.
func TestResponseRFC7616(t *testing.T) {
	const (
		user  = "Mufasa"
		realm = "http-auth@example.org"
		pass  = "Circle of Life"
	)
	cred := &digest.Credentials{
		Nonce:  "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
		Cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
		Nc:     1,
		QOP:    "auth",
		URI:    "/dir/index.html",
	}
	tests := []struct {
		alg  algorithm
		want string
	}{
		{algMD5, "8ca523f5e9506fed4657c9700eebdbec"},
		{algSHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			ha1 := tt.alg.ha1(CredentialsFor(realm, config.User{User: user, Password: pass}))
			if got := hexOf(tt.alg.response(ha1, cred, "GET")); got != tt.want {
				t.Errorf("response = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestChallenge(t *testing.T) {
	clk := newClock()
	d := newTestDigest(clk, "s3cret")
	tests := []struct {
		stale bool
	}{{false}, {true}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("stale=%v", tt.stale), func(t *testing.T) {
			got := d.Challenge(tt.stale)
			if len(got) != 2 {
				t.Fatalf("Challenge returned %d values, want 2: %q", len(got), got)
			}
			var nonces []string
			for i, alg := range []string{"SHA-256", "MD5"} {
				v := got[i]
				const prefix = `Digest realm="contoso.com", nonce="`
				if !strings.HasPrefix(v, prefix) {
					t.Errorf("value %d = %q, want prefix %q", i, v, prefix)
				}
				suffix := `", algorithm=` + alg + `, qop="auth"`
				if tt.stale {
					suffix += ", stale=true"
				}
				if !strings.HasSuffix(v, suffix) {
					t.Errorf("value %d = %q, want suffix %q", i, v, suffix)
				}
				c, err := digest.ParseChallenge(v)
				if err != nil {
					t.Fatalf("ParseChallenge(%q): %v", v, err)
				}
				if c.Realm != testRealm || c.Algorithm != alg || c.Stale != tt.stale ||
					len(c.QOP) != 1 || c.QOP[0] != "auth" || !digest.CanDigest(c) {
					t.Errorf("parsed challenge %d = %+v", i, c)
				}
				if _, _, _, ok := d.openNonce(c.Nonce, ""); !ok {
					t.Errorf("nonce %q does not open", c.Nonce)
				}
				nonces = append(nonces, c.Nonce)
			}
			if nonces[0] != nonces[1] {
				t.Errorf("SHA-256 and MD5 challenges carry different nonces %q, %q", nonces[0], nonces[1])
			}
		})
	}
	a, b := d.Challenge(false), d.Challenge(false)
	if a[0] == b[0] {
		t.Errorf("two challenges share a nonce: %q", a[0])
	}
}

// TestChallengeQuotesRealm checks that a realm with a comma and a quote is
// escaped in the challenge and read back by a client, and that the answer,
// whose realm is quoted by the client library, is accepted.
func TestChallengeQuotesRealm(t *testing.T) {
	const realm = `Contoso, "Inc" \ SIP`
	clk := newClock()
	d := NewDigest(DigestConfig{
		Realm: realm,
		Users: map[string]Credentials{"alice": CredentialsFor(realm, config.User{User: "alice", Password: "pw"})},
		Now:   clk.Now,
	})
	chal := d.Challenge(false)
	c, err := digest.ParseChallenge(chal[0])
	if err != nil {
		t.Fatalf("ParseChallenge(%q): %v", chal[0], err)
	}
	if c.Realm != realm {
		t.Fatalf("realm read back as %q, want %q", c.Realm, realm)
	}
	for _, alg := range []string{"SHA-256", "MD5"} {
		// A fresh challenge each: both algorithms share the nonce.
		h := answer(t, d.Challenge(false), login{user: "alice", pass: "pw", algorithm: alg})
		want := Result{Status: OK, User: "alice", Algorithm: alg, URI: "sip:contoso.com"}
		if got := d.Verify([]string{h}, "REGISTER"); got != want {
			t.Errorf("%s: Verify(%q) = %+v, want %+v", alg, h, got, want)
		}
	}
}

func TestVerify(t *testing.T) {
	const foreignRealm = "fabrikam.com"
	// Each case gets its own Digest and clock; headers builds the header
	// values to verify and may first advance the clock or verify other
	// requests.
	type env struct {
		d   *Digest
		clk *clock
	}
	ok := func(user, alg string) Result { return Result{Status: OK, User: user, Algorithm: alg} }
	failed := func(user, alg string) Result { return Result{Status: Failed, User: user, Algorithm: alg} }
	malformed := func(user, alg string) Result { return Result{Status: Malformed, User: user, Algorithm: alg} }
	// one answers a fresh challenge with l.
	one := func(l login) func(testing.TB, env) []string {
		return func(t testing.TB, e env) []string {
			return []string{answer(t, e.d.Challenge(false), l)}
		}
	}
	// edited answers a fresh challenge with l and rewrites the result.
	edited := func(l login, old, new string) func(testing.TB, env) []string {
		return func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), l)
			if !strings.Contains(h, old) {
				t.Fatalf("%q does not contain %q", h, old)
			}
			return []string{strings.Replace(h, old, new, 1)}
		}
	}
	alice := func(alg string) login { return login{user: "alice", pass: "wonderland", algorithm: alg} }

	tests := []struct {
		name    string
		headers func(testing.TB, env) []string
		method  string // default REGISTER
		want    Result
	}{
		{"md5 password user", one(alice("MD5")), "", ok("alice", "MD5")},
		{"sha-256 password user", one(alice("SHA-256")), "", ok("alice", "SHA-256")},
		{"md5 ha1 user", one(login{user: "bob", pass: "builder", algorithm: "MD5"}), "", ok("bob", "MD5")},
		{"sha-256 ha1 user", one(login{user: "carol", pass: "singer", algorithm: "SHA-256"}), "", ok("carol", "SHA-256")},
		{"md5-only user answers sha-256", one(login{user: "bob", pass: "builder", algorithm: "SHA-256"}), "", failed("bob", "SHA-256")},
		{"sha-256-only user answers md5", one(login{user: "carol", pass: "singer", algorithm: "MD5"}), "", failed("carol", "MD5")},
		{"wrong password md5", one(login{user: "alice", pass: "nope", algorithm: "MD5"}), "", failed("alice", "MD5")},
		{"wrong password sha-256", one(login{user: "alice", pass: "nope", algorithm: "SHA-256"}), "", failed("alice", "SHA-256")},
		{"unknown user md5", one(login{user: "mallory", pass: "nope", algorithm: "MD5"}), "", failed("mallory", "MD5")},
		{"unknown user sha-256", one(login{user: "mallory", pass: "nope", algorithm: "SHA-256"}), "", failed("mallory", "SHA-256")},
		{"user name is case-sensitive", one(login{user: "Alice", pass: "wonderland", algorithm: "MD5"}), "", failed("Alice", "MD5")},
		{"invite method", one(login{user: "alice", pass: "wonderland", algorithm: "SHA-256", method: "INVITE",
			uri: "sip:bob@contoso.com;transport=tls"}), "INVITE", ok("alice", "SHA-256")},
		{"answer for another method", one(alice("MD5")), "INVITE", failed("alice", "MD5")},
		{"uri with commas and quotes as sent", one(login{user: "alice", pass: "wonderland", algorithm: "SHA-256",
			uri: `sip:bob@contoso.com;x="a, b";y=c,d`}), "", ok("alice", "SHA-256")},
		{"lowercase algorithm sha-256", one(login{user: "alice", pass: "wonderland", algorithm: "SHA-256", keepCase: true,
			editChallenge: func(c *digest.Challenge) { c.Algorithm = "sha-256" }}), "", ok("alice", "SHA-256")},
		{"lowercase algorithm md5", one(login{user: "alice", pass: "wonderland", algorithm: "MD5", keepCase: true,
			editChallenge: func(c *digest.Challenge) { c.Algorithm = "md5" }}), "", ok("alice", "MD5")},
		{"absent algorithm means md5", one(login{user: "alice", pass: "wonderland", algorithm: "MD5",
			editChallenge: func(c *digest.Challenge) { c.Algorithm = "" }}), "", ok("alice", "MD5")},
		{"uppercase response hex", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), alice("MD5"))
			i := strings.Index(h, `response="`) + len(`response="`)
			return []string{h[:i] + strings.ToUpper(h[i:])}
		}, "", ok("alice", "MD5")},

		{"stale nonce", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), alice("SHA-256"))
			e.clk.Advance(time.Minute)
			return []string{h}
		}, "", Result{Status: Stale, User: "alice", Algorithm: "SHA-256"}},
		{"nonce just fresh", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), alice("SHA-256"))
			e.clk.Advance(time.Minute - time.Nanosecond)
			return []string{h}
		}, "", ok("alice", "SHA-256")},
		{"stale nonce wrong password", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), login{user: "alice", pass: "nope", algorithm: "MD5"})
			e.clk.Advance(2 * time.Minute)
			return []string{h}
		}, "", failed("alice", "MD5")},
		{"stale nonce unknown user", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), login{user: "mallory", pass: "nope", algorithm: "MD5"})
			e.clk.Advance(2 * time.Minute)
			return []string{h}
		}, "", failed("mallory", "MD5")},
		{"nonce from the future", func(t testing.TB, e env) []string {
			e.clk.Advance(time.Hour)
			h := answer(t, e.d.Challenge(false), alice("MD5"))
			e.clk.Advance(-time.Hour)
			return []string{h}
		}, "", Result{Status: Stale, User: "alice", Algorithm: "MD5"}},

		{"nonce under another secret", func(t testing.TB, e env) []string {
			other := newTestDigest(e.clk, "another secret")
			return []string{answer(t, other.Challenge(false), alice("MD5"))}
		}, "", failed("alice", "MD5")},
		{"nonce for another realm", func(t testing.TB, e env) []string {
			other := NewDigest(DigestConfig{Realm: foreignRealm, Secret: []byte("s3cret"), Now: e.clk.Now})
			chal := other.Challenge(false)
			return []string{answer(t, chal, login{user: "alice", pass: "wonderland", algorithm: "MD5",
				editChallenge: func(c *digest.Challenge) { c.Realm = testRealm }})}
		}, "", failed("alice", "MD5")},
		{"tampered nonce", func(t testing.TB, e env) []string {
			chal := e.d.Challenge(false)
			return []string{answer(t, chal, login{user: "alice", pass: "wonderland", algorithm: "MD5",
				editChallenge: func(c *digest.Challenge) {
					b := []byte(c.Nonce)
					b[3] ^= 1 // still base64url, different timestamp
					c.Nonce = string(b)
				}})}
		}, "", failed("alice", "MD5")},
		{"made-up nonce", one(login{user: "alice", pass: "wonderland", algorithm: "MD5",
			editChallenge: func(c *digest.Challenge) { c.Nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093" }}),
			"", failed("alice", "MD5")},

		{"replayed nc", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), alice("MD5"))
			if r := e.d.Verify([]string{h}, "REGISTER"); r.Status != OK {
				t.Fatalf("first use: %+v", r)
			}
			return []string{h}
		}, "", failed("alice", "MD5")},
		{"lower nc", func(t testing.TB, e env) []string {
			chal := e.d.Challenge(false)
			l := alice("SHA-256")
			l.nc = 5
			if r := e.d.Verify([]string{answer(t, chal, l)}, "REGISTER"); r.Status != OK {
				t.Fatalf("nc=5: %+v", r)
			}
			l.nc = 4
			return []string{answer(t, chal, l)}
		}, "", failed("alice", "SHA-256")},
		{"higher nc on a used nonce", func(t testing.TB, e env) []string {
			chal := e.d.Challenge(false)
			l := alice("SHA-256")
			if r := e.d.Verify([]string{answer(t, chal, l)}, "REGISTER"); r.Status != OK {
				t.Fatalf("nc=1: %+v", r)
			}
			l.nc = 2
			return []string{answer(t, chal, l)}
		}, "", ok("alice", "SHA-256")},
		{"failed attempt does not burn the nc", func(t testing.TB, e env) []string {
			chal := e.d.Challenge(false)
			bad := login{user: "alice", pass: "nope", algorithm: "MD5", nc: 7}
			if r := e.d.Verify([]string{answer(t, chal, bad)}, "REGISTER"); r.Status != Failed {
				t.Fatalf("wrong password: %+v", r)
			}
			good := alice("MD5")
			good.nc = 7
			return []string{answer(t, chal, good)}
		}, "", ok("alice", "MD5")},

		{"no headers", func(testing.TB, env) []string { return nil }, "", Result{Status: Missing}},
		{"other scheme only", func(testing.TB, env) []string {
			return []string{"Basic YWxpY2U6d29uZGVybGFuZA=="}
		}, "", Result{Status: Missing}},
		{"other realm only", func(t testing.TB, e env) []string {
			other := NewDigest(DigestConfig{Realm: foreignRealm, Now: e.clk.Now})
			return []string{answer(t, other.Challenge(false), alice("MD5"))}
		}, "", Result{Status: Missing}},
		{"other realm ignored, ours used", func(t testing.TB, e env) []string {
			other := NewDigest(DigestConfig{Realm: foreignRealm, Now: e.clk.Now})
			return []string{
				"Basic YWxpY2U6d29uZGVybGFuZA==",
				answer(t, other.Challenge(false), login{user: "mallory", pass: "x", algorithm: "MD5"}),
				answer(t, e.d.Challenge(false), alice("SHA-256")),
			}
		}, "", ok("alice", "SHA-256")},
		{"first header of our realm wins", func(t testing.TB, e env) []string {
			chal := e.d.Challenge(false)
			return []string{
				answer(t, chal, login{user: "alice", pass: "nope", algorithm: "MD5"}),
				answer(t, chal, login{user: "alice", pass: "wonderland", algorithm: "MD5", nc: 2}),
			}
		}, "", failed("alice", "MD5")},
		{"unparseable header beside ours", func(t testing.TB, e env) []string {
			return []string{`Digest username="x`, answer(t, e.d.Challenge(false), alice("MD5"))}
		}, "", ok("alice", "MD5")},

		{"unterminated quote", func(testing.TB, env) []string { return []string{`Digest username="alice, realm="contoso.com`} }, "", Result{Status: Malformed}},
		{"scheme only", func(testing.TB, env) []string { return []string{"Digest"} }, "", Result{Status: Malformed}},
		{"garbage parameter", func(testing.TB, env) []string { return []string{`Digest realm="contoso.com" username="alice"`} }, "", Result{Status: Malformed}},
		{"bad nc", edited(alice("MD5"), "nc=00000001", "nc=0000000g"), "", Result{Status: Malformed}},
		{"zero nc", edited(alice("MD5"), "nc=00000001", "nc=00000000"), "", malformed("alice", "MD5")},
		{"negative nc", edited(alice("MD5"), "nc=00000001", "nc=-1"), "", malformed("alice", "MD5")},
		{"no qop", edited(alice("MD5"), "qop=auth, ", ""), "", malformed("alice", "MD5")},
		{"qop auth-int", edited(alice("MD5"), "qop=auth", "qop=auth-int"), "", malformed("alice", "MD5")},
		{"no cnonce", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), alice("MD5"))
			i := strings.Index(h, `cnonce="`)
			j := strings.Index(h[i:], `", `) + i + 3
			return []string{h[:i] + h[j:]}
		}, "", malformed("alice", "MD5")},
		{"unsupported algorithm", edited(alice("MD5"), "algorithm=MD5", "algorithm=MD5-sess"), "", Result{Status: Malformed, User: "alice"}},
		{"md5 response for sha-256", edited(alice("MD5"), "algorithm=MD5", "algorithm=SHA-256"), "", malformed("alice", "SHA-256")},
		{"non-hex response", func(t testing.TB, e env) []string {
			h := answer(t, e.d.Challenge(false), alice("MD5"))
			i := strings.Index(h, `response="`) + len(`response="`)
			return []string{h[:i] + "zz" + h[i+2:]}
		}, "", malformed("alice", "MD5")},
		{"userhash", edited(alice("MD5"), "algorithm=MD5", "algorithm=MD5, userhash=true"), "", malformed("alice", "MD5")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			e := env{d: newTestDigest(clk, "s3cret"), clk: clk}
			headers := tt.headers(t, e)
			method := tt.method
			if method == "" {
				method = "REGISTER"
			}
			got := e.d.Verify(headers, method)
			if got.Status == OK && got.URI == "" {
				t.Errorf("Verify(%q, %s): digest-uri %q not reported", headers, method, got.URI)
			}
			got.URI = "" // reported whatever the status; the table pins the rest
			if got != tt.want {
				t.Errorf("Verify(%q, %s) = %+v, want %+v", headers, method, got, tt.want)
			}
		})
	}
}

// TestVerifyUnknownUserLooksLikeWrongPassword checks that the answer to a
// user that does not exist is the same as to a wrong password, apart from
// the echoed user name, for both algorithms and with fresh and stale nonces.
func TestVerifyUnknownUserLooksLikeWrongPassword(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		for _, age := range []time.Duration{0, 2 * time.Minute} {
			t.Run(fmt.Sprintf("%s/age=%v", alg, age), func(t *testing.T) {
				clk := newClock()
				d := newTestDigest(clk, "s3cret")
				chal := d.Challenge(false)
				wrong := answer(t, chal, login{user: "alice", pass: "guess", algorithm: alg})
				unknown := answer(t, chal, login{user: "nobody", pass: "guess", algorithm: alg})
				clk.Advance(age)
				w := d.Verify([]string{wrong}, "REGISTER")
				u := d.Verify([]string{unknown}, "REGISTER")
				if w.Status != Failed {
					t.Errorf("wrong password: %+v, want Failed", w)
				}
				w.User, u.User = "", ""
				if u != w {
					t.Errorf("unknown user %+v differs from wrong password %+v", u, w)
				}
			})
		}
	}
}

// TestVerifyConcurrentReplay sends the same answer from many goroutines:
// exactly one may succeed.
func TestVerifyConcurrentReplay(t *testing.T) {
	clk := newClock()
	d := newTestDigest(clk, "s3cret")
	h := []string{answer(t, d.Challenge(false), login{user: "alice", pass: "wonderland", algorithm: "SHA-256"})}
	const n = 32
	results := make(chan Status, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { results <- d.Verify(h, "REGISTER").Status })
	}
	wg.Wait()
	close(results)
	counts := map[Status]int{}
	for s := range results {
		counts[s]++
	}
	if counts[OK] != 1 || counts[Failed] != n-1 {
		t.Errorf("statuses %v, want 1 ok and %d failed", counts, n-1)
	}
}

// TestVerifyReplayTable checks the bound on the replay table: when full of
// live nonces, a new nonce is Stale while tracked ones keep working, and
// expired nonces make room.
func TestVerifyReplayTable(t *testing.T) {
	clk := newClock()
	users := map[string]Credentials{"alice": CredentialsFor(testRealm, config.User{User: "alice", Password: "pw"})}
	d := NewDigest(DigestConfig{Realm: testRealm, Users: users, NonceTTL: time.Minute, MaxNonces: 2, Now: clk.Now})
	alice := login{user: "alice", pass: "pw", algorithm: "MD5"}
	first, second := d.Challenge(false), d.Challenge(false)
	clk.Advance(30 * time.Second)
	third := d.Challenge(false)

	steps := []struct {
		name    string
		advance time.Duration
		chal    []string
		nc      int
		want    Status
		size    int
	}{
		{"first nonce", 0, first, 1, OK, 1},
		{"second nonce", 0, second, 1, OK, 2},
		{"table full", 0, third, 1, Stale, 2},
		{"tracked nonce still works", 0, first, 2, OK, 2},
		{"tracked nonce still checked", 0, first, 2, Failed, 2},
		{"first two expired, third fits", 30 * time.Second, third, 1, OK, 1},
		{"third replay", 0, third, 1, Failed, 1},
		{"third expired", 30 * time.Second, third, 2, Stale, 1},
		{"fresh nonce after expiry", 0, nil, 1, OK, 1},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		chal := s.chal
		if chal == nil {
			chal = d.Challenge(false)
		}
		l := alice
		l.nc = s.nc
		got := d.Verify([]string{answer(t, chal, l)}, "REGISTER")
		if got.Status != s.want {
			t.Errorf("%s: status %v, want %v", s.name, got.Status, s.want)
		}
		if n := d.seen.size(); n != s.size {
			t.Errorf("%s: %d nonces tracked, want %d", s.name, n, s.size)
		}
	}
}

func TestNewDigestDefaults(t *testing.T) {
	users := map[string]Credentials{"alice": {MD5: strings.ToUpper(md5Hex("alice:contoso.com:pw"))}}
	d := NewDigest(DigestConfig{Realm: testRealm, Users: users})
	users["alice"] = Credentials{} // NewDigest copied the map
	if d.ttl != DefaultNonceTTL || d.seen.limit != DefaultMaxNonces || len(d.secret) == 0 || d.now == nil {
		t.Errorf("defaults not applied: ttl=%v limit=%d secret=%d bytes", d.ttl, d.seen.limit, len(d.secret))
	}
	h := answer(t, d.Challenge(false), login{user: "alice", pass: "pw", algorithm: "MD5"})
	if got := d.Verify([]string{h}, "REGISTER"); got.Status != OK {
		t.Errorf("Verify with upper-case stored HA1 = %+v, want OK", got)
	}
	// Two Digests with generated secrets do not accept each other's nonces.
	other := NewDigest(DigestConfig{Realm: testRealm, Users: map[string]Credentials{"alice": users["alice"]}})
	if _, _, _, ok := other.openNonce(d.newNonce(""), ""); ok {
		t.Error("generated secrets are not distinct")
	}
}

func TestStatusString(t *testing.T) {
	tests := []struct {
		s    Status
		want string
	}{
		{Missing, "missing"}, {OK, "ok"}, {Stale, "stale"}, {Failed, "failed"}, {Malformed, "malformed"}, {Status(7), "Status(7)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Status(%d).String() = %q, want %q", int(tt.s), got, tt.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	clk := newClock()
	d := newTestDigest(clk, "fuzz")
	chal := d.Challenge(false)
	f.Add(answer(f, chal, login{user: "alice", pass: "wonderland", algorithm: "MD5"}))
	f.Add(answer(f, chal, login{user: "alice", pass: "wonderland", algorithm: "SHA-256", nc: 2}))
	f.Add(answer(f, chal, login{user: "mallory", pass: "x", algorithm: "SHA-256", uri: `sip:a@b;x="1,2"`}))
	f.Add(`Digest username="alice", realm="contoso.com", nonce="x", uri="sip:contoso.com", response="", qop=auth, nc=00000001, cnonce="c"`)
	f.Add(`Digest username="a\"b", realm="contoso.com"`)
	f.Add(`Digest realm="contoso.com", nc=ffffffff`)
	f.Add(`Digest `)
	f.Add(`Basic abc`)
	f.Add("Digest\trealm=\"contoso.com\"")
	f.Fuzz(func(t *testing.T, h string) {
		r := d.Verify([]string{h}, "REGISTER")
		if r.Status < Missing || r.Status > Malformed {
			t.Fatalf("Verify(%q) status %d out of range", h, int(r.Status))
		}
		if r.Status == OK && r.User != "alice" {
			t.Fatalf("Verify(%q) = %+v: only alice can be authenticated", h, r)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		for _, user := range []string{"alice", "mallory"} {
			b.Run(alg+"/"+user, func(b *testing.B) {
				clk := newClock()
				d := newTestDigest(clk, "bench")
				chal := d.Challenge(false)
				want := OK
				if user != "alice" {
					want = Failed
				}
				// Answers are made ahead in batches (each nc is good once).
				const batch = 512
				headers := make([][]string, 0, batch)
				nc := 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if len(headers) == 0 {
						b.StopTimer()
						for range batch {
							nc++
							headers = append(headers, []string{answer(b, chal, login{user: user, pass: "wonderland", algorithm: alg, nc: nc})})
						}
						b.StartTimer()
					}
					if r := d.Verify(headers[0], "REGISTER"); r.Status != want {
						b.Fatalf("Verify = %+v, want %v", r, want)
					}
					headers = headers[1:]
				}
			})
		}
	}
}

// TestAlgorithmsOption: the offer order follows DigestConfig.Algorithms, and
// an answer with an algorithm that was not offered is refused.
func TestAlgorithmsOption(t *testing.T) {
	d := NewDigest(DigestConfig{
		Realm:      "contoso.com",
		Users:      map[string]Credentials{"alice": CredentialsFor("contoso.com", config.User{User: "alice", Password: "pw"})},
		Algorithms: []string{"MD5"},
	})
	chals := d.Challenge(false)
	if len(chals) != 1 || !strings.Contains(chals[0], "algorithm=MD5") {
		t.Fatalf("challenges %q, want one MD5", chals)
	}
	c, err := digest.ParseChallenge(chals[0])
	if err != nil {
		t.Fatal(err)
	}
	ok, err := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:contoso.com", Username: "alice", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Verify([]string{ok.String()}, "REGISTER").Status; got != OK {
		t.Fatalf("MD5 answer: %v", got)
	}
	c.Algorithm = "SHA-256"
	sha, err := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:contoso.com", Username: "alice", Password: "pw", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Verify([]string{sha.String()}, "REGISTER").Status; got != Malformed {
		t.Fatalf("SHA-256 answer when only MD5 is offered: %v, want malformed", got)
	}
	both := NewDigest(DigestConfig{Realm: "contoso.com", Algorithms: []string{"MD5", "SHA-256"}}).Challenge(true)
	if len(both) != 2 || !strings.Contains(both[0], "MD5") || !strings.Contains(both[1], "SHA-256") || !strings.Contains(both[1], "stale=true") {
		t.Fatalf("ordered challenges: %q", both)
	}
}

// TestNonceBinding: an answer to a nonce issued for one connection is Stale
// on another (right credentials, wrong nonce), and OK on its own.
func TestNonceBinding(t *testing.T) {
	clk := newClock()
	d := newTestDigest(clk, "s3cret")
	const here, there = "tls 10.0.0.1:5555", "tcp 10.0.0.1:5555"
	h := answer(t, d.ChallengeFor(false, here), login{user: "alice", pass: "wonderland", algorithm: "MD5"})
	if got := d.VerifyFor([]string{h}, "REGISTER", there); got.Status != Stale {
		t.Fatalf("answer on another connection: %v, want stale", got.Status)
	}
	if got := d.VerifyFor([]string{h}, "REGISTER", here); got.Status != OK {
		t.Fatalf("answer on its own connection: %v, want ok", got.Status)
	}
	wrong := answer(t, d.ChallengeFor(false, here), login{user: "alice", pass: "nope", algorithm: "MD5"})
	if got := d.VerifyFor([]string{wrong}, "REGISTER", there); got.Status != Failed {
		t.Fatalf("wrong password on another connection: %v, want failed", got.Status)
	}
}
