#!/usr/bin/env bash
# The QEMU rig: runs the project's real VFIO and UIO paths on a real Linux kernel (docs/qemu-rig.md).
#
#   bash tools/vm/rig.sh                 fetch kernel (cached), build, boot, print one RIG line each
#   RIG_BREAK=region-index bash tools/vm/rig.sh   the scenario binary uses a wrong VFIO region index:
#                                        the rig must fail (proves it catches a broken ioctl)
# Environment:
#   RIG_BIN_DIR      take ntb-transport and ntb-vmtest from here instead of building them
#   RIG_SCENARIOS    space-separated subset, in order, of: boot vfio-dma uio-irq iommu-isolation broken-ioctl
#   RIG_TIMEOUT      seconds the guest may run (default 300)
#   RIG_KERNEL_PKG   pin the kernel package (default: what linux-image-cloud-amd64 depends on)
#   RIG_ACCEL        QEMU accelerator (default tcg; CI machines have no usable KVM)
# Exit status: 0 when every scenario printed PASS, 1 otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$here/work"
mkdir -p "$work"

scenarios="${RIG_SCENARIOS:-boot vfio-dma uio-irq iommu-isolation broken-ioctl}"
timeout_s="${RIG_TIMEOUT:-300}"
accel="${RIG_ACCEL:-tcg}"
t0=$(date +%s)
say() { echo "rig: [$(( $(date +%s) - t0 ))s] $*"; }

say "kernel"
kroot="$(bash "$here/fetch-kernel.sh")"
kver="$(ls "$kroot/lib/modules")"
say "kernel $kver ($kroot)"

if [ -n "${RIG_BIN_DIR:-}" ]; then
    bindir="$RIG_BIN_DIR"
else
    # Only the two products the guest runs, release, with the Swift runtime linked in statically so the
    # initramfs needs nothing but glibc and the C libraries ldd names.
    say "building ntb-transport and ntb-vmtest (release, --static-swift-stdlib)"
    for product in ntb-transport ntb-vmtest; do
        if ! (cd "$repo" && swift build -c release --static-swift-stdlib --product "$product") > "$work/build-$product.log" 2>&1; then
            tail -n 40 "$work/build-$product.log"; echo "rig: building $product failed"; exit 1
        fi
    done
    bindir="$(cd "$repo" && swift build -c release --static-swift-stdlib --show-bin-path)"
fi
for b in ntb-transport ntb-vmtest; do
    [ -x "$bindir/$b" ] || { echo "rig: $bindir/$b missing"; exit 1; }
done

say "initramfs"
initrd="$work/initramfs.cpio.gz"
bash "$here/mkinitramfs.sh" "$kroot" "$initrd" "$bindir/ntb-transport" "$bindir/ntb-vmtest"
say "initramfs $(du -h "$initrd" | cut -f1)"

append="console=ttyS0 intel_iommu=on quiet panic=-1 rig.scenarios=$(echo $scenarios | tr ' ' ,)"
[ -z "${RIG_BREAK:-}" ] || append="$append rig.break=$RIG_BREAK"
log="$work/guest.log"
rm -f "$log"
say "booting ($accel): $append"
# q35 with the emulated Intel IOMMU (DMA and interrupt remapping; caching-mode so that VFIO's map
# requests reach QEMU), split irqchip as interrupt remapping needs. edu's DMA mask is widened from
# its default 28 bits to 64 so it, like real hardware, reaches any IOVA the IOMMU hands out.
set +e
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
    -accel "$accel" -cpu max -smp 1 -m 512M \
    -machine q35,kernel-irqchip=split \
    -device intel-iommu,intremap=on,caching-mode=on \
    -device edu,addr=04.0,dma_mask=0xffffffffffffffff \
    -device edu,addr=05.0,dma_mask=0xffffffffffffffff \
    -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$initrd" -append "$append" \
    -display none -monitor none -serial "file:$log" -nic none -no-reboot
qemu_rc=$?
set -e
say "guest exited (qemu status $qemu_rc)"

tr -d '\r' < "$log" > "$log.txt"
failed=0
finished=1
echo "---- guest console ----"
grep -v '^RIG' "$log.txt" || true
echo "-----------------------"
for s in $scenarios; do
    line="$(grep -m1 "^RIG: $s: " "$log.txt" || true)"
    if [ -z "$line" ]; then
        if [ $qemu_rc -eq 124 ]; then line="RIG: $s: FAIL (guest timed out after ${timeout_s}s)"
        else line="RIG: $s: FAIL (no result from the guest)"; fi
    fi
    echo "$line"
    case "$line" in *": PASS") ;; *) failed=$((failed + 1)) ;; esac
done
grep -q '^RIG-END' "$log.txt" || { echo "rig: the guest did not finish (see $log)"; finished=0; }
total=$(echo $scenarios | wc -w)
say "wall time $(( $(date +%s) - t0 ))s"
# The plain closing line test harnesses read.
echo "rig: $((total - failed)) passed, $failed failed"
[ $failed -eq 0 ] && [ $finished -eq 1 ]
