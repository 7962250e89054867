package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// answerShape is what a scanner can compare between two answers: status,
// reason and every header but the ones that echo the request.
func answerShape(res *sip.Response) string {
	var hs []string
	for _, h := range res.Headers() {
		switch strings.ToLower(h.Name()) {
		case "via", "from", "to", "call-id", "cseq":
			hs = append(hs, h.Name())
		default:
			hs = append(hs, h.Name()+": "+h.Value())
		}
	}
	slices.Sort(hs)
	return fmt.Sprintf("%d %s | %s", res.StatusCode, res.Reason, strings.Join(hs, " | "))
}

// TestNoUserEnumeration (issue 12, item 1): to a sender who is neither
// authenticated nor a peer, an existing but unregistered user (bob) and a
// user who does not exist look alike, for every method and every spelling
// of our domain or address; our own users still learn 404.
func TestNoUserEnumeration(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	scanner := newPhone(t, px, "scanner", "udp", phoneOpts{listen: true})
	outsider := sip.Uri{Scheme: "sip", User: "scanner", Host: "evil.example"}
	host, port, _ := sip.ParseAddr(px.Addr("udp"))
	spellings := []struct {
		host string
		port int
	}{
		{"contoso.com", 0}, {"CONTOSO.COM", 0}, {host, 0}, {host, port},
	}
	ask := func(p *phone, method sip.RequestMethod, from, to sip.Uri) (*sip.Response, []int, time.Duration) {
		t.Helper()
		req := sip.NewRequest(method, to)
		f := &sip.FromHeader{Address: from, Params: sip.NewParams()}
		f.Params.Add("tag", sip.GenerateTagN(8))
		req.AppendHeader(f)
		req.AppendHeader(&sip.ToHeader{Address: to})
		if method == sip.INVITE {
			req.AppendHeader(p.dlg.ContactHDR.Clone())
			req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			req.SetBody([]byte(testSDP))
		}
		p.route(req)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		tx, err := p.client.TransactionRequest(ctx, req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, to.String(), err)
		}
		defer tx.Terminate()
		var provisional []int
		for {
			select {
			case res := <-tx.Responses():
				if res.IsProvisional() {
					provisional = append(provisional, res.StatusCode)
					continue
				}
				return res, provisional, time.Since(start)
			case <-tx.Done():
				t.Fatalf("%s %s: no final response: %v", method, to.String(), tx.Err())
			case <-ctx.Done():
				t.Fatalf("%s %s: timeout", method, to.String())
			}
		}
	}
	for _, method := range []sip.RequestMethod{sip.INVITE, sip.OPTIONS, sip.MESSAGE, sip.INFO, sip.SUBSCRIBE} {
		for _, sp := range spellings {
			t.Run(fmt.Sprintf("%s %s:%d", method, sp.host, sp.port), func(t *testing.T) {
				existing := sip.Uri{Scheme: "sip", User: "bob", Host: sp.host, Port: sp.port}
				unknown := sip.Uri{Scheme: "sip", User: "nosuchuser", Host: sp.host, Port: sp.port}
				a, pa, ta := ask(scanner, method, outsider, existing)
				b, pb, tb := ask(scanner, method, outsider, unknown)
				if answerShape(a) != answerShape(b) {
					t.Errorf("existing and unknown users answered differently:\n  bob:     %s\n  unknown: %s", answerShape(a), answerShape(b))
				}
				if !slices.Equal(pa, pb) {
					t.Errorf("provisional responses differ: bob %v, unknown %v", pa, pb)
				}
				t.Logf("MEASURED %s: bob %d in %v, unknown %d in %v", method, a.StatusCode, ta.Round(time.Microsecond), b.StatusCode, tb.Round(time.Microsecond))
			})
		}
	}
	// Our own users (and peers) are told the truth.
	t.Run("authenticated user learns 404", func(t *testing.T) {
		alice := newPhone(t, px, "alice", "tcp", phoneOpts{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := alice.call(ctx, uri("nosuchuser"))
		if got := statusOf(err); got != sip.StatusNotFound {
			t.Fatalf("alice calling an unknown user got %d, want 404", got)
		}
		_, err = alice.call(ctx, uri("bob"))
		if got := statusOf(err); got != sip.StatusTemporarilyUnavailable {
			t.Fatalf("alice calling unregistered bob got %d, want 480", got)
		}
	})
}
