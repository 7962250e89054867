package resolve

import (
	"cmp"
	"slices"
)

// srvRecord is the part of an SRV record that ordering and dialling need.
type srvRecord struct {
	Priority uint16
	Weight   uint16
	Port     uint16
	Target   string // without the trailing dot
}

// orderSRV returns records in the order RFC 2782 says to try them: lowest
// priority first; within a priority, a weighted random draw repeated until
// none is left, so that over many calls each target is first in
// proportion to its weight. intN(n) returns a number in [0, n).
func orderSRV(records []srvRecord, intN func(int) int) []srvRecord {
	rs := slices.Clone(records)
	slices.SortStableFunc(rs, func(a, b srvRecord) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]srvRecord, 0, len(rs))
	for len(rs) > 0 {
		end := 1
		for end < len(rs) && rs[end].Priority == rs[0].Priority {
			end++
		}
		out = append(out, weighted(rs[:end], intN)...)
		rs = rs[end:]
	}
	return out
}

// weighted orders records of one priority by RFC 2782's selection: those
// of weight 0 are put first (so that a draw of 0 picks them, giving them
// a small chance rather than none), then repeatedly a number in
// [0, sum of weights] is drawn and the first record whose running sum
// reaches it is taken out.
func weighted(group []srvRecord, intN func(int) int) []srvRecord {
	rs := make([]srvRecord, 0, len(group))
	for _, r := range group {
		if r.Weight == 0 {
			rs = append(rs, r)
		}
	}
	for _, r := range group {
		if r.Weight != 0 {
			rs = append(rs, r)
		}
	}
	out := make([]srvRecord, 0, len(rs))
	for len(rs) > 0 {
		total := 0
		for _, r := range rs {
			total += int(r.Weight)
		}
		n := intN(total + 1)
		i, sum := 0, 0
		for ; i < len(rs)-1; i++ {
			sum += int(rs[i].Weight)
			if sum >= n {
				break
			}
		}
		out = append(out, rs[i])
		rs = slices.Delete(rs, i, i+1)
	}
	return out
}
