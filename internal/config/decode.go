package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// report collects the errors of one configuration and knows the line of
// every key path ("server.listen[1].addr") seen while decoding.
type report struct {
	file   string
	lines  map[string]int  // path -> line of its key or list item
	set    map[string]bool // paths whose value is not null
	failed map[string]bool // paths whose value could not be decoded
	errs   Errors
}

func newReport(file string) *report {
	return &report{file: file, lines: map[string]int{}, set: map[string]bool{}, failed: map[string]bool{}}
}

// line returns the line of path or, when it is absent from the file, of
// its nearest ancestor that is present; 0 when none is.
func (r *report) line(path string) int {
	for {
		if l, ok := r.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parent(path)
	}
}

// errorf records "path: message" at the line of path, unless path or one
// of its ancestors could not be decoded: such a value was left at zero and
// already has its error, which is not repeated as "x is required".
func (r *report) errorf(path, format string, args ...any) {
	for p := path; ; p = parent(p) {
		if r.failed[p] {
			return
		}
		if p == "" {
			break
		}
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	r.errs = append(r.errs, Error{File: r.file, Line: r.line(path), Msg: msg})
}

// requiredf is errorf for keys missing from the mapping at path. It says
// nothing when one of them is present but could not be decoded.
func (r *report) requiredf(path string, keys []string, format string, args ...any) {
	for _, k := range keys {
		if r.failed[join(path, k)] {
			return
		}
	}
	r.errorf(path, format, args...)
}

// decodeErrorf is errorf for a value that could not be decoded.
func (r *report) decodeErrorf(path, format string, args ...any) {
	r.errorf(path, format, args...)
	r.failed[path] = true
}

// parent strips the last ".key" or "[i]" of a path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var yamlError = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlParserError matches the messages of yaml.v3's parser (as opposed to
// its scanner). It numbers their lines from 0, and leaves out "line 0", so
// their line is one more than it says.
var yamlParserError = regexp.MustCompile(`^(did not find expected|found undefined tag handle|found duplicate %|found incompatible YAML document)`)

// parse reads the single YAML document in data. A syntax error ends
// parsing, so it is the only error reported.
func (r *report) parse(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return &doc, true // empty file
	}
	if err == nil {
		var extra yaml.Node
		switch err = dec.Decode(&extra); {
		case errors.Is(err, io.EOF):
			return &doc, true
		case err == nil && isEmpty(&extra):
			return &doc, true // a trailing "---"
		case err == nil:
			r.errs = append(r.errs, Error{File: r.file, Line: extra.Line, Msg: "only one YAML document is allowed"})
			return nil, false
		}
	}
	e := Error{File: r.file, Msg: err.Error()}
	if m := yamlError.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "YAML: " + m[2]
		if yamlParserError.MatchString(m[2]) {
			e.Line++
		}
	}
	r.errs = append(r.errs, e)
	return nil, false
}

// isEmpty reports whether a document holds nothing but null.
func isEmpty(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null"
}

var durationType = reflect.TypeFor[Duration]()

// decode stores node n into v strictly: unknown and duplicate keys and
// values of the wrong kind are errors naming their path and line. It keeps
// going after an error so that all of them are reported at once; a value
// in error is left at its zero value.
func (r *report) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	r.set[path] = true
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode {
			r.decodeErrorf(path, "expected a duration such as 15s or 2m, got %s", describe(n))
			return
		}
		d, err := parseDuration(n.Value)
		if err != nil {
			r.decodeErrorf(path, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(d))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		r.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			r.decodeErrorf(path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			r.lines[p] = item.Line
			r.decode(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			r.decodeErrorf(path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			r.decodeErrorf(path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil {
			r.decodeErrorf(path, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

// decodeStruct decodes a mapping into a struct by yaml tags. Merge keys
// ("<<: *anchor") are applied first so that keys written out override them,
// as YAML specifies. A Line field (yaml:"-") receives the mapping's line.
func (r *report) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			r.lines[""] = n.Line
			r.decodeErrorf("", "the configuration must be a mapping of sections (server:, auth:, ...), got %s", describe(n))
			return
		}
		r.decodeErrorf(path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	for i := 0; i < len(n.Content); i += 2 {
		if k, val := n.Content[i], n.Content[i+1]; k.Tag == "!!merge" {
			r.merge(val, v, path)
		}
	}
	seen := map[string]int{}
	for i := 0; i < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			continue
		}
		p := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			r.errs = append(r.errs, Error{File: r.file, Line: k.Line,
				Msg: fmt.Sprintf("%s: duplicate key (first at line %d)", p, first)})
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			r.errs = append(r.errs, Error{File: r.file, Line: k.Line, Msg: p + ": unknown key" + suggest(k.Value, fields)})
			continue
		}
		r.lines[p] = k.Line
		r.decode(val, v.Field(idx), p)
	}
	if f, ok := v.Type().FieldByName("Line"); ok && f.Tag.Get("yaml") == "-" && f.Type.Kind() == reflect.Int {
		v.FieldByIndex(f.Index).SetInt(int64(n.Line))
	}
}

// merge applies the value of a merge key: a mapping or a list of them.
func (r *report) merge(val *yaml.Node, v reflect.Value, path string) {
	if val.Kind == yaml.AliasNode {
		val = val.Alias
	}
	sources := []*yaml.Node{val}
	if val.Kind == yaml.SequenceNode {
		sources = val.Content
	}
	for _, m := range sources {
		if m.Kind == yaml.AliasNode {
			m = m.Alias
		}
		if m.Kind != yaml.MappingNode {
			r.errs = append(r.errs, Error{File: r.file, Line: m.Line,
				Msg: join(path, "<<") + ": a merge needs a mapping or a list of mappings"})
			continue
		}
		r.decodeStruct(m, v, path)
	}
}

// yamlFields maps the yaml key of every settable field of t to its index.
func yamlFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// suggest returns ` (did you mean "x"?)` for the known key closest to an
// unknown one, when it is close enough to be a typo.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if d := editDistance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}
