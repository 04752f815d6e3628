#!/bin/bash
# Idle CPU of the dpservice daemon (issue #4): starts the release daemon with TAP ports and no
# traffic, and reports the CPU time of all its threads over 10 s (schedstat, ns on CPU) and
# utime+stime from /proc/PID/stat. Needs root. Usage: sudo scripts/idle-cpu.sh [WORKERS]
set -u
W=${1:-1}
cd "$(dirname "$0")/.." || exit 1
BIN=${BIN:-target/release/dpservice}
LOG=$(mktemp /tmp/idle-cpu.XXXXXX.log)
"$BIN" --nic-type tap --pf0 idp0 --pf1 idp1 --vf-pattern idvf --vf-count 4 --ipv6 fc00:1::1 \
    --grpc-port 21337 --no-stats --workers "$W" --router fe80::ffff >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
sleep 3
kill -0 $PID 2>/dev/null || { echo "daemon exited; see $LOG" >&2; exit 1; }
oncpu() { cat /proc/$PID/task/*/schedstat | awk '{s+=$1} END {print s}'; }
ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
a=$(oncpu); at=$(ticks); sleep 10; b=$(oncpu); bt=$(ticks)
kill $PID; wait $PID 2>/dev/null
trap - EXIT
rm -f "$LOG"
echo "IDLE workers=$W on_cpu_ms=$(((b - a) / 1000000)) cpu_pct=$(awk -v n=$((b - a)) 'BEGIN {printf "%.2f", n / 1e8}') stat_ticks=$((bt - at))"
