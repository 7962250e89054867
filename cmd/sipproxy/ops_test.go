package main

// Operations checks that need no Docker engine and no Prometheus:
//
//   - the Dockerfile's build command, run exactly as written, produces a
//     static binary stamped with the version it is given;
//   - the Dockerfile's user, ports, volume, entrypoint and health check
//     agree with the code's defaults, config.example.yaml and the docs, and
//     .dockerignore keeps nothing the build needs out of the context;
//   - config.example.yaml passes `sipproxy check`;
//   - every metric the Grafana dashboard and the alerting rules use is one
//     a running proxy exports.

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/internal/pki"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy"
	"github.com/sipproxy/sipproxy/rules"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = "../.."

// --- Dockerfile parsing ---

// instruction is one Dockerfile instruction with continuation lines joined.
type instruction struct {
	line int    // first line
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur *instruction
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimSpace(line)
		if cur == nil && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(trimmed, "#") {
			continue // comment lines inside a continuation are dropped
		}
		cont := strings.HasSuffix(line, "\\")
		line = strings.TrimSuffix(line, "\\")
		if cur == nil {
			cmd, args, _ := strings.Cut(strings.TrimSpace(line), " ")
			cur = &instruction{line: i + 1, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		} else {
			cur.args += " " + strings.TrimSpace(line)
		}
		if !cont {
			cur.args = strings.TrimSpace(cur.args)
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("Dockerfile:%d: continuation at end of file", cur.line)
	}
	return out
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

func find(ins []instruction, cmd string) []instruction {
	var out []instruction
	for _, in := range ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument list.
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("Dockerfile:%d: %s must use the exec (JSON array) form: %q", in.line, in.cmd, in.args)
	}
	return argv
}

// shellWords splits a shell command line: blanks separate words, quotes
// group, backslash escapes. Enough for a Dockerfile RUN line; anything
// fancier (pipes, &&, substitutions) is refused.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`, s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unclosed \" in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte("|&;<>`()", c) >= 0:
			return nil, fmt.Errorf("shell syntax %q not supported in %q", c, s)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

var dockerVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expand replaces ${NAME} and $NAME; an unknown name fails the test.
func expand(t *testing.T, s string, vars map[string]string) string {
	t.Helper()
	return dockerVar.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		v, ok := vars[name]
		if !ok {
			t.Fatalf("Dockerfile uses $%s, which no ARG defines", name)
		}
		return v
	})
}

// argDefaults collects ARG NAME=default values (global and per stage).
func argDefaults(ins []instruction) map[string]string {
	vars := map[string]string{}
	for _, in := range find(ins, "ARG") {
		name, def, _ := strings.Cut(in.args, "=")
		vars[strings.TrimSpace(name)] = strings.Trim(strings.TrimSpace(def), `"`)
	}
	return vars
}

// buildCommand is the Dockerfile's `go build` RUN line, taken apart.
type buildCommand struct {
	line   int
	env    []string // leading NAME=value assignments
	argv   []string // go build ...
	output string   // the -o value
}

func dockerBuildCommand(t *testing.T, ins []instruction, vars map[string]string) buildCommand {
	t.Helper()
	var runs []instruction
	for _, in := range find(ins, "RUN") {
		if strings.Contains(in.args, "go build") {
			runs = append(runs, in)
		}
	}
	if len(runs) != 1 {
		t.Fatalf("want exactly one RUN with go build in the Dockerfile, found %d", len(runs))
	}
	in := runs[0]
	words, err := shellWords(expand(t, in.args, vars))
	if err != nil {
		t.Fatalf("Dockerfile:%d: %v", in.line, err)
	}
	bc := buildCommand{line: in.line}
	for len(words) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) {
		bc.env, words = append(bc.env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile:%d: RUN is not a plain `go build` command: %q", in.line, words)
	}
	bc.argv = words
	for i, w := range words {
		if w == "-o" && i+1 < len(words) {
			bc.output = words[i+1]
		}
	}
	if bc.output == "" {
		t.Fatalf("Dockerfile:%d: go build has no -o", in.line)
	}
	return bc
}

// --- the build ---

// TestOpsDockerfileBuildsStaticBinary runs the Dockerfile's go build line,
// as written, into a temporary directory and checks that the result is a
// static, stripped, trimpath binary that reports the version it was given.
func TestOpsDockerfileBuildsStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux: the ELF checks and running the binary need a linux host")
	}
	ins := readDockerfile(t)
	st := stages(ins)
	if len(st) < 2 {
		t.Fatalf("the Dockerfile has %d stages, want a builder and a runtime stage", len(st))
	}

	// The builder's Go is the go.mod's Go.
	vars := argDefaults(ins)
	from := strings.Fields(expand(t, st[0][0].args, vars))
	if len(from) != 3 || !strings.EqualFold(from[1], "AS") {
		t.Fatalf("Dockerfile:%d: want `FROM golang:<version> AS <name>`, got %q", st[0][0].line, st[0][0].args)
	}
	builder, stageName := from[0], from[2]
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "golang:" + string(goLine[1]); builder != want && !strings.HasPrefix(builder, want+".") && !strings.HasPrefix(builder, want+"-") {
		t.Errorf("builder image %s does not match go.mod's go %s (want %s...)", builder, goLine[1], want)
	}

	const version = "ops-test-1.2.3"
	vars["VERSION"] = version
	bc := dockerBuildCommand(t, st[0], vars)
	if !slices.Contains(bc.env, "CGO_ENABLED=0") {
		t.Errorf("Dockerfile:%d: the build does not set CGO_ENABLED=0: %q", bc.line, bc.env)
	}
	for _, flag := range []string{"-trimpath", "-ldflags"} {
		if !slices.Contains(bc.argv, flag) {
			t.Errorf("Dockerfile:%d: go build lacks %s", bc.line, flag)
		}
	}

	// The runtime stage copies that output and runs it.
	runtime := st[len(st)-1]
	var copied string
	for _, c := range find(runtime, "COPY") {
		f := strings.Fields(c.args)
		if len(f) == 3 && f[0] == "--from="+stageName && f[1] == bc.output {
			copied = f[2]
		}
	}
	if copied == "" {
		t.Errorf("the runtime stage does not COPY --from=%s %s", stageName, bc.output)
	}
	for _, cmd := range []string{"ENTRYPOINT", "HEALTHCHECK"} {
		for _, in := range find(runtime, cmd) {
			argv := execForm(t, instruction{line: in.line, cmd: cmd, args: in.args[strings.Index(in.args, "["):]})
			if argv[0] != copied {
				t.Errorf("Dockerfile:%d: %s runs %s, but the binary is copied to %s", in.line, cmd, argv[0], copied)
			}
		}
	}

	// Build, as the Dockerfile does, but into a temporary directory.
	out := filepath.Join(t.TempDir(), "sipproxy")
	argv := slices.Clone(bc.argv)
	for i := range argv {
		if argv[i] == bc.output && i > 0 && argv[i-1] == "-o" {
			argv[i] = out
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = repoRoot
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CGO_ENABLED=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, bc.env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s (from Dockerfile:%d): %v\n%s", strings.Join(bc.env, " ")+" "+strings.Join(argv, " "), bc.line, err, b)
	}

	bi, err := buildinfo.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" {
		t.Errorf("build setting CGO_ENABLED=%q, want 0", settings["CGO_ENABLED"])
	}
	if settings["-trimpath"] != "true" {
		t.Errorf("build setting -trimpath=%q, want true", settings["-trimpath"])
	}
	// With -trimpath, go does not record -ldflags; `version` below shows
	// that -X main.version took effect.
	if bi.Path != "github.com/sipproxy/sipproxy/cmd/sipproxy" {
		t.Errorf("built %s, want the sipproxy command", bi.Path)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %q", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -ldflags -s did not apply")
	}

	got, err := exec.Command(out, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "sipproxy " + version + "\n"; string(got) != want {
		t.Errorf("version prints %q, want %q", got, want)
	}
}

// --- the image's contract ---

// exposedPorts are the ports a configuration serves, as EXPOSE writes them.
func exposedPorts(c *config.Config) map[string]bool {
	out := map[string]bool{}
	for _, l := range c.Server.Listen {
		proto := "tcp"
		if l.Transport == "udp" {
			proto = "udp"
		}
		_, port, _ := net.SplitHostPort(l.Addr)
		out[port+"/"+proto] = true
	}
	if c.Metrics.Listen != "" {
		_, port, _ := net.SplitHostPort(c.Metrics.Listen)
		out[port+"/tcp"] = true
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpsDockerfileContract: the runtime stage runs as a non-root user,
// exposes exactly the ports of the embedded default and of
// config.example.yaml, reads its configuration from a volume, and its
// health check really probes a metrics server's /healthz.
func TestOpsDockerfileContract(t *testing.T) {
	ins := readDockerfile(t)
	st := stages(ins)
	runtime := st[len(st)-1]

	if base := strings.Fields(runtime[0].args)[0]; !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("runtime image %s: want distroless static or scratch", base)
	}

	t.Run("non-root user", func(t *testing.T) {
		users := find(runtime, "USER")
		if len(users) == 0 {
			t.Fatal("the runtime stage sets no USER: it would run as root")
		}
		u := users[len(users)-1]
		uid, gid, hasGID := strings.Cut(u.args, ":")
		for _, id := range []string{uid, gid} {
			if id == "" && hasGID {
				t.Fatalf("Dockerfile:%d: USER %q", u.line, u.args)
			}
			if id == "" {
				continue
			}
			n, err := strconv.Atoi(id)
			if err != nil {
				t.Errorf("Dockerfile:%d: USER %q is not numeric (Kubernetes runAsNonRoot cannot verify a name)", u.line, u.args)
			} else if n == 0 {
				t.Errorf("Dockerfile:%d: USER %q is root", u.line, u.args)
			}
		}
	})

	t.Run("ports", func(t *testing.T) {
		exposed := map[string]bool{}
		for _, e := range find(runtime, "EXPOSE") {
			for _, p := range strings.Fields(e.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				exposed[p] = true
			}
		}
		def, err := config.Default()
		if err != nil {
			t.Fatal(err)
		}
		example := loadExample(t)
		for name, c := range map[string]*config.Config{"embedded default": def, "config.example.yaml": example} {
			if got, want := keys(exposed), keys(exposedPorts(c)); !slices.Equal(got, want) {
				t.Errorf("EXPOSE %v, but the %s serves %v", got, name, want)
			}
		}
	})

	var configPath string
	t.Run("entrypoint and volume", func(t *testing.T) {
		eps := find(runtime, "ENTRYPOINT")
		if len(eps) != 1 {
			t.Fatalf("want one ENTRYPOINT, found %d", len(eps))
		}
		argv := execForm(t, eps[0])
		if len(argv) != 4 || argv[1] != "run" || argv[2] != "-config" {
			t.Fatalf("ENTRYPOINT %q: want [binary, run, -config, FILE]", argv)
		}
		configPath = argv[3]
		var volumes []string
		for _, v := range find(runtime, "VOLUME") {
			if strings.HasPrefix(v.args, "[") {
				volumes = append(volumes, execForm(t, v)...)
			} else {
				volumes = append(volumes, strings.Fields(v.args)...)
			}
		}
		if !slices.Contains(volumes, path.Dir(configPath)) {
			t.Errorf("the configuration %s is not on a VOLUME (volumes: %q)", configPath, volumes)
		}
		// config.example.yaml keeps its state file there: it must outlive
		// the container and be writable by its user.
		if !slices.Contains(volumes, "/var/lib/sipproxy") {
			t.Errorf("the state directory /var/lib/sipproxy is not a VOLUME (volumes: %q)", volumes)
		}
		if cp := find(runtime, "COPY"); !slices.ContainsFunc(cp, func(c instruction) bool {
			return strings.Contains(c.args, "--chown=65532:65532") && strings.HasSuffix(c.args, " /var/lib/sipproxy")
		}) {
			t.Error("the state directory /var/lib/sipproxy is not made writable by the image's user (COPY --chown=65532:65532)")
		}
		for _, s := range find(runtime, "STOPSIGNAL") {
			if s.args != "SIGTERM" {
				t.Errorf("STOPSIGNAL %s: sipproxy drains on SIGTERM", s.args)
			}
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		hcs := find(runtime, "HEALTHCHECK")
		if len(hcs) != 1 {
			t.Fatalf("want one HEALTHCHECK, found %d", len(hcs))
		}
		hc := hcs[0]
		i := strings.Index(hc.args, "CMD ")
		if i < 0 {
			t.Fatalf("Dockerfile:%d: HEALTHCHECK without CMD", hc.line)
		}
		argv := execForm(t, instruction{line: hc.line, cmd: "HEALTHCHECK", args: strings.TrimSpace(hc.args[i+4:])})
		if len(argv) < 2 || argv[1] != "healthcheck" {
			t.Fatalf("HEALTHCHECK runs %q: want the binary's healthcheck command (distroless has no curl)", argv)
		}
		args := slices.Clone(argv[1:])
		ci := slices.Index(args, "-config")
		if ci < 0 || ci+1 >= len(args) {
			t.Fatalf("HEALTHCHECK %q: want -config FILE, so the probe follows metrics.listen", argv)
		}
		if configPath != "" && args[ci+1] != configPath {
			t.Errorf("HEALTHCHECK reads %s, the ENTRYPOINT runs %s", args[ci+1], configPath)
		}

		// A metrics server as `run` starts it; the container's configuration
		// listens on the wildcard address, which the probe must reach.
		ms, err := metrics.Listen("127.0.0.1:0", metrics.New(), func() bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		go ms.Serve()
		_, port, _ := net.SplitHostPort(ms.Addr())
		cfg := filepath.Join(t.TempDir(), "sipproxy.yaml")
		os.WriteFile(cfg, []byte("metrics:\n  listen: \"0.0.0.0:"+port+"\"\n"), 0o600)
		args[ci+1] = cfg

		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("HEALTHCHECK command against a live metrics server: exit %d\n%s%s", code, out.String(), errb.String())
		}
		if !strings.Contains(out.String(), "/healthz: 200") {
			t.Errorf("the probe did not GET /healthz: %q", out.String())
		}
		// /readyz is 503 here (not ready): -path /readyz must fail.
		errb.Reset()
		if code := run(append(slices.Clone(args), "-path", "/readyz"), io.Discard, &errb); code != 1 {
			t.Errorf("healthcheck -path /readyz on a server that is not ready: exit %d, want 1", code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ms.Shutdown(ctx)
		errb.Reset()
		if code := run(args, io.Discard, &errb); code != 1 {
			t.Errorf("HEALTHCHECK command with the metrics server down: exit %d, want 1", code)
		}
	})

	t.Run("documented", func(t *testing.T) {
		doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deployment.md"))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"/healthz", "/readyz", "-drain-timeout", "--stop-timeout", "65532", "/etc/sipproxy"}
		for _, e := range find(runtime, "EXPOSE") {
			want = append(want, strings.Fields(e.args)...)
		}
		for _, w := range want {
			if !strings.Contains(string(doc), w) {
				t.Errorf("docs/deployment.md does not mention %q", w)
			}
		}
	})
}

// TestOpsHealthcheckFlags covers the healthcheck command's own options.
func TestOpsHealthcheckFlags(t *testing.T) {
	ms, err := metrics.Listen("127.0.0.1:0", metrics.New(), func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	go ms.Serve()
	defer ms.Shutdown(context.Background())
	dir := t.TempDir()
	noMetrics := filepath.Join(dir, "nometrics.yaml")
	os.WriteFile(noMetrics, []byte("server:\n  domains: [contoso.com]\n"), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-addr", ms.Addr()}, 0, "/healthz: 200"},
		{[]string{"-addr", ms.Addr(), "-path", "/readyz"}, 0, "/readyz: 200"},
		{[]string{"-addr", ms.Addr(), "-path", "/nope"}, 1, "404"},
		{[]string{"-config", noMetrics}, 1, "metrics.listen is not set"},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{"-config", noMetrics, "-addr", ms.Addr()}, 2, "not both"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"healthcheck"}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.msg) {
			t.Errorf("healthcheck %q: exit %d, output %q; want exit %d and %q", tc.args, code, out.String()+errb.String(), tc.code, tc.msg)
		}
	}
	for in, want := range map[string]string{
		"0.0.0.0:9090":   "127.0.0.1:9090",
		"[::]:9090":      "[::1]:9090",
		":9090":          "127.0.0.1:9090",
		"10.1.2.3:9090":  "10.1.2.3:9090",
		"127.0.0.1:9091": "127.0.0.1:9091",
	} {
		if got := probeAddr(in); got != want {
			t.Errorf("probeAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// --- .dockerignore ---

// dockerignoreMatcher implements .dockerignore matching: patterns relative
// to the context root, * and ? within a path element, ** across elements,
// a directory pattern excluding everything below it, ! re-including, the
// last matching pattern winning.
type dockerignoreMatcher struct {
	res     []*regexp.Regexp
	exclude []bool
}

func newDockerignore(t *testing.T, data string) *dockerignoreMatcher {
	t.Helper()
	m := &dockerignoreMatcher{}
	for _, line := range strings.Split(data, "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		excl := true
		if strings.HasPrefix(p, "!") {
			excl, p = false, strings.TrimSpace(p[1:])
		}
		p = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$") // a directory excludes its contents
		m.res = append(m.res, regexp.MustCompile(re.String()))
		m.exclude = append(m.exclude, excl)
	}
	return m
}

func (m *dockerignoreMatcher) excluded(rel string) bool {
	out := false
	for i, re := range m.res {
		if re.MatchString(rel) {
			out = m.exclude[i]
		}
	}
	return out
}

// TestOpsDockerignore: the build context keeps every file `go build
// ./cmd/sipproxy` reads (sources, embedded files, go.mod, go.sum) and drops
// the repository metadata and key material.
func TestOpsDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	m := newDockerignore(t, string(data))

	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/sipproxy")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Path string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "github.com/sipproxy/sipproxy" {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(needed) < 20 {
		t.Fatalf("only %d files found for the build: %q", len(needed), needed)
	}
	for _, f := range needed {
		if m.excluded(f) {
			t.Errorf(".dockerignore excludes %s, which the build reads", f)
		}
	}
	for _, f := range []string{".git/HEAD", "tls/server.key", "deploy/tls/server.crt", "proxy/testdata/client.key", "sipproxy.yaml", "sipproxy"} {
		if !m.excluded(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

// --- config.example.yaml ---

// exampleDir copies config.example.yaml and its rules file into a
// temporary directory, with the tls/ files it names generated there.
func exampleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"config.example.yaml", "rules.example.yaml"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tlsDir := filepath.Join(dir, "tls")
	internal, err := pki.NewCA("Contoso internal CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := internal.WritePEM(tlsDir, "internal-ca"); err != nil {
		t.Fatal(err)
	}
	clients, err := pki.NewCA("Contoso clients CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients.WritePEM(tlsDir, "clients-ca"); err != nil {
		t.Fatal(err)
	}
	server, err := internal.Issue(pki.IssueOptions{CommonName: "sip.contoso.com", DNSNames: []string{"sip.contoso.com", "contoso.com"}, Server: true, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.WritePEM(tlsDir, "server", server); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadExample(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Load(filepath.Join(exampleDir(t), "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOpsExampleConfigCheck is `sipproxy check -config config.example.yaml`
// with the example's certificate files in place: exit 0, no warnings. And
// check is not a rubber stamp: without the server key it fails naming it.
func TestOpsExampleConfigCheck(t *testing.T) {
	dir := exampleDir(t)
	file := filepath.Join(dir, "config.example.yaml")
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-config", file}, &out, &errb); code != 0 {
		t.Fatalf("sipproxy check -config config.example.yaml: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if want := file + ": ok\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if errb.Len() != 0 {
		t.Errorf("the production example has warnings:\n%s", errb.String())
	}

	if err := os.Remove(filepath.Join(dir, "tls", "server.key")); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "-config", file}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "server.key") {
		t.Errorf("check without tls/server.key: exit %d, stderr %q; want 1 naming the key", code, errb.String())
	}
}

// --- dashboard and alerts ---

// exportedNames starts a proxy in-process as `run` wires it (rules file,
// metrics server on a free port), makes it do a little of everything
// (a request carrying skip-pin, a message over the size limit), scrapes
// /metrics and returns the names PromQL can select, with their family type.
func exportedNames(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte("rules:\n  - user: sip:carol@contoso.com\n    busy: \"sip:carol@contoso.com;opaque=app:voicemail\"\n"), 0o600)
	cfg, err := config.LoadBytes("ops.yaml", []byte(`
server:
  domains: [contoso.com]
  listen:
    - {transport: udp, addr: "127.0.0.1:0"}
    - {transport: tcp, addr: "127.0.0.1:0"}
    - {transport: tls, addr: "127.0.0.1:0", self_signed: true}
voicemail:
  uri: "sip:127.0.0.1:9;transport=tls"
auth:
  realm: contoso.com
  users:
    - {user: alice, password: alice-pw}
forwarding:
  rules_file: rules.yaml
metrics:
  listen: "127.0.0.1:0"
limits:
  max_message_bytes: 4096
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New()
	store := rules.New()
	reloader := rules.NewReloader(cfg.Forwarding.RulesFile, store, cfg.Forwarding.DefaultAfter.Duration, log, m)
	if err := reloader.Load(); err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: log, Metrics: m, Rules: store})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := metrics.Listen(cfg.Metrics.Listen, m, srv.Ready)
	if err != nil {
		t.Fatal(err)
	}
	go ms.Serve()
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ms.Shutdown(ctx)
	})

	// OPTIONS to the proxy carrying skip-pin: requests, responses, latency,
	// and a skip-pin decision (stripped: not an INVITE).
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(srv.Addr("udp"))
	p, _ := strconv.Atoi(port)
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: host, Port: p})
	req.AppendHeader(sip.NewHeader("Ms-Exchange-Command", "skip-pin"))
	req.SetTransport("UDP")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %v %v", res, err)
	}
	// A datagram over limits.max_message_bytes: sipproxy_throttled_total.
	c, err := net.Dial("udp", srv.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write(bytes.Repeat([]byte("x"), 5000))
	c.Close()

	want := []string{"sipproxy_requests_total", "sipproxy_responses_total", "sipproxy_request_duration_seconds",
		"sipproxy_skip_pin_total", "sipproxy_throttled_total", "sipproxy_rules_loaded", "process_cpu_seconds_total", "go_goroutines"}
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; {
		fams = scrape(t, "http://"+ms.Addr()+"/metrics")
		missing := slices.DeleteFunc(slices.Clone(want), func(n string) bool { return fams[n] != nil })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running proxy never exported %q", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	names := map[string]string{}
	for name, f := range fams {
		typ := f.GetType().String()
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = typ
			}
		case dto.MetricType_SUMMARY:
			names[name], names[name+"_sum"], names[name+"_count"] = typ, typ, typ
		default:
			names[name] = typ
		}
	}
	return names
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

var (
	promQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promIdent  = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	metricName = regexp.MustCompile(`^[a-z_:][a-z0-9_:]*$`)
)

// metricNames picks the metric names out of a PromQL expression, crudely:
// string literals removed, identifiers of ours (sipproxy_, process_, go_).
func metricNames(expr string) []string {
	var out []string
	for _, id := range promIdent.FindAllString(promQuoted.ReplaceAllString(expr, `""`), -1) {
		if !metricName.MatchString(id) {
			continue
		}
		if strings.HasPrefix(id, "sipproxy_") || strings.HasPrefix(id, "process_") || strings.HasPrefix(id, "go_") {
			out = append(out, id)
		}
	}
	return out
}

// unknownMetrics lists the names in expr that the proxy does not export.
func unknownMetrics(expr string, exported map[string]string) []string {
	var out []string
	for _, n := range metricNames(expr) {
		if _, ok := exported[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

func balanced(expr string) bool {
	s := promQuoted.ReplaceAllString(expr, `""`)
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range s {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0
}

// dashboardExprs checks the dashboard's structure and returns every PromQL
// expression in it (panel targets and variable queries), each with where
// it is.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource struct {
			Type, UID string
		} `json:"datasource"`
	}
	type panel struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			Type, UID string
		} `json:"datasource"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
		Targets []target                 `json:"targets"`
		Panels  []json.RawMessage        `json:"panels"`
	}
	var dash struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Type, Name string
				Query      any `json:"query"`
				Definition string
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q title %q schemaVersion %d: want a Grafana 10+ model (schemaVersion >= 36) with uid and title", dash.UID, dash.Title, dash.SchemaVersion)
	}
	exprs := map[string]string{}
	vars := map[string]bool{}
	hasDS := false
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		switch {
		case v.Type == "datasource":
			hasDS = hasDS || (v.Name == "datasource" && v.Query == "prometheus")
		case v.Type == "query":
			q := v.Definition
			if m, ok := v.Query.(map[string]any); ok {
				q, _ = m["query"].(string)
			} else if s, ok := v.Query.(string); ok {
				q = s
			}
			if q == "" {
				t.Errorf("variable %s has no query", v.Name)
			}
			exprs["variable "+v.Name] = q
		}
	}
	if !hasDS {
		t.Error(`the dashboard has no Prometheus data source variable {"type": "datasource", "name": "datasource", "query": "prometheus"}`)
	}
	ids := map[int]string{}
	var rects [][4]int
	for _, p := range dash.Panels {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or shared with %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for i, r := range rects {
			if g.X < r[0]+r[2] && r[0] < g.X+g.W && g.Y < r[1]+r[3] && r[1] < g.Y+g.H {
				t.Errorf("panel %q overlaps panel %d", p.Title, i)
			}
		}
		rects = append(rects, [4]int{g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			if len(p.Panels) > 0 {
				t.Errorf("row %q is collapsed: its panels are not checked", p.Title)
			}
			continue
		}
		if p.Title == "" || p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: want a title, the ${datasource} variable and targets", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: target %+v: want an expr, a unique refId and the ${datasource} variable", p.Title, tg)
			}
			refs[tg.RefID] = true
			exprs[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	// Every $variable an expression uses is defined.
	varRef := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	for where, e := range exprs {
		for _, m := range varRef.FindAllStringSubmatch(e, -1) {
			if !strings.HasPrefix(m[1], "__") && !vars[m[1]] {
				t.Errorf("%s uses $%s, which is not a dashboard variable", where, m[1])
			}
		}
	}
	return exprs
}

// alertExprs checks the rule file's structure and returns every alert's
// expression by alert name.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("docs/alerts.yaml: %v", err)
	}
	exprs := map[string]string{}
	groups := map[string]bool{}
	for _, g := range file.Groups {
		if g.Name == "" || groups[g.Name] || len(g.Rules) == 0 {
			t.Errorf("group %q: want a unique name and rules", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			if r.Alert == "" || r.Record != "" {
				t.Errorf("group %s: a rule that is not an alert: %+v", g.Name, r)
				continue
			}
			if _, dup := exprs[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			if strings.TrimSpace(r.Expr) == "" || !balanced(r.Expr) {
				t.Errorf("alert %s: expr %q is empty or has unbalanced brackets", r.Alert, r.Expr)
			}
			exprs[r.Alert] = r.Expr
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: want summary and description annotations", r.Alert)
			}
		}
	}
	return exprs
}

// TestOpsDashboardAndAlertsUseExportedMetrics: every metric name in
// docs/grafana-dashboard.json and docs/alerts.yaml is exported by a running
// proxy (histograms as _bucket/_sum/_count), and both files cover what
// operators need.
func TestOpsDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedNames(t)

	// The check itself: misspelt and bare-histogram names are caught.
	for expr, bad := range map[string][]string{
		`rate(sipproxy_request_total{method="INVITE"}[5m])`:                           {"sipproxy_request_total"},
		`sipproxy_request_duration_seconds{le="0.1"}`:                                 {"sipproxy_request_duration_seconds"},
		`sum(rate(sipproxy_skip_pin_total{reason="go_away"}[5m]))`:                    nil,
		`histogram_quantile(0.9, rate(sipproxy_request_duration_seconds_bucket[5m]))`: nil,
		`process_resident_memory_byte`:                                                {"process_resident_memory_byte"},
	} {
		if got := unknownMetrics(expr, exported); !slices.Equal(got, bad) {
			t.Errorf("unknownMetrics(%q) = %q, want %q", expr, got, bad)
		}
	}

	for file, exprs := range map[string]map[string]string{
		"docs/grafana-dashboard.json": dashboardExprs(t),
		"docs/alerts.yaml":            alertExprs(t),
	} {
		used := map[string]bool{}
		for where, e := range exprs {
			for _, n := range metricNames(e) {
				used[n] = true
			}
			if bad := unknownMetrics(e, exported); len(bad) > 0 {
				t.Errorf("%s: %s uses %q, which the running proxy does not export", file, where, bad)
			}
		}
		var need []string
		switch file {
		case "docs/grafana-dashboard.json":
			need = []string{"sipproxy_requests_total", "sipproxy_responses_total", "sipproxy_skip_pin_total",
				"sipproxy_forwarding_total", "sipproxy_registrations_active", "sipproxy_transactions_active",
				"sipproxy_rules_loaded", "sipproxy_rules_reload_total", "sipproxy_rules_last_reload_timestamp_seconds",
				"sipproxy_request_duration_seconds_bucket", "process_cpu_seconds_total", "process_resident_memory_bytes"}
		default:
			need = []string{"sipproxy_rules_reload_total", "sipproxy_skip_pin_total", "sipproxy_responses_total", "sipproxy_registrations_active"}
		}
		for _, n := range need {
			if !used[n] {
				t.Errorf("%s does not use %s", file, n)
			}
		}
		t.Logf("%s: %d expressions, metrics %q", file, len(exprs), keys(used))
	}

	alerts := alertExprs(t)
	for _, name := range []string{"SipproxyDown", "SipproxyNotReady", "SipproxyRulesReloadFailed",
		"SipproxySkipPinStripsSpiking", "SipproxyHigh5xxRatio", "SipproxyNoRegistrations"} {
		if _, ok := alerts[name]; !ok {
			t.Errorf("docs/alerts.yaml has no alert %s", name)
		}
	}

	// promtool, where installed, checks the PromQL for real.
	if pt, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(pt, "check", "rules", filepath.Join(repoRoot, "docs", "alerts.yaml")).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules docs/alerts.yaml: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not on PATH: PromQL syntax checked only for balanced brackets")
	}
}
