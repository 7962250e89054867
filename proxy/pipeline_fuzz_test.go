package proxy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// recordingTx is a server transaction that keeps the responses the pipeline
// sends, so the pipeline can run without sockets.
type recordingTx struct {
	responses []*sip.Response
	done      chan struct{}
}

func (t *recordingTx) Respond(res *sip.Response) error {
	t.responses = append(t.responses, res)
	return nil
}
func (t *recordingTx) Acks() <-chan *sip.Request          { return nil }
func (t *recordingTx) OnCancel(sip.FnTxCancel) bool       { return true }
func (t *recordingTx) Terminate()                         {}
func (t *recordingTx) OnTerminate(sip.FnTxTerminate) bool { return true }
func (t *recordingTx) Done() <-chan struct{}              { return t.done }
func (t *recordingTx) Err() error                         { return nil }

// FuzzPipeline feeds arbitrary bytes through sipgo's parser and then every
// decision stage of the pipeline (ingress, validate, identify, route,
// policy) on each transport, as a request from the network would go. It
// must never panic, and every request the pipeline refuses must get exactly
// one final response. Nothing is sent anywhere: execute is not run.
func FuzzPipeline(f *testing.F) {
	for _, seed := range []string{benchInvite} {
		f.Add([]byte(seed), byte(0))
	}
	if files, _ := filepath.Glob("testdata/ocexum/*.sip"); len(files) > 0 {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b, byte(2))
			}
		}
	}
	f.Add([]byte("REGISTER sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 1.2.3.4;branch=z9hG4bK1;rport\r\nFrom: <sip:alice@contoso.com>;tag=1\r\nTo: <sip:alice@contoso.com>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: *\r\nAuthorization: Digest username=\"alice\", realm=\"contoso.com\", nonce=\"x\", uri=\"sip:contoso.com\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"\r\nContent-Length: 0\r\n\r\n"), byte(1))
	f.Add([]byte("BYE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK2\r\nRoute: <sip:127.0.0.1:5060;transport=tcp;lr;flow=AAAA>, <sip:127.0.0.1:5061;transport=tls;lr>\r\nFrom: <sip:alice@contoso.com>;tag=1\r\nTo: <sip:bob@contoso.com>;tag=2\r\nCall-ID: b1\r\nCSeq: 2 BYE\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n"), byte(0))
	f.Add([]byte("INVITE sip:alice@contoso.com;opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/TLS 1.2.3.4;branch=z9hG4bK3\r\nFrom: <sip:alice@contoso.com>;tag=1\r\nTo: <sip:alice@contoso.com;opaque=app:voicemail>\r\nCall-ID: v1\r\nCSeq: 1 INVITE\r\nMs-Exchange-Command: skip-pin\r\nMs-Sensitivity: Private-No-Diversion, x\r\nProxy-Require: foo\r\nContent-Length: 0\r\n\r\n"), byte(2))

	f.Add([]byte("REGISTER sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK4;rport\r\nFrom: Alice\r\nTo: <sip:alice@contoso.com>\r\nCall-ID: m1\r\nCSeq: abc REGISTER\r\nContact: x@host\r\nContent-Length: 0\r\n\r\n"), byte(1))

	b := &testing.B{}
	s := benchServer(b)
	parser := strictParser(65535) // the server's parser: headers it cannot read become stand-ins
	transports := [...]string{"TCP", "UDP", "TLS"}
	f.Fuzz(func(t *testing.T, data []byte, tr byte) {
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		req.SetTransport(transports[int(tr)%len(transports)])
		req.SetSource("10.1.2.3:40123")
		tx := &recordingTx{done: make(chan struct{})}
		r := &request{Request: req, tx: tx, in: s.ingress(req), base: s.log}
		if r.Method == sip.ACK || r.Method == sip.CANCEL {
			return // never answered / answered by the transaction layer
		}
		passed := s.validate(r) && s.identify(r)
		if passed {
			d := s.route(r)
			if d.reject != 0 {
				s.replyWith(r, d.reject, d.reason, d.extra...)
				passed = false
			} else {
				s.applyPolicy(r, &d)
			}
		}
		if !passed && len(tx.responses) != 1 {
			t.Fatalf("refused request got %d responses", len(tx.responses))
		}
		for _, res := range tx.responses {
			if res.StatusCode < 300 || res.StatusCode > 699 {
				t.Fatalf("refusal with status %d", res.StatusCode)
			}
			_ = res.String()
		}
	})
}
