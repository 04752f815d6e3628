#!/usr/bin/env bash
# Runs ironcore dpservice's own pytest suite (test/local, the "base" set: every test_*.py with
# dpservice's usual command line) against our binaries, by hand — not part of .ci/run or
# scripts/test.sh. Results and failure causes: docs/compatibility.md, "ironcore's test/local suite".
#
# Usage: sudo scripts/run-dpservice-suite.sh [DPSERVICE_GIT_DIR_OR_CHECKOUT] [-- extra pytest args]
#   e.g. sudo scripts/run-dpservice-suite.sh /path/to/dpservice -- -k dhcp
#   Environment: DPSERVICE_SRC (instead of the first argument), SKIP_BUILD=1 (use the existing
#   target/release binaries), SUITE_TIMEOUT (seconds, default 1200), SUITE_LOG (output file).
#
# What it does:
# 1. builds `dpservice` and `dpservice-cli` (release);
# 2. exports dpservice's test/ directory into a temporary directory (never into this repo);
# 3. lays out a fake dpservice build directory there: src/dpservice-bin and
#    cli/dpservice-cli/dpservice-cli are symlinks to our binaries (the suite finds them with
#    --build-path); there is no dpservice-exporter, so test_telemetry errors;
# 4. runs `python3 -m pytest -v` (with `--virtsvc` when our `--help` lists `--udp-virtsvc`, as the
#    suite's runtest.py does) in a network namespace of its own (the suite's frames carry
#    public-looking addresses and its TAPs have fixed names), bounded by `timeout`;
# 5. deletes the namespace and the temporary directory, on failure too.
# DPSERVICE_ARGS: extra options of ours appended to the suite's command line (e.g.
# "--conntrack stateful"); dpservice-bin is then a wrapper script instead of a symlink.
# Needs root, iproute2, and Debian's python3-pytest and python3-scapy (installed if missing).
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
repo=$(cd "$(dirname "$0")/.." && pwd)

src=${DPSERVICE_SRC:-}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    src=$1
    shift
fi
[ "${1:-}" = "--" ] && shift
if [ -z "$src" ]; then
    echo "usage: $0 DPSERVICE_GIT_DIR_OR_CHECKOUT [-- pytest args] (or set DPSERVICE_SRC)" >&2
    exit 2
fi
[ "$(id -u)" = 0 ] || { echo "$0: must run as root (TAPs, network namespaces)" >&2; exit 2; }

PY=/usr/bin/python3 # Debian's, with its packages (a pyenv shim may stand first on PATH)
if ! $PY -c 'import pytest, scapy' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends python3-pytest python3-scapy >/dev/null
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$repo" && cargo build --release -p dpservice -p dpservice-cli)
fi
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/release
for b in dpservice dpservice-cli; do
    [ -x "$bin/$b" ] || { echo "$0: $bin/$b missing" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/dpservice-suite.XXXXXX)
ns=dpstest-$$
cleanup() {
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The suite's sources: from a bare git directory, a clone's .git, or a plain checkout.
if git --git-dir="$src" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    git --git-dir="$src" archive HEAD test | tar -x -C "$tmp"
    rev=$(git --git-dir="$src" rev-parse --short HEAD)
elif [ -d "$src/test/local" ]; then
    cp -r "$src/test" "$tmp/"
    rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
else
    echo "$0: $src is neither a dpservice git directory nor a checkout" >&2
    exit 2
fi
build=$tmp/build
mkdir -p "$build/src" "$build/cli/dpservice-cli"
if [ -n "${DPSERVICE_ARGS:-}" ]; then
    # Our options after the suite's own (they land after its `--`, among the app options).
    printf '#!/bin/sh\nexec %q "$@" %s\n' "$bin/dpservice" "$DPSERVICE_ARGS" >"$build/src/dpservice-bin"
    chmod +x "$build/src/dpservice-bin"
else
    ln -s "$bin/dpservice" "$build/src/dpservice-bin"
fi
ln -s "$bin/dpservice-cli" "$build/cli/dpservice-cli/dpservice-cli"

ip netns add "$ns"
ip -n "$ns" link set lo up
# scapy fills in an Ether source it is not given from the interface of the route to the
# destination; with no route at all it uses 00:00:00:00:00:00, which a dataplane drops. A dev
# machine has a default route: a veth pair inside gives the namespace one (nothing is sent there).
ip -n "$ns" link add dpsdflt type veth peer name dpsdflt1
ip -n "$ns" link set dpsdflt1 up
ip -n "$ns" link set dpsdflt up
ip -n "$ns" route add default dev dpsdflt
ip -n "$ns" -6 route add default dev dpsdflt 2>/dev/null || true
# As the suite's own runner (test/local/runtest.py, "base" set): virtual-service tests when
# --help offers them.
features=()
if "$bin/dpservice" --help 2>/dev/null | grep -q -- '--udp-virtsvc'; then
    features+=(--virtsvc)
fi
log=${SUITE_LOG:-$tmp/suite.log}
echo "dpservice test/local at $rev against $bin; namespace $ns; log $log"
set +e
(cd "$tmp/test/local" &&
    ip netns exec "$ns" timeout "${SUITE_TIMEOUT:-1200}" \
        $PY -m pytest -v -p no:cacheprovider --build-path="$build" "${features[@]}" "$@") 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo "pytest exit status: $status"
exit "$status"
