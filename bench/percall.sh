#!/usr/bin/env bash
# bench/percall.sh: where one call's CPU goes, sipproxy beside Kamailio 5.6, at one rate on
# loopback (docs/performance.md, "Per call: where the CPU goes"). run.sh says how much each
# proxy spends per call; this says on what: user and kernel time, context switches and (with
# STRACE=1) system calls per call, and for sipproxy the goroutines it starts per call.
#
#   bench/percall.sh                 both proxies, 1000 cps, 10,000 calls each, after a warm-up
#   STRACE=1 bench/percall.sh        also count system calls (a second pass at STRACE_RATE cps:
#                                    strace slows the process it traces; the counts stay exact)
#
# The call flow is run.sh's plain one (bench/scenarios/uac.xml and uas.xml over TCP, one socket
# each way: INVITE/180/200/ACK/BYE/200), the configurations are run.sh's: Kamailio from
# bench/kamailio.cfg.in, sipproxy a trusted peer with a static route and record_route.
#
# Environment (all optional):
#   RATE=1000 CALLS=10000       the measured step
#   WARMUP=3000                 calls before it, not counted (a fresh process grows first)
#   SETTLE=6                    seconds counted after the step: both keep finished INVITE
#                               transactions for 5 s (Timer L/M, tm's wait timer)
#   STRACE_RATE=300 STRACE_CALLS=3000
#   PATHS="kamailio sipproxy"   which proxies
#   SIPPROXY_BIN=path           a built binary instead of building ./cmd/sipproxy
#   SIPPROXY_ENV="GOMAXPROCS=1" environment for sipproxy (experiments; reported)
#   PORT_BASE=29000             +60 sipproxy, +70 Kamailio, +80 sipp UAC, +90 sipp UAS, +99 metrics
#   MAX_SECONDS=600             hard bound for the whole run
# Loopback only. Every process this script starts is ended by PID on exit.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
main=$(cd "$here/.." && pwd)
scen="$here/scenarios"
RATE=${RATE:-1000} CALLS=${CALLS:-10000} WARMUP=${WARMUP:-3000} SETTLE=${SETTLE:-6}
STRACE=${STRACE:-0} STRACE_RATE=${STRACE_RATE:-300} STRACE_CALLS=${STRACE_CALLS:-3000}
PATHS=${PATHS:-"kamailio sipproxy"}
SIPPROXY_ENV=${SIPPROXY_ENV:-}
PORT_BASE=${PORT_BASE:-29000}
MAX_SECONDS=${MAX_SECONDS:-600}
P_SP=$((PORT_BASE + 60)) P_KAM=$((PORT_BASE + 70)) P_UAC=$((PORT_BASE + 80)) P_UAS=$((PORT_BASE + 90))
P_VM=$((PORT_BASE + 91)) P_METRICS=$((PORT_BASE + 99))

T0=$SECONDS
ts=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "${TMPDIR:-/tmp}/sipproxy-percall.XXXXXX")
mkdir -p "$here/results"
out_md="$here/results/$ts-percall.md"
say() { printf '[percall %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { say "FATAL: $*"; exit 1; }
# shellcheck source=bench/procs.sh
. "$here/procs.sh"
trap stop_started EXIT
trap 'say "interrupted"; exit 130' INT TERM

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
[ "$STRACE" = 1 ] && ! command -v strace >/dev/null && need+=(strace)
apt_install "${need[@]}"
for p in $P_SP $P_KAM $P_UAC $P_UAS $P_METRICS; do
  ss -Hltnu "sport = :$p" 2>/dev/null | grep -q . && die "port $p is in use; set PORT_BASE"
done

# threads PID...: every thread of the processes (Go's and Kamailio's workers alike)
threads() { local p; for p in "$@"; do ls -d /proc/"$p"/task/* 2>/dev/null; done; }
# counters PID...: "utime stime voluntary_cs involuntary_cs", summed over all threads
counters() {
  local t s f u=0 k=0 v=0 n=0 a b
  for t in $(threads "$@"); do
    s=$(cat "$t/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    u=$((u + f[11])) k=$((k + f[12]))
    read -r a b < <(awk '/^voluntary_ctxt_switches/{v=$2} /^nonvoluntary_ctxt_switches/{n=$2} END{print v+0, n+0}' "$t/status" 2>/dev/null)
    v=$((v + ${a:-0})) n=$((n + ${b:-0}))
  done
  echo "$u $k $v $n"
}
CLK_TCK=$(getconf CLK_TCK)
metric() { curl -fs "http://127.0.0.1:$P_METRICS/metrics" 2>/dev/null | awk -v s="$1" '$1 == s {print $2}'; }

uac() { # PORT CALLS RATE -> 0 if every call succeeded
  local dir; dir=$(mktemp -d "$work/uac.XXXX")
  (cd "$dir" && timeout -k 5 $(($2 / $3 + 40)) sipp -sf "$scen/uac.xml" -t t1 -i 127.0.0.1 -p $P_UAC "127.0.0.1:$1" \
    -s svc -key ruri_host "127.0.0.1:$P_UAS" -r "$3" -m "$2" -nostdin -max_socket 4000 -timeout $(($2 / $3 + 30)) \
    >uac.out 2>&1)
}

spawn "$work/uas.log" sipp -sf "$scen/uas.xml" -t t1 -i 127.0.0.1 -p $P_UAS -nostdin -max_socket 4000
wait_port $P_UAS 10 || die "sipp UAS did not listen"

declare -A R
measure() { # NAME PORT PID...
  local name=$1 port=$2; shift 2
  local pids="$*" c0 c1 g0 g1 rc
  say "$name: warm-up ($WARMUP calls at $RATE cps)"
  uac "$port" "$WARMUP" "$RATE" || say "$name: warm-up had failed calls"
  sleep "$SETTLE"
  read -r -a c0 < <(counters $pids)
  [ "$name" = sipproxy ] && g0=$(metric go_sched_goroutines_created_goroutines_total)
  say "$name: $CALLS calls at $RATE cps, then $SETTLE s"
  uac "$port" "$CALLS" "$RATE"; rc=$?
  sleep "$SETTLE"
  read -r -a c1 < <(counters $pids)
  [ "$name" = sipproxy ] && g1=$(metric go_sched_goroutines_created_goroutines_total)
  R[$name.ok]=$([ $rc = 0 ] && echo yes || echo "no (sipp rc $rc)")
  R[$name.user]=$(awk -v a="${c1[0]}" -v b="${c0[0]}" -v t="$CLK_TCK" -v n="$CALLS" 'BEGIN{printf "%.1f", (a-b)/t/n*1e6}')
  R[$name.sys]=$(awk -v a="${c1[1]}" -v b="${c0[1]}" -v t="$CLK_TCK" -v n="$CALLS" 'BEGIN{printf "%.1f", (a-b)/t/n*1e6}')
  R[$name.cpu]=$(awk -v u="${R[$name.user]}" -v s="${R[$name.sys]}" 'BEGIN{printf "%.1f", u+s}')
  R[$name.vcs]=$(awk -v a="${c1[2]}" -v b="${c0[2]}" -v n="$CALLS" 'BEGIN{printf "%.2f", (a-b)/n}')
  R[$name.ics]=$(awk -v a="${c1[3]}" -v b="${c0[3]}" -v n="$CALLS" 'BEGIN{printf "%.2f", (a-b)/n}')
  if [ "$name" = sipproxy ] && [ -n "${g0:-}" ] && [ -n "${g1:-}" ]; then
    R[$name.gor]=$(awk -v a="$g1" -v b="$g0" -v n="$CALLS" 'BEGIN{printf "%.2f", (a-b)/n}')
  fi
  if [ "$STRACE" = 1 ]; then
    say "$name: system calls over $STRACE_CALLS calls at $STRACE_RATE cps (strace)"
    local tpids; tpids=$(echo $pids | tr ' ' ',')
    strace -c -f -o "$work/strace-$name.txt" -p "$tpids" 2>/dev/null &
    local sp=$!
    STARTED+=("$sp")
    sleep 1
    uac "$port" "$STRACE_CALLS" "$STRACE_RATE" || say "$name: traced step had failed calls"
    sleep 2
    kill -INT "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
    R[$name.strace]=$(awk -v n="$STRACE_CALLS" '
      $1 ~ /^[0-9.]+$/ && NF >= 5 { if ($NF == "total") tot = $4; else c[$NF] = $4 }
      END { for (k in c) if (c[k] / n >= 0.05) printf "%s %.2f, ", k, c[k] / n; printf "total %.2f", tot / n }' "$work/strace-$name.txt")
  fi
}

if case " $PATHS " in *" kamailio "*) true ;; *) false ;; esac; then
  sed -e "s/@KAM_PORT@/$P_KAM/g; s/@UAS_PORT@/$P_UAS/g; s/@VM_PORT@/$P_VM/g" "$here/kamailio.cfg.in" >"$work/kamailio.cfg"
  mkdir -p "$work/kamailio-run"
  spawn "$work/kamailio.log" kamailio -f "$work/kamailio.cfg" -m 1024 -M 32 -DD -E -Y "$work/kamailio-run" -w "$work"
  KAM=$LASTPID
  wait_port $P_KAM 15 || die "Kamailio did not listen; see $work/kamailio.log"
  sleep 0.5
  measure kamailio $P_KAM $KAM $(ps -o pid= --ppid "$KAM")
  stop "$KAM"
fi
if case " $PATHS " in *" sipproxy "*) true ;; *) false ;; esac; then
  BIN=${SIPPROXY_BIN:-}
  if [ -z "$BIN" ]; then
    BIN="$work/sipproxy"
    say "building sipproxy"
    (cd "$main" && timeout 300 go build -o "$BIN" ./cmd/sipproxy) >"$work/build.log" 2>&1 || die "go build failed; see $work/build.log"
  fi
  cat >"$work/sipproxy.yaml" <<EOF
server:
  domains: [bench.test]
  listen:
    - {transport: tcp, addr: "127.0.0.1:$P_SP"}
  record_route: true
voicemail:
  uri: "sip:127.0.0.1:$P_VM;transport=tcp"
  probe_interval: 0s
peers:
  - {name: bench, sources: ["127.0.0.1/32"]}
routes:
  - {domain: "*", next_hop: "sip:127.0.0.1:$P_UAS;transport=tcp"}
metrics:
  listen: "127.0.0.1:$P_METRICS"
log: {level: warn, format: json}
EOF
  # shellcheck disable=SC2086 # SIPPROXY_ENV is a list of NAME=VALUE words
  spawn "$work/sipproxy.log" env $SIPPROXY_ENV "$BIN" run -config "$work/sipproxy.yaml"
  SP=$LASTPID
  wait_port $P_SP 15 || die "sipproxy did not listen; see $work/sipproxy.log"
  measure sipproxy $P_SP $SP
  stop "$SP"
fi

{
  echo "# Per call: where the CPU goes ($ts)"
  echo
  echo "bench/percall.sh: $CALLS calls at $RATE cps over TCP after $WARMUP warm-up calls, counted until $SETTLE s after the"
  echo "last call; $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg). Kamailio $(kamailio -v 2>/dev/null | awk '/^version:/{print $3; exit}'),"
  echo "sipproxy ${SIPPROXY_BIN:-$(cd "$main" && git rev-parse --short HEAD)$([ -n "$(cd "$main" && git status --porcelain -- . ':!bench' ':!docs')" ] && echo +uncommitted)}${SIPPROXY_ENV:+ with $SIPPROXY_ENV}. Counters from /proc (every thread); µs are CPU µs per call."
  echo
  echo "| | all calls ok | CPU µs/call | user | kernel | voluntary cs/call | involuntary cs/call | goroutines started/call |"
  echo "|---|---|---|---|---|---|---|---|"
  for n in kamailio sipproxy; do
    [ -n "${R[$n.cpu]:-}" ] || continue
    echo "| $n | ${R[$n.ok]} | ${R[$n.cpu]} | ${R[$n.user]} | ${R[$n.sys]} | ${R[$n.vcs]} | ${R[$n.ics]} | ${R[$n.gor]:--} |"
  done
  if [ -n "${R[kamailio.cpu]:-}" ] && [ -n "${R[sipproxy.cpu]:-}" ]; then
    echo
    awk -v a="${R[sipproxy.cpu]}" -v b="${R[kamailio.cpu]}" -v au="${R[sipproxy.user]}" -v bu="${R[kamailio.user]}" \
      -v as="${R[sipproxy.sys]}" -v bs="${R[kamailio.sys]}" \
      'BEGIN{printf "sipproxy / Kamailio: CPU %.2f x (user %.2f x, kernel %.2f x)\n", a/b, au/bu, as/bs}'
  fi
  if [ "$STRACE" = 1 ]; then
    echo
    echo "System calls per call (strace -c -f, $STRACE_CALLS calls at $STRACE_RATE cps; those at >= 0.05 per call):"
    echo
    for n in kamailio sipproxy; do
      [ -n "${R[$n.strace]:-}" ] && echo "- $n: ${R[$n.strace]}"
    done
  fi
} >"$out_md"
cat "$out_md"
say "wrote $out_md"
