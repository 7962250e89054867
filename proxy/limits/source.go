package limits

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// sourceKey is what the limiters count by: an IPv4 address, or the /64 an
// IPv6 address belongs to, in 16-byte form. IPv4 keys keep the ::ffff:0:0/96
// form As16 gives them, which no masked IPv6 /64 can equal.
type sourceKey [16]byte

// ipv6SourceBits is how much of an IPv6 address names a source. One /64 is
// one LAN or one subscriber: a host picks any address inside it freely
// (SLAAC, privacy addresses), so counting by full address would hand an
// attacker 2^64 fresh buckets.
const ipv6SourceBits = 64

// keyOf returns src's key. IPv4-mapped IPv6 addresses count as the IPv4
// address; zones are ignored; the invalid zero Addr is one source of its own.
func keyOf(src netip.Addr) sourceKey {
	src = src.Unmap()
	k := sourceKey(src.As16())
	if src.Is6() {
		clear(k[ipv6SourceBits/8:])
	}
	return k
}

// hash spreads keys over shards. The seeds are random per limiter, so
// nobody outside can aim a flood at one shard.
func (k sourceKey) hash(seed0, seed1 uint64) uint64 {
	return mix64(binary.LittleEndian.Uint64(k[:8])^seed0) ^ mix64(binary.LittleEndian.Uint64(k[8:])^seed1)
}

// mix64 is the splitmix64 finaliser: every input bit flips about half the
// output bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// exemptSet is a list of trusted prefixes, prepared so that IPv4-mapped
// forms of either side match.
type exemptSet []netip.Prefix

func newExemptSet(prefixes []netip.Prefix) exemptSet {
	if len(prefixes) == 0 {
		return nil
	}
	s := make(exemptSet, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		s = append(s, p.Masked())
	}
	return s
}

// contains reports whether src is in one of the prefixes. It runs on every
// request, so the common case (no exemptions) costs one length check.
func (s exemptSet) contains(src netip.Addr) bool {
	if len(s) == 0 || !src.IsValid() {
		return false
	}
	src = src.Unmap().WithZone("")
	for _, p := range s {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// addrOf returns the IP address of a connection's remote end, or the
// invalid Addr when it is not an IP address (a Unix socket, a pipe).
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case interface{ AddrPort() netip.AddrPort }:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
