package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one finding in a configuration file.
type Error struct {
	File string
	Line int // 0 when the finding has no place in the file (a missing section)
	Msg  string
}

// Error renders "file:line: message", or "file: message" without a line.
func (e Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Errors is every error found in one configuration, in file order. Load
// returns it as its error; use errors.As to get at the individual entries.
type Errors []Error

// Error renders one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sortByLine orders findings by line, keeping the discovery order of
// findings on the same line.
func sortByLine(es []Error) {
	slices.SortStableFunc(es, func(a, b Error) int { return cmp.Compare(a.Line, b.Line) })
}
