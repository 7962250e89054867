package rules

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sipproxy/sipproxy/internal/aor"
)

// Error is one problem in a rules file, at a line.
type Error struct {
	File string
	Line int // 1-based; 0 when the problem has no line
	Msg  string
}

func (e *Error) Error() string {
	if e.Line <= 0 {
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// ErrorList is every problem found in a rules file, in file order. Its
// Error method prints one "file:line: message" per line.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap gives errors.As and errors.Is access to each *Error.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Parse decodes and validates a rules file. name is used in error messages;
// defaultAfter is the no-answer delay of unanswered rules that give none.
// An empty file is valid and has no rules. On any problem Parse returns nil
// rules and an ErrorList holding every problem found, in line order.
//
// A large file of the usual shape is decoded in parallel (see
// parseParallel); anything else, and any file with a problem, is decoded
// as one document.
func Parse(name string, data []byte, defaultAfter time.Duration) ([]Rule, error) {
	if starts := chunkStarts(data, runtime.GOMAXPROCS(0)); starts != nil {
		if rules, ok := parseParallel(name, data, starts, defaultAfter); ok {
			return rules, nil
		}
	}
	return parseWhole(name, data, defaultAfter)
}

// parseWhole decodes data as one document.
func parseWhole(name string, data []byte, defaultAfter time.Duration) ([]Rule, error) {
	p := parser{file: name, defaultAfter: defaultAfter}
	rules := p.rulesFile(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
		return nil, p.errs
	}
	return rules, nil
}

type parser struct {
	file         string
	defaultAfter time.Duration
	errs         ErrorList
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// rulesFile decodes a whole rules file: {rules: [rule, ...]}.
func (p *parser) rulesFile(data []byte) []Rule {
	root := p.document(data)
	if root == nil {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "want a mapping with the key rules, found %s", kindName(root))
		return nil
	}
	var list *yaml.Node
	p.mapping(root, "top level", func(key string, k, v *yaml.Node) {
		switch key {
		case "rules":
			list = v
		default:
			p.errorf(k.Line, "unknown key %q at top level (want rules)", key)
		}
	})
	if list == nil || isNull(list) {
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		p.errorf(list.Line, "rules: want a list of rules, found %s", kindName(list))
		return nil
	}
	return p.list(list.Content)
}

// document decodes the one YAML document in data and returns its root
// node, or nil when it is empty or has errors (reported).
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) { // EOF: an empty file
			p.yamlError(data, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(data, err)
		return nil
	default:
		p.errorf(extra.Line, "a rules file holds one YAML document, found another")
		return nil
	}
	root := resolve(&doc)
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = resolve(root.Content[0])
	}
	if isNull(root) {
		return nil
	}
	return root
}

// list decodes the items of the rules list.
func (p *parser) list(items []*yaml.Node) []Rule {
	out := make([]Rule, 0, len(items))
	first := make(map[string]int, len(items)) // AOR -> line of its rule
	for _, item := range items {
		r, ok := p.rule(resolve(item))
		if !ok {
			continue
		}
		if line, dup := first[r.User]; dup {
			p.errorf(r.Line, "user %s listed twice (lines %d and %d)", r.User, line, r.Line)
			continue
		}
		first[r.User] = r.Line
		out = append(out, r)
	}
	return out
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: ...") in data
// into an Error at the line it is about.
//
// yaml.v3 (v3.0.1, decode.go parser.fail) numbers lines from 0 internally
// and adds 1 only for scanner errors: a parser error names the line before
// the one it means (an unclosed "[" on line 3 is reported as line 2), one
// on the first line comes with no line at all, and one at the end of the
// file names the line after the last. Parser errors are the fixed problems
// of yaml.v3's parserc.go, listed in parserProblems. For the errors of a
// block list or mapping, and for a tab in the indentation, it names where
// the block (or the scalar before the tab) began, not the line that broke
// it; blockProblemLine finds that line.
func (p *parser) yamlError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, text := 0, msg
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, t, ok := strings.Cut(rest, ": "); ok {
			if n, convErr := strconv.Atoi(num); convErr == nil {
				line, text = n, t
			}
		}
	}
	if isParserProblem(text) {
		line++
	}
	switch text {
	case "did not find expected '-' indicator", "did not find expected key", // parser: where the block began
		"found a tab character that violates indentation": // scanner: where the scalar before it began
		line = blockProblemLine(data, line, text)
	}
	if lines := lineCount(data); line > lines {
		line = lines // the end of the file
	}
	p.errorf(line, "%s", text)
}

// blockProblemLine finds the line that broke what began at line from with
// problem: the first line at which the file, cut after it,
// fails with the same problem (bisection; yaml.v3 reads the file in order,
// so every longer cut fails too). Files over maxRefine bytes keep from:
// the cuts would be decoded about log2(lines) times.
func blockProblemLine(data []byte, from int, problem string) int {
	const maxRefine = 1 << 20
	if len(data) > maxRefine {
		return from
	}
	ends := lineEnds(data)
	fails := func(line int) bool { // every document of the cut, as document reads them
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[line-1]]))
		for {
			var n yaml.Node
			if err := dec.Decode(&n); err != nil {
				return !errors.Is(err, io.EOF) && strings.HasSuffix(err.Error(), ": "+problem)
			}
		}
	}
	lo, hi := from, len(ends) // fails(hi): the whole file
	if lo < 1 || lo > hi {
		return from
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo == len(ends) && !fails(lo) {
		return from // not the problem bisection looked for after all
	}
	return lo
}

// lineEnds is the offset just after each line of data (after its newline).
func lineEnds(data []byte) []int {
	var ends []int
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	return ends
}

// lineCount is the number of lines of data; a final newline starts none.
func lineCount(data []byte) int {
	n := bytes.Count(data, []byte{'\n'})
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return max(n, 1)
}

// parserProblems are the messages of yaml.v3's parser errors (parserc.go,
// yaml_parser_set_parser_error and _context), whose line is 0-based.
var parserProblems = [...]string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
}

func isParserProblem(text string) bool {
	for _, p := range parserProblems {
		if text == p {
			return true
		}
	}
	return false
}

// mapping calls fn for each key of a mapping node, reporting keys that are
// not plain scalars and keys given twice.
func (p *parser) mapping(n *yaml.Node, where string, fn func(key string, k, v *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, "%s: keys must be plain words, found %s", where, kindName(k))
			continue
		}
		if prev := earlierKey(n, i, k.Value); prev != nil {
			p.errorf(k.Line, "%s: key %q given twice (first at line %d)", where, k.Value, prev.Line)
			continue
		}
		fn(k.Value, k, v)
	}
}

// earlierKey returns the key before position i of mapping n that equals
// key, if any. Rule mappings have a handful of keys: a scan beats a map.
func earlierKey(n *yaml.Node, i int, key string) *yaml.Node {
	for j := 0; j < i; j += 2 {
		if k := resolve(n.Content[j]); k.Kind == yaml.ScalarNode && k.Value == key {
			return k
		}
	}
	return nil
}

// rule decodes one list item; ok is false when it had errors (already reported).
func (p *parser) rule(n *yaml.Node) (Rule, bool) {
	r := Rule{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "rule: want a mapping with user and an action, found %s", kindName(n))
		return r, false
	}
	before := len(p.errs)
	var userNode *yaml.Node
	p.mapping(n, "rule", func(key string, k, v *yaml.Node) {
		switch key {
		case "user":
			userNode = v
		case "immediate":
			r.Immediate = p.target(v, "immediate")
		case "busy":
			r.Busy = p.target(v, "busy")
		case "unanswered":
			r.Unanswered = p.unanswered(v)
		default:
			p.errorf(k.Line, "unknown key %q in rule (want user, immediate, unanswered or busy)", key)
		}
	})

	if userNode == nil {
		p.errorf(n.Line, "rule has no user")
		return r, false
	}
	user := p.target(userNode, "user")
	if user == nil {
		return r, false
	}
	if user.Parsed.User == "" {
		p.errorf(userNode.Line, "user: %q names no user (want sip:user@domain)", user.URI)
		return r, false
	}
	if user.IsVoicemail() {
		p.errorf(userNode.Line, "user: %q is a voicemail address, not a user", user.URI)
		return r, false
	}
	r.User, r.UserURI = user.AOR, user.URI

	if len(p.errs) > before {
		return r, false
	}
	if r.Immediate == nil && r.Unanswered == nil && r.Busy == nil {
		p.errorf(n.Line, "rule for %s has no action (want immediate, unanswered or busy)", r.User)
		return r, false
	}
	self := func(kind string, t *Target, line int) {
		if t != nil && t.AOR == r.User && !t.IsVoicemail() {
			p.errorf(line, "%s: %s forwards to themselves", kind, r.User)
		}
	}
	self("immediate", r.Immediate, valueLine(n, "immediate"))
	if r.Unanswered != nil {
		line := valueLine(n, "unanswered")
		if v := valueNode(n, "unanswered"); v != nil && v.Kind == yaml.MappingNode {
			line = valueLine(v, "target")
		}
		self("unanswered", &r.Unanswered.Target, line)
	}
	self("busy", r.Busy, valueLine(n, "busy"))
	return r, len(p.errs) == before
}

// target decodes a SIP URI scalar; nil when it is not one (reported).
func (p *parser) target(n *yaml.Node, where string) *Target {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.errorf(n.Line, "%s: want a SIP URI, found %s", where, kindName(n))
		return nil
	}
	u, a, err := aor.Parse(n.Value)
	if err != nil {
		p.errorf(n.Line, "%s: %v", where, err)
		return nil
	}
	return &Target{URI: strings.TrimSpace(n.Value), Parsed: u, AOR: a}
}

// unanswered decodes either a bare URI (after = default) or
// {target: URI, after: duration}.
func (p *parser) unanswered(n *yaml.Node) *Unanswered {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		t := p.target(n, "unanswered")
		if t == nil {
			return nil
		}
		return &Unanswered{Target: *t, After: p.defaultAfter}
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "unanswered: want a SIP URI or {target: URI, after: duration}, found %s", kindName(n))
		return nil
	}
	u := &Unanswered{After: p.defaultAfter}
	var target *Target
	ok := true
	p.mapping(n, "unanswered", func(key string, k, v *yaml.Node) {
		switch key {
		case "target":
			if target = p.target(v, "unanswered.target"); target == nil {
				ok = false
			}
		case "after":
			d, good := p.after(v)
			u.After, ok = d, ok && good
		default:
			p.errorf(k.Line, "unknown key %q in unanswered (want target or after)", key)
			ok = false
		}
	})
	if target == nil {
		if ok {
			p.errorf(n.Line, "unanswered has no target")
		}
		return nil
	}
	if !ok {
		return nil
	}
	u.Target = *target
	return u
}

func (p *parser) after(n *yaml.Node) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.errorf(n.Line, "unanswered.after: want a duration such as 15s, found %s", kindName(n))
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		p.errorf(n.Line, "unanswered.after: %q is not a duration such as 15s", n.Value)
		return 0, false
	}
	if d < MinAfter || d > MaxAfter {
		p.errorf(n.Line, "unanswered.after: %s is outside %s..%s", d, MinAfter, MaxAfter)
		return 0, false
	}
	return d, true
}

// valueNode is the value of key in mapping n, or nil.
func valueNode(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if resolve(n.Content[i]).Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// valueLine is the line of the value of key in mapping n (n's own line when
// the key is absent).
func valueLine(n *yaml.Node, key string) int {
	if v := valueNode(n, key); v != nil {
		return v.Line
	}
	return n.Line
}

// resolve follows YAML aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}
