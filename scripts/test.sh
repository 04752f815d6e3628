#!/usr/bin/env bash
# The test command: every test of the workspace — unit, graph (memory ports) and, as root, the
# system tests (crates/dpservice/tests/system.rs: the real daemon on TAP ports, VMs as network
# namespaces, stock DHCP clients, ping; crates/dpservice/tests/multihost.rs: two daemons behind a
# router namespace, iperf3, tcpdump; crates/dpservice/tests/stateful.rs: NAT, VIP, firewall,
# NAT64 and neighbor NAT against an "internet" namespace; crates/dpservice/tests/capture.rs: packet
# capture, copies caught by tcpdump at a sink behind the uplink; crates/dpservice/tests/qemu_guest.rs:
# Linux guests under QEMU, see scripts/guest-kernel.sh). Fails if anything fails.
#
# Usage: sudo scripts/test.sh [extra `cargo test` arguments, e.g. -- --nocapture]
#
# As root it installs the tools the system tests need (apt) and forbids skipping them
# (DPSERVICE_REQUIRE_SYSTEM_TESTS=1). As another user the system tests print SKIPPED and pass.
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
have_udhcpc() { have udhcpc || { have busybox && busybox --list | grep -qx udhcpc; }; }

if [ "$(id -u)" = 0 ]; then
    need=()
    have ip || need+=(iproute2)
    have_udhcpc || need+=(udhcpc)
    have dhclient || need+=(isc-dhcp-client)
    have ping || need+=(iputils-ping)
    have unshare || need+=(util-linux)
    have iperf3 || need+=(iperf3)
    have tcpdump || need+=(tcpdump)
    have ethtool || need+=(ethtool)
    have promtool || need+=(prometheus)
    have tshark || need+=(tshark)
    [ -e /usr/include/pcap/pcap.h ] || need+=(libpcap-dev)
    have qemu-system-x86_64 || need+=(qemu-system-x86)
    dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
    if ((${#need[@]})); then
        echo "test.sh: installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get update -qq
        timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    # The QEMU guests' kernel (tests/support/guest.rs), unpacked into a cache unless there.
    scripts/guest-kernel.sh >/dev/null
    export DPSERVICE_REQUIRE_SYSTEM_TESTS=${DPSERVICE_REQUIRE_SYSTEM_TESTS:-1}
    echo "test.sh: running as root: the system tests run (skipping them is an error)"
else
    echo "test.sh: WARNING: not root: the system tests will print SKIPPED and pass" >&2
fi

if ! have cargo && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# The system tests run target/<profile>/dpservice-cli, which `cargo test` does not build for
# another package's tests: build every binary first (same profile, shared artifacts).
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints a "test result" line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;/) p += $(i-1); if ($(i) ~ /^failed;/) f += $(i-1) } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
