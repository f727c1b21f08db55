#!/usr/bin/env bash
# Fetches Debian's iperf3 with the libraries the host does not have (libiperf0, libsctp1) with
# `apt-get download` + `dpkg -x` into tools/vm/cache/iperf3 (nothing is installed on the machine);
# libssl3 and glibc come from the host, as for the project's binaries. Prints the unpacked root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/cache/iperf3"
if [ ! -f "$root/.complete" ]; then
    rm -rf "$root" "$here/cache/dl-iperf3"
    mkdir -p "$here/cache/dl-iperf3"
    if ! (cd "$here/cache/dl-iperf3" && apt-get download -q iperf3 libiperf0 libsctp1 >&2 2> >(grep -v 'unsandboxed' >&2)); then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2
        (cd "$here/cache/dl-iperf3" && apt-get download -q iperf3 libiperf0 libsctp1 >&2 2> >(grep -v 'unsandboxed' >&2))
    fi
    for deb in "$here"/cache/dl-iperf3/*.deb; do dpkg -x "$deb" "$root"; done
    rm -rf "$here/cache/dl-iperf3"
    [ -x "$root/usr/bin/iperf3" ] || { echo "fetch-iperf3: no usr/bin/iperf3 in the packages" >&2; exit 1; }
    touch "$root/.complete"
fi
echo "$root"
