#!/usr/bin/env bash
# dpservice-rs side-by-side benchmark (issue #4, "Side-by-side, one run").
# (vhost-user VM ports, issue #14's PVP setup: scripts/bench-vhost-pvp.sh.)
#
# On the same kind of ports, one run measures:
#
#   (a) DPDK's dpdk-testpmd in io-forward mode between two vdev ports (net_tap, net_af_packet,
#       net_af_xdp), versus
#   (b) our daemon forwarding VM -> VM (one VNI) between the same kind of ports,
#
# with the same traffic: a 64-byte UDP flood (64 bytes of Ethernet frame, as dpservice-bench's
# size=64) sent by trafgen (netsniff-ng) from the "VM A" namespace to "VM B", one forwarding
# thread (pinned to CPU $FWD_CPU, the generator to CPU 0), counted as packets/s received by B's
# interface over a fixed interval. B drops the flood at its ingress hook (nftables), the same
# way in both cases. Port kinds:
#
#   tap        the forwarder creates two TAPs; their kernel sides are moved into A and B
#   af_packet  two veth pairs: the forwarder opens the host ends, the other ends are in A and B
#   af_xdp     the same veths, opened with AF_XDP (copy mode on veth)
#
#   (c) iperf3 TCP A -> B (one stream) through our daemon (TAP ports), through a Linux bridge
#       (veth pairs into a bridge), and through Open vSwitch's userspace datapath
#       (datapath_type=netdev, userspace-tso-enable=true, tap ports), its own ovsdb-server and
#       ovs-vswitchd started here with a private run/db directory and stopped at the end.
#
# It prints one `RESULT ...` line per measurement and, per pair,
#   COMPARE case=<name> ours=<x> theirs=<x> unit=<pps|Gbit/s> ratio=<ours/theirs>
# (cases tap_64b_udp, af_packet_64b_udp, af_xdp_64b_udp, iperf3_tcp_vs_bridge, iperf3_tcp_vs_ovs).
# A measurement that could not be made is a `FAIL ...` line (with its log) and exit status 1;
# the others still run.
#
# Usage: sudo scripts/bench-compare.sh [options]
#   --quick            short intervals (smoke run; numbers are rough)
#   --cases LIST       comma-separated subset of: tap,af_packet,af_xdp,iperf3  (default: all)
#   --side SIDE        ours | theirs | both (default both): "theirs" = testpmd, bridge, OVS
#   --duration S       measuring interval of each pps case, seconds (default 10; quick 3)
#   --iperf-time S     iperf3 -t (default 10; quick 4)
#   --no-build         do not run `cargo build --release` (use target/release as it is)
#   --install-deps     apt-get install the missing Debian packages first
#   --rounds N         repeat every measurement N times, alternating sides (default 1); the
#                      COMPARE lines use the medians
#   --wait-idle S      before each case, wait up to S seconds for the machine to be idle
#                      (>= 85% idle over 2 s; for shared machines: other load skews figures);
#                      and measure a pps case again (twice at most, after waiting for idle
#                      again) when other processes used more than --max-others during it
#   --max-others PCT   CPU use by other processes (% of one CPU) that makes a pps interval
#                      count as disturbed (default 10; only with --wait-idle)
#   --keep             keep the log directory (always kept when something failed)
#   --bare-tap         iperf3 case: also through a bare TAP forwarder (scripts/tap-bare-forwarder.c,
#                      built here with cc: IFF_VNET_HDR + TUNSETOFFLOAD, one blocking read/write
#                      thread per direction, nothing else): the ceiling of any TAP read/write
#                      dataplane on this machine (RESULT side=theirs tool=tap-bare-forwarder,
#                      COMPARE iperf3_tcp_vs_bare)
# Environment: FWD_CPU (default: the last CPU) for the forwarder; the generator uses CPU 0.
#   DAEMON_ARGS: extra options for our daemon (e.g. "--no-tap-offload"), word-split.
#   BASE_DAEMON: another build of our daemon (a dpservice binary, e.g. a copy of main's): every
#   "ours" case runs again with it (side=base; after ours in odd rounds, before in even ones),
#   and COMPARE <case>_vs_base lines give ours/base: an A/B comparison in the same minutes
#   (this machine's speed drifts; a wrapper script that sets variables and execs works too).
#   TESTPMD_AF_XDP_DEVARGS: extra net_af_xdp device arguments (e.g. "busy_budget=0" turns off
#   the PMD's preferred busy polling, on by default).
#
#
# CPU use: each pps RESULT line also says where the CPU time went during the interval:
# gen_core / fwd_core = how busy the generator's and the forwarder's CPUs were (/si: of which
# softirq), trafgen_run / fwd_run = on-CPU time of the generator and of the forwarder process
# (all threads; % of one CPU; softirq work done on their behalf is not in it), *_wait = time
# they were runnable but waiting for the CPU, others = CPU time of every other user-space
# process (other work on the machine: a figure taken with others > a few % is disturbed), and
# attempts = the measurements made (see --wait-idle). A forwarder that polls shows ~100%
# fwd_run whatever its load; ours also logs at exit how much of its time went to rounds that
# received frames (`worker stopped ... busy_pct=`), printed after its RESULT line.
#
# Everything is hermetic: every namespace, interface, bridge and directory has a name unique to
# this run; all traffic stays inside the namespaces created here (the forwarders run in a
# private "hypervisor" namespace, the VMs are two more); every run and every background
# process is bounded by `timeout`;
# a trap stops every process started here and removes everything, however the script ends.
# Not part of CI (CI runs `dpservice-bench --quick`); needs root, Debian 12 packages:
#   dpdk-dev librte-net-tap23 librte-net-af-packet23 librte-net-af-xdp23 netsniff-ng iperf3
#   openvswitch-switch nftables jq ethtool iproute2 util-linux
# (installing openvswitch-switch starts Debian's system OVS service where systemd runs; this
# script never talks to it: its own ovs-vswitchd runs with --disable-system in a namespace.)
# shellcheck disable=SC2015,SC2030,SC2031,SC2317 # `a && b || fail`; per-case subshells; trap-run functions
set -uo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PROG=bench-compare

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
ORIG_ARGS=$*
QUICK=0
CASES=tap,af_packet,af_xdp,iperf3
SIDE=both
DURATION=
IPERF_TIME=
BUILD=1
INSTALL=0
KEEP=0
BARE=0
ROUNDS=1
WAIT_IDLE=0
MAX_OTHERS=10
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --cases) CASES=${2:?--cases needs a list}; shift ;;
    --side) SIDE=${2:?--side needs ours|theirs|both}; shift ;;
    --duration) DURATION=${2:?--duration needs seconds}; shift ;;
    --iperf-time) IPERF_TIME=${2:?--iperf-time needs seconds}; shift ;;
    --no-build) BUILD=0 ;;
    --install-deps) INSTALL=1 ;;
    --keep) KEEP=1 ;;
    --bare-tap) BARE=1 ;;
    --rounds) ROUNDS=${2:?--rounds needs a count}; shift ;;
    --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift ;;
    --max-others) MAX_OTHERS=${2:?--max-others needs a percentage}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$PROG: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $WAIT_IDLE =~ ^[0-9]+$ ]] || { echo "$PROG: --wait-idle needs seconds" >&2; exit 2; }
[[ $MAX_OTHERS =~ ^[0-9]+$ ]] || { echo "$PROG: --max-others needs a percentage" >&2; exit 2; }
RETRIES=0
((WAIT_IDLE > 0)) && RETRIES=2
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "$PROG: --rounds needs a positive count" >&2; exit 2; }
case $SIDE in ours | theirs | both) ;; *) echo "$PROG: --side must be ours, theirs or both" >&2; exit 2 ;; esac
for c in ${CASES//,/ }; do
    case $c in tap | af_packet | af_xdp | iperf3) ;; *) echo "$PROG: unknown case '$c'" >&2; exit 2 ;; esac
done
if ((QUICK)); then
    WARMUP=1 DURATION=${DURATION:-3} IPERF_TIME=${IPERF_TIME:-4} IPERF_OMIT=1
else
    WARMUP=2 DURATION=${DURATION:-10} IPERF_TIME=${IPERF_TIME:-10} IPERF_OMIT=2
fi
# Longest a flood may take, measurements again included (bounds the forwarders' lifetime).
FLOOD_BOUND=$(((WARMUP + DURATION + 2 * WAIT_IDLE + 20) * (RETRIES + 1)))
want_case() { [[ ",$CASES," == *",$1,"* ]]; }
want_side() { [ "$SIDE" = both ] || [ "$SIDE" = "$1" ]; }

if [ "$(id -u)" != 0 ]; then
    echo "$PROG: must run as root: it creates network namespaces, veths, TAPs and bridges and runs" \
        "dpdk-testpmd, Open vSwitch and the daemon. Try: sudo $0 $ORIG_ARGS" >&2
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# Packages and binaries
# ---------------------------------------------------------------------------------------------
missing=()
have ip || missing+=(iproute2)
have taskset || missing+=(util-linux)
have timeout || missing+=(coreutils)
have jq || missing+=(jq)
have nft || missing+=(nftables)
have ethtool || missing+=(ethtool)
have trafgen || missing+=(netsniff-ng)
have iperf3 || missing+=(iperf3)
have dpdk-testpmd || missing+=(dpdk-dev)
pmd_present tap || missing+=(librte-net-tap23)
pmd_present af_packet || missing+=(librte-net-af-packet23)
pmd_present af_xdp || missing+=(librte-net-af-xdp23)
{ have ovs-vswitchd && have ovsdb-server && have ovs-vsctl && have ovsdb-tool; } || missing+=(openvswitch-switch)
if ((${#missing[@]})); then
    if ((INSTALL)); then
        echo "# installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get update -qq &&
            timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
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
if want_side ours; then
    if ((BUILD)); then
        if ! have cargo && [ -f "$HOME/.cargo/env" ]; then
            # shellcheck disable=SC1091
            . "$HOME/.cargo/env"
        fi
        if have cargo; then
            echo "# cargo build --release --bin dpservice --bin dpservice-cli" >&2
            timeout 3600 cargo build --release --bin dpservice --bin dpservice-cli >&2 ||
                { echo "$PROG: cargo build failed" >&2; exit 1; }
        else
            echo "# cargo not found: using the binaries in $TARGET as they are" >&2
        fi
    fi
    [ -x "$DAEMON" ] && [ -x "$CLI" ] ||
        { echo "$PROG: no $DAEMON / $CLI (build with cargo build --release)" >&2; exit 1; }
fi

NCPU=$(nproc)
GEN_CPU=0 # trafgen binds its (single) worker to CPU 0 itself
FWD_CPU=${FWD_CPU:-$((NCPU - 1))}
((NCPU >= 2)) || echo "# warning: one CPU only: generator and forwarder share it" >&2

# ---------------------------------------------------------------------------------------------
# Names unique to this run; logs; results
# ---------------------------------------------------------------------------------------------
RID=bc$(printf '%04x' $((($$ ^ RANDOM) & 0xffff))) # interface names: RID + 2 chars <= 15
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.$RID.XXXX") || exit 1
RESULTS=$WORK/results
: >"$RESULTS"
FAILED=0
CUR_CASE_PID=
if want_side ours; then
    # A private copy: a rebuild during the run (cargo replaces target/release/*) cannot mix
    # versions between cases.
    mkdir -p "$WORK/bin" && cp "$DAEMON" "$CLI" "$WORK/bin/" || { echo "$PROG: cannot copy the binaries" >&2; exit 1; }
    note "daemon: $DAEMON ($(stat -c %y "$DAEMON" | cut -d. -f1)), copied to $WORK/bin"
    DAEMON=$WORK/bin/dpservice CLI=$WORK/bin/dpservice-cli
fi
if [ -n "${BASE_DAEMON:-}" ] && want_side ours; then
    [ -x "$BASE_DAEMON" ] || { echo "$PROG: BASE_DAEMON=$BASE_DAEMON is not an executable" >&2; exit 1; }
    cp "$BASE_DAEMON" "$WORK/bin/dpservice-base" || { echo "$PROG: cannot copy $BASE_DAEMON" >&2; exit 1; }
    note "base daemon (side=base): $BASE_DAEMON ($(stat -c %y "$BASE_DAEMON" | cut -d. -f1))"
    BASE_DAEMON=$WORK/bin/dpservice-base
fi
if ((BARE)) && want_case iperf3 && want_side theirs; then
    BARE_FWD=$WORK/bin/tap-bare-forwarder
    mkdir -p "$WORK/bin" && timeout 120 cc -O2 -pthread -o "$BARE_FWD" "$ROOT/scripts/tap-bare-forwarder.c" ||
        { echo "$PROG: cannot build scripts/tap-bare-forwarder.c (--bare-tap needs cc)" >&2; exit 1; }
fi
read -ra EXTRA <<<"${DAEMON_ARGS:-}"
((${#EXTRA[@]})) && note "extra daemon options: ${EXTRA[*]}"
CASE_NO=0
GRPC_PORT=1337 # inside a private namespace: no clash with anything on the host


# Stops what is still running and removes everything named after this run.
sweep() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$RID-"); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    sleep 0.3
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$RID-"); do
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    done
    rm -rf /var/run/dpdk/"$RID"-*
}

# shellcheck disable=SC2317 # invoked by the trap
finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CUR_CASE_PID" ] && kill -0 "$CUR_CASE_PID" 2>/dev/null; then
        kill -TERM "$CUR_CASE_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$CUR_CASE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CUR_CASE_PID" 2>/dev/null
    fi
    sweep
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

# ---------------------------------------------------------------------------------------------
# Helpers for one case. A case runs in a subshell with its own cleanup (processes it started,
# namespaces it made), so a failing case leaves nothing behind for the next.
# ---------------------------------------------------------------------------------------------
CASE_PIDS=()
CASE_NS=()
CASE_DIR=
# nsx NS cmd...: a short command in a namespace (bounded).
# bg LOG SECONDS cmd...: starts cmd in the background, killed after SECONDS at the latest; sets
# BG_PID (the `timeout` wrapper, which passes SIGTERM on).
# stop PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 8); reaps it.
# shellcheck disable=SC2317 # invoked by the trap
case_cleanup() {
    local i ns pid
    for ((i = ${#CASE_PIDS[@]} - 1; i >= 0; i--)); do stop "${CASE_PIDS[i]}" 5; done
    for ns in "${CASE_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for ns in "${CASE_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf /var/run/dpdk/"$RID"-*
}
# wait_for SECONDS WHAT cmd...: polls cmd until it succeeds.
link_in() { ip -n "$1" link show "$2" >/dev/null 2>&1; }
counter() { nsx "$1" cat "/sys/class/net/$2/statistics/$3"; }
mac_of() { nsx "$1" cat "/sys/class/net/$2/address"; }
now() { date +%s.%N; }
# idle_pct SECONDS: how idle all CPUs were over the next SECONDS (percent, from /proc/stat).
# sched_ns PID...: on-CPU and run-queue-wait nanoseconds of every thread of these processes.
sched_ns() {
    local p
    for p; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{ r += $1; w += $2 } END { printf "%.0f %.0f\n", r, w }'
}
# others_ticks PID...: user+system clock ticks of every user-space process but these (kernel
# threads, e.g. ksoftirqd, are part of what is measured): other work on the machine.
others_ticks() {
    awk -v skip=" $* " '{
        pid = $1; sub(/^.*\) /, "")   # fields after the command name: $1 = state
        if ((int($7) / 2097152) % 2 == 1 || index(skip, " " pid " ")) next   # PF_KTHREAD
        t += $12 + $13
    } END { printf "%.0f\n", t }' /proc/[0-9]*/stat 2>/dev/null
}
# cpu_ticks CPU: "busy softirq total" clock ticks of that CPU.
cpu_ticks() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
# With --wait-idle: waits (bounded) for the machine to be >= 85% idle; sets IDLE_BEFORE.

# run_case NAME function args...: runs one case in a subshell; a failure is reported, not fatal.
run_case() {
    local name=$1 rc
    shift
    CASE_NO=$((CASE_NO + 1))
    wait_idle
    note "case $name ($*) — load average $(loadavg), ${IDLE_BEFORE}% idle before"
    (
        CASE=$name
        CASE_DIR=$WORK/$CASE_NO-$name
        mkdir -p "$CASE_DIR"
        N=$CASE_NO
        trap case_cleanup EXIT
        trap 'exit 143' TERM
        trap 'exit 130' INT
        "$@"
    ) &
    CUR_CASE_PID=$!
    wait "$CUR_CASE_PID"
    rc=$?
    CUR_CASE_PID=
    if ((rc != 0)); then
        FAILED=1
        emit "FAIL case=$name rc=$rc logs=$WORK/$CASE_NO-$name"
    fi
}

# ---------------------------------------------------------------------------------------------
# Topology pieces
# ---------------------------------------------------------------------------------------------
# Namespaces of case N: the hypervisor (forwarder) and the two VMs.
names() {
    HV=$RID-$N-hv
    NA=$RID-$N-a
    NB=$RID-$N-b
    VF0=${RID}v0 VF1=${RID}v1 # the forwarder's VM ports (TAP names or host veth ends)
    IFA=${RID}a IFB=${RID}b   # the VM ends of the veths
    PF0=${RID}p0 PF1=${RID}p1
}

# veth pair HOST-END (in HV) <-> VM-END (in NS).
veth_to_vm() {
    ip -n "$HV" link add "$1" type veth peer name "$2" netns "$3" || fail "veth $1/$2"
    ip -n "$HV" link set "$1" up
    ip -n "$3" link set "$2" up
}

# Moves the TAP $1 (created in HV by the forwarder) into namespace $2 and brings it up.
tap_to_vm() {
    wait_for 20 "TAP $1 in $HV" link_in "$HV" "$1"
    ip -n "$HV" link set "$1" netns "$2" || fail "cannot move $1 into $2"
    ip -n "$2" link set "$1" up || fail "cannot bring $1 up in $2"
}

# Quiet VM interface for the flood: no IPv6 (no RS/MLD/DAD chatter).
quiet() { nsx "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"; }

# VM $1, interface $2, address $3/32, default route via the dataplane's gateway 169.254.0.1.
vm_static() {
    ip -n "$1" addr add "$3/32" dev "$2" &&
        ip -n "$1" route add 169.254.0.1 dev "$2" &&
        ip -n "$1" route add default via 169.254.0.1 dev "$2" || fail "addresses in $1"
}

# Our daemon in HV with nic-type $1, VM ports VF0/VF1 (+ uplinks PF0/PF1); waits for gRPC and
# creates vm1 (VF0, 10.100.1.1) and vm2 (VF1, 10.100.1.2) in VNI 100. $2: taskset CPU list or "".
start_daemon() {
    local nic=$1 cpus=$2 pin=() rc i
    [ -n "$cpus" ] && pin=(taskset -c "$cpus")
    bg "$CASE_DIR/dpservice.log" $((FLOOD_BOUND + 600)) ip netns exec "$HV" "${pin[@]}" "$DAEMON" \
        --nic-type "$nic" --pf0 "$PF0" --pf1 "$PF1" --vf-pattern "${RID}v" --vf-count 2 \
        --ipv6 fc00:1::1 --grpc-port "$GRPC_PORT" --no-stats "${EXTRA[@]}"
    DAEMON_PID=$BG_PID
    echo "ip netns exec $HV ${pin[*]} $DAEMON --nic-type $nic --pf0 $PF0 --pf1 $PF1" \
        "--vf-pattern ${RID}v --vf-count 2 --ipv6 fc00:1::1 --grpc-port $GRPC_PORT --no-stats" \
        "${EXTRA[*]}" >"$CASE_DIR/dpservice.cmd"
    for ((i = 0; i < 200; i++)); do
        alive "$DAEMON_PID" || fail "the daemon exited: $(tail -5 "$CASE_DIR/dpservice.log")"
        nsx "$HV" "$CLI" --address "localhost:$GRPC_PORT" init >>"$CASE_DIR/cli.log" 2>&1
        rc=$?
        ((rc == 0 || rc == 2)) && break
        sleep 0.1
    done
    ((rc == 0 || rc == 2)) || fail "no gRPC answer from the daemon after 20 s"
    nsx "$HV" "$CLI" --address "localhost:$GRPC_PORT" create interface --id vm1 --device "$VF0" \
        --vni 100 --ipv4 10.100.1.1 --ipv6 2000:100:1::1 >>"$CASE_DIR/cli.log" 2>&1 &&
        nsx "$HV" "$CLI" --address "localhost:$GRPC_PORT" create interface --id vm2 --device "$VF1" \
            --vni 100 --ipv4 10.100.1.2 --ipv6 2000:100:1::2 >>"$CASE_DIR/cli.log" 2>&1 ||
        fail "create interface failed: $(tail -3 "$CASE_DIR/cli.log")"
}
daemon_summary() { grep -o 'stats:.*' "$CASE_DIR/dpservice.log" | tail -1; }

# Configures A and B as VMs of our daemon and checks A -> B forwarding (which also makes the
# daemon learn both VMs' MACs). Sets GW_MAC (the gateway's MAC as A resolved it).
vms_of_daemon() {
    local ifa=$1 ifb=$2 i ok=0
    vm_static "$NA" "$ifa" 10.100.1.1
    vm_static "$NB" "$ifb" 10.100.1.2
    # On an existing interface (veth) the daemon knows a VM's MAC only from the VM's own
    # frames: let B speak first (ARP + ping to the gateway), or A's packets go to a placeholder.
    nsx "$NB" ping -c 1 -W 1 169.254.0.1 >>"$CASE_DIR/ping.log" 2>&1
    for ((i = 0; i < 10; i++)); do
        if nsx "$NA" ping -c 1 -W 1 10.100.1.2 >>"$CASE_DIR/ping.log" 2>&1; then ok=1; break; fi
        alive "$DAEMON_PID" || fail "the daemon exited: $(tail -5 "$CASE_DIR/dpservice.log")"
    done
    ((ok)) || fail "VM A cannot ping VM B through the daemon (see $CASE_DIR/ping.log)"
    GW_MAC=$(ip -n "$NA" neigh show 169.254.0.1 dev "$ifa" |
        awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1)}')
    [ -n "$GW_MAC" ] || fail "A has no neighbour entry for the gateway 169.254.0.1"
}

# B drops the flood (UDP to port 9) at its ingress hook: the receiver's cost is the same
# whatever the frames' MAC (io-forward does not rewrite it) and nothing answers.
sink() {
    nsx "$1" nft -f - <<EOF || fail "nft in $1"
table netdev bench {
    chain in {
        type filter hook ingress device "$2" priority 0; policy accept;
        meta protocol ip ip protocol udp udp dport 9 counter drop
    }
}
EOF
}

# flood A-IF B-IF DST-MAC: trafgen in A (CPU 0) for WARMUP + DURATION; measures B's rx rate
# and A's offered rate; emits the RESULT line for $CASE with side $SIDE_NAME.
flood() {
    local ifa=$1 ifb=$2 dmac=$3 smac cfg=$CASE_DIR/trafgen.cfg
    smac=$(mac_of "$NA" "$ifa") || fail "no MAC on $ifa"
    cat >"$cfg" <<EOF
/* 64-byte frame: Ethernet 14 + IPv4 20 + UDP 8 + 22 bytes of payload; checksums by trafgen */
{
  eth(da=$dmac, sa=$smac, type=0x0800),
  ipv4(saddr=10.100.1.1, daddr=10.100.1.2, ttl=64, df),
  udp(sp=4000, dp=9),
  fill(0x00, 22)
}
EOF
    sink "$NB" "$ifb"
    local attempt
    for ((attempt = 1; ; attempt++)); do
        flood_once "$ifa" "$ifb" "$cfg"
        # Other work on the machine during the interval: measure again (a bounded number of
        # times), after waiting for the machine to be idle.
        ((OTHERS > MAX_OTHERS && attempt <= RETRIES)) || break
        note "other processes used ${OTHERS}% of a CPU during the interval (> $MAX_OTHERS%): measuring again"
        wait_idle
    done
    emit "RESULT case=$CASE side=$SIDE_NAME tool=$TOOL pps=$PPS offered_pps=$OFFERED" \
        "round=$ROUND interval_s=$DURATION idle_before=$IDLE_BEFORE loadavg=$(loadavg | tr ' ' /) $CPU_USE attempts=$attempt"
}
# flood_once A-IF B-IF TRAFGEN-CFG: one trafgen run; sets PPS, OFFERED, CPU_USE and OTHERS.
flood_once() {
    local ifa=$1 ifb=$2 cfg=$3 gen r0 r1 t0 t1 o0 o1
    # -P 1: one worker (bound to CPU 0 by trafgen); -Q: never touch IRQ affinities.
    bg "$CASE_DIR/trafgen.log" $((WARMUP + DURATION + 10)) ip netns exec "$NA" \
        taskset -c "$GEN_CPU" trafgen -o "$ifa" -c "$cfg" -P 1 -Q
    gen=$BG_PID
    nap "$WARMUP"
    alive "$gen" || fail "trafgen exited: $(tail -5 "$CASE_DIR/trafgen.log")"
    # Where the CPU time went during the interval (see "CPU use" in the header).
    local gpid fwd=${FWD_PID:-} s0 s1 g0 g1 x0 x1 c00 c01 c10 c11
    # trafgen, and the worker process(es) it forks
    gpid=$(pgrep -P "$gen" | head -1)
    gpid="$gpid $(pgrep -P "${gpid:-0}" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # PID lists
    s0=$(sched_ns $fwd) g0=$(sched_ns $gpid) x0=$(others_ticks $fwd $gpid)
    c00=$(cpu_ticks "$GEN_CPU") c10=$(cpu_ticks "$FWD_CPU")
    o0=$(tx_offered "$NA" "$ifa") r0=$(counter "$NB" "$ifb" rx_packets) t0=$(now)
    nap "$DURATION"
    o1=$(tx_offered "$NA" "$ifa") r1=$(counter "$NB" "$ifb" rx_packets) t1=$(now)
    # shellcheck disable=SC2086 # PID lists
    s1=$(sched_ns $fwd) g1=$(sched_ns $gpid) x1=$(others_ticks $fwd $gpid)
    c01=$(cpu_ticks "$GEN_CPU") c11=$(cpu_ticks "$FWD_CPU")
    stop "$gen" 5
    PPS=$(awk -v a="$r0" -v b="$r1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
    OFFERED=$(awk -v a="$o0" -v b="$o1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
    [ "$PPS" -gt 0 ] || fail "B received nothing (offered $OFFERED pps)"
    OTHERS=$(awk -v x0="$x0" -v x1="$x1" -v s="$t0" -v e="$t1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f", 100 * (x1 - x0) / hz / (e - s) }')
    CPU_USE=$(awk -v s0="$s0" -v s1="$s1" -v g0="$g0" -v g1="$g1" -v o="$OTHERS" \
        -v a0="$c00" -v a1="$c01" -v b0="$c10" -v b1="$c11" -v t0="$t0" -v t1="$t1" \
        -v fwd="$fwd" 'BEGIN {
        split(s0, f0, " "); split(s1, f1, " "); split(g0, h0, " "); split(g1, h1, " ")
        split(a0, p0, " "); split(a1, p1, " "); split(b0, q0, " "); split(b1, q1, " ")
        pct = 1e7 * (t1 - t0)   # ns in 1 % of one CPU over the interval
        ct = p1[3] - p0[3]; cf = q1[3] - q0[3]
        if (ct < 1) ct = 1
        if (cf < 1) cf = 1
        printf "gen_core=%.0f%%/si%.0f%% fwd_core=%.0f%%/si%.0f%%",
            100 * (p1[1] - p0[1]) / ct, 100 * (p1[2] - p0[2]) / ct,
            100 * (q1[1] - q0[1]) / cf, 100 * (q1[2] - q0[2]) / cf
        printf " trafgen_run=%.0f%% trafgen_wait=%.0f%%", (h1[1] - h0[1]) / pct, (h1[2] - h0[2]) / pct
        if (fwd != "") printf " fwd_run=%.0f%% fwd_wait=%.0f%%", (f1[1] - f0[1]) / pct, (f1[2] - f0[2]) / pct
        printf " others=%d%%", o
    }')
}
# What A's interface was asked to send: sent + dropped at the device (a full TAP queue drops).
tx_offered() {
    local p d
    p=$(counter "$1" "$2" tx_packets) d=$(counter "$1" "$2" tx_dropped)
    echo $((p + d))
}

# ---------------------------------------------------------------------------------------------
# (a) testpmd io-forward, (b) our daemon: 64-byte UDP flood A -> B
# ---------------------------------------------------------------------------------------------
vdev_args() { # kind port-index ifname
    case $1 in
    tap) echo "--vdev=net_tap$2,iface=$3" ;;
    af_packet) echo "--vdev=net_af_packet$2,iface=$3" ;;
    af_xdp) echo "--vdev=net_af_xdp$2,iface=$3,start_queue=0,queue_count=1${TESTPMD_AF_XDP_DEVARGS:+,$TESTPMD_AF_XDP_DEVARGS}" ;;
    esac
}

pps_theirs() {
    local kind=$1 pmd
    names
    SIDE_NAME=theirs TOOL=testpmd
    mkns "$HV" && mkns "$NA" && mkns "$NB"
    if [ "$kind" != tap ]; then
        veth_to_vm "$VF0" "$IFA" "$NA"
        veth_to_vm "$VF1" "$IFB" "$NB"
    fi
    # Two lcores (main + one forwarding) both on FWD_CPU: the main lcore only prints stats.
    # The whole process on FWD_CPU too (as our daemon): EAL's other threads (interrupt
    # handling, e.g. net_tap's) would otherwise run on the CPUs the lcores leave free — the
    # generator's.
    # shellcheck disable=SC2046
    bg "$CASE_DIR/testpmd.log" $((FLOOD_BOUND + 60)) ip netns exec "$HV" taskset -c "$FWD_CPU" dpdk-testpmd \
        --lcores "0@$FWD_CPU,1@$FWD_CPU" --no-huge -m 512 --no-pci --file-prefix="$RID-$N" \
        $(vdev_args "$kind" 0 "$VF0") $(vdev_args "$kind" 1 "$VF1") -- \
        --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 --stats-period=5 --auto-start
    pmd=$BG_PID
    wait_for 30 "testpmd to start forwarding" grep -q 'packet forwarding - ports=2' "$CASE_DIR/testpmd.log"
    alive "$pmd" || fail "testpmd exited: $(tail -5 "$CASE_DIR/testpmd.log")"
    FWD_PID=$(pgrep -P "$pmd" | head -1)
    if [ "$kind" = tap ]; then
        tap_to_vm "$VF0" "$NA" && tap_to_vm "$VF1" "$NB"
        IFA=$VF0 IFB=$VF1
    fi
    quiet "$NA" "$IFA"
    quiet "$NB" "$IFB"
    # io-forward does not look at the frame: the destination MAC is B's, as a switch would send it.
    flood "$IFA" "$IFB" "$(mac_of "$NB" "$IFB")"
    alive "$pmd" || fail "testpmd died during the run: $(tail -5 "$CASE_DIR/testpmd.log")"
    stop "$pmd" 10
    grep -A3 'Accumulated forward statistics' "$CASE_DIR/testpmd.log" | sed -n '2p' |
        sed 's/^ */# testpmd total: /' >&2
}

pps_ours() {
    local kind=$1
    names
    SIDE_NAME=${OURS_SIDE:-ours} TOOL=dpservice
    mkns "$HV" && mkns "$NA" && mkns "$NB"
    if [ "$kind" != tap ]; then
        veth_to_vm "$VF0" "$IFA" "$NA"
        veth_to_vm "$VF1" "$IFB" "$NB"
        veth_to_vm "$PF0" "${RID}q0" "$HV" # uplinks: unused veth pairs
        veth_to_vm "$PF1" "${RID}q1" "$HV"
    fi
    start_daemon "$kind" "$FWD_CPU"
    if [ "$kind" = tap ]; then
        tap_to_vm "$VF0" "$NA" && tap_to_vm "$VF1" "$NB"
        IFA=$VF0 IFB=$VF1
    fi
    quiet "$NA" "$IFA"
    quiet "$NB" "$IFB"
    vms_of_daemon "$IFA" "$IFB"
    FWD_PID=$(pgrep -P "$DAEMON_PID" | head -1)
    flood "$IFA" "$IFB" "$GW_MAC"
    alive "$DAEMON_PID" || fail "the daemon died during the run: $(tail -5 "$CASE_DIR/dpservice.log")"
    stop "$DAEMON_PID" 10
    note "dpservice $(daemon_summary)"
    note "dpservice $(grep -o 'worker stopped.*' "$CASE_DIR/dpservice.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
}

# The generator's own ceiling on a veth: A's veth end paired straight with B's (no forwarder).
pps_ceiling() {
    names
    SIDE_NAME=none TOOL=direct-veth
    mkns "$NA" && mkns "$NB"
    ip -n "$NA" link add "$IFA" type veth peer name "$IFB" netns "$NB" || fail "veth"
    ip -n "$NA" link set "$IFA" up && ip -n "$NB" link set "$IFB" up
    quiet "$NA" "$IFA"
    quiet "$NB" "$IFB"
    FWD_PID=
    flood "$IFA" "$IFB" "$(mac_of "$NB" "$IFB")"
}

# ---------------------------------------------------------------------------------------------
# (c) iperf3 TCP A -> B: our daemon (TAP) vs Linux bridge vs OVS userspace datapath
# ---------------------------------------------------------------------------------------------
# iperf A-IP B-IP A-IF: one TCP stream A -> B; emits the RESULT line (Gbit/s received by B,
# and whether A's interface offers TSO).
iperf() {
    local srv gbps retr tso json=$CASE_DIR/iperf3.json
    nsx "$NA" ethtool -k "$3" >"$CASE_DIR/offloads-a.txt" 2>&1
    tso=$(awk '$1 == "tcp-segmentation-offload:" { print $2 }' "$CASE_DIR/offloads-a.txt")
    bg "$CASE_DIR/iperf3-server.log" $((IPERF_TIME + 60)) ip netns exec "$NB" iperf3 -s -1 -B "$2" -p 5201
    srv=$BG_PID
    wait_for 10 "iperf3 server" nsx "$NB" sh -c "ss -Hltn 'sport = :5201' | grep -q ."
    timeout -k 5 $((IPERF_TIME + 30)) ip netns exec "$NA" iperf3 -c "$2" -p 5201 \
        -t "$IPERF_TIME" -O "$IPERF_OMIT" -J >"$json" 2>"$CASE_DIR/iperf3-client.err" ||
        fail "iperf3 failed: $(jq -r '.error // empty' "$json" 2>/dev/null) $(tail -3 "$CASE_DIR/iperf3-client.err")"
    stop "$srv" 5
    gbps=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100' "$json") ||
        fail "no result in $json"
    retr=$(jq -r '.end.sum_sent.retransmits // "?"' "$json")
    emit "RESULT case=$CASE side=$SIDE_NAME tool=$TOOL gbit_s=$gbps retransmits=$retr vm_tso=${tso:-?}" \
        "round=$ROUND time_s=$IPERF_TIME idle_before=$IDLE_BEFORE loadavg=$(loadavg | tr ' ' /)"
}

iperf_ours() {
    names
    SIDE_NAME=${OURS_SIDE:-ours} TOOL=dpservice-tap
    mkns "$HV" && mkns "$NA" && mkns "$NB"
    start_daemon tap ""
    tap_to_vm "$VF0" "$NA" && tap_to_vm "$VF1" "$NB"
    vms_of_daemon "$VF0" "$VF1"
    iperf 10.100.1.1 10.100.1.2 "$VF0"
    alive "$DAEMON_PID" || fail "the daemon died during the run: $(tail -5 "$CASE_DIR/dpservice.log")"
    stop "$DAEMON_PID" 10
    note "dpservice $(daemon_summary)"
    note "dpservice $(grep -o 'worker stopped.*' "$CASE_DIR/dpservice.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
}

iperf_bridge() {
    names
    SIDE_NAME=theirs TOOL=linux-bridge
    mkns "$HV" && mkns "$NA" && mkns "$NB"
    ip -n "$HV" link add "${RID}br" type bridge || fail "bridge"
    ip -n "$HV" link set "${RID}br" up
    veth_to_vm "$VF0" "$IFA" "$NA"
    veth_to_vm "$VF1" "$IFB" "$NB"
    ip -n "$HV" link set "$VF0" master "${RID}br" && ip -n "$HV" link set "$VF1" master "${RID}br" ||
        fail "bridge ports"
    ip -n "$NA" addr add 10.100.1.1/24 dev "$IFA" && ip -n "$NB" addr add 10.100.1.2/24 dev "$IFB" ||
        fail "addresses"
    wait_for 10 "A to reach B over the bridge" nsx "$NA" ping -c 1 -W 1 10.100.1.2
    iperf 10.100.1.1 10.100.1.2 "$IFA"
}

iperf_ovs() {
    local odir=$CASE_DIR/ovs db vsctl
    names
    SIDE_NAME=theirs TOOL=ovs-netdev-tso
    mkns "$HV" && mkns "$NA" && mkns "$NB"
    mkdir -p "$odir"
    # Everything OVS reads or writes stays in $odir (never /etc/openvswitch or /var/run).
    export OVS_RUNDIR=$odir OVS_DBDIR=$odir OVS_LOGDIR=$odir OVS_SYSCONFDIR=$odir \
        OVS_PKGDATADIR=/usr/share/openvswitch
    db=unix:$odir/db.sock
    vsctl=(timeout -k 2 30 ovs-vsctl "--db=$db" --timeout=20)
    timeout 20 ovsdb-tool create "$odir/conf.db" /usr/share/openvswitch/vswitch.ovsschema ||
        fail "ovsdb-tool create"
    bg "$odir/ovsdb-server.out" 900 ip netns exec "$HV" ovsdb-server "$odir/conf.db" \
        "--remote=punix:$odir/db.sock" "--unixctl=$odir/ovsdb-server.ctl" \
        "--pidfile=$odir/ovsdb-server.pid" "--log-file=$odir/ovsdb-server.log" --no-chdir
    wait_for 20 "ovsdb-server" test -S "$odir/db.sock"
    "${vsctl[@]}" --no-wait init &&
        "${vsctl[@]}" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true ||
        fail "ovs-vsctl init"
    # --disable-system: no kernel datapath (none is touched, even if the module were loaded).
    bg "$odir/ovs-vswitchd.out" 900 ip netns exec "$HV" ovs-vswitchd "$db" --disable-system \
        --disable-system-route "--unixctl=$odir/ovs-vswitchd.ctl" \
        "--pidfile=$odir/ovs-vswitchd.pid" "--log-file=$odir/ovs-vswitchd.log" --no-chdir
    wait_for 20 "ovs-vswitchd" test -S "$odir/ovs-vswitchd.ctl"
    "${vsctl[@]}" add-br "${RID}br" -- set bridge "${RID}br" datapath_type=netdev &&
        "${vsctl[@]}" add-port "${RID}br" "$VF0" -- set Interface "$VF0" type=tap &&
        "${vsctl[@]}" add-port "${RID}br" "$VF1" -- set Interface "$VF1" type=tap ||
        fail "ovs-vsctl add-br/add-port: $(tail -5 "$odir/ovs-vswitchd.log")"
    grep -q 'Userspace TCP Segmentation Offloading support enabled' "$odir/ovs-vswitchd.log" ||
        fail "OVS did not enable userspace TSO"
    ip -n "$HV" link set "${RID}br" up
    # OVS's tap ports, moved into the VMs (OVS keeps their file descriptors; it logs warnings
    # about ioctls by name that no longer find them in its namespace: harmless here).
    tap_to_vm "$VF0" "$NA" && tap_to_vm "$VF1" "$NB"
    ip -n "$NA" addr add 10.100.1.1/24 dev "$VF0" && ip -n "$NB" addr add 10.100.1.2/24 dev "$VF1" ||
        fail "addresses"
    wait_for 10 "A to reach B over OVS" nsx "$NA" ping -c 1 -W 1 10.100.1.2
    iperf 10.100.1.1 10.100.1.2 "$VF0"
    "${vsctl[@]}" del-br "${RID}br" >/dev/null 2>&1
    stop "${CASE_PIDS[1]}" 10 # ovs-vswitchd
    stop "${CASE_PIDS[0]}" 10 # ovsdb-server
}

# The bare forwarder: two TAPs (made by it in HV), moved into A and B; L2 as it is.
iperf_bare() {
    names
    SIDE_NAME=theirs TOOL=tap-bare-forwarder
    mkns "$HV" && mkns "$NA" && mkns "$NB"
    bg "$CASE_DIR/tap-bare-forwarder.log" $((IPERF_TIME + 90)) ip netns exec "$HV" "$BARE_FWD" "$VF0" "$VF1"
    tap_to_vm "$VF0" "$NA" && tap_to_vm "$VF1" "$NB"
    ip -n "$NA" addr add 10.100.1.1/24 dev "$VF0" && ip -n "$NB" addr add 10.100.1.2/24 dev "$VF1" ||
        fail "addresses"
    wait_for 10 "A to reach B through the bare forwarder" nsx "$NA" ping -c 1 -W 1 10.100.1.2
    iperf 10.100.1.1 10.100.1.2 "$VF0"
}

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
note "bench-compare $RID: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $NCPU CPUs," \
    "kernel $(uname -r); forwarder on CPU $FWD_CPU, generator on CPU $GEN_CPU;" \
    "interval ${DURATION}s (warm-up ${WARMUP}s), iperf3 -t $IPERF_TIME; logs in $WORK"
note "load average at start: $(loadavg) (other work on the machine skews every figure)"

# With BASE_DAEMON, the base build runs after ours in odd rounds and before it in even ones (a
# drift of the machine's speed during the run then favours neither).
base_first() { [ -n "${BASE_DAEMON:-}" ] && ((ROUND % 2 == 0)); }
base_after() { [ -n "${BASE_DAEMON:-}" ] && ((ROUND % 2 == 1)); }
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    ((ROUNDS > 1)) && note "round $ROUND of $ROUNDS"
    for kind in tap af_packet af_xdp; do
        want_case "$kind" || continue
        want_side theirs && run_case "${kind}_64b_udp" pps_theirs "$kind"
        want_side ours && base_first && DAEMON=$BASE_DAEMON OURS_SIDE=base run_case "${kind}_64b_udp" pps_ours "$kind"
        want_side ours && run_case "${kind}_64b_udp" pps_ours "$kind"
        want_side ours && base_after && DAEMON=$BASE_DAEMON OURS_SIDE=base run_case "${kind}_64b_udp" pps_ours "$kind"
    done
    if ((ROUND == 1)) && { want_case af_packet || want_case af_xdp; }; then
        run_case veth_generator_ceiling pps_ceiling
    fi
    if want_case iperf3; then
        want_side theirs && run_case iperf3_tcp_bridge iperf_bridge
        want_side theirs && run_case iperf3_tcp_ovs iperf_ovs
        want_side theirs && ((BARE)) && run_case iperf3_tcp_bare iperf_bare
        want_side ours && base_first && DAEMON=$BASE_DAEMON OURS_SIDE=base run_case iperf3_tcp_ours iperf_ours
        want_side ours && run_case iperf3_tcp_ours iperf_ours
        want_side ours && base_after && DAEMON=$BASE_DAEMON OURS_SIDE=base run_case iperf3_tcp_ours iperf_ours
    fi
done

# COMPARE lines from the RESULT lines.
# value CASE SIDE FIELD: the median over the rounds of FIELD in the RESULT lines of CASE/SIDE.
value() {
    awk -v c="case=$1" -v s="side=$2" -v f="$3=" '
        $1 == "RESULT" && $2 == c && $3 == s {
            for (i = 1; i <= NF; i++) if (index($i, f) == 1) v[n++] = substr($i, length(f) + 1) + 0
        }
        END {
            if (n == 0) exit
            for (i = 1; i < n; i++) for (j = i; j > 0 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
            print (f == "pps=") ? sprintf("%.0f", m) : sprintf("%.2f", m)
        }' "$RESULTS"
}
if [ "$SIDE" = both ]; then
    for kind in tap af_packet af_xdp; do
        want_case "$kind" || continue
        compare "${kind}_64b_udp" "$(value "${kind}_64b_udp" ours pps)" "$(value "${kind}_64b_udp" theirs pps)" pps
    done
    if want_case iperf3; then
        ours=$(value iperf3_tcp_ours ours gbit_s)
        compare iperf3_tcp_vs_bridge "$ours" "$(value iperf3_tcp_bridge theirs gbit_s)" Gbit/s
        compare iperf3_tcp_vs_ovs "$ours" "$(value iperf3_tcp_ovs theirs gbit_s)" Gbit/s
        ((BARE)) && compare iperf3_tcp_vs_bare "$ours" "$(value iperf3_tcp_bare theirs gbit_s)" Gbit/s
    fi
fi
if [ -n "${BASE_DAEMON:-}" ] && want_side ours; then
    for kind in tap af_packet af_xdp; do
        want_case "$kind" || continue
        compare "${kind}_64b_udp_vs_base" "$(value "${kind}_64b_udp" ours pps)" "$(value "${kind}_64b_udp" base pps)" pps
    done
    want_case iperf3 && compare iperf3_tcp_vs_base "$(value iperf3_tcp_ours ours gbit_s)" \
        "$(value iperf3_tcp_ours base gbit_s)" Gbit/s
fi
exit $((FAILED ? 1 : 0))
