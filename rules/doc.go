// Package rules holds the per-user call forwarding rules: the YAML rules
// file, its strict validation, the rule store on go-memdb, and hot reload.
//
// # The rules file
//
//	rules:
//	  - user: sip:alice@contoso.com
//	    immediate: sip:bob@contoso.com
//	  - user: sip:carol@contoso.com
//	    unanswered: {target: "sip:carol@contoso.com;opaque=app:voicemail", after: 15s}
//	    busy: "sip:carol@contoso.com;opaque=app:voicemail"
//
// Parse rejects a file with unknown keys, invalid SIP URIs, a user listed
// twice, an after outside 1s..300s, a user forwarding to themselves (their
// own voicemail, opaque=app:voicemail, is allowed) or a rule without an
// action, and reports every problem at once as an ErrorList printing one
// "file:line: message" per line. docs/rules.md is the operator's guide.
//
// # Store and snapshots
//
// A Store keeps the rule set serving calls. Replace swaps the whole set in
// one memdb write transaction; readers never see half of a reload. A
// Snapshot is one committed set and never changes, so a call that takes a
// snapshot when it starts keeps the plan it started with while the file is
// reloaded under it. A snapshot is a memdb read transaction, and
// Snapshot.Lookup (a normalised address of record, internal/aor:
// aor.Of(uri)) reads memdb's unique index in it.
//
// # Use in the proxy
//
//	store := rules.New()
//	reloader := rules.NewReloader(cfg.Forwarding.RulesFile, store,
//		cfg.Forwarding.DefaultAfter.Duration, log, reporter) // reporter feeds rules_* metrics
//	if err := reloader.Load(); err != nil {
//		// print err (one file:line: message per line) and refuse to start
//	}
//	go reloader.Run(ctx)   // reloads on file changes until ctx ends
//	// on SIGHUP:           reloader.Reload() (errors are logged and reported)
//	// per INVITE:          snap := store.Snapshot(), kept for the whole call
//
// With the embedded default configuration there is no file to watch:
// rs, err := rules.Parse("embedded rules", cfg.Forwarding.EmbeddedRules,
// after) then store.Replace(rs). `sipproxy check` can call Parse on the file
// alone.
//
// Reporter.Reloaded receives every attempt, for rules_reload_total{result},
// rules_loaded (the rules serving after the attempt) and
// rules_last_reload_timestamp_seconds.
package rules
