#!/usr/bin/env bash
# Fetches Debian's cloud kernel package with `apt-get download` and unpacks it with `dpkg -x` into
# tools/vm/cache/ (nothing is installed on the machine). Prints the unpacked root on stdout.
#
# The package is resolved through the linux-image-cloud-amd64 metapackage, so the rig follows the
# distribution's current kernel; set RIG_KERNEL_PKG=linux-image-6.1.0-NN-cloud-amd64 to pin one.
# A cached unpacked tree is reused as long as it matches the resolved package name.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/cache"
mkdir -p "$cache"

resolve() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

pkg="${RIG_KERNEL_PKG:-$(resolve)}"
if [ -z "$pkg" ]; then
    # No package lists yet (a fresh machine whose setup installed nothing): read them once.
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    pkg="$(resolve)"
fi
if [ -z "$pkg" ]; then
    # Offline, but an earlier run left a kernel: use the newest one.
    last="$(ls -d "$cache"/linux-image-*/ 2>/dev/null | sort -V | tail -n1)"
    [ -n "$last" ] || { echo "fetch-kernel: cannot resolve linux-image-cloud-amd64; run apt-get update" >&2; exit 1; }
    echo "fetch-kernel: offline, using cached ${last%/}" >&2
    echo "${last%/}"; exit 0
fi

root="$cache/$pkg"
if [ -f "$root/.complete" ]; then
    echo "$root"; exit 0
fi

rm -rf "$root" "$cache"/dl
mkdir -p "$cache/dl"
# apt-get download writes into the current directory; as root it warns that _apt cannot write there.
if ! (cd "$cache/dl" && apt-get download -q "$pkg" >&2 2> >(grep -v 'unsandboxed' >&2)); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    (cd "$cache/dl" && apt-get download -q "$pkg" >&2 2> >(grep -v 'unsandboxed' >&2))
fi
deb="$(ls "$cache"/dl/"$pkg"_*.deb)"
dpkg -x "$deb" "$root"
rm -rf "$cache/dl"
kver="$(ls "$root/lib/modules")"
[ -f "$root/boot/vmlinuz-$kver" ] || { echo "fetch-kernel: $deb has no vmlinuz-$kver" >&2; exit 1; }
# modules.dep is made by depmod at install time, not shipped: make it here (the initramfs builder
# reads the dependency order from it through `modprobe --show-depends`).
depmod -b "$root" "$kver"
touch "$root/.complete"
echo "$root"
