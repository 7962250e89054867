package proxy_test

import (
	"os"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestScratchRoundTrip(t *testing.T) {
	for _, f := range []string{"testdata/ocexum/4.1-subscriber-access.sip", "testdata/ocexum/4.2-play-on-phone.sip"} {
		b, _ := os.ReadFile(f)
		m, err := sip.NewParser().ParseSIP(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		t.Logf("%s\n%q", f, m.String())
		req := m.(*sip.Request)
		t.Logf("contact %#v", req.Contact())
	}
}
