#!/usr/bin/env bash
# bench/run.sh: side-by-side benchmark of sipproxy against Kamailio 5.6 and a
# direct sipp->sipp ceiling, all on loopback, in ONE run (so that the ratios
# are measured under the same machine load). See docs/performance.md.
#
#   bench/run.sh            full run (about 20 minutes; bounded by MAX_SECONDS=1500)
#   QUICK=1 bench/run.sh    smoke test (about 3 minutes): fewer rates, shorter steps
#
# Paths, all with the same sipp call flow (bench/scenarios/uac.xml: INVITE/100/180/200/
# ACK/pause/BYE over TCP, one socket, -t t1) against a sipp UAS on 127.0.0.1:
#   direct         sipp UAC -> sipp UAS (the ceiling)
#   kamailio       via Kamailio (the anchor's kamailio.cfg: tm, record_route, t_relay to a fixed $du)
#   sipproxy       via sipproxy (trusted peer, static route "*" to the UAS, record_route)
#   kamailio-busy  the user answers 486; Kamailio's failure_route retargets to the voicemail UAS
#   sipproxy-busy  the user (a registered local user) answers 486; the rule `busy:` retargets
#                  to the user's mailbox (opaque=app:voicemail) on the voicemail UAS
# For each: the highest offered rate with zero failed calls and an achieved rate >= 97% of the
# offered one (ramp; a path stops at its first failing rate), response time p50/p99 at 50% of
# that rate, CPU seconds per 1,000 calls of the proxy process(es) at CPU_RATE, peak memory over
# the whole ramp (sipproxy VmHWM, Kamailio sum of PSS sampled every 0.5 s), and memory with
# HOLD_CALLS calls held open. The report ends with issue 11's targets and a verdict for each.
#
# Environment (all optional):
#   QUICK=1                 smoke-test mode
#   RATES="500 1000 ..."    offered call rates of the ramp (cps)
#   STEP_SECONDS=8          length of each ramp step
#   CPU_RATE=1000           the common rate at which CPU per 1,000 calls is compared
#   HOLD_CALLS=1000 HOLD_MS=20000 HOLD_RATE=500   the open-calls memory test
#   HOLD=0                  skip the open-calls memory test
#   RATES=""                no ramp: only the CPU step at CPU_RATE (for old/new binary comparisons)
#   PORT_BASE=25000         ports used: +60 sipproxy, +70 Kamailio, +80/+81 sipp UAC/REGISTER,
#                           +90 UAS, +91 voicemail UAS, +98 pprof (PROFILE=1), +99 sipproxy metrics
#   MAX_SECONDS             hard budget for the whole run (default 1500, QUICK 240)
#   SETTLE=8                seconds after the CPU step (and before the 50% step) that both
#                           proxies are given to drop finished transactions: sipgo's Timer L/M
#                           and Kamailio's tm wait timer are both 5 s. CPU per call includes
#                           them; the idle burn of each proxy over IDLE_SECONDS (default 10) is
#                           measured first and reported beside it. QUICK: 3
#   WARMUP_SECONDS=5        before the CPU step, this long at CPU_RATE, not counted, then SETTLE:
#                           the CPU step measures a warm proxy, not its first growth (QUICK: 2)
#   FINECLOCK=0             do not LD_PRELOAD bench/tools/fineclock.so into sipp
#   LOG_LEVEL=warn          sipproxy log level during the run
#   SIPPROXY_BIN=path       use this binary instead of building ./cmd/sipproxy
#   SIPPROXY_ENV="GOGC=200" environment for the sipproxy process (experiments; reported)
#   PATHS="direct kamailio sipproxy kamailio-busy sipproxy-busy"   which paths to run
#   PROFILE=1               instead of the comparison: profile sipproxy (needs `run -pprof`) under
#                           PROFILE_RATE cps (default 1000) for PROFILE_SECONDS (default 20) on the
#                           static and the busy path (CPU), and with HOLD_CALLS open calls (heap);
#                           writes bench/results/<timestamp>-profile/
#   GC_CURVE="GOGC=100,GOMEMLIMIT=768MiB GOGC=400,GOMEMLIMIT=384MiB ..."   instead of the
#                           comparison: the GC curve. For each setting (variables joined by commas) a
#                           fresh sipproxy runs the CPU step at CPU_RATE and CURVE_RATES (default
#                           "2000 3000 3500") on the plain flow, then the CPU step and CURVE_BUSY_RATES
#                           (default "2000 2500") on the busy flow; reported: CPU s per 1,000 calls of
#                           both CPU steps and VmHWM over all the steps. Kamailio runs the same steps
#                           once, for its ΣPSS peak. Writes bench/results/<timestamp>-gccurve.md
#
# Only loopback is used. Every process this script starts is recorded by PID and
# ended by PID (TERM, then KILL after 5 s) on exit; it never signals anything else.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
main=$(cd "$here/.." && pwd)
scen="$here/scenarios"
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  RATES=${RATES-"500 1000 2000"}
  STEP_SECONDS=${STEP_SECONDS:-3}
  HOLD_MS=${HOLD_MS:-5000}
  MAX_SECONDS=${MAX_SECONDS:-240}
  SETTLE=${SETTLE:-3}
  IDLE_SECONDS=${IDLE_SECONDS:-3}
  WARMUP_SECONDS=${WARMUP_SECONDS:-2}
else
  # Steps of 500 cps up to 8000, so that a 1.25x ratio between the two
  # proxies' rates can be told from 1.0x wherever the knee is: on a shared
  # machine both stopped at 2500-4000; alone on it both passed 6000 (run
  # 20261202T111331Z, whose ramp jumped from 6000 to 8000).
  RATES=${RATES-"500 1000 1500 2000 2500 3000 3500 4000 4500 5000 5500 6000 6500 7000 7500 8000"}
  STEP_SECONDS=${STEP_SECONDS:-8}
  HOLD_MS=${HOLD_MS:-20000}
  MAX_SECONDS=${MAX_SECONDS:-1500}
  # After a call, sipgo keeps the INVITE transactions for Timer L/M (5 s,
  # proxy/stack.go) and Kamailio's tm keeps them for its wait timer (5 s).
  # CPU per call is counted until that state is gone, over the same window
  # for both; the 50% latency step starts only after the ramp's state is gone.
  SETTLE=${SETTLE:-8}
  IDLE_SECONDS=${IDLE_SECONDS:-10}
  WARMUP_SECONDS=${WARMUP_SECONDS:-5}
fi
# A step passes when every call succeeded and the achieved rate is at least
# this share of the offered one (issue 11: 97%).
MIN_ACHIEVED=${MIN_ACHIEVED:-0.97}
CPU_RATE=${CPU_RATE:-1000}
HOLD_CALLS=${HOLD_CALLS:-1000}
HOLD_RATE=${HOLD_RATE:-500}
HOLD=${HOLD:-1}
PORT_BASE=${PORT_BASE:-25000}
FINECLOCK=${FINECLOCK:-1}
LOG_LEVEL=${LOG_LEVEL:-warn}
SIPPROXY_ENV=${SIPPROXY_ENV:-}
PATHS=${PATHS:-"direct kamailio sipproxy kamailio-busy sipproxy-busy"}

P_SIPPROXY=$((PORT_BASE + 60)) P_KAM=$((PORT_BASE + 70)) P_UAC=$((PORT_BASE + 80)) P_REG=$((PORT_BASE + 81))
P_UAS=$((PORT_BASE + 90)) P_VM=$((PORT_BASE + 91)) P_METRICS=$((PORT_BASE + 99)) P_PPROF=$((PORT_BASE + 98))
PROFILE=${PROFILE:-0}
PROFILE_RATE=${PROFILE_RATE:-1000}
PROFILE_SECONDS=${PROFILE_SECONDS:-20}
GC_CURVE=${GC_CURVE:-}
CURVE_RATES=${CURVE_RATES-"2000 3000 3500"}
CURVE_BUSY_RATES=${CURVE_BUSY_RATES-"2000 2500"}

T0=$SECONDS
ts=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "${TMPDIR:-/tmp}/sipproxy-bench.XXXXXX")
mkdir -p "$here/results"
out_md="$here/results/$ts.md"
steps_log="$work/steps.tsv"
: >"$steps_log"

say() { printf '[bench %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { say "FATAL: $*"; exit 1; }
left() { echo $((MAX_SECONDS - (SECONDS - T0))); }

# ---------------------------------------------------------------- processes
# shellcheck source=bench/procs.sh
. "$here/procs.sh"
cleanup() {
  local i
  stop_started
  # Kamailio's children are ours too (forked by the Kamailio we started).
  for i in ${KAM_KIDS:-}; do alive "$i" && kill -KILL "$i" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM


# ---------------------------------------------------------------- /proc readings
# ticks PID...: utime+stime of the processes, in clock ticks.
ticks() {
  local p s t=0 f
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)
# mem PID...: "sumRSS_kB sumPSS_kB sumHWM_kB"
mem() {
  local p rss=0 pss=0 hwm=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null) && rss=$((rss + ${v:-0}))
    v=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null) && hwm=$((hwm + ${v:-0}))
    v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) && pss=$((pss + ${v:-0}))
  done
  echo "$rss $pss $hwm"
}
mib() { awk -v k="$1" 'BEGIN{ if (k == "" || k == "-") print "-"; else printf "%.1f", k/1024 }'; }

# ---------------------------------------------------------------- tools
ensure_tools() {
  local need=()
  command -v sipp >/dev/null || need+=(sip-tester)
  command -v kamailio >/dev/null || need+=(kamailio)
  # Debian's kamailio init script does not start the service unless
  # RUN_KAMAILIO=yes is set in /etc/default/kamailio.
  apt_install "${need[@]}"
  command -v ss >/dev/null || die "ss (iproute2) is required"
  command -v curl >/dev/null || die "curl is required"
  PRELOAD=
  if [ "$FINECLOCK" = 1 ] && command -v cc >/dev/null; then
    if cc -O2 -shared -fPIC -o "$work/fineclock.so" "$here/tools/fineclock.c" -ldl 2>"$work/cc.log"; then
      PRELOAD="$work/fineclock.so"
    fi
  fi
  if [ -z "$PRELOAD" ]; then
    say "note: sipp timestamps are the coarse kernel clock (1 tick, 4 ms at HZ=250); percentiles are quantised"
  fi
}

build_sipproxy() {
  if [ -n "${SIPPROXY_BIN:-}" ]; then
    BIN=$SIPPROXY_BIN
  else
    BIN="$work/sipproxy"
    say "building sipproxy"
    (cd "$main" && timeout 300 go build -o "$BIN" ./cmd/sipproxy) >"$work/build.log" 2>&1 ||
      die "go build failed; see $work/build.log"
  fi
  SIPPROXY_VERSION=$("$BIN" version 2>/dev/null || echo '?')
  SIPPROXY_COMMIT=$(cd "$main" && git rev-parse --short HEAD 2>/dev/null || echo '?')
  if [ -n "$(cd "$main" && git status --porcelain -- . ':!bench' ':!docs' 2>/dev/null)" ]; then
    SIPPROXY_COMMIT="$SIPPROXY_COMMIT+uncommitted"
  fi
}

check_ports() {
  local p
  for p in $P_SIPPROXY $P_KAM $P_UAC $P_REG $P_UAS $P_VM $P_METRICS $P_PPROF; do
    if ss -Hltnu "sport = :$p" 2>/dev/null | grep -q .; then
      die "port $p is in use on this machine; set PORT_BASE to another value"
    fi
  done
}

# ---------------------------------------------------------------- the SUTs
UAS_PID='' VM_PID=''
start_uas() { # SCENARIO PORT -> LASTPID
  spawn "$work/uas-$2-$(basename "$1" .xml)-$SECONDS.log" env ${PRELOAD:+LD_PRELOAD=$PRELOAD} \
    sipp -sf "$1" -t t1 -i 127.0.0.1 -p "$2" -nostdin -max_socket 4000
  wait_port "$2" 10 || die "sipp UAS did not listen on $2"
}
uas_normal() {
  stop $UAS_PID $VM_PID; UAS_PID='' VM_PID=''
  start_uas "$scen/uas.xml" $P_UAS; UAS_PID=$LASTPID
}
uas_busy() {
  stop $UAS_PID $VM_PID; UAS_PID='' VM_PID=''
  start_uas "$scen/uas486.xml" $P_UAS; UAS_PID=$LASTPID
  start_uas "$scen/uas.xml" $P_VM; VM_PID=$LASTPID
}

kam_start() {
  sed -e "s/@KAM_PORT@/$P_KAM/g; s/@UAS_PORT@/$P_UAS/g; s/@VM_PORT@/$P_VM/g" "$here/kamailio.cfg.in" >"$work/kamailio.cfg"
  mkdir -p "$work/kamailio-run"
  # As the anchor: -m 1024 (shm MiB) -M 32 (pkg MiB per process); -DD keeps the
  # creator in the foreground so that $! is Kamailio itself; -E logs to stderr.
  spawn "$work/kamailio-$SECONDS.log" kamailio -f "$work/kamailio.cfg" -m 1024 -M 32 -DD -E \
    -Y "$work/kamailio-run" -w "$work"
  KAM_PID=$LASTPID
  wait_port $P_KAM 15 || die "Kamailio did not listen on $P_KAM; see $work/kamailio-*.log"
  sleep 0.5
  KAM_KIDS=$(ps -o pid= --ppid "$KAM_PID" | tr '\n' ' ')
}
kam_pids() { echo "$KAM_PID $(ps -o pid= --ppid "$KAM_PID" 2>/dev/null | tr '\n' ' ')"; }
kam_stop() {
  local kids; kids=$(ps -o pid= --ppid "$KAM_PID" 2>/dev/null | tr '\n' ' ')
  stop "$KAM_PID"
  local k; for k in $kids; do alive "$k" && kill -KILL "$k" 2>/dev/null; done
  KAM_PID='' KAM_KIDS=''
}

SP_PID=
sp_config() {
  cat >"$work/sipproxy.yaml" <<EOF
# bench/run.sh: sipproxy on loopback, comparable to the anchor's Kamailio.
server:
  domains: [bench.test]
  listen:
    - {transport: tcp, addr: "127.0.0.1:$P_SIPPROXY"}
  record_route: true
# The "voicemail server" is a sipp UAS (no TLS in Debian's sipp).
voicemail:
  uri: "sip:127.0.0.1:$P_VM;transport=tcp"
# The sipp UAC is a trusted peer, so that it may use the static route (as
# Kamailio relays anything to a fixed \$du).
peers:
  - {name: bench, sources: ["127.0.0.1/32"]}
auth:
  realm: bench.test
  algorithms: [MD5, SHA-256]
  users:
    - {user: busy, password: bench-only}
routes:
  - {domain: "*", next_hop: "sip:127.0.0.1:$P_UAS;transport=tcp"}
forwarding:
  rules_file: rules.yaml
  default_after: 20s
  max_diversions: 5
metrics:
  listen: "127.0.0.1:$P_METRICS"
log: {level: $LOG_LEVEL, format: json}
EOF
  cat >"$work/rules.yaml" <<'EOF'
rules:
  - user: sip:busy@bench.test
    busy: "sip:busy@bench.test;opaque=app:voicemail"
EOF
  "$BIN" check -config "$work/sipproxy.yaml" >"$work/sipproxy-check.log" 2>&1 ||
    die "sipproxy check failed: $(cat "$work/sipproxy-check.log")"
}
SP_ARGS=()
sp_start() {
  # shellcheck disable=SC2086 # SIPPROXY_ENV is a list of NAME=VALUE words
  spawn "$work/sipproxy-$SECONDS.log" env $SIPPROXY_ENV "$BIN" run -config "$work/sipproxy.yaml" "${SP_ARGS[@]}"
  SP_PID=$LASTPID
  local i
  for i in $(seq 100); do
    curl -fs "http://127.0.0.1:$P_METRICS/readyz" >/dev/null 2>&1 && return 0
    alive "$SP_PID" || break
    sleep 0.1
  done
  die "sipproxy did not become ready; see $work/sipproxy-*.log"
}
sp_stop() { stop "$SP_PID"; SP_PID=; }
sp_metric() { curl -fs "http://127.0.0.1:$P_METRICS/metrics" 2>/dev/null | awk -v s="$1" '$1 == s {print $2}'; }
# The busy user's binding points at the UAS port (the 486 UAS in the busy phase).
sp_register_busy() {
  local d="$work/register"; mkdir -p "$d"
  (cd "$d" && timeout -k 5 20 sipp -sf "$scen/register.xml" -t t1 -i 127.0.0.1 -p $P_REG "127.0.0.1:$P_SIPPROXY" -m 1 \
    -key user busy -key domain bench.test -au busy -ap bench-only -key contact_port $P_UAS -nostdin -timeout 15 >register.out 2>&1)
}

# ---------------------------------------------------------------- one UAC run
# uac NAME TARGET_PORT SERVICE RURI_HOST RATE COUNT RTT(0|1) [sipp args...]
# Runs in $work/NAME; sets U_RC U_SUCC U_FAIL U_RATE U_P50 U_P99 U_MEAN U_MAXOPEN U_N (rtt samples) U_DIR.
uac_cmd() {
  local name=$1 port=$2 svc=$3 ruri=$4 rate=$5 count=$6 rtt=$7; shift 7
  local bound=${UAC_BOUND:-$((count / rate + 30))}
  U_BOUND=$bound
  # A fresh directory: sipp names its rtt file by PID, and a step run
  # again (the GC curve) must not read the previous one's.
  U_DIR="$work/$name"; rm -rf "$U_DIR"; mkdir -p "$U_DIR"
  UAC_CMD=(env ${PRELOAD:+LD_PRELOAD=$PRELOAD} timeout -k 5 "$bound"
    sipp -sf "$scen/uac.xml" -t t1 -i 127.0.0.1 -p "$P_UAC" "127.0.0.1:$port" -s "$svc" -key ruri_host "$ruri"
    -r "$rate" -m "$count" -nostdin -trace_stat -stf stat.csv -fd 1 -timeout $((bound - 5)) -max_socket 4000)
  [ "$rtt" = 1 ] && UAC_CMD+=(-trace_rtt -rtt_freq 1)
  UAC_CMD+=("$@")
}
uac_collect() {
  local rttf
  rttf=$(ls "$U_DIR"/uac_*_rtt.csv 2>/dev/null | head -1)
  read -r U_SUCC U_FAIL U_RATE U_P50 U_P99 U_MEAN U_MAXOPEN U_N < <(python3 "$here/tools/sippstat.py" "$U_DIR/stat.csv" $rttf)
}
uac() {
  uac_cmd "$@"
  (cd "$U_DIR" && exec "${UAC_CMD[@]}" >uac.out 2>&1) &
  local job=$! i
  STARTED+=("$job")
  # The proxy's memory under this load, sampled while sipp runs (bounded
  # by sipp's own bound).
  for i in $(seq $((U_BOUND * 2 + 10))); do
    alive "$job" || break
    [ -n "${SAMPLE_KEY:-}" ] && sample_mem "$SAMPLE_KEY" $SAMPLE_PIDS
    sleep 0.5
  done
  wait "$job"; U_RC=$?
  uac_collect
}

# sample_mem KEY PID...: keeps the peak sum of PSS and of RSS of the PIDs in
# R[KEY.load_pss] and R[KEY.load_rss] (the peak over the whole ramp).
sample_mem() {
  local key=$1 rss pss hwm; shift
  read -r rss pss hwm < <(mem "$@")
  [ "$pss" -gt "${R[$key.load_pss]:-0}" ] && R[$key.load_pss]=$pss
  [ "$rss" -gt "${R[$key.load_rss]:-0}" ] && R[$key.load_rss]=$rss
  return 0
}

# ---------------------------------------------------------------- results
declare -A R  # R[path.key]
g() { local v=${R[$1]:-}; echo "${v:--}"; }

# step PATH RATE -> runs one ramp (or 50%) step, measuring the proxy CPU; sets STEP_OK.
# $1 path, $2 kind (ramp|half), $3 rate
step() {
  local path=$1 kind=$2 rate=$3 count=$(($3 * STEP_SECONDS)) port svc ruri pids t0 t1 rtt=0
  case $path in
    direct) port=$P_UAS svc=svc ruri="127.0.0.1:$P_UAS" pids= ;;
    kamailio) port=$P_KAM svc=svc ruri="127.0.0.1:$P_UAS" ;;
    sipproxy) port=$P_SIPPROXY svc=svc ruri="127.0.0.1:$P_UAS" ;;
    kamailio-busy) port=$P_KAM svc=busy ruri=bench.test ;;
    sipproxy-busy) port=$P_SIPPROXY svc=busy ruri=bench.test ;;
  esac
  case $path in kamailio*) pids=$(kam_pids) ;; sipproxy*) pids=$SP_PID ;; esac
  [ "$kind" != ramp ] && rtt=1
  if [ "$kind" = cpu ] && [ "$WARMUP_SECONDS" -gt 0 ]; then
    # Not counted: a fresh proxy's first calls pay for growing its memory
    # (sipproxy's heap, Kamailio's first touch of its shm), which is not
    # the steady cost of a call.
    uac "$path-warmup" "$port" "$svc" "$ruri" "$rate" $((rate * WARMUP_SECONDS)) 0
    say "$path warm-up: $U_SUCC/$((rate * WARMUP_SECONDS)) calls at $rate cps, failed=$U_FAIL"
    settle "$path"
  fi
  SAMPLE_KEY='' SAMPLE_PIDS=$pids
  case $path in kamailio*) SAMPLE_KEY=kamailio ;; sipproxy*) SAMPLE_KEY=sipproxy ;; esac
  t0=$(ticks $pids)
  uac "$path-$kind-$rate" "$port" "$svc" "$ruri" "$rate" "$count" "$rtt"
  SAMPLE_KEY=''
  # The CPU step counts the proxy's work until its transaction state is gone.
  [ "$kind" = cpu ] && settle "$path"
  t1=$(ticks $pids)
  local cpu=- cpuk=-
  if [ -n "$pids" ] && [ "$U_SUCC" != - ] && [ "$U_SUCC" -gt 0 ]; then
    cpu=$(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')
    cpuk=$(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" -v n="$U_SUCC" 'BEGIN{printf "%.3f", d/h/n*1000}')
  fi
  STEP_OK=0 STEP_WHY=
  if [ "$U_RC" = 0 ] && [ "$U_FAIL" = 0 ] && [ "$U_SUCC" = "$count" ] && [ "$U_RATE" != - ]; then
    if awk -v a="$U_RATE" -v o="$rate" -v m="$MIN_ACHIEVED" 'BEGIN{exit !(a >= m * o)}'; then
      STEP_OK=1
    else
      STEP_WHY="slow: $U_RATE cps achieved"
    fi
  else
    STEP_WHY="$U_FAIL failed, $U_SUCC/$count ok, sipp rc $U_RC"
  fi
  local verdict; verdict=$([ $STEP_OK = 1 ] && echo ok || { [ "${STEP_WHY#slow}" != "$STEP_WHY" ] && echo SLOW || echo FAIL; })
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$kind" "$rate" "$U_RATE" "$count" "$U_SUCC" "$U_FAIL" \
    "$U_RC" "$verdict" "$cpu" "$cpuk" "$U_P50" "$U_P99" >>"$steps_log"
  say "$path $kind rate=$rate achieved=$U_RATE calls=$U_SUCC/$count failed=$U_FAIL rc=$U_RC $verdict cpu=${cpu}s (${cpuk}s/1k) p50=$U_P50 p99=$U_P99 mean=$U_MEAN"
  if [ "$kind" = cpu ]; then
    R[$path.cpuk]=$cpuk R[$path.c50]=$U_P50 R[$path.c99]=$U_P99 R[$path.cmean]=$U_MEAN R[$path.cok]=$STEP_OK
  fi
  [ -n "$pids" ] && sample_mem "${path%-busy}" $pids
  if [ "$kind" = half ]; then
    R[$path.half]=$rate R[$path.hok]=$STEP_OK R[$path.p50]=$U_P50 R[$path.p99]=$U_P99 R[$path.mean]=$U_MEAN R[$path.hcpuk]=$cpuk
  fi
}

settle() { # PATH: the same for both proxies (see SETTLE)
  case $1 in kamailio* | sipproxy*) sleep "$SETTLE" ;; esac
}

ramp() { # PATH
  local path=$1 r need
  R[$path.max]=- R[$path.ach]=- R[$path.fail]=-
  # CPU per call and latency at the common rate, on an idle proxy.
  if [ "$(left)" -ge $((STEP_SECONDS + 60)) ]; then
    step "$path" cpu "$CPU_RATE"
    sleep 2
  fi
  for r in $RATES; do
    need=$((STEP_SECONDS + 45))
    if [ "$(left)" -lt "$need" ]; then
      say "$path: time budget exhausted before rate $r"
      R[$path.fail]="(budget: stopped before $r)"
      break
    fi
    step "$path" ramp "$r"
    if [ $STEP_OK = 1 ]; then
      R[$path.max]=$r R[$path.ach]=$U_RATE
    else
      R[$path.fail]="$r ($STEP_WHY)"
      break
    fi
    sleep 2
  done
  if [ "${R[$path.fail]}" = - ]; then R[$path.fail]="none up to ${RATES##* }"; fi
  if [ "${R[$path.max]}" != - ] && [ "$(left)" -ge $((STEP_SECONDS + 45)) ]; then
    sleep 2
    settle "$path"
    step "$path" half $((R[$path.max] / 2))
  fi
  sleep 2
}

# probe PATH: a few calls at a low rate; 0 when all succeed.
probe() {
  local path=$1 port svc=busy ruri=bench.test
  case $path in kamailio-busy) port=$P_KAM ;; sipproxy-busy) port=$P_SIPPROXY ;; esac
  uac "$path-probe" "$port" "$svc" "$ruri" 10 20 0
  say "$path probe: $U_SUCC/20 calls answered by voicemail, failed=$U_FAIL rc=$U_RC"
  [ "$U_RC" = 0 ] && [ "$U_SUCC" = 20 ]
}

# hold NAME PORT PIDS_FN: HOLD_CALLS calls held HOLD_MS, sampling memory; sets R[NAME.*]
hold() {
  local name=$1 port=$2 pidsfn=$3 pids peak_rss=0 peak_pss=0 rss pss hwm job i
  pids=$($pidsfn)
  read -r rss pss hwm < <(mem $pids)
  R[$name.idle_rss]=$rss R[$name.idle_pss]=$pss
  local count=$HOLD_CALLS
  # The bound covers opening, holding and closing the calls.
  UAC_BOUND=$((count / HOLD_RATE + HOLD_MS / 1000 + 30)) \
    uac_cmd "$name-hold" "$port" svc "127.0.0.1:$P_UAS" "$HOLD_RATE" "$count" 0 -l "$HOLD_CALLS" -d "$HOLD_MS"
  (cd "$U_DIR" && exec "${UAC_CMD[@]}" >uac.out 2>&1) &
  job=$!
  STARTED+=("$job")
  for i in $(seq $(((count / HOLD_RATE + HOLD_MS / 1000 + 40) * 4))); do
    alive "$job" || break
    pids=$($pidsfn)
    read -r rss pss hwm < <(mem $pids)
    [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
    [ "$pss" -gt "$peak_pss" ] && peak_pss=$pss
    sleep 0.25
  done
  wait "$job"; U_RC=$?
  uac_collect
  pids=$($pidsfn); read -r rss pss hwm < <(mem $pids)
  R[$name.peak_rss]=$peak_rss R[$name.peak_pss]=$peak_pss R[$name.hwm]=$hwm R[$name.open]=$U_MAXOPEN
  R[$name.hold_ok]=$([ "$U_RC" = 0 ] && [ "$U_SUCC" = "$count" ] && echo ok || echo "FAIL ($U_SUCC/$count, rc=$U_RC)")
  say "$name hold: open=$U_MAXOPEN calls ${R[$name.hold_ok]} idle RSS=$(mib ${R[$name.idle_rss]}) MiB peak RSS=$(mib $peak_rss) PSS=$(mib $peak_pss) HWM(sum)=$(mib $hwm) MiB"
}
sp_pids() { echo "$SP_PID"; }

# ---------------------------------------------------------------- run
ensure_tools
check_ports
build_sipproxy
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "work dir $work; load average $LOAD_BEFORE; rates $RATES; ${STEP_SECONDS}s per step; budget ${MAX_SECONDS}s"

has() { case " $PATHS " in *" $1 "*) return 0 ;; esac; return 1; }
sp_config
if [ -n "$GC_CURVE" ]; then
  # curve_steps PATH-PREFIX: the CPU step and the curve's rates on the
  # plain flow, then on the busy flow (the proxy is already started).
  curve_steps() {
    local p=$1 r
    uas_normal
    step "$p" cpu "$CPU_RATE"; sleep 2
    for r in $CURVE_RATES; do step "$p" ramp "$r"; sleep 2; done
    uas_busy
    [ "$p" = sipproxy ] && { sp_register_busy || say "REGISTER of the busy user failed"; }
    probe "$p-busy" || say "$p-busy probe failed"
    step "$p-busy" cpu "$CPU_RATE"; sleep 2
    for r in $CURVE_BUSY_RATES; do step "$p-busy" ramp "$r"; sleep 2; done
  }
  curve_md="$here/results/$ts-gccurve.md"
  kam_start
  curve_steps kamailio
  kam_stop
  crow=()
  for setting in $GC_CURVE; do
    if [ "$(left)" -lt 150 ]; then say "time budget exhausted before $setting"; break; fi
    SIPPROXY_ENV=${setting//,/ }
    R[sipproxy.load_pss]=0 R[sipproxy.load_rss]=0
    n0=$(wc -l <"$steps_log")
    printf '(%s)\t\t\t\t\t\t\t\t\t\t\t\t\n' "$SIPPROXY_ENV" >>"$steps_log"
    sp_start
    curve_steps sipproxy
    crow+=("| ${SIPPROXY_ENV} | $(g sipproxy.cpuk) | $(g sipproxy-busy.cpuk) | $(mib "$(awk '/^VmHWM:/{print $2}' "/proc/$SP_PID/status")") | $(mib "$(g sipproxy.load_pss)") | $(tail -n +$((n0 + 2)) "$steps_log" | awk -F'\t' '$9 != "ok"' | wc -l) |")
    say "$setting: CPU ${R[sipproxy.cpuk]} / ${R[sipproxy-busy.cpuk]} s per 1,000 calls (plain / busy)"
    sp_stop
  done
  {
    echo "# sipproxy GC curve, $ts"
    echo
    echo "One run on $(nproc) cores; load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg). sipproxy $SIPPROXY_COMMIT ($SIPPROXY_VERSION)."
    echo "Each setting: a fresh sipproxy; the CPU step (${STEP_SECONDS} s at $CPU_RATE cps + ${SETTLE} s) and $CURVE_RATES cps on the plain flow,"
    echo "then the CPU step and $CURVE_BUSY_RATES cps on the busy flow (${STEP_SECONDS} s each)."
    echo "Kamailio, the same steps once: CPU $(g kamailio.cpuk) / $(g kamailio-busy.cpuk) s per 1,000 calls (plain / busy), ΣPSS peak $(mib "$(g kamailio.load_pss)") MiB (ΣRSS $(mib "$(g kamailio.load_rss)"))."
    echo
    echo "| setting | CPU s / 1,000 calls, plain | CPU s / 1,000 calls, busy | VmHWM MiB over all steps | sampled PSS peak MiB | steps not ok |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${crow[@]}"
    echo
    echo "<details><summary>every step</summary>"
    echo
    echo "| path | kind | offered cps | achieved | calls | ok | failed | sipp rc | verdict | proxy CPU s | CPU s/1k calls | p50 ms | p99 ms |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' 'NF > 3 {printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; printf "\n"}' "$steps_log"
    echo
    echo "</details>"
  } >"$curve_md"
  cat "$curve_md"
  say "written $curve_md"
  exit 0
fi
if [ "$PROFILE" = 1 ]; then
  case "$("$BIN" run -h 2>&1)" in *-pprof*) ;; *) false ;; esac || die "this sipproxy has no 'run -pprof ADDR' flag"
  pdir="$here/results/$ts-profile"; mkdir -p "$pdir"
  SP_ARGS=(-pprof "127.0.0.1:$P_PPROF")
  pprof_url="http://127.0.0.1:$P_PPROF/debug/pprof"
  # cpu_profile NAME PATH: PROFILE_RATE cps for PROFILE_SECONDS, CPU profile over the middle of it.
  cpu_profile() {
    local name=$1 path=$2 port=$P_SIPPROXY svc=svc ruri="127.0.0.1:$P_UAS" job
    [ "$path" = sipproxy-busy ] && svc=busy ruri=bench.test
    local m0 m1
    m0=$(memstats)
    uac_cmd "$name-load" "$port" "$svc" "$ruri" "$PROFILE_RATE" $((PROFILE_RATE * PROFILE_SECONDS)) 1
    (cd "$U_DIR" && exec "${UAC_CMD[@]}" >uac.out 2>&1) &
    job=$!; STARTED+=("$job")
    sleep 3
    timeout $((PROFILE_SECONDS + 10)) curl -fs -o "$pdir/$name-cpu.pprof" "$pprof_url/profile?seconds=$((PROFILE_SECONDS - 6))"
    wait "$job"; U_RC=$?; uac_collect
    m1=$(memstats)
    # Right after the load: what the finished calls still hold (RFC 6026 linger).
    curl -fs -o "$pdir/$name-heap-after-load.pprof" "$pprof_url/heap?gc=1"
    local per_call
    per_call=$(awk -v a="$m0" -v b="$m1" -v n="$U_SUCC" 'BEGIN{split(a, x, " "); split(b, y, " ");
      if (n > 0) printf "%.1f KiB and %.0f heap objects allocated per call; heap in use after the load %.1f MiB (HeapSys %.1f MiB), %d GCs during it",
        (y[1]-x[1])/n/1024, (y[2]-x[2])/n, y[3]/1048576, y[4]/1048576, y[5]-x[5]}')
    say "$name: $U_SUCC calls, failed=$U_FAIL, achieved=$U_RATE cps, p50=$U_P50 p99=$U_P99 ms; $per_call"
    echo "== $name: CPU profile at $PROFILE_RATE cps ($U_SUCC calls, failed $U_FAIL, achieved $U_RATE cps, p50 $U_P50 ms, p99 $U_P99 ms)" >>"$pdir/top.txt"
    echo "== $name: $per_call; VmHWM $(mib "$(awk '/^VmHWM:/{print $2}' "/proc/$SP_PID/status")") MiB" >>"$pdir/top.txt"
    go tool pprof -top -nodecount=40 "$pdir/$name-cpu.pprof" 2>/dev/null >>"$pdir/top.txt"
    echo "-- cumulative" >>"$pdir/top.txt"
    go tool pprof -top -cum -nodecount=40 "$pdir/$name-cpu.pprof" 2>/dev/null >>"$pdir/top.txt"
  }
  # memstats: "TotalAlloc Mallocs HeapInuse HeapSys NumGC" from runtime.MemStats
  memstats() {
    curl -fs "$pprof_url/heap?debug=1" | awk '/^# TotalAlloc = /{a=$4} /^# Mallocs = /{m=$4} /^# HeapInuse = /{h=$4}
      /^# HeapSys = /{s=$4} /^# NumGC = /{g=$4} END{print a+0, m+0, h+0, s+0, g+0}'
  }
  sp_start; uas_normal
  cpu_profile static sipproxy
  sleep 2
  uas_busy; sp_register_busy || say "REGISTER failed"
  cpu_profile busy sipproxy-busy
  {
    echo "== static, heap in use right after the load (finished calls still held by their transactions)"
    go tool pprof -top -sample_index=inuse_space -nodecount=30 "$pdir/static-heap-after-load.pprof" 2>/dev/null
  } >>"$pdir/top.txt"
  uas_normal; sp_stop; sleep 1; sp_start; sleep 1
  # Heap with HOLD_CALLS calls open: fetched once every call is up.
  UAC_BOUND=$((HOLD_CALLS / HOLD_RATE + HOLD_MS / 1000 + 30)) \
    uac_cmd hold-heap $P_SIPPROXY svc "127.0.0.1:$P_UAS" "$HOLD_RATE" "$HOLD_CALLS" 0 -l "$HOLD_CALLS" -d "$HOLD_MS"
  (cd "$U_DIR" && exec "${UAC_CMD[@]}" >uac.out 2>&1) &
  job=$!; STARTED+=("$job")
  sleep $((HOLD_CALLS / HOLD_RATE + HOLD_MS / 2000))
  curl -fs -o "$pdir/hold-heap.pprof" "$pprof_url/heap?gc=1"
  curl -fs -o "$pdir/hold-goroutine.txt" "$pprof_url/goroutine?debug=1"
  read -r rss pss hwm < <(mem "$SP_PID")
  wait "$job"; U_RC=$?; uac_collect
  read -r _ _ hwm2 < <(mem "$SP_PID")
  {
    echo "== heap with $HOLD_CALLS calls open (open calls seen by sipp: $U_MAXOPEN; RSS then $(mib "$rss") MiB, VmHWM after $(mib "$hwm2") MiB)"
    go tool pprof -top -sample_index=inuse_space -nodecount=30 "$pdir/hold-heap.pprof" 2>/dev/null
    echo "-- allocations since start (alloc_space)"
    go tool pprof -top -sample_index=alloc_space -nodecount=30 "$pdir/hold-heap.pprof" 2>/dev/null
    echo "-- goroutines"
    head -1 "$pdir/hold-goroutine.txt"
  } >>"$pdir/top.txt"
  say "profiles in $pdir (top.txt)"
  exit 0
fi
kam_start
sp_start
uas_normal
# What each proxy burns with no load at all, over the same window: it is
# inside every CPU step (STEP_SECONDS + SETTLE), so it is reported beside it.
sleep 2
ki0=$(ticks $(kam_pids)) si0=$(ticks "$SP_PID")
sleep "$IDLE_SECONDS"
ki1=$(ticks $(kam_pids)) si1=$(ticks "$SP_PID")
R[kamailio.idle_cpu]=$(awk -v d=$((ki1 - ki0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')
R[sipproxy.idle_cpu]=$(awk -v d=$((si1 - si0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", d/h}')
say "idle for ${IDLE_SECONDS}s: Kamailio ${R[kamailio.idle_cpu]} CPU s, sipproxy ${R[sipproxy.idle_cpu]} CPU s"
for p in direct kamailio sipproxy; do has $p && ramp $p; done

if has kamailio-busy || has sipproxy-busy; then
  uas_busy
  for p in kamailio-busy sipproxy-busy; do
    has $p || continue
    if [ $p = sipproxy-busy ]; then
      sp_register_busy || say "REGISTER of the busy user failed; see $work/register"
      b0=$(sp_metric 'sipproxy_forwarding_total{kind="busy",outcome="applied"}')
    fi
    if probe $p; then
      ramp $p
      if [ $p = sipproxy-busy ]; then
        b1=$(sp_metric 'sipproxy_forwarding_total{kind="busy",outcome="applied"}')
        R[$p.note]="busy retargets counted by sipproxy: $((${b1:-0} - ${b0:-0}))"
      fi
    else
      R[$p.max]=pending R[$p.fail]="probe failed ($U_SUCC/20 answered)"
      [ $p = sipproxy-busy ] && R[$p.note]="sipproxy did not retarget the 486 to voicemail: pending"
    fi
  done
fi

# Peak memory of sipproxy over everything above (the ramps included); the
# same process ran every sipproxy step, so its VmHWM is the exact peak.
# Kamailio's is the largest sum of PSS sampled (every 0.5 s) in its steps.
[ -n "$SP_PID" ] && R[sipproxy.load_hwm]=$(awk '/^VmHWM:/{print $2}' "/proc/$SP_PID/status" 2>/dev/null)

# Memory with calls held open: fresh processes, so that the peak belongs to this test.
uas_normal
if [ "$HOLD" = 1 ] && [ "$(left)" -ge $((HOLD_CALLS / HOLD_RATE + HOLD_MS / 1000 + 40)) ] && has kamailio; then
  kam_stop; kam_start; sleep 1
  hold kamailio $P_KAM kam_pids
fi
if [ "$HOLD" = 1 ] && [ "$(left)" -ge $((HOLD_CALLS / HOLD_RATE + HOLD_MS / 1000 + 40)) ] && has sipproxy; then
  sp_stop; sp_start; sleep 1
  hold sipproxy $P_SIPPROXY sp_pids
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "-" || b == "-" || a == "" || b == "" || b+0 == 0 || a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/) print "-"; else printf "%.2f", a/b }'; }
verdict() { # value op target
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN{ if (v == "-" || v == "" || v !~ /^[0-9.]+$/) { print "n/a"; exit }
    ok = (op == ">=") ? (v+0 >= t+0) : (v+0 <= t+0); print ok ? "met" : "MISSED" }'
}
mem_cell() { # path
  case $1 in
    sipproxy) [ "$(g sipproxy.hwm)" != - ] && echo "$(mib "$(g sipproxy.hwm)") (VmHWM; idle $(mib "$(g sipproxy.idle_rss)"))" || echo - ;;
    kamailio) [ "$(g kamailio.peak_pss)" != - ] && echo "$(mib "$(g kamailio.peak_pss)") ΣPSS / $(mib "$(g kamailio.peak_rss)") ΣRSS (idle $(mib "$(g kamailio.idle_pss)") / $(mib "$(g kamailio.idle_rss)"))" || echo - ;;
    *) echo "—" ;;
  esac
}
label() {
  case $1 in
    direct) echo "(a) direct sipp→sipp (ceiling)" ;;
    kamailio) echo "(b) via Kamailio $KAM_VERSION" ;;
    sipproxy) echo "(c) via sipproxy" ;;
    kamailio-busy) echo "(b') Kamailio, 486 → voicemail" ;;
    sipproxy-busy) echo "(c') sipproxy, 486 → voicemail (busy rule)" ;;
  esac
}
KAM_VERSION=$(kamailio -v 2>/dev/null | awk '/^version:/{print $3; exit}')
SIPP_VERSION=$(sipp -v 2>/dev/null | awk '/SIPp v/{print $2; exit}')
{
  echo "# sipproxy benchmark, $ts"
  echo
  echo "One run on $(nproc) cores ($(uname -r)); load average before $LOAD_BEFORE, after $LOAD_AFTER."
  echo "sipproxy ${SIPPROXY_COMMIT} ($SIPPROXY_VERSION, $(go version 2>/dev/null | awk '{print $3}')${SIPPROXY_ENV:+, env $SIPPROXY_ENV}, log level $LOG_LEVEL), Kamailio $KAM_VERSION, SIPp $SIPP_VERSION."
  echo "Mode: $([ "$QUICK" = 1 ] && echo "QUICK (smoke test; not for comparison)" || echo full); rates $RATES cps, ${STEP_SECONDS}s per step;"
  echo "CPU compared at $CPU_RATE cps; memory with $HOLD_CALLS calls held ${HOLD_MS} ms; sipp clock: $([ -n "$PRELOAD" ] && echo "fine (fineclock.so)" || echo "coarse (4 ms ticks)")."
  echo
  echo "| path | zero-failure rate, cps offered (achieved) | first failing rate | p50 / p99 / mean ms at 50% of it (rate) | p50 / p99 / mean ms at $CPU_RATE cps | proxy CPU s per 1,000 calls at $CPU_RATE cps | peak memory MiB, $HOLD_CALLS calls open |"
  echo "|---|---|---|---|---|---|---|"
  for p in $PATHS; do
    local_cpu=$(g $p.cpuk); [ "$p" = direct ] && local_cpu="— (no proxy)"
    [ "$(g $p.cok)" = 0 ] && local_cpu="$local_cpu (step failed)"
    half="-"
    [ "$(g $p.half)" != - ] && half="$(g $p.p50) / $(g $p.p99) / $(g $p.mean) ($(g $p.half) cps$([ "$(g $p.hok)" = 1 ] || echo ", FAILED"))"
    echo "| $(label $p) | $(g $p.max) ($(g $p.ach)) | $(g $p.fail) | $half | $(g $p.c50) / $(g $p.c99) / $(g $p.cmean) | $local_cpu | $(mem_cell $p) |"
  done
  echo
  echo "Issue 11's targets (ratios sipproxy / Kamailio, same run):"
  echo
  echo "| # | figure | sipproxy | Kamailio | ratio | target | verdict |"
  echo "|---|---|---|---|---|---|---|"
  target_row() { # NUM FIGURE SP KAM OP TARGET
    local r; r=$(ratio "$3" "$4")
    echo "| $1 | $2 | $3 | $4 | $r | $5 $6 × | $(verdict "$r" "$5" "$6") |"
  }
  target_row 1 "CPU s per 1,000 calls at $CPU_RATE cps, plain" "$(g sipproxy.cpuk)" "$(g kamailio.cpuk)" '<=' 1.0
  target_row 1 "CPU s per 1,000 calls at $CPU_RATE cps, busy → voicemail" "$(g sipproxy-busy.cpuk)" "$(g kamailio-busy.cpuk)" '<=' 1.0
  target_row 2 "zero-failure rate (cps), plain" "$(g sipproxy.max)" "$(g kamailio.max)" '>=' 1.25
  target_row 2 "zero-failure rate (cps), busy → voicemail" "$(g sipproxy-busy.max)" "$(g kamailio-busy.max)" '>=' 1.0
  target_row 3 "p99 ms at 50% of own max, plain" "$(g sipproxy.p99)" "$(g kamailio.p99)" '<=' 1.5
  target_row 3 "p50 ms at 50% of own max, plain" "$(g sipproxy.p50)" "$(g kamailio.p50)" '<=' 1.0
  target_row "(3)" "p99 ms at 50% of own max, busy (not a target)" "$(g sipproxy-busy.p99)" "$(g kamailio-busy.p99)" '<=' 1.5
  target_row "(3)" "p50 ms at 50% of own max, busy (not a target)" "$(g sipproxy-busy.p50)" "$(g kamailio-busy.p50)" '<=' 1.0
  target_row 4 "peak memory MiB over the whole ramp (VmHWM / ΣPSS)" "$(mib "$(g sipproxy.load_hwm)")" "$(mib "$(g kamailio.load_pss)")" '<=' 1.0
  echo
  echo "Other ratios (same run):"
  echo
  echo "| figure | sipproxy / Kamailio | sipproxy / ceiling | Kamailio / ceiling |"
  echo "|---|---|---|---|"
  echo "| zero-failure rate | $(ratio "$(g sipproxy.max)" "$(g kamailio.max)") | $(ratio "$(g sipproxy.max)" "$(g direct.max)") | $(ratio "$(g kamailio.max)" "$(g direct.max)") |"
  echo "| p50 at 50% load | $(ratio "$(g sipproxy.p50)" "$(g kamailio.p50)") | $(ratio "$(g sipproxy.p50)" "$(g direct.p50)") | $(ratio "$(g kamailio.p50)" "$(g direct.p50)") |"
  echo "| p99 at 50% load | $(ratio "$(g sipproxy.p99)" "$(g kamailio.p99)") | $(ratio "$(g sipproxy.p99)" "$(g direct.p99)") | $(ratio "$(g kamailio.p99)" "$(g direct.p99)") |"
  echo "| p50 at $CPU_RATE cps (same load) | $(ratio "$(g sipproxy.c50)" "$(g kamailio.c50)") | $(ratio "$(g sipproxy.c50)" "$(g direct.c50)") | $(ratio "$(g kamailio.c50)" "$(g direct.c50)") |"
  echo "| p99 at $CPU_RATE cps (same load) | $(ratio "$(g sipproxy.c99)" "$(g kamailio.c99)") | $(ratio "$(g sipproxy.c99)" "$(g direct.c99)") | $(ratio "$(g kamailio.c99)" "$(g direct.c99)") |"
  echo "| busy → voicemail p50 at $CPU_RATE cps (same load) | $(ratio "$(g sipproxy-busy.c50)" "$(g kamailio-busy.c50)") | — | — |"
  echo "| peak memory over the ramp, ΣPSS sampled (both sampled alike) | $(ratio "$(g sipproxy.load_pss)" "$(g kamailio.load_pss)") | — | — |"
  echo "| peak memory, $HOLD_CALLS open calls (VmHWM / ΣPSS; target ≤ 64 MiB: $(verdict "$(mib "$(g sipproxy.hwm)")" '<=' 64)) | $(ratio "$(g sipproxy.hwm)" "$(g kamailio.peak_pss)") | — | — |"
  echo
  for p in $PATHS; do [ -n "${R[$p.note]:-}" ] && echo "* $(label $p): ${R[$p.note]}"; done
  echo "* Peak memory over the whole ramp (every step of both flows): sipproxy VmHWM $(mib "$(g sipproxy.load_hwm)") MiB (sampled ΣPSS $(mib "$(g sipproxy.load_pss)"), RSS $(mib "$(g sipproxy.load_rss)")); Kamailio ΣPSS $(mib "$(g kamailio.load_pss)") MiB (ΣRSS $(mib "$(g kamailio.load_rss)")), sampled every 0.5 s during each step and at its end."
  echo "* CPU per 1,000 calls: proxy CPU (all its threads or processes, /proc utime+stime) from the first call of a $STEP_SECONDS s step at $CPU_RATE cps on an idle, warm proxy ($WARMUP_SECONDS s at the same rate, not counted, then $SETTLE s) until ${SETTLE} s after it (both proxies: sipgo's Timer L/M and Kamailio's wait timer are 5 s), so that finished transactions are released within the count. Idle, each burns over ${IDLE_SECONDS} s: Kamailio $(g kamailio.idle_cpu) CPU s, sipproxy $(g sipproxy.idle_cpu) CPU s; over the $((STEP_SECONDS + SETTLE)) s window that is $(awk -v i="$(g kamailio.idle_cpu)" -v w=$((STEP_SECONDS + SETTLE)) -v s="$IDLE_SECONDS" -v n=$((CPU_RATE * STEP_SECONDS)) 'BEGIN{ if (i ~ /^[0-9.]+$/) printf "%.3f", i/s*w/n*1000; else print "-" }') and $(awk -v i="$(g sipproxy.idle_cpu)" -v w=$((STEP_SECONDS + SETTLE)) -v s="$IDLE_SECONDS" -v n=$((CPU_RATE * STEP_SECONDS)) 'BEGIN{ if (i ~ /^[0-9.]+$/) printf "%.3f", i/s*w/n*1000; else print "-" }') s per 1,000 calls of the figures above."
  echo "* Open calls reached in the memory test (sipp CurrentCall max): Kamailio $(g kamailio.open) $(g kamailio.hold_ok), sipproxy $(g sipproxy.open) $(g sipproxy.hold_ok)."
  echo "* A rate passes when sipp exits 0 with every call successful, no failed call, and an achieved rate ≥ $(awk -v m="$MIN_ACHIEVED" 'BEGIN{printf "%g", m*100}')% of the offered one (SLOW: all calls completed but the proxy fell behind the offered rate)."
  echo "* Kamailio memory: shm is preallocated (-m 1024) and shared by its $(echo "$KAM_KIDS" | wc -w)+1 processes, so ΣRSS counts shared pages once per process; ΣPSS divides them fairly."
  echo
  echo "<details><summary>every step</summary>"
  echo
  echo "| path | kind | offered cps | achieved | calls | ok | failed | sipp rc | verdict | proxy CPU s | CPU s/1k calls | p50 ms | p99 ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; printf "\n"}' "$steps_log"
  echo
  echo "</details>"
} >"$out_md"
cat "$out_md"
say "written $out_md (raw sipp output in $work)"
