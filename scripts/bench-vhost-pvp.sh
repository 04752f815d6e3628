#!/usr/bin/env bash
# dpservice-rs vhost-user PVP benchmark (issue #14; DPDK's HowTo "PVP reference benchmark setup
# using testpmd"), side by side in one run.
#
# One traffic generator/sink, the same for every forwarder: a `dpdk-testpmd` (generator CPU)
# whose two virtio-user ports are the vhost-user clients ("VM A" and "VM B") of the forwarder
# under test. It sends a UDP flood (one flow, 10.100.1.1:4000 -> 10.100.1.2:9, A's MAC as source)
# into A's ring and counts what arrives in B's ring (ethdev ipackets of B, read through the
# generator's DPDK telemetry socket) over a fixed interval. The forwarders, each with one
# forwarding thread pinned to CPU $FWD_CPU (the whole process pinned there):
#
#   (a) ours: target/release/dpservice --vhost-user DIR --vhost-user-vfs 2 --workers 1
#       --conntrack stateful (TAP uplinks in a private namespace; no firewall rule, VIP or NAT,
#       so the VM-to-VM packets are forwarded untracked, as OVS's one rule, without ct(),
#       forwards them; DAEMON_ARGS="" measures the default, every packet tracked), vm1 (VF 0,
#       10.100.1.1) and vm2 (VF 1, 10.100.1.2) in VNI 100 created over gRPC with dpservice-cli;
#       the frames go to VF 0's MAC (the one the daemon answers ARP for the gateway with);
#   (b) dpdk-testpmd io-forward between two net_vhost ports (the do-nothing reference);
#   (c) Open vSwitch's DPDK datapath (ovs-vswitchd-dpdk of openvswitch-switch-dpdk, run by path:
#       the system's update-alternatives choice is not touched), its own ovsdb-server/vswitchd
#       with a private run/db directory, a netdev bridge with two dpdkvhostuser ports and the
#       flow in_port=1 actions=output:2, one PMD thread (pmd-cpu-mask = FWD_CPU).
#
# Every forwarder is the vhost-user server (it creates the sockets), the generator the client.
#
# The generator: testpmd can run one forwarding mode per process, and its txonly/flowgen
# engines send on every forwarding port (B as well); two processes (txonly + rxonly) would share
# the generator CPU in scheduler time slices, during which B's ring would overflow. So it runs
# io-forward on one lcore with four ports in two pairs:
#   port 0 net_pcap (rx_pcap=flood.pcap, infinite_rx=1: replays 256 prebuilt frames) -> port 1
#   virtio_user A; port 2 virtio_user B -> port 3 net_pcap (no tx: frees the frames: the sink);
#   port 3's rx_pcap holds one frame from B (B's MAC, 10.100.1.2 -> 10.100.1.1) sent once at the
#   start (--no-flush-rx), so that our daemon learns B's MAC (a vhost-user VM's MAC is unknown
#   until its first frame; frames to it are dropped as no_peer_mac until then); the others
#   forward it to A, which is counted nowhere.
# By default no hugepages: every DPDK process runs with --no-huge (virtio-user then shares
# memfd-backed memory with the backend; OVS needs --legacy-mem with it, or it adds --in-memory),
# so nothing on the machine is changed. With --hugepages N, N more 2 MiB pages are reserved
# (vm.nr_hugepages raised by N, put back at exit) and mounted (hugetlbfs in the run's
# directory, unmounted at exit); every DPDK process — the generator (whose memory is the
# "guests'" memory our daemon maps too), testpmd, OVS — then takes its memory from there
# (--single-file-segments: vhost-user passes at most 8 memory regions). Frame sizes are Ethernet frames without FCS (as dpservice-bench's and
# bench-compare.sh's 64 bytes).
#
# It prints one `RESULT ...` line per measurement (pps = frames/s received by B's virtio-user
# port; offered_pps = frames/s the forwarder took from A's ring; fwd_run/gen_run = on-CPU time of
# the forwarder's and the generator's processes, % of one CPU; others = the machine's busy time
# (all CPUs, /proc/stat) less those two: other work, interrupts and softirqs; both pollers
# should be near 100% — other load on the machine skews every figure; pps_per_fwd_cpu = pps
# divided by fwd_run, for information when other work took the forwarder's CPU), and per frame size
#   COMPARE case=vhost_<size>b_udp_vs_testpmd ours=<pps> theirs=<pps> unit=pps ratio=<ours/theirs>
#   COMPARE case=vhost_<size>b_udp_vs_ovs_dpdk ...
# (medians over the rounds); with --rounds > 1 also `BEST case=... ours= theirs= ratio=` (the
# highest rate of each over the rounds); and per case a `PLACEMENT case=... fwd=... round=...
# c2c_before_ns=... c2c_after_ns=...` line: the cache-line round trip between the two CPUs just
# before and after it (`dpservice-c2c`), which tells the vCPU placement the case ran in.
# A measurement that could not be made is a `FAIL ...` line (with its
# log directory) and exit status 1; the others still run.
#
# Usage: sudo scripts/bench-vhost-pvp.sh [options]
#   --quick            short intervals (smoke run; numbers are rough)
#   --duration S       measuring interval of each case, seconds (default 10; quick 3)
#   --sizes LIST       comma-separated frame sizes, bytes (default 64,1400; 60..1514)
#   --tools LIST       comma-separated subset of: ours,testpmd,ovs (default: all)
#   --no-build         do not run `cargo build --release -p dpservice -p dpservice-cli`
#   --install-deps     apt-get install the missing Debian packages first
#   --rounds N         repeat every measurement N times, the order of the forwarders reversed
#                      every other round (default 1); the COMPARE lines use the medians
#   --wait-idle S      before each case, wait up to S seconds for the machine to be idle
#                      (>= 85% idle over 2 s); and measure a case again (twice at most, after
#                      waiting up to S seconds for a quiet 2-s window) when other work used more
#                      than --max-others during its interval; the least disturbed interval counts
#   --max-others PCT   CPU use by other work (% of one CPU) that makes an interval count as
#                      disturbed (default 10; only with --wait-idle)
#   --hugepages N      back the DPDK processes' memory with N reserved 2 MiB pages (2048 is
#                      enough) instead of --no-huge (see above)
#   --keep             keep the log directory (always kept when something failed)
# Environment: FWD_CPU (default: the last CPU) for the forwarders; the generator uses the first
#   other CPU. DAEMON_ARGS: extra options for our daemon, word-split (default "--conntrack
#   stateful"; set it empty for none). VIRTIO_QUEUE_SIZE: ring
#   size of the generator's virtio-user ports (default 256, QEMU's virtio-net default).
#
# Everything is hermetic: names are unique to the run; the daemon and OVS run in private
# network namespaces (their TAP uplinks / bridge ports stay there), the vhost-user sockets and
# OVS's database in the run's directory, DPDK's runtime directories are /var/run/dpdk/<run>-*;
# every process is bounded by `timeout`, and traps stop every process started here and remove
# all of it, however the script ends. No traffic leaves the machine (vhost-user rings only).
# Not part of CI; needs root, Debian 12 packages:
#   dpdk-dev (dpdk-testpmd) librte-net-virtio23 librte-net-vhost23 librte-net-pcap23
#   openvswitch-switch-dpdk python3 curl iproute2 util-linux
# (installing openvswitch-switch-dpdk starts Debian's system OVS service where systemd runs;
# this script never talks to it.)
# shellcheck disable=SC2015,SC2030,SC2031,SC2317 # `a && b || fail`; per-case subshells; trap-run functions
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."
ROOT=$PWD
PROG=bench-vhost-pvp

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
ORIG_ARGS=$*
QUICK=0
DURATION=
SIZES=64,1400
TOOLS=ours,testpmd,ovs
BUILD=1
INSTALL=0
KEEP=0
ROUNDS=1
WAIT_IDLE=0
MAX_OTHERS=10
HUGEPAGES=0
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --duration) DURATION=${2:?--duration needs seconds}; shift ;;
    --sizes) SIZES=${2:?--sizes needs a list}; shift ;;
    --tools) TOOLS=${2:?--tools needs a list}; shift ;;
    --no-build) BUILD=0 ;;
    --install-deps) INSTALL=1 ;;
    --keep) KEEP=1 ;;
    --rounds) ROUNDS=${2:?--rounds needs a count}; shift ;;
    --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift ;;
    --max-others) MAX_OTHERS=${2:?--max-others needs a percentage}; shift ;;
    --hugepages) HUGEPAGES=${2:?--hugepages needs a page count}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$PROG: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "$PROG: --rounds needs a positive count" >&2; exit 2; }
[[ $WAIT_IDLE =~ ^[0-9]+$ ]] || { echo "$PROG: --wait-idle needs seconds" >&2; exit 2; }
[[ $MAX_OTHERS =~ ^[0-9]+$ ]] || { echo "$PROG: --max-others needs a percentage" >&2; exit 2; }
[[ $HUGEPAGES =~ ^[0-9]+$ ]] || { echo "$PROG: --hugepages needs a page count" >&2; exit 2; }
RETRIES=0
((WAIT_IDLE > 0)) && RETRIES=2
for s in ${SIZES//,/ }; do
    [[ $s =~ ^[0-9]+$ ]] && ((s >= 60 && s <= 1514)) ||
        { echo "$PROG: frame size '$s' is not in 60..1514" >&2; exit 2; }
done
for t in ${TOOLS//,/ }; do
    case $t in ours | testpmd | ovs) ;; *) echo "$PROG: unknown tool '$t'" >&2; exit 2 ;; esac
done
if ((QUICK)); then
    WARMUP=1 DURATION=${DURATION:-3}
else
    WARMUP=2 DURATION=${DURATION:-10}
fi
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "$PROG: --duration needs seconds" >&2; exit 2; }
# Longest a case's traffic may take (bounds every process's lifetime).
FLOOD_BOUND=$(((WARMUP + DURATION + WAIT_IDLE) * (RETRIES + 1) + 60))
want_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }

if [ "$(id -u)" != 0 ]; then
    echo "$PROG: must run as root: it creates network namespaces and runs dpdk-testpmd, Open" \
        "vSwitch and the daemon. Try: sudo $0 $ORIG_ARGS" >&2
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# Packages and binaries
# ---------------------------------------------------------------------------------------------
OVS_DPDK=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
PY=/usr/bin/python3 # Debian's, whatever a pyenv or venv puts first in PATH
missing=()
have ip || missing+=(iproute2)
have taskset || missing+=(util-linux)
have timeout || missing+=(coreutils)
have curl || missing+=(curl)
[ -x "$PY" ] || missing+=(python3)
have dpdk-testpmd || missing+=(dpdk-dev)
pmd_present virtio || missing+=(librte-net-virtio23)
pmd_present vhost || missing+=(librte-net-vhost23)
pmd_present pcap || missing+=(librte-net-pcap23)
if want_tool ovs; then
    { [ -x "$OVS_DPDK" ] && have ovsdb-server && have ovs-vsctl && have ovs-ofctl && have ovsdb-tool; } ||
        missing+=(openvswitch-switch-dpdk)
fi
if ((${#missing[@]})); then
    if ((INSTALL)); then
        note "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        { timeout 300 apt-get update -qq &&
            timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
            { echo "$PROG: apt-get install ${missing[*]} failed" >&2; exit 1; }
    else
        echo "$PROG: missing Debian packages: ${missing[*]} (apt-get install them, or run with" \
            "--install-deps)" >&2
        exit 1
    fi
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
DAEMON=$TARGET/dpservice
CLI=$TARGET/dpservice-cli
C2C=$TARGET/dpservice-c2c
if want_tool ours; then
    if ((BUILD)); then
        if ! have cargo && [ -f "$HOME/.cargo/env" ]; then
            # shellcheck disable=SC1091
            . "$HOME/.cargo/env"
        fi
        if have cargo; then
            note "cargo build --release -p dpservice -p dpservice-cli (and dpservice-c2c)"
            timeout 3600 cargo build --release -p dpservice -p dpservice-cli >&2 ||
                { echo "$PROG: cargo build failed" >&2; exit 1; }
            timeout 3600 cargo build --release -p dp-bench --bin dpservice-c2c >&2 ||
                note "warning: no dpservice-c2c: PLACEMENT lines will say n/a"
        else
            note "cargo not found: using the binaries in $TARGET as they are"
        fi
    fi
    [ -x "$DAEMON" ] && [ -x "$CLI" ] ||
        { echo "$PROG: no $DAEMON / $CLI (build with cargo build --release)" >&2; exit 1; }
fi

NCPU=$(nproc)
FWD_CPU=${FWD_CPU:-$((NCPU - 1))}
GEN_CPU=0
((FWD_CPU == 0 && NCPU > 1)) && GEN_CPU=1
((NCPU >= 2)) || note "warning: one CPU only: generator and forwarder share it"
QSIZE=${VIRTIO_QUEUE_SIZE:-256}

# ---------------------------------------------------------------------------------------------
# Names unique to this run; logs; results
# ---------------------------------------------------------------------------------------------
RID=pv$(printf '%04x' $((($$ ^ RANDOM) & 0xffff))) # interface names: RID + 2 chars <= 15
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-vhost-pvp.$RID.XXXX")
RESULTS=$WORK/results
: >"$RESULTS"
FAILED=0
CUR_CASE_PID=
if want_tool ours; then
    # A private copy: a rebuild during the run cannot mix versions between cases.
    mkdir -p "$WORK/bin" && cp "$DAEMON" "$CLI" "$WORK/bin/"
    note "daemon: $DAEMON ($(stat -c %y "$DAEMON" | cut -d. -f1)), copied to $WORK/bin"
    DAEMON=$WORK/bin/dpservice CLI=$WORK/bin/dpservice-cli
fi
read -ra EXTRA <<<"${DAEMON_ARGS---conntrack stateful}"
((${#EXTRA[@]})) && note "extra daemon options: ${EXTRA[*]}"
[ -x "$C2C" ] && mkdir -p "$WORK/bin" && cp "$C2C" "$WORK/bin/" && C2C=$WORK/bin/dpservice-c2c
# c2c: the cache-line round trip between the generator's and the forwarder's CPUs now, in ns
# (n/a without the tool). The VMs this runs on move their vCPUs between placements where it
# is ~30, ~70 or ~320 ns, for seconds at a time; every forwarded frame moves lines between
# the two CPUs, so the placement decides much of a case's rate (BENCHMARKS.md).
c2c() {
    local out
    if [ -x "$C2C" ] && out=$(timeout 20 "$C2C" --cpus "$GEN_CPU,$FWD_CPU" --rounds 100000 2>/dev/null); then
        sed -n 's/^c2c_ns=\([0-9.]*\).*/\1/p' <<<"$out"
    else
        echo n/a
    fi
}
CASE_NO=0
GRPC_PORT=1337     # inside a private namespace: no clash with anything on the host
METRICS_PORT=9064  # likewise
# MACs of the generator's ports (locally administered)
MAC_A=02:00:00:00:00:0a
MAC_B=02:00:00:00:00:0b
OTHER_MAC=02:00:00:00:00:01 # destination of the flood where the forwarder does not look


# The pcap writer: one UDP frame of SIZE bytes (checksums filled), COUNT copies.
cat >"$WORK/mkpcap.py" <<'EOF'
import struct, sys
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def mac(m): return bytes(int(x, 16) for x in m.split(':'))
def ip(a): return bytes(int(x) for x in a.split('.'))
out, size, dmac, smac, sip, dip, count = sys.argv[1:8]
size, count = int(size), int(count)
udp_len = size - 14 - 20
iph = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0, ip(sip), ip(dip))
iph = iph[:10] + struct.pack('!H', csum(iph)) + iph[12:]
udp = struct.pack('!HHHH', 4000, 9, udp_len, 0) + bytes(udp_len - 8)
c = csum(ip(sip) + ip(dip) + struct.pack('!BBH', 0, 17, udp_len) + udp) or 0xffff
udp = udp[:6] + struct.pack('!H', c) + udp[8:]
frame = mac(dmac) + mac(smac) + b'\x08\x00' + iph + udp
assert len(frame) == size
with open(out, 'wb') as f:
    f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i in range(count):
        f.write(struct.pack('<IIII', 0, i, size, size) + frame)
EOF
# The telemetry client: "time ipackets opackets" of each ethdev port given, one line.
cat >"$WORK/ethstats.py" <<'EOF'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
json.loads(s.recv(16384))
out = []
for port in sys.argv[2:]:
    s.send(('/ethdev/stats,' + port).encode())
    st = json.loads(s.recv(65536))['/ethdev/stats']
    out.append('%d %d' % (st['ipackets'], st['opackets']))
print('%.6f %s' % (time.time(), ' '.join(out)))
EOF

# Stops what is still running and removes everything named after this run.
sweep() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$RID-" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    sleep 0.3
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$RID-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf /var/run/dpdk/"$RID"-*
}

finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CUR_CASE_PID" ] && kill -0 "$CUR_CASE_PID" 2>/dev/null; then
        kill -TERM "$CUR_CASE_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$CUR_CASE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CUR_CASE_PID" 2>/dev/null || true
    fi
    sweep
    huge_release
    if ((FAILED)) || ((KEEP)) || ((rc != 0)); then
        note "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Hugepages (--hugepages N): N more 2 MiB pages and a private hugetlbfs mount; put back at exit.
HUGE_DIR=
HUGE_BEFORE=
NR_HUGE=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
huge_release() {
    if [ -n "$HUGE_DIR" ] && mountpoint -q "$HUGE_DIR"; then
        rm -f "$HUGE_DIR"/* 2>/dev/null || true
        umount "$HUGE_DIR" 2>/dev/null || umount -l "$HUGE_DIR" 2>/dev/null || true
    fi
    if [ -n "$HUGE_BEFORE" ]; then
        echo "$HUGE_BEFORE" >"$NR_HUGE" 2>/dev/null || true
        note "hugepages put back: nr_hugepages=$(cat "$NR_HUGE")"
    fi
}
if ((HUGEPAGES > 0)); then
    [ -w "$NR_HUGE" ] || { echo "$PROG: no 2 MiB hugepages on this kernel ($NR_HUGE)" >&2; exit 1; }
    HUGE_BEFORE=$(cat "$NR_HUGE")
    echo $((HUGE_BEFORE + HUGEPAGES)) >"$NR_HUGE"
    got=$(($(cat "$NR_HUGE") - HUGE_BEFORE))
    ((got >= HUGEPAGES)) || { echo "$PROG: only $got of $HUGEPAGES hugepages could be reserved" >&2; exit 1; }
    HUGE_DIR=$WORK/hugetlbfs
    mkdir -p "$HUGE_DIR"
    mount -t hugetlbfs -o pagesize=2M none "$HUGE_DIR" || { echo "$PROG: cannot mount hugetlbfs" >&2; exit 1; }
    note "hugepages: nr_hugepages $HUGE_BEFORE -> $(cat "$NR_HUGE"), hugetlbfs on $HUGE_DIR"
    MEM_ARGS=(--huge-dir "$HUGE_DIR" --single-file-segments -m 1024)
    OVS_MEM="--huge-dir $HUGE_DIR --single-file-segments --socket-mem 1024"
else
    MEM_ARGS=(--no-huge -m 1024)
    # --no-huge needs --legacy-mem with OVS: without it OVS adds --in-memory, which DPDK refuses
    # together with --no-huge's legacy memory.
    OVS_MEM="--no-huge --legacy-mem -m 2048"
fi

# ---------------------------------------------------------------------------------------------
# Helpers for one case. A case runs in a subshell with its own cleanup (processes it started,
# namespaces it made), so a failing case leaves nothing behind for the next.
# ---------------------------------------------------------------------------------------------
CASE_PIDS=()
CASE_NS=()
CASE_DIR=
# bg LOG SECONDS cmd...: starts cmd in the background, killed after SECONDS at the latest; sets
# BG_PID (the `timeout` wrapper, which passes SIGTERM on).
# stop PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 8); reaps it.
case_cleanup() {
    local i ns pid
    for ((i = ${#CASE_PIDS[@]} - 1; i >= 0; i--)); do stop "${CASE_PIDS[i]}" 5; done
    for ns in "${CASE_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    for ns in "${CASE_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf /var/run/dpdk/"$RID"-*
}
# wait_for SECONDS WHAT cmd...: polls cmd until it succeeds.
# sched_ns PID...: on-CPU nanoseconds of every thread of these processes.
sched_ns() {
    local p
    for p; do cat /proc/"$p"/task/*/schedstat 2>/dev/null || true; done |
        awk '{ r += $1 } END { printf "%.0f\n", r }'
}
# pid_tree PID...: these processes, their children and grandchildren (timeout -> ip netns exec
# -> taskset -> the program keep their PIDs through exec, so two levels are enough).
pid_tree() {
    local p c
    for p; do
        echo "$p"
        for c in $(pgrep -P "$p" 2>/dev/null || true); do
            echo "$c"
            pgrep -P "$c" 2>/dev/null || true
        done
    done | tr '\n' ' '
}
# busy_ticks: user+nice+system+irq+softirq+steal clock ticks of all CPUs (the machine's busy
# time: with the forwarder's and the generator's taken out, what everything else used).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# run_case NAME function args...: runs one case in a subshell; a failure is reported, not fatal.
run_case() {
    local name=$1 rc=0
    shift
    CASE_NO=$((CASE_NO + 1))
    wait_idle
    local c2c_before c2c_after
    c2c_before=$(c2c)
    note "case $name ($*) — load average $(loadavg), ${IDLE_BEFORE}% idle before, c2c ${c2c_before} ns"
    (
        CASE=$name
        CASE_DIR=$WORK/$CASE_NO-$name-$1
        mkdir -p "$CASE_DIR"
        N=$CASE_NO
        set -E
        trap 'echo "$PROG: ${CASE:-?}: failed (line $LINENO): $BASH_COMMAND" >&2' ERR
        trap case_cleanup EXIT
        trap 'exit 143' TERM
        trap 'exit 130' INT
        "$@"
    ) &
    CUR_CASE_PID=$!
    wait "$CUR_CASE_PID" || rc=$?
    CUR_CASE_PID=
    c2c_after=$(c2c)
    emit "PLACEMENT case=$name fwd=${1#fwd_} round=$ROUND c2c_before_ns=$c2c_before c2c_after_ns=$c2c_after"
    if ((rc != 0)); then
        FAILED=1
        emit "FAIL case=$name tool=$1 rc=$rc logs=$WORK/$CASE_NO-$name-$1"
    fi
}

# ---------------------------------------------------------------------------------------------
# The generator/sink
# ---------------------------------------------------------------------------------------------
# gen_start SOCK-A SOCK-B SIZE DST-MAC-A DST-MAC-B: the flood (to DST-MAC-A) into A, the one
# frame from B (to DST-MAC-B); starts testpmd on GEN_CPU; sets GEN_PID and GEN_TELEMETRY.
gen_start() {
    local sa=$1 sb=$2 size=$3 dmac_a=$4 dmac_b=$5 prefix=$RID-gen-$N
    "$PY" "$WORK/mkpcap.py" "$CASE_DIR/flood.pcap" "$size" "$dmac_a" "$MAC_A" 10.100.1.1 10.100.1.2 256 &&
        "$PY" "$WORK/mkpcap.py" "$CASE_DIR/hello.pcap" "$size" "$dmac_b" "$MAC_B" 10.100.1.2 10.100.1.1 1 ||
        fail "cannot write the pcap files"
    # One forwarding lcore (and the main one, which only prints stats) on GEN_CPU.
    local cmd=(taskset -c "$GEN_CPU" dpdk-testpmd --lcores "0@$GEN_CPU,1@$GEN_CPU" "${MEM_ARGS[@]}"
        --no-pci --file-prefix="$prefix"
        "--vdev=net_pcap0,rx_pcap=$CASE_DIR/flood.pcap,infinite_rx=1"
        "--vdev=virtio_user0,path=$sa,mac=$MAC_A,queue_size=$QSIZE"
        "--vdev=virtio_user1,path=$sb,mac=$MAC_B,queue_size=$QSIZE"
        "--vdev=net_pcap1,rx_pcap=$CASE_DIR/hello.pcap"
        -- --forward-mode=io --port-topology=paired --nb-cores=1 --total-num-mbufs=32768
        --no-flush-rx --stats-period=5 --auto-start)
    echo "${cmd[*]}" >"$CASE_DIR/generator.cmd"
    bg "$CASE_DIR/generator.log" "$FLOOD_BOUND" "${cmd[@]}"
    GEN_PID=$BG_PID
    GEN_TELEMETRY=/var/run/dpdk/$prefix/dpdk_telemetry.v2
    wait_for 30 "the generator to start forwarding" grep -q 'io packet forwarding - ports=4' "$CASE_DIR/generator.log"
    alive "$GEN_PID" || fail "the generator exited: $(tail -5 "$CASE_DIR/generator.log")"
}
# gen_stats: "time B-ipackets A-opackets" now.
gen_stats() {
    local s
    s=$(timeout 10 "$PY" "$WORK/ethstats.py" "$GEN_TELEMETRY" 2 1) || return 1
    # time, B ipackets (port 2, field 2), A opackets (port 1, field 5)
    awk '{ print $1, $2, $5 }' <<<"$s"
}
b_received() { local s; s=$(gen_stats) && [ "$(awk '{ print $2 }' <<<"$s")" -gt 0 ]; }

# window FWD-TREE GEN-TREE SECONDS: counts over SECONDS; sets PPS, OFFERED, OTHERS, CPU_USE.
window() {
    local fwd_tree=$1 gen_tree=$2 secs=$3 s0 s1 f0 f1 g0 g1 x0 x1
    # shellcheck disable=SC2086 # PID lists
    { f0=$(sched_ns $fwd_tree); g0=$(sched_ns $gen_tree); x0=$(busy_ticks); }
    s0=$(gen_stats) || fail "no statistics from the generator's telemetry"
    nap "$secs"
    s1=$(gen_stats) || fail "no statistics from the generator's telemetry"
    # shellcheck disable=SC2086 # PID lists
    { f1=$(sched_ns $fwd_tree); g1=$(sched_ns $gen_tree); x1=$(busy_ticks); }
    read -r PPS OFFERED OTHERS CPU_USE < <(awk -v a="$s0" -v b="$s1" -v f0="$f0" -v f1="$f1" \
        -v g0="$g0" -v g1="$g1" -v x0="$x0" -v x1="$x1" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, p, " "); split(b, q, " "); t = q[1] - p[1]
        f = (f1 - f0) / t / 1e7; g = (g1 - g0) / t / 1e7; o = 100 * (x1 - x0) / hz / t - f - g
        if (o < 0) o = 0
        r = (q[2] - p[2]) / t
        printf "%.0f %.0f %.0f fwd_run=%.0f%% gen_run=%.0f%% others=%.0f%% pps_per_fwd_cpu=%.0f\n",
            r, (q[3] - p[3]) / t, o, f, g, o, (f > 0 ? 100 * r / f : 0) }')
}

# measure FWD-PIDS...: waits for B to receive, warms up, counts over DURATION; emits RESULT.
# With --wait-idle, an interval during which other work used more than --max-others of a CPU
# is measured again (twice at most), after waiting (up to --wait-idle seconds) for a quiet
# 2-second window; the RESULT is the interval with the least other work (attempts= says how
# many were made).
measure() {
    local fwd_tree gen_tree attempt deadline
    wait_for 30 "the first frames at B (forwarding A -> B)" b_received
    nap "$WARMUP"
    alive "$GEN_PID" || fail "the generator exited: $(tail -5 "$CASE_DIR/generator.log")"
    fwd_tree=$(pid_tree "$@")
    gen_tree=$(pid_tree "$GEN_PID")
    local best=
    for ((attempt = 1; ; attempt++)); do
        window "$fwd_tree" "$gen_tree" "$DURATION"
        # The least disturbed interval counts.
        if [ -z "$best" ] || ((OTHERS < ${best%% *})); then
            best="$OTHERS $PPS $OFFERED $CPU_USE"
        fi
        ((OTHERS > MAX_OTHERS && attempt <= RETRIES)) || break
        note "other work used ${OTHERS}% of a CPU during the interval (> $MAX_OTHERS%, $PPS pps): measuring again"
        deadline=$((SECONDS + WAIT_IDLE))
        while ((SECONDS < deadline)); do
            window "$fwd_tree" "$gen_tree" 2
            ((OTHERS > MAX_OTHERS)) || break
        done
    done
    read -r OTHERS PPS OFFERED CPU_USE <<<"$best"
    [ "$PPS" -gt 0 ] || fail "B received nothing (offered $OFFERED pps)"
    emit "RESULT case=$CASE side=$SIDE_NAME tool=$TOOL pps=$PPS offered_pps=$OFFERED" \
        "size=$SIZE round=$ROUND interval_s=$DURATION idle_before=$IDLE_BEFORE" \
        "loadavg=$(loadavg | tr ' ' /) $CPU_USE attempts=$attempt"
    stop "$GEN_PID" 10
    grep -A2 'Forward statistics for port 1 ' "$CASE_DIR/generator.log" | sed -n 3p |
        sed 's/^ */# generator, A (whole run): /' >&2 || true
}

# ---------------------------------------------------------------------------------------------
# The forwarders
# ---------------------------------------------------------------------------------------------
# (a) our daemon
fwd_ours() {
    local hv=$RID-$N-hv vu=$CASE_DIR/vhost-user pat=${RID}v mac0 mac1 cli
    SIDE_NAME=ours TOOL=dpservice
    mkns "$hv"
    mkdir -p "$vu"
    local cmd=(taskset -c "$FWD_CPU" "$DAEMON" --nic-type tap --pf0 "${RID}p0" --pf1 "${RID}p1"
        --vf-pattern "$pat" --vf-count 2 --vhost-user "$vu" --vhost-user-vfs 2 --workers 1
        --ipv6 fc00:1::1 --grpc-port "$GRPC_PORT" --no-stats --dump-socket ""
        --telemetry-socket none --metrics-addr "127.0.0.1:$METRICS_PORT" "${EXTRA[@]}")
    echo "ip netns exec $hv ${cmd[*]}" >"$CASE_DIR/dpservice.cmd"
    bg "$CASE_DIR/dpservice.log" $((FLOOD_BOUND + 60)) ip netns exec "$hv" "${cmd[@]}"
    local daemon=$BG_PID
    cli=(nsx "$hv" "$CLI" --address "localhost:$GRPC_PORT")
    local i rc=1
    for ((i = 0; i < 200; i++)); do
        alive "$daemon" || fail "the daemon exited: $(tail -5 "$CASE_DIR/dpservice.log")"
        rc=0
        "${cli[@]}" init >>"$CASE_DIR/cli.log" 2>&1 || rc=$?
        ((rc == 0 || rc == 2)) && break
        sleep 0.1
    done
    ((rc == 0 || rc == 2)) || fail "no gRPC answer from the daemon after 20 s"
    { "${cli[@]}" create interface --id vm1 --device "${pat}0" --vni 100 --ipv4 10.100.1.1 \
        --ipv6 2000:100:1::1 && "${cli[@]}" create interface --id vm2 --device "${pat}1" --vni 100 \
        --ipv4 10.100.1.2 --ipv6 2000:100:1::2; } >>"$CASE_DIR/cli.log" 2>&1 ||
        fail "create interface failed: $(tail -3 "$CASE_DIR/cli.log")"
    wait_for 20 "the vhost-user sockets" test -S "$vu/${pat}0" -a -S "$vu/${pat}1"
    # Our MAC on each VF port (the gateway's, as the daemon answers ARP with it).
    mac_of_port() { sed 's/\x1b\[[0-9;]*m//g' "$CASE_DIR/dpservice.log" |
        awk -v d="device=$1" '/port created/ && index($0, d " ") { for (i = 1; i <= NF; i++) if ($i ~ /^mac=/) print substr($i, 5) }'; }
    mac0=$(mac_of_port "${pat}0") mac1=$(mac_of_port "${pat}1")
    [ -n "$mac0" ] && [ -n "$mac1" ] || fail "no port MACs in the daemon's log"
    gen_start "$vu/${pat}0" "$vu/${pat}1" "$SIZE" "$mac0" "$mac1"
    measure "$daemon"
    alive "$daemon" || fail "the daemon died during the run: $(tail -5 "$CASE_DIR/dpservice.log")"
    # The daemon's own counters: ports' rx/tx, drops by reason (non-zero), interfaces.
    nsx "$hv" curl -s "http://127.0.0.1:$METRICS_PORT/metrics" >"$CASE_DIR/metrics.txt" 2>&1 || true
    "${cli[@]}" list interfaces >"$CASE_DIR/interfaces.txt" 2>&1 || true
    note "dpservice ports: $(awk '/^dpdk_ethdev_packets_total/ && $2 > 0 { printf "%s=%s ", $1, $2 }' "$CASE_DIR/metrics.txt" |
        sed 's/dpdk_ethdev_packets_total//g')"
    note "dpservice drops: $(awk '/^dpservice_drops_by_reason_total/ && $2 > 0 { printf "%s=%s ", $1, $2 }' "$CASE_DIR/metrics.txt" |
        sed 's/dpservice_drops_by_reason_total//g')"
    stop "$daemon" 10
    note "dpservice $(sed 's/\x1b\[[0-9;]*m//g' "$CASE_DIR/dpservice.log" | grep -o 'stats:.*' | tail -1)"
    note "dpservice $(sed 's/\x1b\[[0-9;]*m//g' "$CASE_DIR/dpservice.log" | grep -o 'worker stopped.*' | tail -1)"
}

# (b) testpmd io-forward between two net_vhost ports
fwd_testpmd() {
    local vu=$CASE_DIR/vhost-user
    SIDE_NAME=theirs TOOL=testpmd-vhost
    mkdir -p "$vu"
    # Two lcores (main + one forwarding) both on FWD_CPU, the whole process there too.
    local cmd=(taskset -c "$FWD_CPU" dpdk-testpmd --lcores "0@$FWD_CPU,1@$FWD_CPU" "${MEM_ARGS[@]}"
        --no-pci --file-prefix="$RID-fwd-$N"
        "--vdev=net_vhost0,iface=$vu/vhost0,queues=1" "--vdev=net_vhost1,iface=$vu/vhost1,queues=1"
        -- --forward-mode=io --nb-cores=1 --total-num-mbufs=32768 --stats-period=5 --auto-start)
    echo "${cmd[*]}" >"$CASE_DIR/testpmd.cmd"
    bg "$CASE_DIR/testpmd.log" $((FLOOD_BOUND + 60)) "${cmd[@]}"
    local pmd=$BG_PID
    wait_for 30 "testpmd to start forwarding" grep -q 'io packet forwarding - ports=2' "$CASE_DIR/testpmd.log"
    wait_for 10 "the vhost-user sockets" test -S "$vu/vhost0" -a -S "$vu/vhost1"
    gen_start "$vu/vhost0" "$vu/vhost1" "$SIZE" "$OTHER_MAC" "$OTHER_MAC"
    measure "$pmd"
    alive "$pmd" || fail "testpmd died during the run: $(tail -5 "$CASE_DIR/testpmd.log")"
    stop "$pmd" 10
    grep -A3 'Accumulated forward statistics' "$CASE_DIR/testpmd.log" | sed -n '2,3p' |
        sed 's/^ */# testpmd-vhost total: /' >&2 || true
}

# (c) Open vSwitch, DPDK datapath
fwd_ovs() {
    local hv=$RID-$N-hv odir=$CASE_DIR/ovs db vsctl ofctl br=${RID}br mask
    SIDE_NAME=theirs TOOL=ovs-dpdk
    mkns "$hv"
    mkdir -p "$odir"
    # Everything OVS reads or writes stays in $odir (never /etc/openvswitch or /var/run).
    export OVS_RUNDIR=$odir OVS_DBDIR=$odir OVS_LOGDIR=$odir OVS_SYSCONFDIR=$odir \
        OVS_PKGDATADIR=/usr/share/openvswitch
    db=unix:$odir/db.sock
    vsctl=(timeout -k 2 30 ovs-vsctl "--db=$db" --timeout=20)
    ofctl=(timeout -k 2 30 ovs-ofctl)
    mask=$(printf '0x%x' $((1 << FWD_CPU)))
    timeout 20 ovsdb-tool create "$odir/conf.db" /usr/share/openvswitch/vswitch.ovsschema ||
        fail "ovsdb-tool create"
    bg "$odir/ovsdb-server.out" $((FLOOD_BOUND + 120)) ip netns exec "$hv" ovsdb-server "$odir/conf.db" \
        "--remote=punix:$odir/db.sock" "--unixctl=$odir/ovsdb-server.ctl" \
        "--pidfile=$odir/ovsdb-server.pid" "--log-file=$odir/ovsdb-server.log" --no-chdir
    local dbsrv=$BG_PID
    wait_for 20 "ovsdb-server" test -S "$odir/db.sock"
    "${vsctl[@]}" --no-wait init &&
        "${vsctl[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
            "other_config:dpdk-extra=$OVS_MEM --no-pci --file-prefix=$RID-ovs-$N" \
            "other_config:dpdk-lcore-mask=$mask" "other_config:pmd-cpu-mask=$mask" ||
        fail "ovs-vsctl init"
    bg "$odir/ovs-vswitchd.out" $((FLOOD_BOUND + 120)) ip netns exec "$hv" taskset -c "$FWD_CPU" \
        "$OVS_DPDK" "$db" --disable-system --disable-system-route "--unixctl=$odir/ovs-vswitchd.ctl" \
        "--pidfile=$odir/ovs-vswitchd.pid" "--log-file=$odir/ovs-vswitchd.log" --no-chdir
    local vswitchd=$BG_PID
    wait_for 30 "ovs-vswitchd" test -S "$odir/ovs-vswitchd.ctl"
    wait_for 30 "OVS to initialise DPDK" grep -q 'DPDK Enabled - initialized' "$odir/ovs-vswitchd.log"
    "${vsctl[@]}" add-br "$br" -- set bridge "$br" datapath_type=netdev &&
        "${vsctl[@]}" add-port "$br" vhu0 -- set Interface vhu0 type=dpdkvhostuser ofport_request=1 &&
        "${vsctl[@]}" add-port "$br" vhu1 -- set Interface vhu1 type=dpdkvhostuser ofport_request=2 ||
        fail "ovs-vsctl add-br/add-port: $(tail -5 "$odir/ovs-vswitchd.log")"
    "${ofctl[@]}" del-flows "$br" && "${ofctl[@]}" add-flow "$br" in_port=1,actions=output:2 ||
        fail "ovs-ofctl add-flow"
    wait_for 10 "OVS's vhost-user sockets" test -S "$odir/vhu0" -a -S "$odir/vhu1"
    gen_start "$odir/vhu0" "$odir/vhu1" "$SIZE" "$OTHER_MAC" "$OTHER_MAC"
    measure "$vswitchd"
    alive "$vswitchd" || fail "ovs-vswitchd died during the run: $(tail -5 "$odir/ovs-vswitchd.log")"
    timeout 20 ovs-appctl "--target=$odir/ovs-vswitchd.ctl" dpif-netdev/pmd-stats-show >"$odir/pmd-stats.txt" 2>&1 || true
    "${ofctl[@]}" dump-flows "$br" >"$odir/flows.txt" 2>&1 || true
    note "ovs flows: $(grep -o 'n_packets=[0-9]*.*' "$odir/flows.txt" | head -1)"
    "${vsctl[@]}" del-br "$br" >/dev/null 2>&1 || true
    stop "$vswitchd" 10
    stop "$dbsrv" 10
}

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
note "bench-vhost-pvp $RID: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $NCPU CPUs," \
    "kernel $(uname -r); forwarder on CPU $FWD_CPU, generator on CPU $GEN_CPU;" \
    "interval ${DURATION}s (warm-up ${WARMUP}s); sizes $SIZES; logs in $WORK"
note "load average at start: $(loadavg) (other work on the machine skews every figure)"
IDLE_BEFORE="?"
order=(testpmd ovs ours)
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    ((ROUNDS > 1)) && note "round $ROUND of $ROUNDS"
    if ((ROUND % 2 == 0)); then order=(ours ovs testpmd); else order=(testpmd ovs ours); fi
    for SIZE in ${SIZES//,/ }; do
        for t in "${order[@]}"; do
            want_tool "$t" || continue
            run_case "vhost_${SIZE}b_udp" "fwd_$t"
        done
    done
done

# COMPARE lines from the RESULT lines.
# value CASE TOOL: the median over the rounds of pps in the RESULT lines of CASE/TOOL.
value() {
    awk -v c="case=$1" -v t="tool=$2" '
        $1 == "RESULT" && $2 == c && $4 == t {
            for (i = 1; i <= NF; i++) if (index($i, "pps=") == 1) v[n++] = substr($i, 5) + 0
        }
        END {
            if (n == 0) exit
            for (i = 1; i < n; i++) for (j = i; j > 0 && v[j - 1] > v[j]; j--) { x = v[j]; v[j] = v[j - 1]; v[j - 1] = x }
            printf "%.0f\n", (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
        }' "$RESULTS"
}
# best CASE TOOL: the highest pps over the rounds (each forwarder in its best placement).
best() {
    awk -v c="case=$1" -v t="tool=$2" '
        $1 == "RESULT" && $2 == c && $4 == t {
            for (i = 1; i <= NF; i++) if (index($i, "pps=") == 1 && substr($i, 5) + 0 > m) m = substr($i, 5) + 0
        }
        END { if (m > 0) printf "%.0f\n", m }' "$RESULTS"
}
# BEST lines: the same comparison of the best rounds (with --rounds > 1), which the placement
# of the vCPUs (PLACEMENT lines) disturbs least.
best_of() { # name ours theirs
    [ -n "$2" ] && [ -n "$3" ] && emit "BEST case=$1 ours=$2 theirs=$3 unit=pps ratio=$(awk -v o="$2" \
        -v t="$3" 'BEGIN { printf "%.3f", o / t }')"
}
if want_tool ours; then
    for SIZE in ${SIZES//,/ }; do
        c=vhost_${SIZE}b_udp
        want_tool testpmd && compare "${c}_vs_testpmd" "$(value "$c" dpservice)" "$(value "$c" testpmd-vhost)" pps
        want_tool ovs && compare "${c}_vs_ovs_dpdk" "$(value "$c" dpservice)" "$(value "$c" ovs-dpdk)" pps
    done
    if ((ROUNDS > 1)); then
        for SIZE in ${SIZES//,/ }; do
            c=vhost_${SIZE}b_udp
            want_tool testpmd && best_of "${c}_vs_testpmd" "$(best "$c" dpservice)" "$(best "$c" testpmd-vhost)"
            want_tool ovs && best_of "${c}_vs_ovs_dpdk" "$(best "$c" dpservice)" "$(best "$c" ovs-dpdk)"
        done
    fi
fi
exit $((FAILED ? 1 : 0))
