package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy"
)

// demoRulesHeader opens the rules file written for the embedded default,
// so that whoever opens it knows what it is and what editing it does.
const demoRulesHeader = `# The forwarding rules of sipproxy's embedded demo configuration (run
# without -config). sipproxy wrote this file on its first run and never
# overwrites it. Edit and save it while the proxy runs: the proxy reloads
# it and new calls follow the new rules; a broken file is refused whole and
# the previous rules keep serving. Delete it to get the demo rules back.
# docs/rules.md describes the format.
#
`

// demoRules is the embedded default's rules file: where it is and whether
// this start wrote it.
type demoRules struct {
	path    string
	written bool // false: an earlier run's file, perhaps edited, was kept
}

// demoRulesPath is where the embedded default keeps its rules file: per
// user, outside the repository, and the same on every start so that edits
// last: $XDG_STATE_HOME/sipproxy/rules.yaml, or the user cache directory
// ($XDG_CACHE_HOME or ~/.cache on Linux).
func demoRulesPath() (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(dir) { // the XDG rule: a relative value is ignored
		var err error
		if dir, err = os.UserCacheDir(); err != nil {
			return "", fmt.Errorf("no directory for the demo rules file: %w", err)
		}
	}
	return filepath.Join(dir, "sipproxy", "rules.yaml"), nil
}

// useDemoRulesFile gives the embedded default a rules file an operator can
// edit, as a configuration file's forwarding.rules_file: the compiled-in
// rules are written to demoRulesPath unless a file is already there (never
// overwritten: it may hold the operator's edits), and cfg is pointed at it
// so that `run` watches and hot-reloads it like any rules file.
func useDemoRulesFile(cfg *config.Config) (demoRules, error) {
	path, err := demoRulesPath()
	if err != nil {
		return demoRules{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return demoRules{}, fmt.Errorf("demo rules file: %w", err)
	}
	written, err := createOnce(path, demoRulesHeader+string(cfg.Forwarding.EmbeddedRules))
	if err != nil {
		return demoRules{}, fmt.Errorf("demo rules file: %w", err)
	}
	cfg.Forwarding.RulesFile = path
	return demoRules{path: path, written: written}, nil
}

// createOnce writes data to path unless a file is already there, and
// reports whether it wrote it. The data is written to a temporary file
// first and linked into place, so that no reader (a second sipproxy
// starting at the same moment) ever sees half of it, and an existing file
// is never replaced.
func createOnce(path, data string) (bool, error) {
	if _, err := os.Lstat(path); err == nil {
		return false, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".rules-*.yaml")
	if err != nil {
		return false, err
	}
	defer os.Remove(f.Name())
	_, err = io.WriteString(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	switch err := os.Link(f.Name(), path); {
	case errors.Is(err, fs.ErrExist):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// printTour tells a newcomer running the embedded default what runs, what
// to do next, and, once, the shortcuts the demo takes: they are its own
// choices, so they are stated here instead of logged as warnings (a
// configuration file that takes them still gets a warning each).
func printTour(w io.Writer, cfg *config.Config, srv *proxy.Server, ms *metrics.Server, rules demoRules, rulesErr error) {
	metricsURL, health := "(disabled)", "-"
	if ms != nil {
		metricsURL = "http://" + ms.Addr() + "/metrics"
		health = "http://" + ms.Addr() + "/healthz"
	}
	var users []string
	for _, u := range cfg.Auth.Users {
		users = append(users, u.User)
	}
	fmt.Fprintf(w, `sipproxy is running on its embedded loopback demo configuration.

  SIP      udp %s   tcp %s   tls %s (self-signed certificate)
  domain   %s   users %s (password: <user>-secret)
  metrics  %s   health %s
`, srv.Addr("udp"), srv.Addr("tcp"), srv.Addr("tls"), strings.Join(cfg.Server.Domains, ", "), strings.Join(users, ", "), metricsURL, health)

	const demoRulesText = "dave forwards to alice at once; carol's unanswered and busy calls go to her voicemail"
	switch {
	case rulesErr != nil:
		fmt.Fprintf(w, "  rules    compiled in, not editable (%v)\n           %s\n", rulesErr, demoRulesText)
	case rules.written:
		fmt.Fprintf(w, "  rules    %s (written now)\n           %s;\n           edit and save the file: the running proxy reloads it\n", rules.path, demoRulesText)
	default:
		fmt.Fprintf(w, "  rules    %s (kept from an earlier run; delete it to get the demo rules back)\n           edit and save the file: the running proxy reloads it\n", rules.path)
	}

	fmt.Fprintf(w, `
The demo's shortcuts, fine on loopback and nowhere else:
  digest   offers %s only, which sipp, baresip and linphone all answer as they
           are; a configuration file offers SHA-256, then MD5 (RFC 8760),
           unless auth.algorithms says otherwise
  users    plain passwords in the configuration instead of ha1 hashes
  TLS      next hops are not verified (tls_client.insecure_skip_verify): the
           voicemail server %s is a loopback stand-in
A configuration file given with -config that takes the last two gets a
warning for each.

Try it:
  sipp -sn uac -s bob %s -m 1     (bob is not registered: you get 480)
  curl -s %s | grep ^sipproxy_
  register a softphone as alice@contoso.com (password alice-secret) to %s

Stop with Ctrl-C (drains in-flight calls); SIGHUP reloads forwarding rules.
`, strings.Join(cfg.Auth.Algorithms, " and "), cfg.Voicemail.URI, srv.Addr("udp"), metricsURL, srv.Addr("udp"))
}
