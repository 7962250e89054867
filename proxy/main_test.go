package proxy_test

import (
	"os"
	"testing"

	"github.com/sipproxy/sipproxy/proxy"
)

// TestMain sets sipgo's package-wide settings once, as the sipproxy
// command does, before any proxy or phone runs.
func TestMain(m *testing.M) {
	proxy.ConfigureSIPStack()
	os.Exit(m.Run())
}
