#!/usr/bin/env bash
# dpservice-rs demo: one hypervisor, three VMs (network namespaces on the daemon's TAPs).
#
#   vm1, vm2: VNI 100 (10.100.1.1, 10.100.1.2 / 2000:100:1::1, 2000:100:1::2)
#   vm3:      VNI 200 (10.200.1.3 / 2000:200:1::3)
#
# The VMs get their addresses from the dataplane by DHCP (busybox udhcpc on vm1, ISC dhclient on
# vm2 and vm3) and DHCPv6 (dhclient -6), their IPv6 default route by router advertisement.
# vm1 <-> vm2 must ping (same VNI), vm1 -> vm3 must not (other VNI).
#
# Usage: sudo scripts/demo.sh        (Debian 12, root; installs missing apt packages,
#                                     runs `cargo build --release`)
#   SKIP_BUILD=1  use the existing target/release binaries
#   KEEP=1        leave everything running until Enter is pressed (then clean up)
#   WORKERS=N     run the daemon with --workers N (flow affinity hands flows between them)
#
# Every wait is bounded; everything the demo creates has a name unique to this run and is
# removed on exit, however the script ends.
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (TAP devices, network namespaces): sudo $0"

# ---------------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }
have_udhcpc() { have udhcpc || { have busybox && busybox --list | grep -qx udhcpc; }; }
need=()
have ip || need+=(iproute2)
have_udhcpc || need+=(udhcpc)
have dhclient || need+=(isc-dhcp-client)
have ping || need+=(iputils-ping)
have unshare || need+=(util-linux)
have timeout || need+=(coreutils)
have cc || need+=(gcc libc6-dev) # the Rust linker
if ((${#need[@]})); then
    say "installing ${need[*]}"
    have apt-get || die "missing ${need[*]} and no apt-get to install them"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! have cargo && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
have cargo || die "cargo not found: install Rust (https://rustup.rs) first"
if have udhcpc; then UDHCPC=(udhcpc); else UDHCPC=(busybox udhcpc); fi

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    say "cargo build --release"
    cargo build --release --bin dpservice --bin dpservice-cli
fi
DPSERVICE=$TARGET/dpservice
CLI=$TARGET/dpservice-cli
if [ ! -x "$DPSERVICE" ] || [ ! -x "$CLI" ]; then die "no binaries in $TARGET (build failed?)"; fi

# ---------------------------------------------------------------------------------------------
# Names unique to this run, and the cleanup of everything they name
# ---------------------------------------------------------------------------------------------
TAG=dm$(printf '%x' $$)                   # dm + pid in hex: interface names stay <= 15 chars
NS_PREFIX=dps-demo-$$-
TMP=/tmp/dpservice-demo-$$
DAEMON_PID=
VMS=(vm1 vm2 vm3)

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for vm in "${VMS[@]}"; do
        local ns=$NS_PREFIX$vm
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"
        for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    for vm in "${VMS[@]}"; do
        ip netns del "$NS_PREFIX$vm" 2>/dev/null
        rm -rf "/etc/netns/$NS_PREFIX$vm"
    done
    rm -rf "$TMP"
    echo "demo: cleaned up (namespaces ${NS_PREFIX}*, daemon, $TMP)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of demos that were killed without cleanup (their pid is gone): daemon,
# namespaces and the processes in them, temporary directory.
for dir in /tmp/dpservice-demo-*; do
    [ -d "$dir" ] || continue
    pid=${dir##*-}
    kill -0 "$pid" 2>/dev/null && [ "$pid" != $$ ] && continue
    dpid=$(cat "$dir/daemon.pid" 2>/dev/null || true)
    if [ -n "$dpid" ] && [[ "$(readlink "/proc/$dpid/exe" 2>/dev/null)" == */dpservice* ]]; then
        kill -9 "$dpid" 2>/dev/null || true
    fi
    rm -rf "$dir"
done
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^dps-demo-' || true); do
    pid=${ns#dps-demo-}; pid=${pid%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    fi
done
mkdir -p "$TMP"

# ---------------------------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=1337
while port_in_use "$PORT"; do PORT=$((20000 + RANDOM % 40000)); done

DAEMON_ARGS=(--nic-type tap --pf0 "${TAG}p0" --pf1 "${TAG}p1" --vf-pattern "${TAG}v" --vf-count 3
    --ipv6 fc00:1::1 --grpc-port "$PORT" --dhcp-mtu 1400 --dhcp-dns 10.0.0.53
    --dhcpv6-dns 2001:db8::53 --enable-ipv6-overlay --no-stats --workers "${WORKERS:-1}")
say "starting: dpservice ${DAEMON_ARGS[*]}"
"$DPSERVICE" "${DAEMON_ARGS[@]}" >"$TMP/dpservice.log" 2>&1 &
DAEMON_PID=$!
echo "$DAEMON_PID" >"$TMP/daemon.pid"
ready=
for _ in $(seq 100); do # 10 s
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$TMP/dpservice.log" >&2; die "the daemon exited"; }
    if port_in_use "$PORT" && [ -e "/sys/class/net/${TAG}v2" ]; then ready=1; break; fi
    sleep 0.1
done
[ -n "$ready" ] || { cat "$TMP/dpservice.log" >&2; die "the daemon did not become ready in 10 s"; }

cli() { timeout 15 "$CLI" --address "localhost:$PORT" "$@"; }
say "dpservice-cli init; create interface vm1 vm2 (VNI 100), vm3 (VNI 200)"
cli init
cli create interface --id vm1 --vni 100 --ipv4 10.100.1.1 --ipv6 2000:100:1::1 --device "${TAG}v0" --hostname vm1
cli create interface --id vm2 --vni 100 --ipv4 10.100.1.2 --ipv6 2000:100:1::2 --device "${TAG}v1" --hostname vm2
cli create interface --id vm3 --vni 200 --ipv4 10.200.1.3 --ipv6 2000:200:1::3 --device "${TAG}v2" --hostname vm3
cli list interfaces

# ---------------------------------------------------------------------------------------------
# VMs
# ---------------------------------------------------------------------------------------------
cat >"$TMP/udhcpc.script" <<'EOF'
#!/bin/sh
# Apply the lease: address, MTU, RFC 3442 classless static routes (no router option is sent).
case "$1" in
deconfig) ip link set dev "$interface" up; ip -4 addr flush dev "$interface" ;;
bound|renew)
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-32}" dev "$interface"
    set -- $staticroutes
    while [ $# -ge 2 ]; do
        if [ "$2" = 0.0.0.0 ]; then ip -4 route replace "$1" dev "$interface"
        else ip -4 route replace "$1" via "$2" dev "$interface" onlink; fi
        shift 2
    done
    [ -n "$dns" ] && printf 'nameserver %s\n' $dns >/etc/resolv.conf
    ;;
esac
exit 0
EOF
chmod +x "$TMP/udhcpc.script"
cat >"$TMP/dhclient4.conf" <<'EOF'
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name-servers, host-name,
        interface-mtu, rfc3442-classless-static-routes;
timeout 20;
EOF
printf 'request dhcp6.name-servers;\ntimeout 20;\n' >"$TMP/dhclient6.conf"

# vmx VM cmd...: run in the VM's namespace; `unshare --uts` keeps dhclient-script off the
# host's hostname, /etc/netns/<ns>/resolv.conf keeps it off the host's resolv.conf.
vmx() { local vm=$1; shift; ip netns exec "$NS_PREFIX$vm" "$@"; }
ifname() { case $1 in vm1) echo "${TAG}v0" ;; vm2) echo "${TAG}v1" ;; vm3) echo "${TAG}v2" ;; esac; }

for vm in "${VMS[@]}"; do
    ns=$NS_PREFIX$vm; dev=$(ifname "$vm")
    ip netns add "$ns"
    mkdir -p "/etc/netns/$ns" && : >"/etc/netns/$ns/resolv.conf"
    ip link set "$dev" netns "$ns"
    vmx "$vm" sh -c "echo 0 > /proc/sys/net/ipv6/conf/$dev/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/$dev/accept_ra"
    vmx "$vm" ip link set lo up
    vmx "$vm" ip link set "$dev" up
done

say "DHCPv4: udhcpc on vm1, dhclient on vm2 and vm3"
vmx vm1 timeout 30 "${UDHCPC[@]}" -f -q -n -t 5 -T 2 -i "$(ifname vm1)" -s "$TMP/udhcpc.script" \
    -O staticroutes -O mtu >"$TMP/udhcpc.log" 2>&1 || { cat "$TMP/udhcpc.log"; die "udhcpc on vm1 failed"; }
for vm in vm2 vm3; do
    : >"$TMP/$vm.leases"
    # -1: try once; dhclient goes to the background once bound (killed at cleanup).
    vmx "$vm" timeout 30 unshare --uts dhclient -4 -1 -cf "$TMP/dhclient4.conf" \
        -pf "$TMP/$vm.pid" -lf "$TMP/$vm.leases" "$(ifname "$vm")" >"$TMP/$vm.dhclient.log" 2>&1 ||
        { cat "$TMP/$vm.dhclient.log"; die "dhclient on $vm failed"; }
done

say "DHCPv6 (dhclient -6) and router advertisements"
for vm in "${VMS[@]}"; do
    dev=$(ifname "$vm")
    for _ in $(seq 100); do # link-local DAD, at most 10 s
        vmx "$vm" ip -6 addr show dev "$dev" scope link | grep -q 'inet6 fe80' &&
            ! vmx "$vm" ip -6 addr show dev "$dev" scope link | grep -q tentative && break
        sleep 0.1
    done
    : >"$TMP/$vm.leases6"
    vmx "$vm" timeout 30 unshare --uts dhclient -6 -1 -cf "$TMP/dhclient6.conf" \
        -pf "$TMP/$vm.pid6" -lf "$TMP/$vm.leases6" "$dev" >"$TMP/$vm.dhclient6.log" 2>&1 ||
        { cat "$TMP/$vm.dhclient6.log"; die "dhclient -6 on $vm failed"; }
done
for vm in "${VMS[@]}"; do
    for _ in $(seq 150); do # RA, at most 15 s
        vmx "$vm" ip -6 route show default | grep -q 'via fe80::1' && break
        sleep 0.1
    done
done

say "addresses and routes"
for vm in "${VMS[@]}"; do
    dev=$(ifname "$vm")
    echo "--- $vm ($NS_PREFIX$vm)"
    vmx "$vm" ip -br addr show dev "$dev"
    vmx "$vm" ip -o link show dev "$dev" | grep -o 'mtu [0-9]*'
    vmx "$vm" ip -4 route show | sed 's/^/  /'
    vmx "$vm" ip -6 route show default | sed 's/^/  /'
done

# ---------------------------------------------------------------------------------------------
# Pings
# ---------------------------------------------------------------------------------------------
results=()
failed=0
check() { # check <expect: ok|blocked> <from> <to-addr> <description>
    local expect=$1 vm=$2 dst=$3 what=$4 got
    if vmx "$vm" timeout 10 ping -n -c 3 -i 0.2 -W 1 "$dst" >"$TMP/ping.log" 2>&1; then got=ok; else got=blocked; fi
    sed 's/^/    /' "$TMP/ping.log" | grep -E 'bytes from|transmitted' || true
    if [ "$got" = "$expect" ]; then
        results+=("PASS  $what: $got")
    else
        results+=("FAIL  $what: $got, expected $expect")
        failed=1
    fi
}
say "ping vm1 <-> vm2 (same VNI: must work)"
check ok vm1 10.100.1.2 "vm1 -> vm2  10.100.1.2"
check ok vm2 10.100.1.1 "vm2 -> vm1  10.100.1.1"
check ok vm1 2000:100:1::2 "vm1 -> vm2  2000:100:1::2"
check ok vm2 2000:100:1::1 "vm2 -> vm1  2000:100:1::1"
say "ping vm1 -> vm3 (other VNI: must fail)"
check blocked vm1 10.200.1.3 "vm1 -> vm3  10.200.1.3 (VNI 100 -> 200)"
check blocked vm1 2000:200:1::3 "vm1 -> vm3  2000:200:1::3 (VNI 100 -> 200)"

echo
say "summary"
for vm in "${VMS[@]}"; do
    printf '  %s: %s\n' "$vm" "$(vmx "$vm" ip -br addr show dev "$(ifname "$vm")" | awk '{$1=$2=""; print}' | sed 's/^ *//')"
done
printf '  %s\n' "${results[@]}"
if [ "$failed" = 0 ]; then
    echo "demo: all checks passed"
else
    echo "demo: SOME CHECKS FAILED (daemon log: last lines below)"
    tail -n 30 "$TMP/dpservice.log"
fi
if [ "${KEEP:-0}" = 1 ]; then
    echo "KEEP=1: try e.g. 'ip netns exec ${NS_PREFIX}vm1 ping 10.100.1.2' or"
    echo "        '$CLI --address localhost:$PORT list interfaces'; press Enter to clean up"
    read -r _ || true
fi
exit "$failed"
