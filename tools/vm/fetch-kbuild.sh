#!/usr/bin/env bash
# Fetches what building Linux's NTB modules out of tree needs, for kernel version KVER (the rig's
# guest kernel, e.g. 6.1.0-57-cloud-amd64), with `apt-get download` + `dpkg -x` into tools/vm/cache/
# (nothing is installed on the machine):
#   - linux-headers-KVER, linux-headers-<abi>-common, linux-kbuild-6.1: the build tree for `make -C`
#   - linux-source-6.1: only drivers/ntb/ and drivers/net/ntb_netdev.c are taken from its tarball
#     (Linux's ntb.ko, ntb_transport.ko, ntb_netdev.ko, ntb_tool.ko, ntb_perf.ko, built unmodified)
# Prints two lines on stdout: the headers directory and the source subset directory.
#   fetch-kbuild.sh KVER
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/cache"
kver="$1"
abi="${kver%-cloud-amd64}"; abi="${abi%-amd64}"          # 6.1.0-57
flavour="${kver#"$abi"-}"                                 # cloud-amd64
series="$(echo "$kver" | cut -d. -f1,2)"                  # 6.1
root="$cache/kbuild-$kver"
src="$cache/linux-source-$series"
mkdir -p "$cache"

download() {   # download DIR PACKAGE...
    local dir="$1"; shift
    mkdir -p "$dir"
    if ! (cd "$dir" && apt-get download -q "$@" >&2 2> >(grep -v 'unsandboxed' >&2)); then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2
        (cd "$dir" && apt-get download -q "$@" >&2 2> >(grep -v 'unsandboxed' >&2))
    fi
}

if [ ! -f "$root/.complete" ]; then
    rm -rf "$root" "$cache/dl-kbuild"
    download "$cache/dl-kbuild" "linux-headers-$kver" "linux-headers-$abi-common" "linux-kbuild-$series"
    for deb in "$cache"/dl-kbuild/*.deb; do dpkg -x "$deb" "$root"; done
    rm -rf "$cache/dl-kbuild"
    # The flavour's Makefile includes the common tree by its absolute /usr/src path: point it here.
    sed -i "s|/usr/src/|$root/usr/src/|" "$root/usr/src/linux-headers-$kver/Makefile"
    [ -f "$root/usr/src/linux-headers-$kver/Makefile" ] || { echo "fetch-kbuild: no Makefile in linux-headers-$kver" >&2; exit 1; }
    touch "$root/.complete"
fi

if [ ! -f "$src/.complete" ]; then
    rm -rf "$src" "$cache/dl-src"
    download "$cache/dl-src" "linux-source-$series"
    mkdir -p "$cache/dl-src/x" && dpkg -x "$cache"/dl-src/linux-source-"$series"_*.deb "$cache/dl-src/x"
    tarball="$(ls "$cache"/dl-src/x/usr/src/linux-source-"$series".tar.*)"
    mkdir -p "$src"
    tar -xf "$tarball" -C "$src" --strip-components=1 \
        "linux-source-$series/drivers/ntb" "linux-source-$series/drivers/net/ntb_netdev.c"
    # The source package's version, for the record (the modules are built from it unmodified).
    basename "$(ls "$cache"/dl-src/linux-source-"$series"_*.deb)" > "$src/PACKAGE"
    rm -rf "$cache/dl-src"
    touch "$src/.complete"
fi
echo "$root/usr/src/linux-headers-$kver"
echo "$src"
