// Command sipproxy is a SIP edge proxy that stands in front of Exchange
// Unified Messaging and enforces the [MS-OCEXUM] call-control extensions.
//
//	sipproxy [run] [-config FILE]   serve (the embedded loopback demo without -config)
//	sipproxy check -config FILE     validate a configuration; exit 1 when invalid
//	sipproxy version                print the version
//	sipproxy demo                   run the guided MS-OCEXUM demo
//	sipproxy healthcheck            probe /healthz (for container HEALTHCHECK)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy"
	"github.com/sipproxy/sipproxy/proxy/state"
	"github.com/sipproxy/sipproxy/rules"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	proxy.ConfigureSIPStack() // sipgo's globals, once, before anything runs
	tuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "demo":
		return cmdDemo(args, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "sipproxy: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  sipproxy [run] [-config FILE]   serve SIP (without -config: the embedded loopback demo)
  sipproxy check -config FILE     validate a configuration (exit 0 valid, 1 invalid)
  sipproxy demo [-free-ports]     run the MS-OCEXUM scenarios on the embedded default, then exit
  sipproxy healthcheck [-config FILE | -addr HOST:PORT]  probe /healthz (exit 0 healthy, 1 not)
  sipproxy version                print the version

signals: SIGHUP reloads the forwarding rules; SIGTERM or SIGINT drains and exits.
`)
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "sipproxy " + v
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file to validate")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "sipproxy check: -config FILE is required")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Forwarding.RulesFile != "" {
		data, err := os.ReadFile(cfg.Forwarding.RulesFile)
		if err == nil {
			_, err = rules.Parse(cfg.Forwarding.RulesFile, data, cfg.Forwarding.DefaultAfter.Duration)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	// The state backend is probed without changing anything: the file's
	// directory must be writable, Redis must answer PING.
	if err := state.Check(context.Background(), cfg.State); err != nil {
		fmt.Fprintf(stderr, "%s:%d: %v\n", *path, cfg.State.Line, err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w.Error())
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded loopback demo)")
	drain := fs.Duration("drain-timeout", 35*time.Second, "how long SIGTERM waits for transactions to finish")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off by default")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var cfg *config.Config
	var err error
	if *path == "" {
		cfg, err = config.Default()
	} else {
		cfg, err = config.Load(*path)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintln(stderr, "sipproxy: refusing to start on an invalid configuration")
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	sip.SetDefaultLogger(log.With("component", "sipgo"))
	for _, w := range cfg.Warnings() {
		log.Warn("configuration", "warning", w.Error())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	m := metrics.New()
	store := rules.New()
	var reloader *rules.Reloader
	switch {
	case cfg.Forwarding.RulesFile != "":
		reloader = rules.NewReloader(cfg.Forwarding.RulesFile, store, cfg.Forwarding.DefaultAfter.Duration, log, m)
		if err := reloader.Load(); err != nil {
			fmt.Fprintln(stderr, err)
			fmt.Fprintln(stderr, "sipproxy: refusing to start on an invalid rules file")
			return 1
		}
		go func() {
			if err := reloader.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("rules watcher stopped; SIGHUP still reloads", "error", err)
			}
		}()
	case len(cfg.Forwarding.EmbeddedRules) > 0:
		rs, err := rules.Parse("embedded default rules", cfg.Forwarding.EmbeddedRules, cfg.Forwarding.DefaultAfter.Duration)
		if err == nil {
			err = store.Replace(rs)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		m.Reloaded(true, len(rs), time.Now())
	}

	srv, err := proxy.New(cfg, proxy.Options{Logger: log, Metrics: m, Rules: store})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var ms *metrics.Server
	if cfg.Metrics.Listen != "" {
		ms, err = metrics.Listen(cfg.Metrics.Listen, m, srv.Ready)
		if err != nil {
			fmt.Fprintf(stderr, "sipproxy: metrics listen %s: %v\n", cfg.Metrics.Listen, err)
			return 1
		}
		go func() {
			if err := ms.Serve(); err != nil {
				log.Error("metrics server stopped", "error", err)
			}
		}()
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			fmt.Fprintf(stderr, "sipproxy: pprof listen %s: %v\n", *pprofAddr, err)
			return 1
		}
	}
	if err := srv.Start(context.WithoutCancel(ctx)); err != nil {
		fmt.Fprintf(stderr, "sipproxy: %v\n", err)
		return 1
	}
	if *path == "" {
		printTour(stdout, srv, ms)
	}
	log.Info("sipproxy started", "version", versionString(), "config", configName(cfg))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if reloader == nil {
				log.Info("SIGHUP: no rules file to reload")
				continue
			}
			if err := reloader.Reload(); err != nil {
				log.Error("SIGHUP: rules reload failed; previous rules keep serving", "error", err)
			} else {
				log.Info("SIGHUP: rules reloaded")
			}
		case <-ctx.Done():
			log.Info("draining", "timeout", drain.String())
			dctx, cancel := context.WithTimeout(context.Background(), *drain)
			err := srv.Shutdown(dctx)
			cancel()
			if ms != nil {
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = ms.Shutdown(sctx)
				cancel()
			}
			if err != nil {
				log.Error("drain incomplete", "error", err)
				return 1
			}
			log.Info("stopped")
			return 0
		}
	}
}

func configName(cfg *config.Config) string {
	if cfg.Path == "" {
		return "embedded default"
	}
	return cfg.Path
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// printTour tells a newcomer running the embedded default what to do next.
func printTour(w io.Writer, srv *proxy.Server, ms *metrics.Server) {
	metricsAddr := "(disabled)"
	if ms != nil {
		metricsAddr = "http://" + ms.Addr() + "/metrics"
	}
	fmt.Fprintf(w, `sipproxy is running on its embedded loopback demo configuration.

  SIP    udp %s   tcp %s   tls %s (self-signed certificate)
  domain contoso.com   users alice, bob, carol, dave (password: <user>-secret)
  rules  dave forwards to alice at once; carol's unanswered and busy calls go to her voicemail
  metrics %s   health http://%s/healthz

Try it:
  sipp -sn uac -s bob 127.0.0.1:5060 -m 1     (bob is not registered: you get 480 or 407)
  curl -s %s | grep ^sipproxy_
  register a softphone as alice@contoso.com (password alice-secret) to 127.0.0.1:5060

Stop with Ctrl-C (drains in-flight calls); SIGHUP reloads forwarding rules.
`, srv.Addr("udp"), srv.Addr("tcp"), srv.Addr("tls"), metricsAddr, addrOr(ms), metricsAddr)
}

func addrOr(ms *metrics.Server) string {
	if ms == nil {
		return "-"
	}
	return ms.Addr()
}

// tuneGC trades memory for CPU unless the operator chose (GOGC, GOMEMLIMIT).
// A proxy allocates ~45 KiB per call, nearly all of it garbage within
// seconds; with the default GOGC=100 a third of its CPU went to the
// collector. GOGC=400 cut CPU per call by 15% on the benchmark while 1,000
// open calls stay near 40 MiB; the soft memory limit makes the collector
// work harder instead of growing past it under a flood.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(768 << 20)
	}
}
