#!/usr/bin/env bash
# bench/connscale.sh: connection scale (issue 11 point 5). See docs/performance.md,
# "Connection scale".
#
#   bench/connscale.sh                 N=2000 phones (about 2 minutes)
#   PHONES=20000 bench/connscale.sh    the issue's figure (about 3 minutes)
#
# Builds sipproxy (./cmd/sipproxy) and the load generator (./bench/connscale), makes a
# throw-away CA and server certificate (`sipproxy certs`), and runs two fresh sipproxy
# processes in turn, each with the same configuration (PHONES users phone0..phoneN-1 with
# plain passwords, auth.algorithms [MD5], a TCP and a TLS listener on loopback, 127.0.0.1
# as the trusted peer `load`, limits.requests_per_second 0):
#
#  (a) baseline: ONE phone registered over TLS, no refreshes; calls at CALL_RATE cps for DURATION from
#      127.0.0.1 over TCP, all to that phone;
#  (b) PHONES phones, each on its own TLS connection from its own port, spread over
#      127.0.0.2.. (PHONES_PER_IP per address; limits.connections_per_source is set just
#      above that, so the limit is exercised, not turned off), registered at REGISTER_RATE
#      (one new connection each), then refreshed at REGISTER_RATE while calls go at
#      CALL_RATE to random phones for DURATION. sipproxy's VmRSS/VmHWM and open files
#      are sampled at 0, N/2 and N held connections (after SETTLE) and at the end;
#      KiB per held connection is the VmRSS slope from N/2 to N; after each RSS sample a GC
#      is forced (pprof heap?gc=1) and the live heap, goroutine stacks and goroutines are read
#      from /metrics, for the same slope without garbage. A heap profile is taken
#      at N connections (`run -pprof`); its top is in the report.
#
# The report is bench/results/<UTC>-connscale.md.
#
# Open files: every held connection is a descriptor in sipproxy AND in the load generator,
# so both need RLIMIT_NOFILE above PHONES (+ a margin). The script raises its own limit
# (soft and, as root, hard) to PHONES + 4096 before starting anything; the children inherit
# it (Go programs raise their soft limit to the hard one by themselves). When the hard limit
# cannot be raised (not root, or root in a container without CAP_SYS_RESOURCE), it runs if
# the hard limit is at least PHONES + 64 and stops otherwise, naming the largest PHONES.
#
# Environment (all optional):
#   PHONES=2000  REGISTER_RATE=1000  REFRESH_RATE=REGISTER_RATE (run (b); 0: hold the
#   connections without refreshing)  CALL_RATE=200  DURATION=30s  HOLD=1s  SETTLE=3s
#   PHONES_PER_IP=2000   phones per 127.0.0.x source address
#   PORT_BASE=27000      +60 TCP, +61 TLS, +90 metrics, +91 pprof
#   SKIP_BASELINE=1      run (b) only
#   LOG_LEVEL=warn  SIPPROXY_ENV="GOGC=200"
#   PROXY=sipproxy       or kamailio: the same two runs against Kamailio 5.6 with its tls
#                        module (bench/kamailio-tls.cfg.in; installs kamailio and
#                        kamailio-tls-modules with apt-get when missing). Its memory is the sum
#                        of Pss of all its processes; the report is <UTC>-connscale-kamailio.md.
#   KAM_SHM_MB=1024+PHONES/16  KAM_PKG_MB=32   Kamailio's -m and -M
#   KAM_TLS_METHOD=TLSv1.2+  KAM_TCP_CHILDREN=1   (2 is the anchor's; it crashes, see docs)
#
# Loopback only. Every process it starts is recorded by PID and ended by PID (TERM, then
# KILL after 5 s) on exit; it signals nothing else. Each load run is bounded by `timeout`
# and by the tool's own -timeout.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
main=$(cd "$here/.." && pwd)
PHONES=${PHONES:-2000}
REGISTER_RATE=${REGISTER_RATE:-1000}
REFRESH_RATE=${REFRESH_RATE:-$REGISTER_RATE}
CALL_RATE=${CALL_RATE:-200}
DURATION=${DURATION:-30s}
HOLD=${HOLD:-1s}
SETTLE=${SETTLE:-3s}
PHONES_PER_IP=${PHONES_PER_IP:-2000}
PORT_BASE=${PORT_BASE:-27000}
SKIP_BASELINE=${SKIP_BASELINE:-0}
LOG_LEVEL=${LOG_LEVEL:-warn}
PROXY=${PROXY:-sipproxy}
SIPPROXY_ENV=${SIPPROXY_ENV:-}
P_TCP=$((PORT_BASE + 60)) P_TLS=$((PORT_BASE + 61)) P_MET=$((PORT_BASE + 90)) P_PPROF=$((PORT_BASE + 91))

T0=$SECONDS
ts=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "${TMPDIR:-/tmp}/sipproxy-connscale.XXXXXX")
mkdir -p "$here/results"
out_md="$here/results/$ts-connscale.md"
case $PROXY in
  sipproxy) ;;
  kamailio) out_md="$here/results/$ts-connscale-kamailio.md" ;;
  *) echo "PROXY must be sipproxy or kamailio" >&2; exit 1 ;;
esac
say() { printf '[connscale %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { say "FATAL: $*"; exit 1; }

# shellcheck source=bench/procs.sh
. "$here/procs.sh"
kam_reap() { :; } # bench/connscale-kamailio.sh defines it with PROXY=kamailio
cleanup() {
  stop_started
  kam_reap
  return 0
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- limits
[[ $PHONES =~ ^[0-9]+$ ]] && [ "$PHONES" -ge 2 ] && [ "$PHONES" -le 60000 ] || die "PHONES must be 2..60000"
need=$((PHONES + 4096)) least=$((PHONES + 64))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  # Root in a container may lack CAP_SYS_RESOURCE: then the hard limit stays, and a run needs
  # at least PHONES + 64 (sipproxy holds ~16 descriptors of its own, the tool a few).
  if ! ulimit -Hn "$need" 2>/dev/null; then
    [ "$hard" -ge "$least" ] || die "open-files hard limit $hard < $least and cannot be raised (not root, or no CAP_SYS_RESOURCE): raise it (ulimit -Hn, limits.conf, LimitNOFILE=, docker --ulimit nofile=) or run at most PHONES=$((hard - 64))"
    say "warning: open-files hard limit $hard cannot be raised; running with less margin than $need"
    need=$hard
  fi
fi
ulimit -Sn "$need" 2>/dev/null || die "cannot raise the open-files soft limit to $need"
say "open files: soft $(ulimit -Sn), hard $(ulimit -Hn) (need $need)"
ips=$(((PHONES + PHONES_PER_IP - 1) / PHONES_PER_IP))
[ "$ips" -le 250 ] || die "too many source addresses ($ips); raise PHONES_PER_IP"
last_ip=$((1 + ips))
SRC_IPS="127.0.0.2-127.0.0.$last_ip"
CONN_LIMIT=$((PHONES_PER_IP + 64))
# Each address's connections take ports from the ephemeral range (one range per address).
read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range
[ $((eph_hi - eph_lo)) -gt "$PHONES_PER_IP" ] || die "ephemeral port range $eph_lo-$eph_hi smaller than PHONES_PER_IP"

for p in $P_TCP $P_TLS $P_MET $P_PPROF; do
  ss -Hltn "sport = :$p" 2>/dev/null | grep -q . && die "port $p in use; set PORT_BASE"
done
command -v curl >/dev/null || die "curl is required"

# ---------------------------------------------------------------- build
say "building sipproxy and bench/connscale in $work"
(cd "$main" && timeout 300 go build -o "$work/sipproxy" ./cmd/sipproxy && timeout 300 go build -o "$work/connscale" ./bench/connscale) \
  >"$work/build.log" 2>&1 || die "go build failed; see $work/build.log"
BIN="$work/sipproxy"
COMMIT=$(cd "$main" && git rev-parse --short HEAD 2>/dev/null || echo '?')
[ -n "$(cd "$main" && git status --porcelain -- . ':!bench' ':!docs' 2>/dev/null)" ] && COMMIT="$COMMIT+uncommitted"
(cd "$work" && "$BIN" certs -dir tls -server bench.test) >"$work/certs.log" 2>&1 || die "sipproxy certs failed; see $work/certs.log"

# ---------------------------------------------------------------- config
cfg="$work/sipproxy.yaml"
{
  cat <<EOF
# bench/connscale.sh: sipproxy on loopback for $PHONES phones over TLS.
server:
  domains: [bench.test]
  listen:
    - {transport: tcp, addr: "127.0.0.1:$P_TCP"}
    - {transport: tls, addr: "127.0.0.1:$P_TLS", cert: tls/server.crt, key: tls/server.key}
  record_route: true
peers:
  - {name: load, sources: ["127.0.0.1/32"]}
metrics:
  listen: "127.0.0.1:$P_MET"
log: {level: $LOG_LEVEL, format: json}
state: {backend: memory}
limits:
  requests_per_second: 0
  connections_per_source: $CONN_LIMIT
auth:
  realm: bench.test
  algorithms: [MD5]
  users:
EOF
  for ((i = 0; i < PHONES; i++)); do echo "    - {user: phone$i, password: pw-$i}"; done
} >"$cfg"
"$BIN" check -config "$cfg" >"$work/check.log" 2>&1 || die "sipproxy check failed: $(grep -v 'plain password' "$work/check.log" | head -5)"

SP_PID=
sp_start() { # NAME
  # shellcheck disable=SC2086 # SIPPROXY_ENV is NAME=VALUE words
  spawn "$work/sipproxy-$1.log" env $SIPPROXY_ENV "$BIN" run -config "$cfg" -pprof "127.0.0.1:$P_PPROF"
  SP_PID=$LASTPID
  local i
  for i in $(seq 300); do
    curl -fs "http://127.0.0.1:$P_MET/readyz" >/dev/null 2>&1 && return 0
    alive "$SP_PID" || break
    sleep 0.1
  done
  die "sipproxy did not become ready; see $work/sipproxy-$1.log"
}
load() { # NAME PHONES EXTRA...: one bounded load run against a fresh sipproxy; sets LOAD_RC
  local name=$1 n=$2; shift 2
  if [ "$PROXY" = kamailio ]; then kam_load "$name" "$n" "$@"; return; fi
  sp_start "$name"
  say "run ($name): $n phone(s), sipproxy pid $SP_PID, nofile $(awk '/open files/{print $4}' "/proc/$SP_PID/limits")"
  timeout -k 5 $((n / REGISTER_RATE * 2 + 300)) "$work/connscale" -proxy "127.0.0.1:$P_TLS" -call-proxy "127.0.0.1:$P_TCP" \
    -ca "$work/tls/internal-ca.crt" -server-name bench.test -phones "$n" -register-rate "$REGISTER_RATE" -call-rate "$CALL_RATE" \
    -duration "$DURATION" -hold "$HOLD" -settle "$SETTLE" -src-ips "$SRC_IPS" -caller-src 127.0.0.1 \
    -proxy-pid "$SP_PID" -metrics-url "http://127.0.0.1:$P_MET/metrics" -gc-url "http://127.0.0.1:$P_PPROF/debug/pprof/heap?gc=1" -label "$name" -report "$work/report-$name.md" "$@" >"$work/connscale-$name.log" 2>&1
  LOAD_RC=$?
  grep '^connscale:' "$work/connscale-$name.log" >&2
  stop "$SP_PID"
  sleep 1
}

# shellcheck source=bench/connscale-kamailio.sh
if [ "$PROXY" = kamailio ]; then
  . "$here/connscale-kamailio.sh"
  kam_tools
  kam_config
fi

# ---------------------------------------------------------------- runs
if [ "$SKIP_BASELINE" != 1 ]; then
  load baseline 1 -refresh-rate 0
  RC_A=$LOAD_RC
fi
load phones "$PHONES" -refresh-rate "$REFRESH_RATE" -heap-url "http://127.0.0.1:$P_PPROF/debug/pprof/heap" -heap-out "$work/heap-N.pprof"
RC_B=$LOAD_RC
HEAP_TOP=
if [ -s "$work/heap-N.pprof" ]; then
  HEAP_TOP=$(cd "$main" && timeout 180 go tool pprof -top -sample_index=inuse_space -nodecount=25 "$work/sipproxy" "$work/heap-N.pprof" 2>/dev/null | sed -n '1,35p')
fi

# ---------------------------------------------------------------- report
p99() { sed -n 's/^| call setup INVITE->200 p50 \/ p99 \/ max ms ([0-9]* calls) | \([^ ]*\) \/ \([^ ]*\) .*/\2/p' "$1"; }
p50() { sed -n 's/^| call setup INVITE->200 p50 \/ p99 \/ max ms ([0-9]* calls) | \([^ ]*\) \/ .*/\1/p' "$1"; }
{
  echo "# Connection scale: $PHONES phones over TLS ($ts)"
  echo
  echo "bench/connscale.sh on $(hostname), $(nproc) CPUs, $(uname -r); sipproxy $COMMIT; $(go version | cut -d' ' -f3)."
  echo "REGISTER_RATE=$REGISTER_RATE REFRESH_RATE=$REFRESH_RATE CALL_RATE=$CALL_RATE DURATION=$DURATION HOLD=$HOLD PHONES_PER_IP=$PHONES_PER_IP"
  echo "(limits.connections_per_source: $CONN_LIMIT, sources $SRC_IPS); open files soft/hard $(ulimit -Sn)/$(ulimit -Hn)."
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). The load generator runs on the same 2 CPUs."
  echo
  [ "$PROXY" = kamailio ] && kam_report_head
  if [ "$SKIP_BASELINE" != 1 ]; then
    a50=$(p50 "$work/report-baseline.md") a99=$(p99 "$work/report-baseline.md")
    b50=$(p50 "$work/report-phones.md") b99=$(p99 "$work/report-phones.md")
    ratio=$(awk -v a="$a99" -v b="$b99" 'BEGIN{if (a+0>0 && b!="-") printf "%.2f", b/a; else print "-"}')
    echo "Call setup p50/p99: $a50/$a99 ms with one phone, $b50/$b99 ms with $PHONES phones: p99 ratio **$ratio** (target <= 1.5)."
    echo
  fi
  for n in baseline phones; do [ -f "$work/report-$n.md" ] && cat "$work/report-$n.md"; done
  if [ -n "$HEAP_TOP" ]; then
    echo "### sipproxy heap at N connections (inuse_space, top 25)"
    echo
    echo '```'
    echo "$HEAP_TOP"
    echo '```'
  fi
  echo
  echo "Exit codes: baseline ${RC_A:--}, phones $RC_B (0 = no failure)."
  [ "$PROXY" = kamailio ] && kam_report_tail
} >"$out_md"
# The binary profile stays in the work directory (its top is in the report):
# results in git are text.
if [ "$PROXY" = kamailio ]; then say "report: $out_md (Kamailio's logs: $work/kamailio-*.log)"; else say "report: $out_md (heap profile: $work/heap-N.pprof)"; fi
[ "$RC_B" = 0 ] && [ "${RC_A:-0}" = 0 ]
