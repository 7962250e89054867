# bench/connscale-kamailio.sh: PROXY=kamailio for bench/connscale.sh (sourced by it, not run):
# the same two runs against Kamailio 5.6 with its tls module, configured from
# bench/kamailio-tls.cfg.in. See docs/performance.md, "Kamailio with TLS, the same load".
#
# Uses the script's work directory, ports (P_TCP, P_TLS), certificates (tls/), PHONES,
# the tool ($work/connscale) and spawn/alive/stop (bench/procs.sh). Kamailio forks its
# workers from the process it starts (-DD keeps that one in the foreground, so spawn
# records it); they are recorded after start-up and killed by PID if they outlive it.

KAM_SHM_MB=${KAM_SHM_MB:-$((1024 + PHONES / 16))}
KAM_PKG_MB=${KAM_PKG_MB:-32}
KAM_TLS_METHOD=${KAM_TLS_METHOD:-TLSv1.2+}   # the tls module's method (TLSv1.2: no TLS 1.3)
KAM_TCP_CHILDREN=${KAM_TCP_CHILDREN:-1}      # the anchor has 2; Kamailio 5.6.3's tls double free kills it from ~1,000 connections with 2
KAM_PID='' KAM_KIDS='' KAM_NOTES=()

kam_tools() {
  local mods=/usr/lib/x86_64-linux-gnu/kamailio/modules need=()
  command -v kamailio >/dev/null || need+=(kamailio)
  [ -e "$mods/tls.so" ] || need+=(kamailio-tls-modules)
  apt_install "${need[@]}"
  [ -e "$mods/tls.so" ] || die "Kamailio's tls module ($mods/tls.so) is missing"
}

kam_config() {
  local d=$work/kamailio i
  mkdir -p "$d/db" "$d/run"
  # The tls module's own configuration: the certificate sipproxy serves in the other runs.
  cat >"$d/tls.cfg" <<EOT
[server:default]
method = $KAM_TLS_METHOD
verify_certificate = no
require_certificate = no
certificate = $work/tls/server.crt
private_key = $work/tls/server.key

[client:default]
method = $KAM_TLS_METHOD
verify_certificate = no
require_certificate = no
EOT
  # The users' plain passwords (as in sipproxy.yaml), as a db_text table in htable's
  # layout: htable loads it into shared memory once at start-up.
  {
    echo "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)"
    for ((i = 0; i < PHONES; i++)); do echo "$((i + 1)):phone$i:0:0:pw-$i:0"; done
  } >"$d/db/htable"
  printf 'table_name(string) table_version(int)\nhtable:2\n' >"$d/db/version"
  local max_conn=$((PHONES + 64)) nofile ht=4
  nofile=$(ulimit -Sn)
  while [ $((1 << ht)) -lt "$PHONES" ] && [ "$ht" -lt 16 ]; do ht=$((ht + 1)); done
  sed -e "s|@TCP_PORT@|$P_TCP|g; s|@TLS_PORT@|$P_TLS|g; s|@MAX_CONN@|$max_conn|g; s|@OPEN_FILES@|$nofile|g; s|@TCP_CHILDREN@|$KAM_TCP_CHILDREN|g" \
    -e "s|@TLS_CFG@|$d/tls.cfg|g; s|@DB_DIR@|$d/db|g; s|@HT_SIZE@|$ht|g; s|@REALM@|bench.test|g" \
    -e "s|@SECRET@|$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')|g" \
    "$here/kamailio-tls.cfg.in" >"$d/kamailio.cfg"
  kamailio -c -f "$d/kamailio.cfg" >"$d/check.log" 2>&1 || die "kamailio -c failed; see $d/check.log"
}

kam_kids() { ps -o pid= --ppid "$1" 2>/dev/null | tr '\n' ' '; }

kam_start() { # NAME
  local i
  spawn "$work/kamailio-$1.log" kamailio -f "$work/kamailio/kamailio.cfg" -m "$KAM_SHM_MB" -M "$KAM_PKG_MB" \
    -DD -E -Y "$work/kamailio/run" -w "$work/kamailio"
  KAM_PID=$LASTPID
  for i in $(seq 150); do
    ss -Hltn "sport = :$P_TLS" 2>/dev/null | grep -q . && break
    alive "$KAM_PID" || die "Kamailio ended at start-up; see $work/kamailio-$1.log"
    sleep 0.1
  done
  sleep 1
  KAM_KIDS=$(kam_kids "$KAM_PID")
  [ -n "$KAM_KIDS" ] || die "Kamailio did not fork its workers; see $work/kamailio-$1.log"
}

# kam_reap: the workers of the Kamailio this script started, if they outlived it.
kam_reap() {
  local k
  for k in $KAM_KIDS; do alive "$k" && kill -KILL "$k" 2>/dev/null; done
  KAM_KIDS=''
  return 0
}

kam_stop() { # NAME: stop Kamailio (TERM, 10 s, KILL) and record how it ended
  local name=$1 rc i kids bt
  if alive "$KAM_PID"; then
    kids=$(kam_kids "$KAM_PID")
    [ "$(echo "$kids" | wc -w)" -lt "$(echo "$KAM_KIDS" | wc -w)" ] &&
      KAM_NOTES+=("run ($name): Kamailio had $(echo "$kids" | wc -w) workers at the end, $(echo "$KAM_KIDS" | wc -w) at start-up.")
    kill -TERM "$KAM_PID" 2>/dev/null
    for i in $(seq 100); do alive "$KAM_PID" || break; sleep 0.1; done
    if alive "$KAM_PID"; then
      KAM_NOTES+=("run ($name): Kamailio did not end within 10 s of TERM; killed.")
      kill -KILL "$KAM_PID" 2>/dev/null
    fi
    wait "$KAM_PID" 2>/dev/null; rc=$?
    [ "$rc" = 0 ] || KAM_NOTES+=("run ($name): after the load, **Kamailio exited with status $rc on TERM** (128 + signal; 139 = SIGSEGV).")
  else
    wait "$KAM_PID" 2>/dev/null; rc=$?
    KAM_NOTES+=("run ($name): **Kamailio (PID $KAM_PID) ended during the run, exit status $rc** (128 + signal; 139 = SIGSEGV); the last lines of its log:")
    KAM_NOTES+=("$(printf '```\n%s\n```' "$(grep -v -E '^ *$' "$work/kamailio-$name.log" | tail -25)")")
  fi
  # Kamailio enables core dumps; a core lands in its working directory. Its backtrace goes
  # in the report, the core (about 1 GiB: the shm) is deleted.
  if [ -f "$work/kamailio/core" ]; then
    bt=$(command -v gdb >/dev/null && timeout 120 gdb -batch -ex 'bt 12' "$(command -v kamailio)" "$work/kamailio/core" 2>/dev/null | grep -E '^(#|Program terminated)')
    KAM_NOTES+=("run ($name): core dumped ($(du -m "$work/kamailio/core" | cut -f1) MiB, deleted); backtrace:")
    KAM_NOTES+=("$(printf '```\n%s\n```' "${bt:-(gdb not available)}")")
    rm -f "$work/kamailio/core"
  fi
  kam_reap
  KAM_PID=''
}

kam_load() { # NAME PHONES EXTRA...: as load(), against a fresh Kamailio; sets LOAD_RC
  local name=$1 n=$2 a n0=${#KAM_NOTES[@]}; shift 2
  local extra=()
  while [ $# -gt 0 ]; do # the sipproxy-only flags are dropped
    case $1 in -heap-url | -heap-out | -metrics-url | -gc-url) shift 2 ;; *) extra+=("$1"); shift ;; esac
  done
  kam_start "$name"
  say "run ($name): $n phone(s), Kamailio pid $KAM_PID (workers $KAM_KIDS), nofile $(awk '/open files/{print $4}' "/proc/$KAM_PID/limits")"
  timeout -k 5 $((n / REGISTER_RATE * 2 + 300)) "$work/connscale" -proxy "127.0.0.1:$P_TLS" -call-proxy "127.0.0.1:$P_TCP" \
    -ca "$work/tls/internal-ca.crt" -server-name bench.test -phones "$n" -register-rate "$REGISTER_RATE" -call-rate "$CALL_RATE" \
    -duration "$DURATION" -hold "$HOLD" -settle "$SETTLE" -src-ips "$SRC_IPS" -caller-src 127.0.0.1 \
    -proxy-pid "$KAM_PID" -proxy-children -proxy-name Kamailio -label "$name (Kamailio)" -report "$work/report-$name.md" "${extra[@]}" >"$work/connscale-$name.log" 2>&1
  LOAD_RC=$?
  grep '^connscale:' "$work/connscale-$name.log" >&2
  kam_stop "$name"
  for a in "${KAM_NOTES[@]:n0}"; do say "$a"; done
  sleep 1
}

kam_report_head() {
  echo "**Kamailio** $(kamailio -v 2>/dev/null | awk '/^version:/{print $3; exit}') with its tls module ($(openssl version 2>/dev/null | cut -d' ' -f1-2)),"
  echo "bench/kamailio-tls.cfg.in: children=2, tcp_children=$KAM_TCP_CHILDREN, TLS method $KAM_TLS_METHOD, -m $KAM_SHM_MB -M $KAM_PKG_MB, tcp/tls_max_connections $((PHONES + 64)),"
  echo "open_files_limit $(ulimit -Sn). Memory: the sum of Pss of its processes (the sum of VmRSS counts its shared memory once per process)."
  echo "Differences from the sipproxy run: no limit of connections per source address (Kamailio 5.6 has none)."
  echo "The sipproxy commit above is the tree the load generator and the certificate come from."
  echo
}

kam_report_tail() {
  local a
  for a in "${KAM_NOTES[@]}"; do echo; echo "$a"; done
  return 0
}
