package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/demo"
)

// cmdDemo is `sipproxy demo`: the proxy on its embedded default with a
// voicemail stand-in and two phones, the three MS-OCEXUM scenarios, and
// the metric lines they moved. Exit 0 when every scenario behaved as
// described, 1 otherwise.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	free := fs.Bool("free-ports", false, "listen on free loopback ports instead of 5060, 5061, 9090 and 5066")
	offset := fs.Int("ports-offset", 0, "add this to every fixed port (ignored with -free-ports)")
	verbose := fs.Bool("v", false, "print the proxy's and the demo user agents' logs on stderr")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: sipproxy demo [-free-ports | -ports-offset N] [-v] [-timeout D]")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sipproxy demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "sipproxy demo: -timeout must be positive")
		return 2
	}

	level := slog.LevelError + 1 // nothing
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// sipgo logs some events through its package default; as in `run`.
	sip.SetDefaultLogger(log.With("component", "sipgo"))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if _, err := demo.Run(ctx, demo.Options{Out: stdout, Logger: log, FreePorts: *free, PortsOffset: *offset, Timeout: *timeout}); err != nil {
		fmt.Fprintln(stderr, "sipproxy demo:", err)
		return 1
	}
	return 0
}
