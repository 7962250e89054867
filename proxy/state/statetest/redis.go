// Package statetest helps tests use a real Redis: the one named by
// SIPPROXY_TEST_REDIS, or a redis-server the test starts itself on a free
// loopback port and stops by its PID.
package statetest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// EnvRedis names a running Redis ("127.0.0.1:6390") the tests may use.
const EnvRedis = "SIPPROXY_TEST_REDIS"

// RedisAddr returns the address of a Redis for the test: SIPPROXY_TEST_REDIS
// if set, else a redis-server started for this test. Without either the
// test fails under CI (CI=true) and is skipped elsewhere.
func RedisAddr(t testing.TB) string {
	t.Helper()
	if a := os.Getenv(EnvRedis); a != "" {
		return a
	}
	return StartRedis(t).Addr
}

// RedisServer is a redis-server process the test started.
type RedisServer struct {
	Addr string
	t    testing.TB
	cmd  *exec.Cmd
	out  *bytes.Buffer
}

// StartRedis starts redis-server from PATH on a free loopback port, without
// persistence, and stops it when the test ends. Without redis-server the
// test fails under CI and is skipped elsewhere.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redis-server is not installed (apt-get install redis-server) and " + EnvRedis + " is not set"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &RedisServer{Addr: addr, t: t}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its address and waits until it accepts
// connections (at most 10 s).
func (s *RedisServer) Start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.out = new(bytes.Buffer)
	s.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		if c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond); err == nil {
			ok := ping(c)
			c.Close()
			if ok {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Stop()
	s.t.Fatalf("redis-server on %s did not come up: %s", s.Addr, s.out)
}

func ping(c net.Conn) bool {
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("+PONG"))
}

// Stop kills the server by its PID and waits for it to exit. It may be
// called more than once.
func (s *RedisServer) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.t.Logf("redis-server pid %s on %s stopped", strconv.Itoa(s.cmd.Process.Pid), s.Addr)
	s.cmd = nil
}
