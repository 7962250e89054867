package rules

import (
	"bytes"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// minParallelBytes is the file size from which Parse decodes in parallel.
const minParallelBytes = 256 << 10

// chunkStarts splits a large rules file of the usual shape into n pieces
// for parseParallel, returning the byte offset where each starts (the first
// is 0), or nil to decode the file as one document.
//
// The usual shape is comment or blank lines, a "rules:" line, then the list
// in block style. A piece boundary is a line that starts a list item at the
// list's own indentation: in block context such a line can only be a new
// item. The one way it can be something else is inside a quoted scalar or
// a flow collection left open across lines, and then the piece before it
// ends in the middle of that scalar or collection and fails to decode,
// which sends Parse back to the one-document path.
func chunkStarts(data []byte, n int) []int {
	if n < 2 || len(data) < minParallelBytes {
		return nil
	}
	rest, ok := skipToContent(data)
	if !ok || !isRulesLine(firstLine(rest)) {
		return nil
	}
	rest = rest[len(firstLine(rest)):]
	rest, ok = skipToContent(rest)
	if !ok {
		return nil
	}
	item := firstLine(rest) // the first item: "<indent>- ..."
	indent := len(item) - len(bytes.TrimLeft(item, " "))
	if item[indent] != '-' || !isItemLine(item, item[:indent+1]) {
		return nil // skipToContent left a non-blank line: item[indent] exists
	}
	marker := append([]byte{'\n'}, item[:indent+1]...)
	firstItem := len(data) - len(rest)

	starts := []int{0}
	for k := 1; k < n; k++ {
		from := max(len(data)*k/n, starts[len(starts)-1], firstItem)
		i := indexItem(data[from:], marker)
		if i < 0 {
			break
		}
		starts = append(starts, from+i+1) // just after the newline
	}
	if len(starts) < 2 {
		return nil
	}
	return starts
}

// indexItem finds the next "\n<indent>-" followed by a space or line end.
func indexItem(data, marker []byte) int {
	off := 0
	for {
		i := bytes.Index(data[off:], marker)
		if i < 0 {
			return -1
		}
		i += off
		if isItemLine(data[i+1:], marker[1:]) {
			return i
		}
		off = i + 1
	}
}

func isItemLine(line, marker []byte) bool {
	if !bytes.HasPrefix(line, marker) {
		return false
	}
	if len(line) == len(marker) {
		return true
	}
	switch line[len(marker)] {
	case ' ', '\n', '\r':
		return true
	}
	return false
}

// skipToContent skips blank and comment-only lines.
func skipToContent(data []byte) ([]byte, bool) {
	for len(data) > 0 {
		line := firstLine(data)
		t := bytes.TrimLeft(line, " \t\r\n")
		if len(t) != 0 && t[0] != '#' {
			return data, true
		}
		data = data[len(line):]
	}
	return nil, false
}

// firstLine is data up to and including its first newline.
func firstLine(data []byte) []byte {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i+1]
	}
	return data
}

// isRulesLine matches "rules:" at column 0, optionally with a comment.
func isRulesLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("rules:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t\r\n")
	return len(rest) == 0 || rest[0] == '#'
}

// parseParallel decodes the pieces of a file concurrently: the first as a
// rules file, the others as bare lists of rules, with line numbers made
// relative to the whole file. It succeeds only when every piece decodes
// and validates cleanly and no user appears twice across pieces; on any
// doubt it reports false and Parse decodes the file as one document, which
// also gives every error with its exact line.
func parseParallel(name string, data []byte, starts []int, defaultAfter time.Duration) ([]Rule, bool) {
	type piece struct {
		rules []Rule
		ok    bool
	}
	pieces := make([]piece, len(starts))
	var wg sync.WaitGroup
	for i, start := range starts {
		end := len(data)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		wg.Go(func() {
			p := parser{file: name, defaultAfter: defaultAfter}
			var rules []Rule
			if i == 0 {
				rules = p.rulesFile(data[start:end])
			} else if root := p.document(data[start:end]); root != nil && root.Kind == yaml.SequenceNode {
				shiftLines(root, bytes.Count(data[:start], []byte{'\n'}))
				rules = p.list(root.Content)
			} else {
				return // not a list: not ok
			}
			pieces[i] = piece{rules: rules, ok: len(p.errs) == 0}
		})
	}
	wg.Wait()

	total := 0
	for _, pc := range pieces {
		if !pc.ok {
			return nil, false
		}
		total += len(pc.rules)
	}
	out := make([]Rule, 0, total)
	seen := make(map[string]struct{}, total)
	for _, pc := range pieces {
		for _, r := range pc.rules {
			if _, dup := seen[r.User]; dup {
				return nil, false
			}
			seen[r.User] = struct{}{}
			out = append(out, r)
		}
	}
	return out, true
}

// shiftLines adds by to the line of every node under n.
func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}
