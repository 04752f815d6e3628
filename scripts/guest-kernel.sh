#!/usr/bin/env bash
# The Linux kernel of the QEMU guests of the tests (crates/dpservice/tests/support/guest.rs):
# Debian's current linux-image-<version>-cloud-amd64, downloaded with `apt-get download` and
# unpacked with `dpkg-deb -x` into a cache directory — never installed, /boot is not touched.
# Prints the unpacked package root (it holds boot/vmlinuz-* and lib/modules/*/kernel/…).
#
# Usage: scripts/guest-kernel.sh            resolve the current package, fetch it unless cached
#        scripts/guest-kernel.sh --cached   only look in the cache (no apt; the tests use this)
#
# Cache: $DPSERVICE_GUEST_KERNEL_CACHE, default /var/cache/dpservice-rs-tests/kernel; one
# directory per package version, reused between runs.
set -euo pipefail

cache=${DPSERVICE_GUEST_KERNEL_CACHE:-/var/cache/dpservice-rs-tests/kernel}
mode=${1:-fetch}

# An unpacked package root in the cache, newest first by name.
cached() {
    local d
    for d in $(ls -1d "$cache"/linux-image-*/ 2>/dev/null | sort -rV); do
        if compgen -G "${d}boot/vmlinuz-*" >/dev/null; then
            printf '%s\n' "${d%/}"
            return 0
        fi
    done
    return 1
}

case "$mode" in
--cached)
    cached || {
        echo "guest-kernel.sh: no guest kernel in $cache (fetch it: sudo scripts/guest-kernel.sh)" >&2
        exit 1
    }
    exit 0
    ;;
fetch) ;;
*)
    echo "usage: $0 [--cached]" >&2
    exit 2
    ;;
esac

# linux-image-cloud-amd64 is the metapackage; it depends on the versioned image package.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }')
if [ -z "$pkg" ]; then
    # No package lists (or offline): a cached copy will do.
    if cached; then exit 0; fi
    echo "guest-kernel.sh: cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2
    exit 1
fi
ver=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2; exit }')
root="$cache/${pkg}_${ver}"
if compgen -G "$root/boot/vmlinuz-*" >/dev/null; then
    printf '%s\n' "$root"
    exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && timeout 300 apt-get -o APT::Sandbox::User=root download -qq "$pkg=$ver" >&2)
deb=$(ls "$tmp"/*.deb)
dpkg-deb -x "$deb" "$tmp/root"
compgen -G "$tmp/root/boot/vmlinuz-*" >/dev/null || {
    echo "guest-kernel.sh: $deb holds no boot/vmlinuz-*" >&2
    exit 1
}
rm -rf "$root"
mv "$tmp/root" "$root"
echo "guest-kernel.sh: unpacked $pkg $ver into $root" >&2
printf '%s\n' "$root"
