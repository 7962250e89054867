package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// state validates the state: section. Validation touches nothing: whether
// the file can be written or Redis reached is for `sipproxy check` and the
// start to find out.
func (v *validator) state() {
	st := &v.c.State
	const p = "state"
	redisKeys := []struct {
		key string
		set bool
	}{
		{"addrs", len(st.Addrs) > 0}, {"username", st.Username != ""}, {"password", st.Password != ""},
		{"db", v.set[p+".db"]}, {"tls", v.set[p+".tls"]}, {"sentinel_master", st.SentinelMaster != ""},
		{"cluster", v.set[p+".cluster"]}, {"prefix", st.Prefix != ""},
	}
	onlyRedis := func() {
		for _, k := range redisKeys {
			if k.set {
				v.errorf(p+"."+k.key, "only valid with backend: redis")
			}
		}
	}
	switch st.Backend {
	case "", "memory":
		st.Backend = "memory"
		if st.Path != "" {
			v.errorf(p+".path", "only valid with backend: file")
		}
		onlyRedis()
	case "file":
		if st.Path == "" {
			v.requiredf(p, []string{"path"}, "path is required with backend: file (e.g. /var/lib/sipproxy/state.db)")
		}
		st.Path = v.resolve(st.Path)
		onlyRedis()
	case "redis":
		if st.Path != "" {
			v.errorf(p+".path", "only valid with backend: file")
		}
		v.stateRedis(st)
	default:
		v.errorf(p+".backend", "%q is not a state backend; use memory, file or redis", st.Backend)
	}
	v.duration(&st.Timeout, p+".timeout", time.Second, 10*time.Millisecond, 30*time.Second)
}

func (v *validator) stateRedis(st *State) {
	const p = "state"
	if len(st.Addrs) == 0 {
		v.requiredf(p, []string{"addrs"}, "addrs is required with backend: redis (host:port of the server, the Sentinels or Cluster nodes)")
	}
	for i, a := range st.Addrs {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || !validHost(host) || perr != nil || n < 1 || n > 65535 {
			v.errorf(fmt.Sprintf("%s.addrs[%d]", p, i), "%q is not host:port", a)
		}
	}
	if st.SentinelMaster != "" && st.Cluster {
		v.errorf(p+".sentinel_master", "sentinel_master and cluster: true exclude each other")
	}
	switch {
	case st.DB < 0:
		v.errorf(p+".db", "%d is negative", st.DB)
	case st.DB != 0 && st.Cluster:
		v.errorf(p+".db", "Redis Cluster has database 0 only")
	}
	if v.set[p+".tls"] {
		t := &st.TLS
		t.Enabled = true
		if t.CA != "" {
			v.pool(p+".tls.ca", &t.CA)
		}
		switch {
		case t.Cert != "" && t.Key != "":
			v.keyPair(p+".tls", &t.Cert, &t.Key)
		case t.Cert != "":
			v.requiredf(p+".tls", []string{"key"}, "key is required with cert")
		case t.Key != "":
			v.requiredf(p+".tls", []string{"cert"}, "cert is required with key")
		}
	}
}
