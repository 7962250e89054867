package state

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions say which Redis to use.
type RedisOptions struct {
	// Addrs are "host:port" of the server, of the Sentinels (with
	// SentinelMaster) or of Cluster seed nodes (with Cluster).
	Addrs          []string
	Username       string
	Password       string
	DB             int
	TLS            *tls.Config // nil: plain TCP
	SentinelMaster string
	Cluster        bool
	// Prefix starts every key and the channel (default "sipproxy:"); pools
	// sharing a Redis keep apart by their prefix.
	Prefix string
}

// DefaultPrefix starts every Redis key and the channel name.
const DefaultPrefix = "sipproxy:"

// ErrUnavailable is returned by writes while the backend is down: they are
// refused at once instead of waiting for a timeout.
var ErrUnavailable = errors.New("state backend unavailable")

// Redis layout:
//
//	<prefix>b:{<aor>}     hash: binding key -> "<expires unix ms>|<JSON Binding>";
//	                      the key expires with its last binding
//	<prefix>d:{<call-id>} string: JSON Dialog, expiring with the record
//	<prefix>events        channel: one JSON redisEvent per write
//
// The braces are Cluster hash tags. Every write runs as one script that
// changes the key and publishes the change, so the channel carries the
// changes in the order Redis applied them.
const (
	keyBindings = "b:"
	keyDialogs  = "d:"
	channelName = "events"

	// healthInterval is how often an idle subscription is pinged; a
	// subscription that has not answered for deadAfter is given up.
	healthInterval = 500 * time.Millisecond
	deadAfter      = 6 * healthInterval
	// Backoff between reconnection attempts.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
	// Bounds on one reload of the whole state.
	resyncTimeout  = 30 * time.Second
	maxScanBatches = 1 << 20
)

// writeBindingsScript applies one BindingChange to the AOR's hash, drops
// the expired fields, sets the key's expiry to its latest binding's and
// publishes the change.
//
// KEYS[1] the hash; ARGV: now (ms), channel, event, number of deletes,
// the deleted fields, then field/value pairs to write.
var writeBindingsScript = redis.NewScript(`
local h = KEYS[1]
local now = tonumber(ARGV[1])
local ndel = tonumber(ARGV[4])
local i = 5
for _ = 1, ndel do
  redis.call('HDEL', h, ARGV[i])
  i = i + 1
end
while i < #ARGV do
  redis.call('HSET', h, ARGV[i], ARGV[i+1])
  i = i + 2
end
local all = redis.call('HGETALL', h)
local last = 0
for k = 1, #all, 2 do
  local exp = tonumber(string.match(all[k+1], '^(%d+)|'))
  if exp == nil or exp <= now then
    redis.call('HDEL', h, all[k])
  elseif exp > last then
    last = exp
  end
end
if last > 0 then
  redis.call('PEXPIREAT', h, last)
else
  redis.call('DEL', h)
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return last
`)

// putDialogScript: KEYS[1] the dialog key; ARGV: value, expiry (unix ms),
// channel, event.
var putDialogScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// deleteDialogScript: KEYS[1] the dialog key; ARGV: channel, event.
var deleteDialogScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// redisEvent is what travels on the channel.
type redisEvent struct {
	Origin string         `json:"o"`
	Kind   EventKind      `json:"k"`
	Change *BindingChange `json:"c,omitempty"`
	Dialog *Dialog        `json:"d,omitempty"`
	CallID string         `json:"id,omitempty"`
}

// Redis is the redis backend: the in-memory store as a read cache, written
// through to Redis and kept fresh by the changes other instances publish.
type Redis struct {
	opts    Options
	client  redis.UniversalClient
	prefix  string
	channel string
	origin  string // this store's name on the channel: its own events are not news
	cache   *Memory
	feed    feed

	// mu: binding writes share it (each goes to Redis, then the cache);
	// dialog writes, reloads and sweeps take it alone.
	mu    sync.RWMutex
	dirty map[string]bool // dialogs written (true) or deleted (false) while down; under mu

	up      atomic.Bool
	kick    chan struct{} // a failed write asks the session to reconnect
	stop    context.CancelFunc
	done    chan struct{}
	first   chan struct{} // closed after the first reload
	started sync.Once
}

var _ Store = (*Redis)(nil)

// OpenRedis connects to Redis and loads its live records into memory. It
// always returns a usable store; when Redis cannot be reached yet the error
// says so (log it), Up is false, writes are refused, and the store keeps
// trying: once connected it loads the whole state and tells subscribers
// (Resynced).
func OpenRedis(ro RedisOptions, o Options) (*Redis, error) {
	o = o.withDefaults()
	if len(ro.Addrs) == 0 {
		return nil, errors.New("state: redis: no addrs")
	}
	prefix := ro.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("state: redis: origin id: %w", err)
	}
	client := newRedisClient(ro, o.Timeout)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Redis{
		opts:    o,
		client:  client,
		prefix:  prefix,
		channel: prefix + channelName,
		origin:  hex.EncodeToString(id[:]),
		cache:   NewMemory(Options{Now: o.Now}),
		dirty:   make(map[string]bool),
		kick:    make(chan struct{}, 1),
		stop:    cancel,
		done:    make(chan struct{}),
		first:   make(chan struct{}),
	}
	setUp(o.Up, false)
	go r.run(ctx)
	t := time.NewTimer(2*o.Timeout + time.Second)
	defer t.Stop()
	select {
	case <-r.first:
		return r, nil
	case <-t.C:
		return r, fmt.Errorf("state: redis %s not reachable yet; serving from memory, REGISTER refused until it is", strings.Join(ro.Addrs, ","))
	}
}

func newRedisClient(ro RedisOptions, timeout time.Duration) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 ro.Addrs,
		Username:              ro.Username,
		Password:              ro.Password,
		DB:                    ro.DB,
		TLSConfig:             ro.TLS,
		MasterName:            ro.SentinelMaster,
		IsClusterMode:         ro.Cluster,
		ClientName:            "sipproxy",
		DisableIdentity:       true,
		MaxRetries:            -1, // fail fast: the caller answers 503 and the UA retries
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
	})
}

// run keeps a subscription to the channel, reconnecting with backoff,
// until Close.
func (r *Redis) run(ctx context.Context) {
	defer close(r.done)
	backoff := minBackoff
	for ctx.Err() == nil {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if r.up.Load() {
			r.opts.Logger.Error("state: redis connection lost; serving from memory, REGISTER refused until it is back", "error", err)
			backoff = minBackoff
		} else {
			r.opts.Logger.Debug("state: redis still unreachable", "error", err)
		}
		r.setUp(false)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session subscribes, reloads the whole state (events may have been lost
// before the subscription) and applies events until the connection fails.
func (r *Redis) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ps := r.client.Subscribe(ctx)
	defer ps.Close()
	sctx, scancel := context.WithTimeout(ctx, r.opts.Timeout)
	err := ps.Subscribe(sctx, r.channel)
	if err == nil {
		_, err = ps.ReceiveTimeout(sctx, r.opts.Timeout) // the subscription's confirmation
	}
	scancel()
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", r.channel, err)
	}
	if err := r.resync(ctx); err != nil {
		return err
	}
	r.setUp(true)
	r.opts.Logger.Info("state: redis connected, state loaded")
	r.started.Do(func() { close(r.first) })
	// Drain a kick from a write that failed before this session.
	select {
	case <-r.kick:
	default:
	}
	seen := time.Now()
	for {
		select {
		case <-r.kick:
			return errors.New("a write failed")
		default:
		}
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			if !isTimeout(err) || ctx.Err() != nil {
				return err
			}
			if time.Since(seen) > deadAfter {
				return errors.New("no answer to ping")
			}
			if err := ps.Ping(ctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		}
		seen = time.Now()
		if m, ok := msg.(*redis.Message); ok {
			r.apply(m.Payload)
		}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// apply brings another instance's event into the cache and to the
// subscribers. This store's own events are not applied again: its writes
// reached the cache when Redis took them, and an echo arriving after a
// later write would undo that write for a moment. (A write whose outcome
// is unknown, a timeout, makes the session reload instead.)
func (r *Redis) apply(payload string) {
	// Our own echo is recognised before it is decoded: every write of this
	// instance comes back on the channel (Origin is the first field).
	if strings.HasPrefix(payload, `{"o":"`+r.origin+`"`) {
		return
	}
	var e redisEvent
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		r.opts.Logger.Warn("state: undecodable event on the redis channel", "channel", r.channel, "error", err)
		return
	}
	if e.Origin == r.origin {
		return
	}
	ctx := context.Background()
	var out Event
	switch {
	case e.Kind == BindingsChanged && e.Change != nil:
		_ = r.cache.WriteBindings(ctx, *e.Change) // memory writes cannot fail
		out = Event{Kind: e.Kind, Change: *e.Change}
	case e.Kind == DialogPut && e.Dialog != nil:
		_ = r.cache.PutDialog(ctx, *e.Dialog)
		out = Event{Kind: e.Kind, Dialog: *e.Dialog}
	case e.Kind == DialogDeleted:
		_ = r.cache.DeleteDialog(ctx, e.CallID)
		out = Event{Kind: e.Kind, CallID: e.CallID}
	default:
		return
	}
	r.feed.publish(out)
}

// resync writes the dialogs changed while Redis was away, then reloads
// the cache whole from Redis and hands the result to the subscribers.
// This instance's own live records that Redis no longer has (a Redis that
// restarted empty, a failover to a replica that missed them) are written
// back first: nothing this instance holds is lost. (A binding of ours that
// another instance removed while we were cut off comes back too, until it
// expires: the lesser evil.)
func (r *Redis) resync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	defer cancel()
	if err := r.flushDirty(ctx); err != nil {
		return err
	}
	snap, err := r.loadAll(ctx)
	if err != nil {
		return err
	}
	if snap, err = r.restoreOwn(ctx, snap); err != nil {
		return err
	}
	r.mu.Lock()
	err = r.cache.replace(snap)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.feed.publish(Event{Kind: Resynced, Snapshot: snap})
	return nil
}

// restoreOwn writes back this instance's live records missing from snap
// and returns snap with them.
func (r *Redis) restoreOwn(ctx context.Context, snap Snapshot) (Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := r.cache.Load()
	inRedis := make(map[[2]string]bool, len(snap.Bindings))
	for _, b := range snap.Bindings {
		inRedis[[2]string{b.AOR, b.Key}] = true
	}
	missing := map[string][]Binding{}
	var order []string
	for _, b := range held.Bindings {
		if b.Instance != r.opts.Instance || inRedis[[2]string{b.AOR, b.Key}] {
			continue
		}
		if _, ok := missing[b.AOR]; !ok {
			order = append(order, b.AOR)
		}
		missing[b.AOR] = append(missing[b.AOR], b)
	}
	for _, aor := range order {
		if err := r.writeBindings(ctx, BindingChange{AOR: aor, Put: missing[aor]}); err != nil {
			return snap, fmt.Errorf("write back the bindings of %s: %w", aor, err)
		}
		snap.Bindings = append(snap.Bindings, missing[aor]...)
	}
	dialogs := make(map[string]bool, len(snap.Dialogs))
	for _, d := range snap.Dialogs {
		dialogs[d.CallID] = true
	}
	for _, d := range held.Dialogs {
		if d.Instance != r.opts.Instance || dialogs[d.CallID] {
			continue
		}
		if err := r.putDialog(ctx, d); err != nil {
			return snap, fmt.Errorf("write back dialog %s: %w", d.CallID, err)
		}
		snap.Dialogs = append(snap.Dialogs, d)
	}
	if len(order) > 0 {
		r.opts.Logger.Warn("state: redis had lost bindings of this instance; written back", "aors", len(order))
	}
	return snap, nil
}

func (r *Redis) flushDirty(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, put := range r.dirty {
		var err error
		if d, ok := r.cache.Dialog(id); put && ok {
			err = r.putDialog(ctx, d)
		} else {
			err = r.deleteDialog(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("write back dialog %s: %w", id, err)
		}
		delete(r.dirty, id)
	}
	return nil
}

// loadAll reads every binding and dialog under the prefix, from every
// master of a Cluster (concurrently: go-redis's ForEachMaster).
func (r *Redis) loadAll(ctx context.Context) (Snapshot, error) {
	var (
		mu   sync.Mutex
		snap Snapshot
	)
	now := r.opts.Now()
	nowMS := now.UnixMilli()
	err := r.forEachNode(ctx, func(ctx context.Context, c redis.Cmdable) error {
		var part Snapshot
		keys, err := scanKeys(ctx, c, r.prefix+keyBindings+"*")
		if err != nil {
			return err
		}
		err = batched(ctx, c, keys, func(p redis.Pipeliner, k string) { p.HGetAll(ctx, k) }, func(cmd redis.Cmder) error {
			fields, err := cmd.(*redis.MapStringStringCmd).Result()
			if err != nil {
				return err
			}
			for _, v := range fields {
				if b, ok := decodeBindingValue(v, nowMS); ok && b.Live(now) {
					part.Bindings = append(part.Bindings, b)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys, err = scanKeys(ctx, c, r.prefix+keyDialogs+"*")
		if err != nil {
			return err
		}
		err = batched(ctx, c, keys, func(p redis.Pipeliner, k string) { p.Get(ctx, k) }, func(cmd redis.Cmder) error {
			v, err := cmd.(*redis.StringCmd).Result()
			if errors.Is(err, redis.Nil) {
				return nil // expired since the scan
			}
			if err != nil {
				return err
			}
			var d Dialog
			if json.Unmarshal([]byte(v), &d) == nil && d.Live(now) {
				part.Dialogs = append(part.Dialogs, d)
			}
			return nil
		})
		if err != nil {
			return err
		}
		mu.Lock()
		snap.Bindings = append(snap.Bindings, part.Bindings...)
		snap.Dialogs = append(snap.Dialogs, part.Dialogs...)
		mu.Unlock()
		return nil
	})
	return snap, err
}

// loadBatch is how many reads one pipeline of loadAll carries.
const loadBatch = 500

// batched queues one read per key in pipelines of loadBatch and hands
// each result to read.
func batched(ctx context.Context, c redis.Cmdable, keys []string, queue func(redis.Pipeliner, string), read func(redis.Cmder) error) error {
	for start := 0; start < len(keys); start += loadBatch {
		p := c.Pipeline()
		for _, k := range keys[start:min(start+loadBatch, len(keys))] {
			queue(p, k)
		}
		cmds, err := p.Exec(ctx)
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read %d keys: %w", len(cmds), err)
		}
		for _, cmd := range cmds {
			if err := read(cmd); err != nil {
				return fmt.Errorf("read %v: %w", cmd.Args(), err)
			}
		}
	}
	return nil
}

// forEachNode runs fn on every master of a Cluster, or on the one server.
func (r *Redis) forEachNode(ctx context.Context, fn func(context.Context, redis.Cmdable) error) error {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return fn(ctx, c) })
	}
	return fn(ctx, r.client)
}

func scanKeys(ctx context.Context, c redis.Cmdable, match string) ([]string, error) {
	var out []string
	var cursor uint64
	for range maxScanBatches {
		keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", match, err)
		}
		out = append(out, keys...)
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
	return nil, fmt.Errorf("scan %s: more than %d batches", match, maxScanBatches)
}

func encodeBindingValue(b Binding) (string, error) {
	v, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(b.Expires.UnixMilli(), 10) + "|" + string(v), nil
}

func decodeBindingValue(v string, nowMS int64) (Binding, bool) {
	exp, body, ok := strings.Cut(v, "|")
	if !ok {
		return Binding{}, false
	}
	if ms, err := strconv.ParseInt(exp, 10, 64); err != nil || ms <= nowMS {
		return Binding{}, false
	}
	var b Binding
	if json.Unmarshal([]byte(body), &b) != nil {
		return Binding{}, false
	}
	return b, true
}

func (r *Redis) bindingsKey(aor string) string { return r.prefix + keyBindings + "{" + aor + "}" }
func (r *Redis) dialogKey(id string) string    { return r.prefix + keyDialogs + "{" + id + "}" }

// WriteBindings runs the change in Redis, then in the cache.
func (r *Redis) WriteBindings(ctx context.Context, c BindingChange) error {
	if !r.up.Load() {
		return fmt.Errorf("state: redis: write bindings of %s: %w", c.AOR, ErrUnavailable)
	}
	for i := range c.Put {
		c.Put[i].AOR = c.AOR
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if err := r.writeBindings(ctx, c); err != nil {
		r.failed(err)
		return fmt.Errorf("state: redis: write bindings of %s: %w", c.AOR, err)
	}
	return r.cache.WriteBindings(ctx, c)
}

// writeBindings runs the change's script; r.mu is held (shared or alone).
func (r *Redis) writeBindings(ctx context.Context, c BindingChange) error {
	ev, err := json.Marshal(redisEvent{Origin: r.origin, Kind: BindingsChanged, Change: &c})
	if err != nil {
		return fmt.Errorf("encode change: %w", err)
	}
	args := make([]any, 0, 4+len(c.Delete)+2*len(c.Put))
	args = append(args, r.opts.Now().UnixMilli(), r.channel, string(ev), len(c.Delete))
	for _, k := range c.Delete {
		args = append(args, k)
	}
	for _, b := range c.Put {
		v, err := encodeBindingValue(b)
		if err != nil {
			return fmt.Errorf("encode binding %s: %w", b.Key, err)
		}
		args = append(args, b.Key, v)
	}
	return writeBindingsScript.Run(ctx, r.client, []string{r.bindingsKey(c.AOR)}, args...).Err()
}

// PutDialog writes d to Redis, then to the cache. While Redis is down the
// record is kept in the cache and written when it is back; the error says
// it is not shared yet.
func (r *Redis) PutDialog(ctx context.Context, d Dialog) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.cache.PutDialog(ctx, d)
	if !r.up.Load() {
		r.dirty[d.CallID] = true
		return fmt.Errorf("state: redis: put dialog %s: %w", d.CallID, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if err := r.putDialog(ctx, d); err != nil {
		r.dirty[d.CallID] = true
		r.failed(err)
		return fmt.Errorf("state: redis: put dialog %s: %w", d.CallID, err)
	}
	return nil
}

func (r *Redis) putDialog(ctx context.Context, d Dialog) error {
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	ev, err := json.Marshal(redisEvent{Origin: r.origin, Kind: DialogPut, Dialog: &d})
	if err != nil {
		return err
	}
	return putDialogScript.Run(ctx, r.client, []string{r.dialogKey(d.CallID)},
		string(v), d.Expires.UnixMilli(), r.channel, string(ev)).Err()
}

// WriteDialogs writes several dialog records and removals in one round
// trip (a pipeline): the proxy's dialog writer hands its queue over this
// way. A Call-ID appears in at most one of the two lists. What Redis did
// not take is written when it is back, as with PutDialog.
func (r *Redis) WriteDialogs(ctx context.Context, puts []Dialog, dels []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range puts {
		_ = r.cache.PutDialog(ctx, d)
	}
	for _, id := range dels {
		_ = r.cache.DeleteDialog(ctx, id)
	}
	pending := func() {
		for _, d := range puts {
			r.dirty[d.CallID] = true
		}
		for _, id := range dels {
			r.dirty[id] = false
		}
	}
	if !r.up.Load() {
		pending()
		return fmt.Errorf("state: redis: write %d dialogs: %w", len(puts)+len(dels), ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	pipe := r.client.Pipeline()
	for _, d := range puts {
		v, err := json.Marshal(d)
		if err != nil {
			return err
		}
		ev, err := json.Marshal(redisEvent{Origin: r.origin, Kind: DialogPut, Dialog: &d})
		if err != nil {
			return err
		}
		putDialogScript.Eval(ctx, pipe, []string{r.dialogKey(d.CallID)}, string(v), d.Expires.UnixMilli(), r.channel, string(ev))
	}
	for _, id := range dels {
		ev, err := json.Marshal(redisEvent{Origin: r.origin, Kind: DialogDeleted, CallID: id})
		if err != nil {
			return err
		}
		deleteDialogScript.Eval(ctx, pipe, []string{r.dialogKey(id)}, r.channel, string(ev))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		pending()
		r.failed(err)
		return fmt.Errorf("state: redis: write %d dialogs: %w", len(puts)+len(dels), err)
	}
	return nil
}

// DeleteDialog removes the dialog from Redis and the cache; while Redis is
// down, from the cache at once and from Redis when it is back.
func (r *Redis) DeleteDialog(ctx context.Context, callID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.cache.DeleteDialog(ctx, callID)
	if !r.up.Load() {
		r.dirty[callID] = false
		return fmt.Errorf("state: redis: delete dialog %s: %w", callID, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if err := r.deleteDialog(ctx, callID); err != nil {
		r.dirty[callID] = false
		r.failed(err)
		return fmt.Errorf("state: redis: delete dialog %s: %w", callID, err)
	}
	return nil
}

func (r *Redis) deleteDialog(ctx context.Context, callID string) error {
	ev, err := json.Marshal(redisEvent{Origin: r.origin, Kind: DialogDeleted, CallID: callID})
	if err != nil {
		return err
	}
	return deleteDialogScript.Run(ctx, r.client, []string{r.dialogKey(callID)}, r.channel, string(ev)).Err()
}

// failed marks the backend down after a write that did not reach Redis
// (not one Redis refused), and makes the session reconnect and reload:
// the write may have been applied after all.
func (r *Redis) failed(err error) {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return
	}
	r.setUp(false)
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// setUp sets the gauge, then the flag: whoever sees Up change sees the
// gauge agree.
func (r *Redis) setUp(up bool) {
	setUp(r.opts.Up, up)
	r.up.Store(up)
}

// ListBindings reads the cache.
func (r *Redis) ListBindings(aor string) []Binding { return r.cache.ListBindings(aor) }

// Dialog reads the cache.
func (r *Redis) Dialog(callID string) (Dialog, bool) { return r.cache.Dialog(callID) }

// Load reads the cache.
func (r *Redis) Load() Snapshot { return r.cache.Load() }

// Sweep drops expired records from the cache; Redis expires its keys
// itself.
func (r *Redis) Sweep(_ context.Context, now time.Time) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache.sweep(now).count(), nil
}

// Subscribe registers fn for other instances' changes and for reloads.
func (r *Redis) Subscribe(fn func(Event)) func() { return r.feed.subscribe(fn) }

// Shared: every instance of the pool writes it.
func (r *Redis) Shared() bool { return true }

// Up reports whether Redis takes writes.
func (r *Redis) Up() bool { return r.up.Load() }

// Close stops the subscription and closes the client.
func (r *Redis) Close() error {
	r.stop()
	<-r.done
	r.setUp(false)
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("state: redis: close: %w", err)
	}
	return nil
}
