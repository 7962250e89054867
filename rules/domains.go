package rules

import (
	"fmt"
	"strings"
)

// OutsideDomains returns a warning, at the rule's line, for every rule whose
// user is not at one of domains (server.domains). The proxy looks rules up
// only for its own users, under its own domain names (an address of ours in
// a Request-URI is read as the first domain), so such a rule never applies:
// most likely a typo in the domain. It is a warning, not an error: the file
// is still loaded, and the rule starts to apply when the domain is added.
func OutsideDomains(file string, rules []Rule, domains []string) ErrorList {
	ours := make(map[string]bool, len(domains))
	for _, d := range domains {
		ours[strings.ToLower(d)] = true
	}
	var out ErrorList
	for i := range rules {
		r := &rules[i]
		_, host, _ := strings.Cut(r.User, "@")
		if ours[host] {
			continue
		}
		out = append(out, &Error{File: file, Line: r.Line, Msg: fmt.Sprintf(
			"rule for %s: %s is not one of server.domains (%s); the proxy never looks this rule up",
			r.User, host, strings.Join(domains, ", "))})
	}
	return out
}

// ReloaderOption configures a Reloader.
type ReloaderOption func(*Reloader)

// WithDomains makes the Reloader warn (log WARN with file:line) about rules
// for users outside domains on every load (see OutsideDomains).
func WithDomains(domains []string) ReloaderOption {
	return func(r *Reloader) { r.domains = append([]string(nil), domains...) }
}
