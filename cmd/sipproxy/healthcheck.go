package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// defaultMetricsAddr is where the embedded default serves metrics.
const defaultMetricsAddr = "127.0.0.1:9090"

// cmdHealthcheck is `sipproxy healthcheck`: an HTTP GET of /healthz on the
// metrics server, for container HEALTHCHECKs where no curl exists (the
// image is distroless). Exit 0 when it answers 200, 1 otherwise.
//
// With -config it probes the metrics.listen of that file; a wildcard
// address (0.0.0.0, [::]) is probed on loopback. Only that key is read: a
// configuration edited on disk after start does not make a running proxy
// unhealthy.
func cmdHealthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "read the metrics address (metrics.listen) from this configuration file")
	addr := fs.String("addr", "", "metrics server address host:port (default "+defaultMetricsAddr+", or metrics.listen of -config)")
	probe := fs.String("path", "/healthz", "HTTP path to probe (/healthz: alive, /readyz: serving and not draining)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *cfgPath != "" && *addr != "" {
		fmt.Fprintln(stderr, "sipproxy healthcheck: give -config or -addr, not both")
		return 2
	}
	target := *addr
	if *cfgPath != "" {
		a, err := metricsListen(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "sipproxy healthcheck:", err)
			return 1
		}
		target = a
	}
	if target == "" {
		target = defaultMetricsAddr
	}
	target = probeAddr(target)
	if !strings.HasPrefix(*probe, "/") {
		*probe = "/" + *probe
	}
	url := "http://" + target + *probe

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "sipproxy healthcheck:", err)
		return 2
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "sipproxy healthcheck: %s: %v\n", url, err)
		return 1
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "sipproxy healthcheck: %s: %s\n", url, res.Status)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, res.Status)
	return 0
}

// metricsListen reads metrics.listen from a configuration file, and only
// that key.
func metricsListen(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var doc struct {
		Metrics struct {
			Listen string `yaml:"listen"`
		} `yaml:"metrics"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if doc.Metrics.Listen == "" {
		return "", errors.New(path + ": metrics.listen is not set: the metrics server (and /healthz) is disabled")
	}
	return doc.Metrics.Listen, nil
}

// probeAddr turns a listen address into one to connect to: a wildcard
// host is reached on loopback.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		if err == nil && a.Is6() {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
