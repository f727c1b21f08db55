#!/usr/bin/env bash
# Builds, out of tree against the rig kernel's headers, Linux's own NTB modules from Debian's
# linux-source package, unmodified (drivers/ntb: ntb.ko, ntb_transport.ko, test/ntb_tool.ko,
# test/ntb_perf.ko; drivers/net/ntb_netdev.ko), and the project's kernel/ntb_hw_ivshmem. The cloud
# kernel is built without CONFIG_NTB, so the options are given on the make command line.
#   build-ntb-modules.sh KVER OUTDIR       the .ko files land in OUTDIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
kver="$1"; out="$2"
{ read -r headers; read -r src; } < <(bash "$here/fetch-kbuild.sh" "$kver")
build="$here/work/kmod"
rm -rf "$build" && mkdir -p "$build/ntb" "$build/netdev" "$build/ivshmem" "$out"
cp -r "$src/drivers/ntb/." "$build/ntb/"
cp "$src/drivers/net/ntb_netdev.c" "$build/netdev/"
echo 'obj-m := ntb_netdev.o' > "$build/netdev/Kbuild"
cp "$repo/kernel/ntb_hw_ivshmem/ntb_hw_ivshmem.c" "$repo/kernel/ntb_hw_ivshmem/Kbuild" "$build/ivshmem/"
jobs="-j$(nproc)"
make -s $jobs -C "$headers" M="$build/ntb" CONFIG_NTB=m CONFIG_NTB_TRANSPORT=m CONFIG_NTB_TOOL=m CONFIG_NTB_PERF=m modules
make -s $jobs -C "$headers" M="$build/netdev" KBUILD_EXTRA_SYMBOLS="$build/ntb/Module.symvers" modules
make -s $jobs -C "$headers" M="$build/ivshmem" KBUILD_EXTRA_SYMBOLS="$build/ntb/Module.symvers" modules
cp "$build/ntb/ntb.ko" "$build/ntb/ntb_transport.ko" "$build/ntb/test/ntb_tool.ko" "$build/ntb/test/ntb_perf.ko" \
   "$build/netdev/ntb_netdev.ko" "$build/ivshmem/ntb_hw_ivshmem.ko" "$out/"
cat "$src/PACKAGE" > "$out/SOURCE"
