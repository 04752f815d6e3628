#!/usr/bin/env bash
# Helpers shared by the side-by-side benchmarks (scripts/bench-compare.sh and
# scripts/bench-vhost-pvp.sh), sourced by both. They read the caller's globals: PROG, CASE,
# RESULTS (emit), CASE_NS and CASE_PIDS (the per-case cleanup lists), BG_PID (set by bg),
# WAIT_IDLE and IDLE_BEFORE (wait_idle).
# shellcheck shell=bash disable=SC2034 # BG_PID and IDLE_BEFORE are read by the callers

usage() { sed -n '2,/^# shellcheck disable/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
have() { command -v "$1" >/dev/null 2>&1; }
note() { printf '# %s\n' "$*" >&2; }
pmd_present() { compgen -G "/usr/lib/*/dpdk/pmds-*/librte_net_$1.so*" >/dev/null; }
emit() { printf '%s\n' "$*"; printf '%s\n' "$*" >>"$RESULTS"; }
fail() { echo "$PROG: ${CASE:-?}: $*" >&2; exit 1; }
nap() { sleep "$1" & wait $!; } # interruptible by the traps
nsx() { local ns=$1; shift; timeout -k 2 20 ip netns exec "$ns" "$@"; }
mkns() {
    ip netns add "$1" || fail "ip netns add $1"
    CASE_NS+=("$1")
    ip -n "$1" link set lo up
}
bg() {
    local log=$1 secs=$2
    shift 2
    timeout -k 5 "$secs" "$@" >"$log" 2>&1 </dev/null &
    BG_PID=$!
    CASE_PIDS+=("$BG_PID")
}
stop() {
    local pid=$1 secs=${2:-8} i
    if ! kill -TERM "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        return 0
    fi
    for ((i = 0; i < secs * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "timed out after ${secs}s waiting for $what"
}
alive() { kill -0 "$1" 2>/dev/null; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
idle_pct() {
    local a b
    a=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "%.0f", (y[2] > x[2]) ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 100 }'
}
wait_idle() {
    local deadline=$((SECONDS + WAIT_IDLE))
    IDLE_BEFORE=$(idle_pct 2)
    while ((WAIT_IDLE > 0 && IDLE_BEFORE < 85 && SECONDS < deadline)); do
        IDLE_BEFORE=$(idle_pct 2)
    done
}
compare() { # name ours theirs unit
    if [ -n "$2" ] && [ -n "$3" ]; then
        emit "COMPARE case=$1 ours=$2 theirs=$3 unit=$4 ratio=$(awk -v o="$2" -v t="$3" \
            'BEGIN { printf (t > 0 ? "%.3f" : "n/a"), (t > 0 ? o / t : 0) }')"
    else
        emit "NOCOMPARE case=$1 ours=${2:-missing} theirs=${3:-missing} unit=$4"
    fi
}
