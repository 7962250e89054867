package proxy_test

import (
	"os"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestMain sets sipgo's package-wide datagram limit once, as the sipproxy
// command does, before any proxy or phone runs.
func TestMain(m *testing.M) {
	sip.UDPMTUSize = 65000
	os.Exit(m.Run())
}
