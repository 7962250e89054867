#!/usr/bin/env bash
# bench/state.sh: the state backends side by side (issue 10 point 5), in ONE run, so that
# every figure is read as a ratio to the memory backend under the same machine load.
# See docs/performance.md, "State backends".
#
#   bench/state.sh           full run (about 5 minutes; bounded by MAX_SECONDS=600)
#   QUICK=1 bench/state.sh   smoke test (about 1.5 minutes; bounded by 120 s); not for comparison
#
# Three sipproxy processes (one binary, built once from ./cmd/sipproxy) run side by side on
# loopback, identical but for `state:`:
#   memory   state: {backend: memory}
#   file     state: {backend: file, path: <temp dir>/state.db}   (bbolt; the temp dir's filesystem is reported)
#   redis    state: {backend: redis, addrs: [127.0.0.1:<port>], prefix: "bench:", instance: bench-redis}
#            against a redis-server this script starts (--save '' --appendonly no).
# Each has USERS local users (user0..userN-1, plain passwords, MD5 only) plus `callee`, and
# 127.0.0.1 as a trusted peer (as bench/run.sh). The backends take turns at every step (memory,
# file, redis, memory, ...), so that a change in the machine's load touches all three alike.
#
#  1. REGISTER ramp: bench/scenarios/register_inf.xml (-inf: one user per REGISTER, sequential,
#     MD5 digest challenge and answer) at each rate of REG_RATES for REG_SECONDS. A rate passes
#     with sipp rc 0, no failed REGISTER, every REGISTER answered 200 and an achieved rate >= 97%
#     of the offered one; a backend stops at its first rate that fails REG_TRIES times in a row.
#  2. Calls: `callee` is registered at each proxy with the Contact of a sipp UAS
#     (bench/scenarios/uas.xml); a sipp UAC (bench/scenarios/uac.xml, sip:callee@bench.test, so
#     every INVITE is a registrar lookup) calls at CALL_RATE cps for CALL_SECONDS, ROUNDS times
#     per backend (turns as above). p50/p99 of INVITE->200 (sipp -trace_rtt, one sample per call)
#     over all rounds pooled. For redis, the commands Redis served during the call steps
#     (INFO commandstats) are reported, to show what the call path asks of it.
#
# Environment (all optional):
#   QUICK=1                     smoke-test mode
#   BACKENDS="memory file redis"
#   USERS=2000                  local users registered by the ramp
#   REG_RATES="200 300 400 500 1000 2000 3000"   REG_SECONDS=5
#   REG_TRIES=2                 a rate fails when this many tries in a row fail (QUICK: 1)
#   CALL_RATE=500 CALL_SECONDS=8 ROUNDS=3 CALL_SETTLE=6 (seconds between call steps: sipgo's
#                               Timer L/M is 5 s)
#   PORT_BASE=26000             ports: +10/+11/+12 the proxies (memory/file/redis), +20..+22 their
#                               metrics, +30..+32 pprof (PROFILE=1), +40 sipp UAC, +41 sipp REGISTER,
#                               +50 sipp UAS, +60 redis-server
#   MAX_SECONDS                 hard budget (default 600, QUICK 120)
#   PROFILE=1                   also serve pprof (`run -pprof`) and take a CPU profile of each
#                               proxy during its last call step, and a 2 s execution trace
#                               (cpu-BACKEND.pprof, trace-BACKEND.out in the work dir, which is kept)
#   FINECLOCK=0                 do not LD_PRELOAD bench/tools/fineclock.so into sipp
#   STATE_DIR=/var/tmp          where the file backend's temp dir is made (a disk: fsync is real)
#   TMPDIR=/dev/shm             the work dir (sipp's trace files, logs); on tmpfs, sipp's own
#                               writes cannot wait behind the state file's journal commits
#   LOG_LEVEL=warn  SIPPROXY_BIN=path  SIPPROXY_ENV="GOGC=200"
#
# Only loopback is used. Every process this script starts is recorded by PID and ended by PID
# (TERM, then KILL after 5 s) on exit; it never signals anything else. Every loop is bounded in
# count, every sipp run by `timeout` and its own -timeout, and the whole run by MAX_SECONDS.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
main=$(cd "$here/.." && pwd)
scen="$here/scenarios"
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REG_RATES=${REG_RATES:-"200 500 1000"}
  REG_SECONDS=${REG_SECONDS:-2}
  REG_TRIES=${REG_TRIES:-1}
  CALL_SECONDS=${CALL_SECONDS:-3}
  ROUNDS=${ROUNDS:-1}
  CALL_SETTLE=${CALL_SETTLE:-2}
  MAX_SECONDS=${MAX_SECONDS:-120}
else
  REG_RATES=${REG_RATES:-"200 300 400 500 1000 2000 3000"}
  REG_SECONDS=${REG_SECONDS:-5}
  REG_TRIES=${REG_TRIES:-2}
  CALL_SECONDS=${CALL_SECONDS:-8}
  ROUNDS=${ROUNDS:-3}
  CALL_SETTLE=${CALL_SETTLE:-6}
  MAX_SECONDS=${MAX_SECONDS:-600}
fi
BACKENDS=${BACKENDS:-"memory file redis"}
USERS=${USERS:-2000}
CALL_RATE=${CALL_RATE:-500}
PORT_BASE=${PORT_BASE:-26000}
PROFILE=${PROFILE:-0}
FINECLOCK=${FINECLOCK:-1}
LOG_LEVEL=${LOG_LEVEL:-warn}
SIPPROXY_ENV=${SIPPROXY_ENV:-}

declare -A P_SIP P_MET P_PPROF
P_SIP[memory]=$((PORT_BASE + 10)) P_SIP[file]=$((PORT_BASE + 11)) P_SIP[redis]=$((PORT_BASE + 12))
P_MET[memory]=$((PORT_BASE + 20)) P_MET[file]=$((PORT_BASE + 21)) P_MET[redis]=$((PORT_BASE + 22))
P_PPROF[memory]=$((PORT_BASE + 30)) P_PPROF[file]=$((PORT_BASE + 31)) P_PPROF[redis]=$((PORT_BASE + 32))
P_UAC=$((PORT_BASE + 40)) P_REG=$((PORT_BASE + 41)) P_UAS=$((PORT_BASE + 50)) P_REDIS=$((PORT_BASE + 60))

T0=$SECONDS
ts=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "${TMPDIR:-/tmp}/sipproxy-state-bench.XXXXXX")
mkdir -p "$here/results"
out_md="$here/results/$ts-state.md"
steps_log="$work/steps.tsv"
: >"$steps_log"

say() { printf '[state %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { say "FATAL: $*"; exit 1; }
left() { echo $((MAX_SECONDS - (SECONDS - T0))); }

# ---------------------------------------------------------------- processes
# shellcheck source=bench/procs.sh
. "$here/procs.sh"
cleanup() {
  stop_started
  return 0
}
trap 'cleanup; [ -n "${state_dir:-}" ] && rm_state_dir' EXIT
trap 'say "interrupted"; exit 130' INT TERM

ticks() { # PID: utime+stime in clock ticks
  local s f
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  read -r -a f <<<"$s"
  echo $((f[11] + f[12]))
}
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- tools
for t in sipp redis-server redis-cli ss curl python3; do
  command -v "$t" >/dev/null || die "$t is required (sipp: Debian's sip-tester; redis-server/redis-cli: Debian's redis-server)"
done
PRELOAD=
if [ "$FINECLOCK" = 1 ] && command -v cc >/dev/null; then
  cc -O2 -shared -fPIC -o "$work/fineclock.so" "$here/tools/fineclock.c" -ldl 2>"$work/cc.log" && PRELOAD="$work/fineclock.so"
fi
[ -n "$PRELOAD" ] || say "note: sipp timestamps are the coarse kernel clock; percentiles are quantised"

for b in $BACKENDS; do
  case $b in memory | file | redis) ;; *) die "unknown backend $b (memory, file, redis)" ;; esac
done
has() { case " $BACKENDS " in *" $1 "*) return 0 ;; esac; return 1; }
for p in $P_UAC $P_REG $P_UAS $P_REDIS "${P_SIP[@]}" "${P_MET[@]}" "${P_PPROF[@]}"; do
  ss -Hltnu "sport = :$p" 2>/dev/null | grep -q . && die "port $p is in use; set PORT_BASE to another value"
done

if [ -n "${SIPPROXY_BIN:-}" ]; then
  BIN=$SIPPROXY_BIN
else
  BIN="$work/sipproxy"
  say "building sipproxy"
  (cd "$main" && timeout 300 go build -o "$BIN" ./cmd/sipproxy) >"$work/build.log" 2>&1 ||
    die "go build failed; see $work/build.log"
fi
SIPPROXY_VERSION=$("$BIN" version 2>/dev/null | head -1 || echo '?')
SIPPROXY_COMMIT=$(cd "$main" && git rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(cd "$main" && git status --porcelain -- . ':!bench' ':!docs' 2>/dev/null)" ]; then
  SIPPROXY_COMMIT="$SIPPROXY_COMMIT+uncommitted"
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "work dir $work; load average $LOAD_BEFORE; backends $BACKENDS; budget ${MAX_SECONDS}s"

# ---------------------------------------------------------------- users
users_csv="$work/users.csv"
{
  echo SEQUENTIAL
  for ((i = 0; i < USERS; i++)); do echo "user$i;pw-$i"; done
} >"$users_csv"

# ---------------------------------------------------------------- the state file's directory
# On a disk (STATE_DIR's filesystem; fsync is real there), apart from the work dir: with
# TMPDIR=/dev/shm, sipp's trace files are on tmpfs and cannot wait behind the state file's
# journal commits. Removed on exit (it only holds state.db).
state_dir=$(mktemp -d "${STATE_DIR:-/var/tmp}/sipproxy-state-db.XXXXXX")
rm_state_dir() { rm -rf -- "$state_dir"; }
# ---------------------------------------------------------------- redis
REDIS_PID=
if has redis; then
  spawn "$work/redis.log" redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --protected-mode yes
  REDIS_PID=$LASTPID
  for _ in $(seq 50); do
    [ "$(redis-cli -h 127.0.0.1 -p "$P_REDIS" ping 2>/dev/null)" = PONG ] && break
    alive "$REDIS_PID" || break
    sleep 0.1
  done
  [ "$(redis-cli -h 127.0.0.1 -p "$P_REDIS" ping 2>/dev/null)" = PONG ] || die "redis-server did not answer; see $work/redis.log"
  REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
fi
# commandstats: "cmd calls" per line
redis_cmds() { redis-cli -h 127.0.0.1 -p "$P_REDIS" info commandstats 2>/dev/null | tr -d '\r' |
  sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p'; }

# ---------------------------------------------------------------- sipproxy x3
declare -A SP_PID
sp_config() { # BACKEND
  local b=$1 cfg="$work/sipproxy-$1.yaml" i
  {
    cat <<EOF
# bench/state.sh: sipproxy on loopback with state backend $b.
server:
  domains: [bench.test]
  listen:
    - {transport: tcp, addr: "127.0.0.1:${P_SIP[$b]}"}
  record_route: true
peers:
  - {name: bench, sources: ["127.0.0.1/32"]}
metrics:
  listen: "127.0.0.1:${P_MET[$b]}"
log: {level: $LOG_LEVEL, format: json}
EOF
    case $b in
      memory) echo "state: {backend: memory}" ;;
      file) echo "state: {backend: file, path: \"$state_dir/state.db\"}" ;;
      redis) echo "state: {backend: redis, addrs: [\"127.0.0.1:$P_REDIS\"], prefix: \"bench:\", instance: bench-redis}" ;;
    esac
    echo "auth:"
    echo "  realm: bench.test"
    echo "  algorithms: [MD5]"
    echo "  users:"
    echo "    - {user: callee, password: pw-callee}"
    for ((i = 0; i < USERS; i++)); do echo "    - {user: user$i, password: pw-$i}"; done
  } >"$cfg"
  "$BIN" check -config "$cfg" >"$work/check-$b.log" 2>&1 || die "sipproxy check ($b) failed: $(head -5 "$work/check-$b.log")"
}
sp_start() { # BACKEND
  local b=$1 args=(run -config "$work/sipproxy-$1.yaml") i
  [ "$PROFILE" = 1 ] && args+=(-pprof "127.0.0.1:${P_PPROF[$b]}")
  # shellcheck disable=SC2086 # SIPPROXY_ENV is a list of NAME=VALUE words
  spawn "$work/sipproxy-$b.log" env $SIPPROXY_ENV "$BIN" "${args[@]}"
  SP_PID[$b]=$LASTPID
  for i in $(seq 150); do
    curl -fs "http://127.0.0.1:${P_MET[$b]}/readyz" >/dev/null 2>&1 && return 0
    alive "${SP_PID[$b]}" || break
    sleep 0.1
  done
  die "sipproxy ($b) did not become ready; see $work/sipproxy-$b.log"
}
declare -A LOG0 # log lines at ready (the plain-password warnings of the start are not counted)
for b in $BACKENDS; do sp_config "$b"; sp_start "$b"; LOG0[$b]=$(wc -l <"$work/sipproxy-$b.log"); done
say "sipproxy ready: $(for b in $BACKENDS; do printf '%s=pid %s port %s; ' "$b" "${SP_PID[$b]}" "${P_SIP[$b]}"; done)"

# ---------------------------------------------------------------- sipp runs
# sipp_run DIR BOUND ARGS...: one sipp in DIR (trace_stat every second), bounded; sets S_RC.
sipp_run() {
  local dir=$1 bound=$2; shift 2
  mkdir -p "$dir"
  (cd "$dir" && exec env ${PRELOAD:+LD_PRELOAD=$PRELOAD} timeout -k 5 "$bound" \
    sipp "$@" -t t1 -i 127.0.0.1 -nostdin -trace_stat -stf stat.csv -fd 1 -timeout $((bound - 5)) -max_socket 4000 \
    >sipp.out 2>&1)
  S_RC=$?
}
# collect DIR: sets S_SUCC S_FAIL S_RATE S_P50 S_P99 S_MEAN (sippstat.py; every rtt file in DIR pooled)
collect() {
  local rtt="$1/rtt-pooled.csv"
  cat "$1"/*_rtt.csv >"$rtt" 2>/dev/null || : >"$rtt"
  read -r S_SUCC S_FAIL S_RATE S_P50 S_P99 S_MEAN _ _ < <(python3 "$here/tools/sippstat.py" "$1/stat.csv" "$rtt")
}
pass() { # OFFERED COUNT: 0 when the last sipp run passes
  [ "$S_RC" = 0 ] && [ "$S_FAIL" = 0 ] && [ "$S_SUCC" = "$2" ] && [ "$S_RATE" != - ] &&
    awk -v a="$S_RATE" -v o="$1" 'BEGIN{exit !(a >= 0.97 * o)}'
}
declare -A R

# ---------------------------------------------------------------- 1. REGISTER ramp
declare -A RAMP_DONE
for b in $BACKENDS; do R[$b.reg]=- R[$b.regach]=- R[$b.regfail]=- R[$b.reg50]=- R[$b.reg99]=-; RAMP_DONE[$b]=0; done
# reg_step BACKEND RATE ATTEMPT: one REGISTER step; 0 when it passes.
reg_step() {
  local b=$1 r=$2 a=$3 n=$(($2 * REG_SECONDS)) d="$work/reg-$1-$2-$3" t0 cpu v
  t0=$(ticks "${SP_PID[$b]}")
  sipp_run "$d" $((REG_SECONDS + 25)) -sf "$scen/register_inf.xml" -p "$P_REG" "127.0.0.1:${P_SIP[$b]}" \
    -inf "$users_csv" -au '[field0]' -ap '[field1]' -key domain bench.test -key contact_port "$P_REG" -r "$r" -m "$n" -trace_rtt -rtt_freq 1
  cpu=$(awk -v d=$(($(ticks "${SP_PID[$b]}") - t0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')
  collect "$d"
  REG_WHY=
  if pass "$r" "$n"; then v=ok; R[$b.reg]=$r R[$b.regach]=$S_RATE R[$b.reg50]=$S_P50 R[$b.reg99]=$S_P99
  elif [ "$S_FAIL" = 0 ] && [ "$S_SUCC" = "$n" ]; then v=SLOW; REG_WHY="$r/s (slow: $S_RATE/s achieved)"
  else v=FAIL; REG_WHY="$r/s ($S_FAIL failed, $S_SUCC/$n ok, sipp rc $S_RC)"; fi
  printf '%s\tREGISTER (try %s)\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$b" "$a" "$r" "$S_RATE" "$n" "$S_SUCC" "$S_FAIL" "$S_RC" "$v" "$cpu" "$S_P50" "$S_P99" >>"$steps_log"
  say "$b REGISTER rate=$r try $a: achieved=$S_RATE ok=$S_SUCC/$n failed=$S_FAIL rc=$S_RC $v cpu=${cpu}s p50=$S_P50 p99=$S_P99 ms"
  [ "$v" = ok ]
}
for r in $REG_RATES; do
  for b in $BACKENDS; do
    [ "${RAMP_DONE[$b]}" = 1 ] && continue
    # A rate fails when it fails REG_TRIES times in a row (a stall of the shared machine
    # should not end a backend's ramp); every try is in the step table.
    for ((a = 1; a <= REG_TRIES; a++)); do
      if [ "$(left)" -lt $((REG_SECONDS + 30 + ROUNDS * 3 * (CALL_SECONDS + CALL_SETTLE + 5))) ]; then
        R[$b.regfail]="(budget: stopped before $r/s)"; RAMP_DONE[$b]=1; break
      fi
      reg_step "$b" "$r" "$a" && break
      [ "$a" = "$REG_TRIES" ] && R[$b.regfail]="$REG_WHY (${REG_TRIES}x)" && RAMP_DONE[$b]=1
      sleep 1
    done
    sleep 1
  done
done
for b in $BACKENDS; do [ "${R[$b.regfail]}" = - ] && R[$b.regfail]="none up to ${REG_RATES##* }/s"; done

# ---------------------------------------------------------------- 2. calls
spawn "$work/uas.log" env ${PRELOAD:+LD_PRELOAD=$PRELOAD} sipp -sf "$scen/uas.xml" -t t1 -i 127.0.0.1 -p "$P_UAS" -nostdin -max_socket 4000
UAS_PID=$LASTPID
wait_port "$P_UAS" 10 || die "sipp UAS did not listen on $P_UAS"
for b in $BACKENDS; do
  d="$work/callee-$b"; mkdir -p "$d"
  (cd "$d" && timeout -k 5 20 sipp -sf "$scen/register.xml" -t t1 -i 127.0.0.1 -p "$P_REG" "127.0.0.1:${P_SIP[$b]}" -m 1 \
    -key user callee -key domain bench.test -au callee -ap pw-callee -key contact_port "$P_UAS" -nostdin -timeout 15 >sipp.out 2>&1) ||
    die "REGISTER of callee at $b failed; see $d/sipp.out"
done
sleep "$CALL_SETTLE" # the ramp's transactions end (Timer L/M 5 s)
say "callee registered at every proxy (Contact: the UAS on $P_UAS); calls at $CALL_RATE cps, ${CALL_SECONDS}s, $ROUNDS rounds"

n=$((CALL_RATE * CALL_SECONDS))
for b in $BACKENDS; do R[$b.callok]=0 R[$b.calls]=0 R[$b.cfail]=0 R[$b.cticks]=0 R[$b.rounds]=0 R[$b.queuefull]=0; done
declare -A RCMD # redis commands during the redis backend's call steps
for ((round = 1; round <= ROUNDS; round++)); do
  for b in $BACKENDS; do
    if [ "$(left)" -lt $((CALL_SECONDS + CALL_SETTLE + 30)) ]; then
      say "budget exhausted before round $round of $b"; continue
    fi
    d="$work/call-$b-$round"
    t0=$(ticks "${SP_PID[$b]}")
    [ "$b" = redis ] && redis_cmds >"$work/redis-before-$round" && rt0=$(ticks "$REDIS_PID")
    prof=
    if [ "$PROFILE" = 1 ] && [ "$round" = "$ROUNDS" ]; then
      (sleep 1; timeout $((CALL_SECONDS + 5)) curl -fs -o "$work/cpu-$b.pprof" \
        "http://127.0.0.1:${P_PPROF[$b]}/debug/pprof/profile?seconds=$((CALL_SECONDS - 2))" &
        timeout 10 curl -fs -o "$work/trace-$b.out" "http://127.0.0.1:${P_PPROF[$b]}/debug/pprof/trace?seconds=2"
        wait) &
      prof=$!; STARTED+=("$prof")
    fi
    sipp_run "$d" $((CALL_SECONDS + 30)) -sf "$scen/uac.xml" -p "$P_UAC" "127.0.0.1:${P_SIP[$b]}" -s callee -key ruri_host bench.test \
      -r "$CALL_RATE" -m "$n" -trace_rtt -rtt_freq 1
    [ -n "$prof" ] && wait "$prof" 2>/dev/null # the profile fetch
    if [ "$b" = redis ]; then
      redis_cmds >"$work/redis-after-$round"
      R[redis.srvticks]=$((${R[redis.srvticks]:-0} + $(ticks "$REDIS_PID") - rt0))
      while read -r c v; do
        v0=$(awk -v c="$c" '$1 == c {print $2}' "$work/redis-before-$round")
        RCMD[$c]=$((${RCMD[$c]:-0} + v - ${v0:-0}))
      done <"$work/redis-after-$round"
    fi
    sleep "$CALL_SETTLE"
    dt=$(($(ticks "${SP_PID[$b]}") - t0))
    collect "$d"
    v=FAIL; pass "$CALL_RATE" "$n" && v=ok
    [ "$v" = ok ] && R[$b.callok]=$((${R[$b.callok]} + 1))
    R[$b.rounds]=$((${R[$b.rounds]} + 1))
    [ "$S_SUCC" != - ] && R[$b.calls]=$((${R[$b.calls]} + S_SUCC)) && R[$b.cticks]=$((${R[$b.cticks]} + dt))
    [ "$S_FAIL" != - ] && R[$b.cfail]=$((${R[$b.cfail]} + S_FAIL))
    cat "$d"/*_rtt.csv >>"$work/rtt-$b.csv" 2>/dev/null
    cpu=$(awk -v d="$dt" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')
    printf '%s\tcalls (round %s)\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$b" "$round" "$CALL_RATE" "$S_RATE" "$n" "$S_SUCC" "$S_FAIL" "$S_RC" "$v" "$cpu" "$S_P50" "$S_P99" >>"$steps_log"
    say "$b calls round $round: achieved=$S_RATE ok=$S_SUCC/$n failed=$S_FAIL rc=$S_RC $v cpu=${cpu}s p50=$S_P50 p99=$S_P99 ms"
  done
done
for b in $BACKENDS; do
  read -r _ _ _ R[$b.p50] R[$b.p99] R[$b.mean] _ R[$b.nrtt] < <(python3 "$here/tools/sippstat.py" /dev/null "$work/rtt-$b.csv")
  R[$b.cpuk]=$(awk -v d="${R[$b.cticks]}" -v h="$CLK_TCK" -v n="${R[$b.calls]}" 'BEGIN{ if (n > 0) printf "%.3f", d/h/n*1000; else print "-" }')
  tail -n +$((LOG0[$b] + 1)) "$work/sipproxy-$b.log" >"$work/sipproxy-$b.run.log"
  R[$b.queuefull]=$(grep -c 'dialog write queue full' "$work/sipproxy-$b.run.log")
  R[$b.warns]=$(grep -c '"level":"WARN"\|"level":"ERROR"' "$work/sipproxy-$b.run.log")
  R[$b.hwm]=$(awk '/^VmHWM:/{printf "%.1f", $2/1024}' "/proc/${SP_PID[$b]}/status" 2>/dev/null)
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 3. report
g() { local v=${R[$1]:-}; echo "${v:--}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b+0 == 0) print "-"; else printf "%.2f", a/b }'; }
within() { # RATIO LIMIT
  awk -v v="$1" -v t="$2" 'BEGIN{ if (v !~ /^[0-9.]+$/) print "n/a"; else print (v+0 <= t+0) ? "met" : "MISSED" }'
}
FS_TYPE=$(stat -f -c %T "$state_dir" 2>/dev/null || echo '?')
WORK_FS=$(stat -f -c %T "$work" 2>/dev/null || echo '?')
SIPP_VERSION=$(sipp -v 2>/dev/null | awk '/SIPp v/{print $2; exit}')
{
  echo "# State backends benchmark, $ts"
  echo
  echo "One run on $(nproc) cores ($(uname -r)), shared with other engineers' builds: read the ratios"
  echo "(same run, backends taking turns at every step), not the absolute figures."
  echo "Load average before $LOAD_BEFORE, after $LOAD_AFTER. Took $((SECONDS - T0)) s."
  echo "sipproxy ${SIPPROXY_COMMIT} ($SIPPROXY_VERSION, $(go version 2>/dev/null | awk '{print $3}')${SIPPROXY_ENV:+, env $SIPPROXY_ENV}, log level $LOG_LEVEL), SIPp $SIPP_VERSION${REDIS_VERSION:+, Redis $REDIS_VERSION}."
  echo "Mode: $([ "$QUICK" = 1 ] && echo "QUICK (smoke test; not for comparison)" || echo full). $USERS users + callee; REGISTER rates $REG_RATES /s, ${REG_SECONDS} s each;"
  echo "calls at $CALL_RATE cps for ${CALL_SECONDS} s, $ROUNDS rounds per backend (latency over all rounds pooled); sipp clock: $([ -n "$PRELOAD" ] && echo fine || echo coarse)."
  echo "file backend: bbolt in a temp dir under ${STATE_DIR:-/var/tmp} ($FS_TYPE); sipp's trace files in $work ($WORK_FS)."
  echo
  echo "| backend | zero-failure REGISTER/s offered (achieved) | first failing rate | REGISTER p50 / p99 ms at it | call p50 / p99 ms ($CALL_RATE cps) | calls ok / failed | REGISTER rate ratio | p50 ratio | p99 ratio |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for b in $BACKENDS; do
    echo "| $b | $(g $b.reg) ($(g $b.regach)) | $(g $b.regfail) | $(g $b.reg50) / $(g $b.reg99) | $(g $b.p50) / $(g $b.p99) | $(g $b.calls) / $(g $b.cfail) | $(ratio "$(g $b.reg)" "$(g memory.reg)") | $(ratio "$(g $b.p50)" "$(g memory.p50)") | $(ratio "$(g $b.p99)" "$(g memory.p99)") |"
  done
  echo
  echo "Ratios are to the memory backend in this run."
  echo
  for b in file redis; do
    has "$b" && has memory || continue
    r50=$(ratio "$(g $b.p50)" "$(g memory.p50)") r99=$(ratio "$(g $b.p99)" "$(g memory.p99)")
    echo "* **Verdict, $b within 1.5x of memory for calls:** p50 $r50 ($(within "$r50" 1.5)), p99 $r99 ($(within "$r99" 1.5)); $(g $b.callok)/$(g $b.rounds) call steps passed."
  done
  echo
  echo "| backend | proxy CPU s per 1,000 calls (call steps incl. ${CALL_SETTLE} s after each) | call mean ms | dialog writes dropped (queue full) | WARN/ERROR log lines after start | VmHWM MiB at the end |"
  echo "|---|---|---|---|---|---|"
  for b in $BACKENDS; do
    echo "| $b | $(g $b.cpuk) | $(g $b.mean) | $(g $b.queuefull) | $(g $b.warns) | $(g $b.hwm) |"
  done
  if has redis && [ "${#RCMD[@]}" -gt 0 ]; then
    echo
    printf '%s' "Redis commands served during the redis backend's call steps ($(g redis.calls) calls; the INFO calls are this script's own): "
    for c in $(printf '%s\n' "${!RCMD[@]}" | sort); do [ "${RCMD[$c]}" -gt 0 ] || continue; printf '%s %s (%s per call); ' "$c" "${RCMD[$c]}" "$(awk -v a="${RCMD[$c]}" -v n="$(g redis.calls)" 'BEGIN{ if (n > 0) printf "%.2f", a/n; else print "-" }')"; done
    echo
    echo "redis-server CPU during those steps: $(awk -v d="${R[redis.srvticks]:-0}" -v h="$CLK_TCK" -v n="$(g redis.calls)" 'BEGIN{ if (n > 0) printf "%.3f s per 1,000 calls", d/h/n*1000; else print "-" }') (not in the proxy's figure above)."
    echo "No read command (GET, HGETALL, SCAN, ...) among them means the INVITE's registrar lookup was served from the instance's memory."
  fi
  echo
  echo "* A step passes with sipp rc 0, no failed call/REGISTER, all of them successful and an achieved rate >= 97% of the offered one. A REGISTER rate fails when $REG_TRIES tries in a row fail."
  echo "* REGISTER = REGISTER, 401 challenge, REGISTER with MD5 digest, 200; a different user each time (user0..user$((USERS - 1)), round robin), all from one TCP connection of a trusted source."
  echo "* Calls: INVITE sip:callee@bench.test (registrar lookup) from a trusted peer, 100/180/200, ACK, BYE; record-routed; latency = INVITE->200 per call (sipp -trace_rtt)."
  echo
  echo "<details><summary>every step</summary>"
  echo
  echo "| backend | step | offered /s | achieved | count | ok | failed | sipp rc | verdict | proxy CPU s | p50 ms | p99 ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n"}' "$steps_log"
  echo
  echo "</details>"
} >"$out_md"
cat "$out_md"
say "written $out_md (raw sipp output and proxy logs in $work)"
