package proxy

import (
	"errors"
	"os"

	"github.com/sipproxy/sipproxy/proxy/state"
)

// openState opens the state store of the configuration's state: section.
// Backend trouble never stops the proxy: a corrupt file is set aside and
// the proxy starts empty, an unreachable Redis is waited for in the
// background; both are logged at error level and show in the metrics.
//
// The memory backend is today's behaviour, kept exactly: no store at all
// (nil), the registrar and the dialog table hold everything themselves.
func (s *Server) openState() (state.Store, error) {
	c := s.cfg.State
	if c.Backend == "" || c.Backend == "memory" {
		s.m.StateBackendUp.Set(1) // nothing that could be down
		return nil, nil
	}
	instance := c.Instance
	if instance == "" {
		instance, _ = os.Hostname()
	}
	st, warn := state.Open(c, state.Options{
		Logger:   s.log,
		Instance: instance,
		Up:       s.m.StateBackendUp,
	})
	if st == nil {
		return nil, warn
	}
	if warn != nil {
		var corrupt *state.CorruptError
		if errors.As(warn, &corrupt) {
			s.m.StateFileCorrupt.Set(1)
			s.log.Error("STATE FILE UNREADABLE: starting with empty state; registrations and calls held before are lost",
				"backend", c.Backend, "path", c.Path, "moved_to", corrupt.Aside, "error", warn)
		} else {
			s.log.Error("state backend not available; serving from memory", "backend", c.Backend, "error", warn)
		}
	}
	s.instance = instance
	s.dialogs.attach(st, instance, s.log)
	return st, nil
}

// advertisedOn is this instance's advertised "host:port" on a transport
// ("" before Start or without a listener of it), stored with bindings so
// that other instances know where the phone's flow is held.
func (s *Server) advertisedOn(transport string) string {
	if l, ok := s.byTrans[transport]; ok {
		return l.hostport()
	}
	return ""
}

// closeState releases the state store after a drain.
func (s *Server) closeState() {
	if s.state == nil {
		return
	}
	s.dialogs.closeStore()
	s.reg.Close()
	if err := s.state.Close(); err != nil {
		s.log.Warn("state store close", "error", err)
	}
}
