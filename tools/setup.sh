#!/usr/bin/env bash
# Installs what ntb-transport needs on a fresh Debian/Ubuntu machine, only what is missing.
# Safe to run again. Needs root (or sudo) only when something must be installed.
set -euo pipefail

# Debian packages the build, the tests and the QEMU rig use.
# make and gcc-12 build the Linux NTB modules of the rig's Linux interop boot (RIG_LINUX=1) out of tree
# against Debian's kernel headers (their Makefile names gcc-12).
packages=(libpci-dev pkg-config pciutils qemu-system-x86 busybox-static cpio kmod make gcc-12)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift 6.2 or newer is required (https://www.swift.org/install)"; exit 1; }
