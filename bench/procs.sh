# bench/procs.sh: what every bench script shares (sourced, not run): process bookkeeping, waiting for a port, and tool installation.
# Every process a script starts goes through spawn, which records its PID; stop and
# stop_started end exactly those PIDs (TERM, up to 5 s, then KILL) and nothing else.

STARTED=()
LASTPID=

spawn() { # LOG CMD...: start CMD in the background, output to LOG, remember its PID.
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  LASTPID=$!
  STARTED+=("$LASTPID")
}

alive() { kill -0 "$1" 2>/dev/null; }

stop() { # PID...: TERM, wait up to 5 s, then KILL; only PIDs this script started.
  local p i
  for p in "$@"; do
    [ -n "$p" ] || continue
    alive "$p" || { wait "$p" 2>/dev/null; continue; }
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  return 0
}

stop_started() { # every process spawn started, the last first
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop "${STARTED[i]}"; done
  return 0
}

wait_port() { # PORT SECONDS: until something listens on 127.0.0.1:PORT (TCP), or 1 after SECONDS
  local i
  for i in $(seq $(($2 * 10))); do
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

apt_install() { # PACKAGE...: install the Debian packages with apt-get (bounded), or die; log in $work/apt.log
  [ $# -gt 0 ] || return 0
  say "installing $* with apt-get"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  ($sudo env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends "$@") >"$work/apt.log" 2>&1 ||
    die "apt-get install $* failed; see $work/apt.log"
}
