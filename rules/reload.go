package rules

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long Run waits after the last change to the rules file
// before reloading it: editors and deploy tools touch a file several times
// (write a temp file, rename it over, chmod) for one logical change.
const debounce = 100 * time.Millisecond

// maxLoggedErrors bounds how many errors of one bad file Reload logs, so
// that a badly broken 100,000-rule file cannot flood the log on every save.
const maxLoggedErrors = 100

// Reporter learns the outcome of every load and reload, for metrics such as
// rules_loaded, rules_reload_total and rules_last_reload_timestamp_seconds.
// rules is the number of rules serving after the attempt: the new count
// when ok, the unchanged old count when not.
type Reporter interface {
	Reloaded(ok bool, rules int, at time.Time)
}

// Reloader keeps a Store in step with a rules file.
type Reloader struct {
	path         string
	store        *Store
	defaultAfter time.Duration
	log          *slog.Logger
	report       Reporter
	domains      []string // server.domains, for OutsideDomains; nil: no check

	quiet time.Duration // Run's debounce

	mu       sync.Mutex // one load at a time (file watch and SIGHUP race)
	lastSum  [sha256.Size]byte
	haveLast bool
}

// NewReloader returns a Reloader that loads path into store. log and report
// may be nil.
func NewReloader(path string, store *Store, defaultAfter time.Duration, log *slog.Logger, report Reporter, opts ...ReloaderOption) *Reloader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{path: path, store: store, defaultAfter: defaultAfter, log: log, report: report, quiet: debounce}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Load reads the file for the first time. It returns the file's problems
// (an ErrorList for validation errors) without logging them, so that the
// caller can print them and refuse to start.
func (r *Reloader) Load() error {
	return r.load(false, false)
}

// Reload reads the file again, as on SIGHUP. A bad file leaves the old rules
// serving; its errors are logged (and returned) and reported as ok=false.
func (r *Reloader) Reload() error {
	return r.load(true, false)
}

// Run watches the file's directory, so that editors and tools that write a
// temporary file and rename it into place are seen, and reloads the file
// after each change to it (create, write, rename, remove) once things have
// been quiet for a short debounce. A change that leaves the bytes as they
// were last loaded does not reload. Run returns nil when ctx ends, or an
// error if the directory cannot be watched.
func (r *Reloader) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("rules: watch %s: %w", r.path, err)
	}
	defer w.Close()
	dir, base := filepath.Split(r.path)
	if dir == "" {
		dir = "."
	}
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("rules: watch %s: %w", dir, err)
	}

	timer := time.NewTimer(r.quiet)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Base(ev.Name) == base && ev.Op&^fsnotify.Chmod != 0 {
				timer.Reset(r.quiet)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("rules file watch", "file", r.path, "error", err)
		case <-timer.C:
			_ = r.load(true, true) // errors are logged and reported
		}
	}
}

// load reads, parses and installs the file. logErrs logs each problem;
// ifChanged skips a file whose bytes equal the last attempt's.
func (r *Reloader) load(logErrs, ifChanged bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	at := time.Now()
	unchanged, err := r.install(ifChanged)
	if unchanged {
		r.log.Debug("rules file unchanged", "file", r.path)
		return nil
	}
	serving := r.store.Snapshot().Count()
	if r.report != nil {
		r.report.Reloaded(err == nil, serving, at)
	}
	if err == nil {
		r.log.Info("rules loaded", "file", r.path, "rules", serving)
		return nil
	}
	if logErrs {
		r.logError(err, serving)
	}
	return err
}

// install reads, parses and installs the file; unchanged reports that
// ifChanged skipped it because its bytes are those last read.
func (r *Reloader) install(ifChanged bool) (unchanged bool, err error) {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return false, fmt.Errorf("rules: %w", err)
	}
	sum := sha256.Sum256(data)
	if ifChanged && r.haveLast && sum == r.lastSum {
		return true, nil
	}
	r.lastSum, r.haveLast = sum, true
	rules, err := Parse(r.path, data, r.defaultAfter)
	if err != nil {
		return false, err
	}
	if err := r.store.Replace(rules); err != nil {
		return false, err
	}
	if r.domains != nil {
		r.logWarnings(OutsideDomains(r.path, rules, r.domains))
	}
	return false, nil
}

// logWarnings logs the warnings of a file that was loaded, at most
// maxLoggedErrors of them.
func (r *Reloader) logWarnings(ws ErrorList) {
	for i, w := range ws {
		if i == maxLoggedErrors {
			r.log.Warn("rules file has more warnings", "file", r.path, "not_logged", len(ws)-i)
			return
		}
		r.log.Warn("rules file warning", "file", w.File, "line", w.Line, "warning", w.Msg)
	}
}

func (r *Reloader) logError(err error, serving int) {
	var list ErrorList
	if !errors.As(err, &list) {
		r.log.Error("rules reload failed, keeping the old rules", "file", r.path, "rules", serving, "error", err)
		return
	}
	for i, e := range list {
		if i == maxLoggedErrors {
			r.log.Error("rules file has more errors", "file", r.path, "not_logged", len(list)-i)
			break
		}
		r.log.Error("rules file error", "file", e.File, "line", e.Line, "error", e.Msg)
	}
	r.log.Error("rules reload failed, keeping the old rules", "file", r.path, "rules", serving, "errors", len(list))
}
