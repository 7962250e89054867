package upstream

// Health is what probes and calls have found of a target.
type Health uint8

const (
	// Up: it answered last time (or has not been tried yet).
	Up Health = iota
	// Suspect: it failed once since it last answered. It is still used:
	// one lost probe or one slow call is not enough to take it out.
	Suspect
	// Down: it failed twice in a row; it is skipped until it answers.
	Down
)

func (h Health) String() string {
	switch h {
	case Up:
		return "up"
	case Suspect:
		return "suspect"
	case Down:
		return "down"
	}
	return "unknown"
}

// InService reports whether a target in this state is offered to calls.
func (h Health) InService() bool { return h != Down }

// next is the one transition table: the state of a target in state h
// after a probe or a call to it answered (ok) or failed.
func (h Health) next(ok bool) Health {
	table := [...]struct{ failed, answered Health }{
		Up:      {failed: Suspect, answered: Up},
		Suspect: {failed: Down, answered: Up},
		Down:    {failed: Down, answered: Up},
	}
	if int(h) >= len(table) {
		h = Up
	}
	if ok {
		return table[h].answered
	}
	return table[h].failed
}
