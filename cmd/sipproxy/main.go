// Command sipproxy is a SIP edge proxy that stands in front of Exchange
// Unified Messaging and enforces the [MS-OCEXUM] call-control extensions.
//
//	sipproxy [run] [-config FILE]   serve (the embedded loopback demo without -config)
//	sipproxy run -free-ports        the embedded demo on free loopback ports
//	sipproxy check -config FILE     validate a configuration; exit 1 when invalid
//	sipproxy certs [-dir DIR] ...   make a CA, server and client certificates
//	sipproxy version                print the version
//	sipproxy demo                   run the guided MS-OCEXUM demo
//	sipproxy healthcheck            probe /healthz (for container HEALTHCHECK)
package main

import (
	"context"
	"errors"
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
	} else if len(args) > 0 && isHelp(args[0]) {
		// `sipproxy -h` asks what the program does, not what run's
		// flags are: the subcommands, and a successful exit.
		cmd = "help"
	}
	switch cmd {
	case "run":
		return cmdRun(args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "certs":
		return cmdCerts(args, stdout, stderr)
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

// isHelp reports whether a flag asks for help, in every spelling the flag
// package accepts.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// parseFlags parses a subcommand's flags. Asked for with -h, its usage
// goes to stdout and the exit is 0; a bad flag prints the error and the
// usage on stderr, exit 2. done reports that the command should exit.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	fs.SetOutput(io.Discard) // printed below, on the stream that fits
	err := fs.Parse(args)
	switch {
	case err == nil:
		fs.SetOutput(stderr)
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return 0, true
	default:
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return 2, true
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `sipproxy: a SIP edge proxy in front of Exchange Unified Messaging (MS-OCEXUM)

usage:
  sipproxy [run] [-config FILE]   serve SIP (without -config: the embedded loopback demo;
                                  -free-ports puts it on free ports)
  sipproxy check -config FILE     validate a configuration (exit 0 valid, 1 invalid)
  sipproxy certs [-dir DIR] ...   make a CA, a server certificate and users' client certificates
  sipproxy demo [-free-ports]     run the MS-OCEXUM scenarios on the embedded default, then exit
  sipproxy healthcheck [-config FILE | -addr HOST:PORT]  probe /healthz (exit 0 healthy, 1 not)
  sipproxy version                print the version

'sipproxy COMMAND -h' lists a command's flags.
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
	path := fs.String("config", "", "configuration file to validate")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
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
	var ruleWarnings rules.ErrorList
	if cfg.Forwarding.RulesFile != "" {
		data, err := os.ReadFile(cfg.Forwarding.RulesFile)
		var rs []rules.Rule
		if err == nil {
			rs, err = rules.Parse(cfg.Forwarding.RulesFile, data, cfg.Forwarding.DefaultAfter.Duration)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		ruleWarnings = rules.OutsideDomains(cfg.Forwarding.RulesFile, rs, cfg.Server.Domains)
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
	for _, w := range ruleWarnings {
		fmt.Fprintf(stderr, "warning: %s\n", w.Error())
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: the embedded loopback demo)")
	drain := fs.Duration("drain-timeout", 35*time.Second, "how long SIGTERM waits for transactions to finish")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off by default")
	free := fs.Bool("free-ports", false, "embedded default only: listen on free loopback ports instead of 5060, 5061 and 9090 (the banner says which)")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *free && *path != "" {
		fmt.Fprintln(stderr, "sipproxy run: -free-ports is for the embedded default; with -config, write port 0 in the file")
		return 2
	}
	var cfg *config.Config
	var err error
	if *path == "" {
		cfg, err = config.Default()
		if err == nil {
			err = cfg.MovePorts(*free, 0)
		}
	} else {
		cfg, err = config.Load(*path)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintln(stderr, "sipproxy: refusing to start on an invalid configuration")
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	m := metrics.New()
	// sipgo's TCP and TLS transports log through its package default:
	// demoted, and their parse failures counted (proxy.SIPDefaultLogger).
	sip.SetDefaultLogger(proxy.SIPDefaultLogger(log.With("component", "sipgo"), m))
	var demoFile demoRules
	var demoErr error
	if *path == "" {
		// The embedded default's shortcuts are stated once in its banner,
		// not warned about: a newcomer reads warnings as breakage.
		if demoFile, demoErr = useDemoRulesFile(cfg); demoErr != nil {
			log.Info("demo rules compiled in, not editable", "reason", demoErr.Error())
		}
	} else {
		for _, w := range cfg.Warnings() {
			log.Warn("configuration", "warning", w.Error())
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	store := rules.New()
	var reloader *rules.Reloader
	switch {
	case cfg.Forwarding.RulesFile != "":
		reloader = rules.NewReloader(cfg.Forwarding.RulesFile, store, cfg.Forwarding.DefaultAfter.Duration, log, m,
			rules.WithDomains(cfg.Server.Domains))
		if err := reloader.Load(); err != nil {
			fmt.Fprintln(stderr, err)
			if demoFile.path != "" {
				fmt.Fprintf(stderr, "sipproxy: %s is the embedded default's rules file: fix it, or delete it to get the demo rules back\n", demoFile.path)
			}
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
		printTour(stdout, cfg, srv, ms, demoFile, demoErr)
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

// tuneGC trades memory for CPU unless the operator chose (GOGC, GOMEMLIMIT).
// A proxy allocates ~36 KiB per call, nearly all of it garbage within
// seconds. Measured (docs/performance.md, "GC curve"): against GOGC=100 the
// CPU per call moved within the run-to-run noise (±10%) while GC's share of
// the profile fell from 12% to 3-4%; the peak under overload is set by the
// soft limit, not by GOGC. 768 MiB keeps the collector quiet with 20,000 TLS
// phones held (380-420 MB live) and bounds the heap under a flood; 512 MiB
// and below cost rate at overload and 384 MiB thrashed.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(768 << 20)
	}
}
