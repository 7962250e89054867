package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStateErrors(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown backend", `
state: {backend: etcd}`, []string{`config.yaml:5: state.backend: "etcd" is not a state backend; use memory, file or redis`}},
		{"file without path", `
state: {backend: file}`, []string{`config.yaml:5: state: path is required with backend: file (e.g. /var/lib/sipproxy/state.db)`}},
		{"keys of another backend", `
state:
  backend: file
  path: state.db
  addrs: ["127.0.0.1:6379"]
  cluster: false`, []string{
			`config.yaml:8: state.addrs: only valid with backend: redis`,
			`config.yaml:9: state.cluster: only valid with backend: redis`,
		}},
		{"memory with a path", `
state: {path: state.db}`, []string{`config.yaml:5: state.path: only valid with backend: file`}},
		{"redis without addrs", `
state: {backend: redis}`, []string{`config.yaml:5: state: addrs is required with backend: redis (host:port of the server, the Sentinels or Cluster nodes)`}},
		{"redis bad values", `
state:
  backend: redis
  addrs: ["10.0.0.7", "redis.contoso.com:0", "[::1]:6379"]
  sentinel_master: mymaster
  cluster: true
  db: 3
  timeout: 1ms
  tls: {cert: tls/server.crt}`, []string{
			`config.yaml:7: state.addrs[0]: "10.0.0.7" is not host:port`,
			`config.yaml:7: state.addrs[1]: "redis.contoso.com:0" is not host:port`,
			`config.yaml:8: state.sentinel_master: sentinel_master and cluster: true exclude each other`,
			`config.yaml:10: state.db: Redis Cluster has database 0 only`,
			`config.yaml:11: state.timeout: 1ms is out of range (10ms to 30s)`,
			`config.yaml:12: state.tls: key is required with cert`,
		}},
		{"unknown key", `
state: {backend: memory, pth: x}`, []string{`config.yaml:5: state.pth: unknown key (did you mean "path"?)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadBytes("config.yaml", doc(base+tc.yaml), dir)
			if err == nil {
				t.Fatal("no error")
			}
			if got := rendered(t, err); !slices.Equal(got, tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestStateValid(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, s State)
	}{
		{"absent: memory", "", func(t *testing.T, s State) {
			if s.Backend != "memory" || s.Timeout.Duration != time.Second {
				t.Fatalf("%+v", s)
			}
		}},
		{"file, relative path", `
state: {backend: file, path: var/state.db}`, func(t *testing.T, s State) {
			if s.Path != filepath.Join(dir, "var/state.db") || s.Line != 5 {
				t.Fatalf("%+v", s)
			}
		}},
		{"redis with tls", `
state:
  backend: redis
  addrs: ["redis.contoso.com:6380", "10.0.0.7:6379", "[2001:db8::7]:6379"]
  username: sipproxy
  password: secret
  db: 2
  sentinel_master: mymaster
  timeout: 250ms
  instance: edge-1
  tls: {ca: tls/internal-ca.crt, cert: tls/server.crt, key: tls/server.key, server_name: redis.contoso.com}`, func(t *testing.T, s State) {
			tc, err := s.TLS.Config()
			if err != nil {
				t.Fatal(err)
			}
			if !s.TLS.Enabled || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "redis.contoso.com" ||
				s.Timeout.Duration != 250*time.Millisecond || s.DB != 2 || len(s.Addrs) != 3 || s.Instance != "edge-1" {
				t.Fatalf("%+v", s)
			}
		}},
		{"redis, empty tls mapping turns TLS on", `
state: {backend: redis, addrs: ["127.0.0.1:6379"], cluster: true, tls: {}}`, func(t *testing.T, s State) {
			tc, err := s.TLS.Config()
			if err != nil {
				t.Fatal(err)
			}
			if !s.TLS.Enabled || tc == nil || tc.RootCAs != nil || !s.Cluster {
				t.Fatalf("%+v", s)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadBytes("config.yaml", doc(base+tc.yaml), dir)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c.State)
		})
	}
}
