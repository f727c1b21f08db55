#!/usr/bin/env bash
# Builds the rig's initramfs (gzip'd newc cpio):
#   mkinitramfs.sh KERNEL_ROOT OUT.cpio.gz BINARY...
# KERNEL_ROOT is the unpacked kernel package (fetch-kernel.sh). Contents: static busybox as /bin, the
# guest init and scenarios (tools/vm/guest), the VFIO and UIO modules with their dependencies (order
# from modprobe --show-depends on the host's modules.dep), the given binaries in /usr/local/bin and
# every shared library they load (from ldd: glibc, libstdc++, libgcc_s, libpci, ...).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kroot="$1"; out="$2"; shift 2
kver="$(ls "$kroot/lib/modules")"

# vfio_iommu_type1 is loaded by vfio on demand (request_module), so it is no symbol dependency:
# name it. vfio-pci needs irqbypass; uio_pci_generic needs uio.
modules=(vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci uio uio_pci_generic)

stage="$(mktemp -d "${TMPDIR:-/tmp}/rig-initramfs.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,rig,usr/local/bin,lib/modules/"$kver"}

cp /bin/busybox "$stage/bin/busybox"
file_type="$(od -An -c -N4 "$stage/bin/busybox" | tr -d ' ')"
[ "$file_type" = '177ELF' ] || { echo "mkinitramfs: /bin/busybox is not an ELF binary" >&2; exit 1; }
install -m 0755 "$here/guest/init" "$stage/init"
install -m 0644 "$here/guest/scenarios.sh" "$stage/rig/scenarios.sh"

# Modules in load order, without duplicates (vfio appears as a dependency of several).
: > "$stage/rig/modules.list"
for m in "${modules[@]}"; do
    modprobe -d "$kroot" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
    rel="${ko##*/lib/modules/"$kver"/}"
    mkdir -p "$stage/lib/modules/$kver/$(dirname "$rel")"
    cp "$ko" "$stage/lib/modules/$kver/$rel"
    echo "$kver/$rel" >> "$stage/rig/modules.list"
done
[ "$(wc -l < "$stage/rig/modules.list")" -ge "${#modules[@]}" ] \
    || { echo "mkinitramfs: module list incomplete:" >&2; cat "$stage/rig/modules.list" >&2; exit 1; }

# Binaries and their shared libraries, at the paths the dynamic loader looks for them.
# Stripped (when binutils is there): about half the size, so the guest unpacks it faster.
for bin in "$@"; do
    cp "$bin" "$stage/usr/local/bin/"
    if command -v strip >/dev/null; then strip "$stage/usr/local/bin/$(basename "$bin")"; fi
    { ldd "$bin" || true; } | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
done

# Linux interop (linux-* scenarios): Linux's NTB modules and ntb_hw_ivshmem from RIG_NTB_MODULES
# (build-ntb-modules.sh) in /lib/modules/ntb, loaded by the scenarios only (not in modules.list: the
# driver would take the ivshmem device the VFIO scenarios use); debug info stripped. Debian's iperf3
# from RIG_IPERF3_ROOT (fetch-iperf3.sh): its own libraries from there, the rest from the host.
if [ -n "${RIG_NTB_MODULES:-}" ]; then
    mkdir -p "$stage/lib/modules/ntb"
    for ko in "$RIG_NTB_MODULES"/*.ko; do
        cp "$ko" "$stage/lib/modules/ntb/"
        if command -v strip >/dev/null; then strip --strip-debug "$stage/lib/modules/ntb/$(basename "$ko")"; fi
    done
fi
if [ -n "${RIG_IPERF3_ROOT:-}" ]; then
    cp "$RIG_IPERF3_ROOT/usr/bin/iperf3" "$stage/usr/local/bin/"
    LD_LIBRARY_PATH="$RIG_IPERF3_ROOT/usr/lib/x86_64-linux-gnu" ldd "$RIG_IPERF3_ROOT/usr/bin/iperf3" \
        | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
        case "$lib" in
            "$RIG_IPERF3_ROOT"/*) dest="${lib#"$RIG_IPERF3_ROOT"}" ;;
            *) dest="$lib" ;;
        esac
        mkdir -p "$stage$(dirname "$dest")"
        cp -L "$lib" "$stage$dest"
    done
fi

# libpci's names for `info` and `list`, where pciutils put them.
if [ -f /usr/share/misc/pci.ids ]; then
    mkdir -p "$stage/usr/share/misc" && cp /usr/share/misc/pci.ids "$stage/usr/share/misc/"
fi

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 > "$out.tmp"
mv "$out.tmp" "$out"
