package upstream

import "testing"

func TestHealthTransitions(t *testing.T) {
	tests := []struct {
		from Health
		ok   bool
		want Health
	}{
		{Up, true, Up},
		{Up, false, Suspect},
		{Suspect, true, Up},
		{Suspect, false, Down},
		{Down, true, Up},
		{Down, false, Down},
	}
	for _, tc := range tests {
		if got := tc.from.next(tc.ok); got != tc.want {
			t.Errorf("%s after ok=%v: %s, want %s", tc.from, tc.ok, got, tc.want)
		}
	}
}

// TestHealthSequences: the behaviour the issue asks for, as sequences of
// outcomes from a fresh target.
func TestHealthSequences(t *testing.T) {
	tests := []struct {
		name      string
		outcomes  []bool
		want      Health
		inService bool
	}{
		{"fresh", nil, Up, true},
		{"one failure keeps it in service", []bool{false}, Suspect, true},
		{"two failures in a row take it out", []bool{false, false}, Down, false},
		{"failures not in a row do not", []bool{false, true, false}, Suspect, true},
		{"it stays out while it fails", []bool{false, false, false, false}, Down, false},
		{"one answer brings it back", []bool{false, false, false, true}, Up, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := Up
			for _, ok := range tc.outcomes {
				h = h.next(ok)
			}
			if h != tc.want || h.InService() != tc.inService {
				t.Errorf("state %s (in service %v), want %s (%v)", h, h.InService(), tc.want, tc.inService)
			}
		})
	}
}
