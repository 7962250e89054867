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
	Addr  string
	t     testing.TB
	cmd   *exec.Cmd
	out   *bytes.Buffer
	dir   string   // working directory (cluster nodes write nodes.conf there)
	extra []string // further arguments
	// sentinelConf, when set, runs redis-server --sentinel on this file.
	sentinelConf string
}

// StartRedis starts redis-server from PATH on a free loopback port, without
// persistence, and stops it when the test ends. Without redis-server the
// test fails under CI and is skipped elsewhere.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	needRedis(t)
	s := &RedisServer{Addr: freeAddr(t), t: t, dir: t.TempDir(), extra: args}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// needRedis fails (under CI) or skips the test without redis-server.
func needRedis(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redis-server is not installed (apt-get install redis-server) and " + EnvRedis + " is not set"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// StartCluster starts a Redis Cluster of n masters (no replicas) on free
// loopback ports and returns their addresses once every slot is served.
// It needs redis-cli (Debian's redis-tools, installed with redis-server).
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	needRedis(t)
	addrs := make([]string, n)
	for i := range addrs {
		s := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs[i] = s.Addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < 1500 && time.Now().Before(deadline); i++ {
		ok := true
		for _, a := range addrs {
			host, port, _ := net.SplitHostPort(a)
			out, _ := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "info").Output()
			ok = ok && bytes.Contains(out, []byte("cluster_state:ok"))
		}
		if ok {
			return addrs
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("cluster %v did not reach cluster_state:ok", addrs)
	return nil
}

// StartSentinel starts a Sentinel (redis-server --sentinel) monitoring the
// master at masterAddr under the name master, and returns its address.
func StartSentinel(t testing.TB, master, masterAddr string) string {
	t.Helper()
	needRedis(t)
	host, port, _ := net.SplitHostPort(masterAddr)
	dir := t.TempDir()
	conf := dir + "/sentinel.conf"
	addr := freeAddr(t)
	_, sport, _ := net.SplitHostPort(addr)
	text := "port " + sport + "\nbind 127.0.0.1\ndaemonize no\n" +
		"sentinel monitor " + master + " " + host + " " + port + " 1\n" +
		"sentinel down-after-milliseconds " + master + " 2000\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{Addr: addr, t: t, dir: dir, sentinelConf: conf}
	s.Start()
	t.Cleanup(s.Stop)
	return addr
}

// Start (re)starts the server on its address and waits until it accepts
// connections (at most 10 s).
func (s *RedisServer) Start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.out = new(bytes.Buffer)
	args := append([]string{"--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no"}, s.extra...)
	if s.sentinelConf != "" {
		args = []string{s.sentinelConf, "--sentinel"}
	}
	s.cmd = exec.Command("redis-server", args...)
	s.cmd.Dir = s.dir
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
