package resolve

import (
	"bufio"
	"cmp"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// readHosts reads a hosts file (/etc/hosts format) into addresses by
// lower-case name, IPv4 before IPv6, each in file order. A file that
// cannot be read is an empty one: most hosts files only name localhost.
func readHosts(path string) map[string][]netip.Addr {
	hosts := map[string][]netip.Addr{}
	if path == "" {
		return hosts
	}
	f, err := os.Open(path)
	if err != nil {
		return hosts
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		ip = ip.WithZone("")
		for _, name := range fields[1:] {
			name = strings.TrimSuffix(strings.ToLower(name), ".")
			if !slices.Contains(hosts[name], ip) {
				hosts[name] = append(hosts[name], ip)
			}
		}
	}
	for _, addrs := range hosts {
		slices.SortStableFunc(addrs, func(a, b netip.Addr) int { return cmp.Compare(family(a), family(b)) })
	}
	return hosts
}

// family orders IPv4 (0) before IPv6 (1), as A before AAAA.
func family(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 0
	}
	return 1
}
