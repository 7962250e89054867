package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/sipproxy/sipproxy/internal/config"
)

// Open builds the store the configuration's state: section names. The
// store is usable whatever the error says: a non-nil error is a warning
// (a corrupt file set aside, Redis not reachable yet) to log loudly.
func Open(c config.State, o Options) (Store, error) {
	if o.Timeout == 0 {
		o.Timeout = c.Timeout.Duration
	}
	switch c.Backend {
	case "", "memory":
		return NewMemory(o), nil
	case "file":
		return OpenFile(c.Path, o)
	case "redis":
		ro, err := redisOptions(c)
		if err != nil {
			return nil, err
		}
		s, err := OpenRedis(ro, o)
		if s == nil {
			return nil, err
		}
		return s, err
	}
	return nil, fmt.Errorf("state: unknown backend %q", c.Backend)
}

func redisOptions(c config.State) (RedisOptions, error) {
	ro := RedisOptions{
		Addrs: c.Addrs, Username: c.Username, Password: c.Password, DB: c.DB,
		SentinelMaster: c.SentinelMaster, Cluster: c.Cluster, Prefix: c.Prefix,
	}
	var err error
	ro.TLS, err = c.TLS.Config()
	return ro, err
}

// Check reports what would keep the configured backend from working,
// changing nothing: for file, a state file or directory this process may
// not write (or a file bbolt cannot read); for redis, a server that does
// not answer PING within the timeout.
func Check(ctx context.Context, c config.State) error {
	switch c.Backend {
	case "file":
		return checkPath(c.Path)
	case "redis":
		timeout := c.Timeout.Duration
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		ro, err := redisOptions(c)
		if err != nil {
			return err
		}
		client := newRedisClient(ro, timeout)
		defer client.Close()
		ctx, cancel := context.WithTimeout(ctx, 2*timeout)
		defer cancel()
		if err := client.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("state: redis %v does not answer PING: %w", c.Addrs, err)
		}
	}
	return nil
}

// checkPath checks that the state file can be read and written, or
// created: the nearest existing directory above it must be writable (the
// missing ones are created at start). It creates and opens nothing for
// writing.
func checkPath(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("state: %s is not a regular file", path)
	case err == nil:
		if err := unix.Access(path, unix.R_OK|unix.W_OK); err != nil {
			return fmt.Errorf("state: state file %s cannot be read and written: %w", path, err)
		}
		if fi.Size() == 0 {
			return nil // bbolt makes a database of an empty file
		}
		return checkBolt(path)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("state: state file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for range 256 {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("state: cannot create %s: %s is not a directory", path, dir)
		case err == nil:
			if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("state: cannot create %s: directory %s is not writable: %w", path, dir, err)
			}
			return nil
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("state: cannot create %s: %w", path, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return fmt.Errorf("state: cannot create %s: no existing directory above it", path)
}

// checkBolt opens an existing state file read-only. A file held by a
// running proxy (locked) is fine.
func checkBolt(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state: state file %s is corrupt (%v): the proxy would set it aside and start empty", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: state file %s cannot be read (%w): the proxy would set it aside and start empty", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error { return nil })
		})
	})
	if err != nil {
		return fmt.Errorf("state: state file %s cannot be read (%w): the proxy would set it aside and start empty", path, err)
	}
	return nil
}
