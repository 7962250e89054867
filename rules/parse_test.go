package rules

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

const defaultAfter = 20 * time.Second

// summary renders rules compactly: "user|immediate|unanswered after|busy@line".
func summary(rs []Rule) []string {
	var out []string
	for _, r := range rs {
		s := r.User + "|"
		if r.Immediate != nil {
			s += r.Immediate.URI
		}
		s += "|"
		if r.Unanswered != nil {
			s += r.Unanswered.Target.URI + " " + r.Unanswered.After.String()
		}
		s += "|"
		if r.Busy != nil {
			s += r.Busy.URI
		}
		out = append(out, s+"@"+strconv.Itoa(r.Line))
	}
	return out
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string
	}{
		{name: "empty file", file: ""},
		{name: "only a comment", file: "# no rules yet\n"},
		{name: "empty document", file: "---\n"},
		{name: "rules null", file: "rules:\n"},
		{name: "rules empty list", file: "rules: []\n"},
		{
			name: "docs/design.md example",
			file: `rules:
  - user: sip:alice@contoso.com
    immediate: sip:bob@contoso.com
  - user: sip:carol@contoso.com
    unanswered: {target: "sip:carol@contoso.com;opaque=app:voicemail", after: 15s}
    busy: "sip:carol@contoso.com;opaque=app:voicemail"
`,
			want: []string{
				"alice@contoso.com|sip:bob@contoso.com||@2",
				"carol@contoso.com||sip:carol@contoso.com;opaque=app:voicemail 15s|sip:carol@contoso.com;opaque=app:voicemail@4",
			},
		},
		{
			name: "unanswered without after takes the default; bare URI form",
			file: `rules:
  - user: sip:dave@contoso.com
    unanswered:
      target: sip:erin@contoso.com
  - user: sip:frank@contoso.com
    unanswered: sip:gina@contoso.com
`,
			want: []string{
				"dave@contoso.com||sip:erin@contoso.com 20s|@2",
				"frank@contoso.com||sip:gina@contoso.com 20s|@5",
			},
		},
		{
			name: "after at the bounds",
			file: `rules:
  - user: sip:a@contoso.com
    unanswered: {target: sip:b@contoso.com, after: 1s}
  - user: sip:b@contoso.com
    unanswered: {target: sip:a@contoso.com, after: 5m}
`,
			want: []string{
				"a@contoso.com||sip:b@contoso.com 1s|@2",
				"b@contoso.com||sip:a@contoso.com 5m0s|@4",
			},
		},
		{
			name: "host case and URI parameters normalised away in the AOR",
			file: `rules:
  - user: "sip:Alice@CONTOSO.com;transport=tcp"
    busy: sips:+14255550100@gw.contoso.com:5061;user=phone
`,
			want: []string{"Alice@contoso.com|||sips:+14255550100@gw.contoso.com:5061;user=phone@2"},
		},
		{
			name: "forwarding to one's own mailbox is not self-forwarding",
			file: `rules:
  - user: sip:carol@contoso.com
    immediate: sip:carol@contoso.com;opaque=app:voicemail
`,
			want: []string{"carol@contoso.com|sip:carol@contoso.com;opaque=app:voicemail||@2"},
		},
		{
			name: "same user part, other domain, is someone else",
			file: `rules:
  - user: sip:carol@contoso.com
    immediate: sip:carol@fabrikam.com
`,
			want: []string{"carol@contoso.com|sip:carol@fabrikam.com||@2"},
		},
		{
			name: "user part is case-sensitive",
			file: `rules:
  - user: sip:carol@contoso.com
    immediate: sip:Carol@contoso.com
  - user: sip:Carol@contoso.com
    busy: sip:x@contoso.com
`,
			want: []string{"carol@contoso.com|sip:Carol@contoso.com||@2", "Carol@contoso.com|||sip:x@contoso.com@4"},
		},
		{
			name: "immediate with unanswered and busy",
			file: `rules:
  - user: sip:quinn@contoso.com
    immediate: sip:rob@contoso.com
    unanswered: {target: "sip:quinn@contoso.com;opaque=app:voicemail", after: 30s}
    busy: "sip:quinn@contoso.com;opaque=app:voicemail"
`,
			want: []string{"quinn@contoso.com|sip:rob@contoso.com|sip:quinn@contoso.com;opaque=app:voicemail 30s|sip:quinn@contoso.com;opaque=app:voicemail@2"},
		},
		{
			name: "anchors and aliases",
			file: `rules:
  - user: sip:a@contoso.com
    busy: &vm "sip:um@contoso.com;opaque=app:voicemail"
  - user: sip:b@contoso.com
    busy: *vm
`,
			want: []string{"a@contoso.com|||sip:um@contoso.com;opaque=app:voicemail@2", "b@contoso.com|||sip:um@contoso.com;opaque=app:voicemail@4"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse("rules.yaml", []byte(tc.file), defaultAfter)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := summary(rs); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestParseTargetsParsed(t *testing.T) {
	rs, err := Parse("rules.yaml", []byte("rules:\n  - user: sip:carol@Contoso.com\n    busy: \"sip:carol@contoso.com;opaque=app:voicemail\"\n"), defaultAfter)
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.UserURI != "sip:carol@Contoso.com" || r.User != "carol@contoso.com" {
		t.Errorf("user %q / %q", r.UserURI, r.User)
	}
	if r.Busy.AOR != "carol@contoso.com" || r.Busy.Parsed.Host != "contoso.com" || !r.Busy.IsVoicemail() {
		t.Errorf("busy target %+v", r.Busy)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // every line of the error, in order
	}{
		{
			name: "unknown keys at every level",
			file: `rulez: []
rules:
  - user: sip:a@contoso.com
    immedate: sip:b@contoso.com
    busy: sip:b@contoso.com
  - user: sip:c@contoso.com
    unanswered: {target: sip:d@contoso.com, afer: 10s}
`,
			want: []string{
				`rules.yaml:1: unknown key "rulez" at top level (want rules)`,
				`rules.yaml:4: unknown key "immedate" in rule (want user, immediate, unanswered or busy)`,
				`rules.yaml:7: unknown key "afer" in unanswered (want target or after)`,
			},
		},
		{
			name: "invalid URIs",
			file: `rules:
  - user: alice
    immediate: sip:bob@contoso.com
  - user: sip:carol@contoso.com
    immediate: "tel:+14255550100"
  - user: sip:dave@contoso.com
    busy: "sip:@"
  - user: sip:erin@contoso.com
    unanswered: {target: "sip:x@bad host"}
`,
			want: []string{
				`rules.yaml:2: user: invalid SIP URI "alice": missing protocol scheme`,
				`rules.yaml:5: immediate: invalid SIP URI "tel:+14255550100": scheme must be sip or sips`,
				`rules.yaml:7: busy: invalid SIP URI "sip:@": no host`,
				`rules.yaml:9: unanswered.target: invalid SIP URI "sip:x@bad host": bad host "bad host"`,
			},
		},
		{
			name: "user listed twice names both lines",
			file: `rules:
  - user: sip:alice@contoso.com
    immediate: sip:bob@contoso.com
  - user: sip:carol@contoso.com
    busy: sip:bob@contoso.com
  - user: sip:alice@CONTOSO.COM;transport=tls
    busy: sip:bob@contoso.com
`,
			want: []string{`rules.yaml:6: user alice@contoso.com listed twice (lines 2 and 6)`},
		},
		{
			name: "after out of range or not a duration",
			file: `rules:
  - user: sip:a@contoso.com
    unanswered: {target: sip:x@contoso.com, after: 500ms}
  - user: sip:b@contoso.com
    unanswered: {target: sip:x@contoso.com, after: 301s}
  - user: sip:c@contoso.com
    unanswered: {target: sip:x@contoso.com, after: 15}
  - user: sip:d@contoso.com
    unanswered: {target: sip:x@contoso.com, after: -5s}
  - user: sip:e@contoso.com
    unanswered: {target: sip:x@contoso.com, after: }
`,
			want: []string{
				`rules.yaml:3: unanswered.after: 500ms is outside 1s..5m0s`,
				`rules.yaml:5: unanswered.after: 5m1s is outside 1s..5m0s`,
				`rules.yaml:7: unanswered.after: "15" is not a duration such as 15s`,
				`rules.yaml:9: unanswered.after: -5s is outside 1s..5m0s`,
				`rules.yaml:11: unanswered.after: want a duration such as 15s, found nothing`,
			},
		},
		{
			name: "forwarding to themselves, ignoring URI parameters",
			file: `rules:
  - user: sip:alice@contoso.com
    immediate: sip:alice@contoso.com
  - user: sip:bob@contoso.com
    busy: "sip:bob@Contoso.com;transport=tcp"
    unanswered:
      target: sip:bob@contoso.com:5062
      after: 10s
  - user: sip:carol@contoso.com
    immediate: "sip:carol@contoso.com;opaque=app:other"
`,
			want: []string{
				`rules.yaml:3: immediate: alice@contoso.com forwards to themselves`,
				`rules.yaml:5: busy: bob@contoso.com forwards to themselves`,
				`rules.yaml:7: unanswered: bob@contoso.com forwards to themselves`,
				`rules.yaml:10: immediate: carol@contoso.com forwards to themselves`,
			},
		},
		{
			name: "rule with no action, rule with no user, rule not a mapping",
			file: `rules:
  - user: sip:alice@contoso.com
  - immediate: sip:bob@contoso.com
  - sip:carol@contoso.com
  - user: sip:dave@contoso.com
    immediate:
`,
			want: []string{
				`rules.yaml:2: rule for alice@contoso.com has no action (want immediate, unanswered or busy)`,
				`rules.yaml:3: rule has no user`,
				`rules.yaml:4: rule: want a mapping with user and an action, found "sip:carol@contoso.com"`,
				`rules.yaml:6: immediate: want a SIP URI, found nothing`,
			},
		},
		{
			name: "user that is no user",
			file: `rules:
  - user: sip:contoso.com
    immediate: sip:bob@contoso.com
  - user: "sip:carol@contoso.com;opaque=app:voicemail"
    immediate: sip:bob@contoso.com
`,
			want: []string{
				`rules.yaml:2: user: "sip:contoso.com" names no user (want sip:user@domain)`,
				`rules.yaml:4: user: "sip:carol@contoso.com;opaque=app:voicemail" is a voicemail address, not a user`,
			},
		},
		{
			name: "key given twice",
			file: `rules:
  - user: sip:alice@contoso.com
    immediate: sip:bob@contoso.com
    immediate: sip:carol@contoso.com
`,
			want: []string{`rules.yaml:4: rule: key "immediate" given twice (first at line 3)`},
		},
		{
			name: "wrong shapes",
			file: `rules:
  user: sip:alice@contoso.com
`,
			want: []string{`rules.yaml:2: rules: want a list of rules, found a mapping`},
		},
		{
			name: "top level not a mapping",
			file: "- user: sip:alice@contoso.com\n",
			want: []string{`rules.yaml:1: want a mapping with the key rules, found a list`},
		},
		{
			name: "unanswered of the wrong shape or without target",
			file: `rules:
  - user: sip:a@contoso.com
    unanswered: [sip:b@contoso.com]
  - user: sip:c@contoso.com
    unanswered: {after: 10s}
`,
			want: []string{
				`rules.yaml:3: unanswered: want a SIP URI or {target: URI, after: duration}, found a list`,
				`rules.yaml:5: unanswered has no target`,
			},
		},
		{
			name: "YAML syntax error carries its line",
			file: "rules:\n  - user: sip:a@contoso.com\n    busy: \"sip:b@contoso.com\n",
			want: []string{`rules.yaml:3: found unexpected end of stream`},
		},
		{
			name: "tab indentation",
			file: "rules:\n\t- user: sip:a@contoso.com\n",
			want: []string{`rules.yaml:2: found character that cannot start any token`},
		},
		{
			name: "two documents",
			file: "rules: []\n---\nrules: []\n",
			want: []string{`rules.yaml:2: a rules file holds one YAML document, found another`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse("rules.yaml", []byte(tc.file), defaultAfter)
			if err == nil {
				t.Fatalf("Parse accepted the file: %v", summary(rs))
			}
			if rs != nil {
				t.Errorf("Parse returned %d rules with an error", len(rs))
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, want)
			}
			if len(list) != len(tc.want) {
				t.Errorf("ErrorList has %d entries, want %d", len(list), len(tc.want))
			}
		})
	}
}

func TestErrorListUnwrap(t *testing.T) {
	_, err := Parse("r.yaml", []byte("rules:\n  - user: x\n    busy: y\n"), defaultAfter)
	var e *Error
	if !errors.As(err, &e) || e.File != "r.yaml" || e.Line != 2 {
		t.Fatalf("errors.As(*Error) = %+v from %v", e, err)
	}
	if got := (&Error{File: "r.yaml", Msg: "no line"}).Error(); got != "r.yaml: no line" {
		t.Errorf("Error without a line = %q", got)
	}
}

// FuzzParse checks that Parse never panics and that what it accepts holds
// together: distinct users, an action per rule, after in range.
func FuzzParse(f *testing.F) {
	f.Add([]byte("rules:\n  - user: sip:alice@contoso.com\n    immediate: sip:bob@contoso.com\n"))
	f.Add([]byte("rules:\n  - user: sip:c@x.com\n    unanswered: {target: \"sip:c@x.com;opaque=app:voicemail\", after: 15s}\n    busy: sip:d@x.com\n"))
	f.Add([]byte("rules: [{user: sip:a@b.c, busy: *x}]"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse("fuzz.yaml", data, defaultAfter)
		if err != nil {
			if rs != nil || err.Error() == "" {
				t.Fatalf("error %q with %d rules", err, len(rs))
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range rs {
			if r.User == "" || seen[r.User] {
				t.Fatalf("bad or duplicate user %q", r.User)
			}
			seen[r.User] = true
			if r.Immediate == nil && r.Unanswered == nil && r.Busy == nil {
				t.Fatalf("rule %s without action", r.User)
			}
			if u := r.Unanswered; u != nil && (u.After < MinAfter || u.After > MaxAfter) {
				t.Fatalf("after %s out of range", u.After)
			}
		}
		if err := New().Replace(rs); err != nil {
			t.Fatalf("Replace rejected parsed rules: %v", err)
		}
	})
}

// TestYAMLErrorLines: a YAML syntax error names the line it is about.
// yaml.v3 reports parser errors one line early (0-based), errors at the end
// of the file one line late, and block errors at the line where the block
// began; the file:line an operator reads is the line to fix.
func TestYAMLErrorLines(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"unclosed flow list", "rules:\n  - user: sip:a@contoso.com\n    immediate: [unclosed\n",
			`r.yaml:3: did not find expected ',' or ']'`},
		{"unclosed flow mapping", "rules:\n  - user: sip:a@contoso.com\n    unanswered: {target: sip:b@contoso.com\n",
			`r.yaml:3: did not find expected ',' or '}'`},
		{"unclosed list on the last line", "# one\n# two\n# three\nrules:\n  - user: sip:a@contoso.com\n    busy: [sip:b@contoso.com, \n",
			`r.yaml:6: did not find expected node content`},
		{"error on the first line", "rules: [\n",
			`r.yaml:1: did not find expected node content`},
		{"key under-indented in a rule", "rules:\n  - user: sip:a@contoso.com\n    immediate: sip:b@contoso.com\n   busy: sip:c@contoso.com\n",
			`r.yaml:4: did not find expected '-' indicator`},
		{"key at the list's indentation", "rules:\n  - user: sip:a@contoso.com\n  busy: sip:b@contoso.com\n",
			`r.yaml:3: did not find expected '-' indicator`},
		{"misindented key in the middle", "rules:\n  - user: sip:a@contoso.com\n    immediate: sip:b@contoso.com\n  - user: sip:c@contoso.com\n    immediate: sip:d@contoso.com\n   busy: sip:e@contoso.com\n  - user: sip:f@contoso.com\n    immediate: sip:g@contoso.com\n",
			`r.yaml:6: did not find expected '-' indicator`},
		{"misindented key in a nested mapping", "rules:\n  - user: sip:a@contoso.com\n    unanswered:\n      target: sip:b@contoso.com\n     after: 10s\n",
			`r.yaml:5: did not find expected key`},
		{"tab before a key", "rules:\n  - user: sip:a@contoso.com\n\timmediate: sip:b@contoso.com\n",
			`r.yaml:3: found a tab character that violates indentation`},
		{"undefined tag handle", "rules:\n  - user: sip:a@contoso.com\n    immediate: !x!y sip:b@contoso.com\n",
			`r.yaml:3: found undefined tag handle`},
		{"duplicate directive", "%YAML 1.1\n%YAML 1.1\n---\nrules: []\n",
			`r.yaml:2: found duplicate %YAML directive`},
		{"misindented key in a second document", "rules: []\n---\nrules:\n  - user: sip:a@contoso.com\n    immediate: sip:b@contoso.com\n   busy: x\n",
			`r.yaml:6: did not find expected '-' indicator`},
		{"scanner error (already right)", "rules:\n  - user: sip:a@contoso.com\n    busy: : :\n",
			`r.yaml:3: mapping values are not allowed in this context`},
		{"unterminated quote (already right)", "rules:\n  - user: sip:a@contoso.com\n    immediate: \"sip:b@contoso.com\n  - user: x\n",
			`r.yaml:3: found unexpected end of stream`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("r.yaml", []byte(tc.file), defaultAfter)
			if err == nil {
				t.Fatal("Parse accepted the file")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
