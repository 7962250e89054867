package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sipproxy/sipproxy/internal/pki"
)

// cmdCerts is `sipproxy certs`: the certificates a TLS configuration
// names, for a lab or a first deployment, in the layout of
// config.example.yaml:
//
//	DIR/internal-ca.crt, .key   issues server certificates (tls_client.ca trusts it)
//	DIR/server.crt, .key        the proxy's certificate, for -server names
//	DIR/clients-ca.crt, .key    issues users' client certificates (client_ca)
//	DIR/USER.crt, .key          a client certificate per -users entry, SAN URI sip:user@domain
//
// The CAs are made once and reused on later runs (their certificates are
// what peers and phones trust); the other files are rewritten each time
// they are asked for. Exit 0 when everything was written, 1 otherwise.
func cmdCerts(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	dir := fs.String("dir", "tls", "directory for the files (created if needed)")
	server := fs.String("server", "", "comma-separated DNS names and IP addresses for the proxy's server certificate (the first is its CN); none: no server certificate")
	users := fs.String("users", "", "comma-separated users (user@domain) to issue client certificates for; their SAN URI is sip:user@domain")
	days := fs.Int("days", 365, "validity of the server and client certificates, in days (the CAs: 10 years)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: sipproxy certs [-dir DIR] [-server NAME,...] [-users USER@DOMAIN,...] [-days N]

Makes the certificates of config.example.yaml's layout in DIR: two CAs
(internal-ca for servers, clients-ca for users; made once, reused later),
the proxy's server certificate server.crt/.key (server and client use, as
Exchange UM's mutual TLS needs) and a client certificate USER.crt/.key per
user. Example, from the directory of config.example.yaml:

  sipproxy certs -dir tls -server sip.contoso.com,contoso.com -users alice@contoso.com,bob@contoso.com

`)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sipproxy certs: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *days < 1 {
		fmt.Fprintln(stderr, "sipproxy certs: -days must be at least 1")
		return 2
	}
	req, err := parseCertRequest(*server, *users)
	if err != nil {
		fmt.Fprintln(stderr, "sipproxy certs:", err)
		return 2
	}
	notAfter := time.Now().AddDate(0, 0, *days)
	if err := writeCerts(*dir, req, notAfter, stdout); err != nil {
		fmt.Fprintln(stderr, "sipproxy certs:", err)
		return 1
	}
	return 0
}

// certRequest is what `certs` was asked to issue.
type certRequest struct {
	dnsNames []string
	ips      []net.IP
	users    []certUser
}

type certUser struct{ user, domain string }

func parseCertRequest(server, users string) (certRequest, error) {
	var r certRequest
	for _, name := range splitList(server) {
		if ip := net.ParseIP(name); ip != nil {
			r.ips = append(r.ips, ip)
		} else {
			r.dnsNames = append(r.dnsNames, name)
		}
	}
	files := map[string]bool{}
	for _, u := range splitList(users) {
		user, domain, ok := strings.Cut(strings.TrimPrefix(u, "sip:"), "@")
		if !ok || user == "" || domain == "" || strings.ContainsAny(user, "/\\:;<> ") || strings.ContainsAny(domain, "/\\;<> @") {
			return r, fmt.Errorf("-users: %q is not user@domain", u)
		}
		// The file is named for the user; two domains' alices would share it.
		if files[user] || user == "server" || user == "internal-ca" || user == "clients-ca" {
			return r, fmt.Errorf("-users: %q would overwrite the file %s.crt", u, user)
		}
		files[user] = true
		r.users = append(r.users, certUser{user, domain})
	}
	return r, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// writeCerts writes the files of req to dir, telling out what it wrote.
func writeCerts(dir string, req certRequest, notAfter time.Time, out io.Writer) error {
	internal, err := loadOrMakeCA(dir, "internal-ca", "sipproxy internal CA", out)
	if err != nil {
		return err
	}
	clients, err := loadOrMakeCA(dir, "clients-ca", "sipproxy clients CA", out)
	if err != nil {
		return err
	}
	if len(req.dnsNames)+len(req.ips) > 0 {
		cn := ""
		if len(req.dnsNames) > 0 {
			cn = req.dnsNames[0]
		} else {
			cn = req.ips[0].String()
		}
		// Client use too: the proxy presents it to Exchange UM (tls_client.cert).
		cert, err := internal.Issue(pki.IssueOptions{CommonName: cn, DNSNames: req.dnsNames, IPs: req.ips, Server: true, Client: true, NotAfter: notAfter})
		if err != nil {
			return err
		}
		c, k, err := pki.WritePEM(dir, "server", cert)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s, %s: the proxy's certificate for %s, issued by internal-ca\n", c, k, strings.Join(append(req.dnsNames, ipStrings(req.ips)...), ", "))
	}
	for _, u := range req.users {
		uri := "sip:" + u.user + "@" + u.domain
		cert, err := clients.Issue(pki.IssueOptions{CommonName: u.user, URIs: []string{uri}, Client: true, NotAfter: notAfter})
		if err != nil {
			return err
		}
		c, k, err := pki.WritePEM(dir, u.user, cert)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s, %s: client certificate of %s, issued by clients-ca\n", c, k, uri)
	}
	return nil
}

// loadOrMakeCA reuses dir/name.crt and .key, or makes them when neither
// exists. A certificate without its key is an error: it may be an
// operator's own CA bundle, which must not be replaced.
func loadOrMakeCA(dir, name, commonName string, out io.Writer) (*pki.CA, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := pki.LoadCA(certPath, keyPath)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "%s: kept (issuing with %s)\n", certPath, keyPath)
		return ca, nil
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	case certErr == nil:
		return nil, fmt.Errorf("%s exists without its key %s: cannot issue with it, and it is not replaced", certPath, keyPath)
	case keyErr == nil:
		return nil, fmt.Errorf("%s exists without its certificate %s: not replaced", keyPath, certPath)
	default:
		return nil, errors.Join(certErr, keyErr)
	}
	ca, err := pki.NewCA(commonName)
	if err != nil {
		return nil, err
	}
	if _, _, err := ca.WriteKeyPEM(dir, name); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "%s, %s: new CA %q (keep the key private)\n", certPath, keyPath, commonName)
	return ca, nil
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
