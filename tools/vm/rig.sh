#!/usr/bin/env bash
# The QEMU rig: runs the project's real VFIO and UIO paths on a real Linux kernel (docs/qemu-rig.md).
#
#   bash tools/vm/rig.sh                 fetch kernel (cached), build, boot, print one RIG line each
#   RIG_BREAK=region-index bash tools/vm/rig.sh   the scenario binary uses a wrong VFIO region index:
#                                        the rig must fail (proves it catches a broken ioctl)
# Environment:
#   RIG_BIN_DIR      take ntb-transport and ntb-vmtest from here instead of building them
#   RIG_SCENARIOS    space-separated subset, in order, of: boot vfio-dma uio-irq iommu-isolation
#                    broken-ioctl ivshmem-share transport-link transport-perf transport-pingpong
#                    transport-file transport-link-down (ivshmem-share and transport-link boot a second
#                    guest sharing the window; the transport-* ones need transport-link first)
#   RIG_TIMEOUT      seconds the guest may run (default 300)
#   RIG_KERNEL_PKG   pin the kernel package (default: what linux-image-cloud-amd64 depends on)
#   RIG_ACCEL        QEMU accelerator (default tcg; CI machines have no usable KVM)
#   RIG_LINUX=1      after the scenarios, a second boot of both guests with the Linux interop
#                    scenarios (boot linux-perf linux-kernel linux-userspace): Linux's ntb_transport/ntb_netdev over
#                    kernel/ntb_hw_ivshmem. They can also be named in RIG_SCENARIOS (not together with
#                    transport-link: its guest b powers off).
# Exit status: 0 when every scenario printed PASS, 1 otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$here/work"
mkdir -p "$work"

if [ "${RIG_LINUX:-0}" = 1 ]; then
    # Two runs: the scenarios asked for (default: the default list), then the Linux interop boot.
    rc=0
    RIG_LINUX=0 bash "$0" || rc=1
    echo "rig: ---- Linux interop (RIG_LINUX=1) ----"
    RIG_LINUX=0 RIG_SCENARIOS="boot linux-perf linux-kernel linux-userspace" bash "$0" || rc=1
    exit $rc
fi

scenarios="${RIG_SCENARIOS:-boot ivshmem-share transport-link transport-perf transport-pingpong transport-file transport-link-down vfio-dma uio-irq iommu-isolation broken-ioctl}"
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

# Linux interop (linux-kernel, linux-userspace): Linux's NTB modules from linux-source, built out of
# tree against the guest kernel's headers, plus ntb_hw_ivshmem, and Debian's iperf3.
case " $scenarios " in
    *" linux-"*)
        say "Linux NTB modules for $kver (linux-source + linux-headers, out of tree)"
        if ! bash "$here/build-ntb-modules.sh" "$kver" "$work/ntb-modules" > "$work/build-ntb-modules.log" 2>&1; then
            tail -n 40 "$work/build-ntb-modules.log"; echo "rig: building the NTB modules failed"; exit 1
        fi
        export RIG_NTB_MODULES="$work/ntb-modules"
        say "NTB modules built from $(cat "$work/ntb-modules/SOURCE")"
        RIG_IPERF3_ROOT="$(bash "$here/fetch-iperf3.sh")" || { echo "rig: fetching iperf3 failed"; exit 1; }
        export RIG_IPERF3_ROOT
        ;;
esac

say "initramfs"
initrd="$work/initramfs.cpio.gz"
bash "$here/mkinitramfs.sh" "$kroot" "$initrd" "$bindir/ntb-transport" "$bindir/ntb-vmtest"
say "initramfs $(du -h "$initrd" | cut -f1)"

# no_timer_check: on a loaded machine TCG can miss the IO-APIC timer check's window, and with
# interrupt remapping the kernel then panics at boot ("timer doesn't work through Interrupt-remapped
# IO-APIC"; seen once with 5 builds on 2 cores). The check only matters on broken hardware.
common="console=ttyS0 intel_iommu=on quiet panic=-1 no_timer_check"
[ -z "${RIG_BREAK:-}" ] || common="$common rig.break=$RIG_BREAK"
append="$common rig.guest=a rig.scenarios=$(echo $scenarios | tr ' ' ,)"
log="$work/guest.log"
log_b="$work/guest-b.log"
rm -f "$log" "$log_b"
# The window two guests share (ivshmem-share): a file, zeroed for every run.
shm="$work/ivshmem.bin"
# 4 MiB: the ivshmem NTB header page and two windows of 2 MiB - 4 KiB (transport-*).
shm_size=4M
rm -f "$shm" && truncate -s "$shm_size" "$shm"
# ivshmem-share runs right after boot in guest a, so both guests reach it at about the same time
# however slow the machine is (guest b waits for guest a's flag at most 100 s). With transport-link,
# guest b then serves guest a's transport sessions and powers off with the link up (transport-serve,
# transport-poweroff); guest a is the survivor (transport-link-down).
two_guests=0
scenarios_b=""
case " $scenarios " in *" ivshmem-share "*) two_guests=1; scenarios_b="ivshmem-share" ;; esac
case " $scenarios " in *" transport-link "*) two_guests=1; scenarios_b="$scenarios_b transport-link transport-serve transport-poweroff" ;; esac
# The Linux interop scenarios run in both guests (b: the peer stack, Linux's then ntb-transport).
for s in linux-perf linux-kernel linux-userspace; do
    case " $scenarios " in *" $s "*) two_guests=1; scenarios_b="$scenarios_b $s" ;; esac
done
scenarios_b="${scenarios_b# }"

# q35 with the emulated Intel IOMMU (DMA and interrupt remapping; caching-mode so that VFIO's map
# requests reach QEMU), split irqchip as interrupt remapping needs. Every guest has an ivshmem-plain
# device at 06.0 whose BAR2 is the shared file.
guest() {   # guest LOG APPEND [extra QEMU arguments]
    local out="$1" cmdline="$2"; shift 2
    timeout -k 10 "$timeout_s" qemu-system-x86_64 \
        -accel "$accel" -cpu max -smp 1 -m 512M \
        -machine q35,kernel-irqchip=split \
        -device intel-iommu,intremap=on,caching-mode=on \
        -object memory-backend-file,id=shm,share=on,mem-path="$shm",size="$shm_size" \
        -device ivshmem-plain,memdev=shm,addr=06.0 \
        "$@" \
        -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$initrd" -append "$cmdline" \
        -display none -monitor none -serial "file:$out" -nic none -no-reboot
}

set +e
if [ $two_guests = 1 ]; then
    # The second guest only answers through the shared window; it boots alongside the first.
    say "booting guest b ($accel)"
    guest "$log_b" "$common rig.guest=b rig.scenarios=$(echo $scenarios_b | tr ' ' ,)" &
    pid_b=$!
fi
say "booting guest a ($accel): $append"
# edu's DMA mask is widened from its default 28 bits to 64 so it, like real hardware, reaches any
# IOVA the IOMMU hands out.
guest "$log" "$append" \
    -device edu,addr=04.0,dma_mask=0xffffffffffffffff \
    -device edu,addr=05.0,dma_mask=0xffffffffffffffff
qemu_rc=$?
qemu_rc_b=0
[ $two_guests = 0 ] || { wait $pid_b; qemu_rc_b=$?; }
set -e
say "guests exited (qemu status a: $qemu_rc, b: $qemu_rc_b)"

failed=0
finished=1
total=0
# result GUEST-LOG QEMU-STATUS LABEL SCENARIO...: prints one RIG line per scenario.
result() {
    local out="$1" rc="$2" label="$3"; shift 3
    tr -d '\r' < "$out" > "$out.txt" 2>/dev/null || : > "$out.txt"
    for s in "$@"; do
        line="$(grep -m1 "^RIG: $s: " "$out.txt" || true)"
        if [ -z "$line" ]; then
            if [ "$rc" -eq 124 ]; then line="RIG: $s: FAIL (guest timed out after ${timeout_s}s)"
            else line="RIG: $s: FAIL (no result from the guest)"; fi
        fi
        [ -z "$label" ] || line="${line/RIG: $s:/RIG: $s ($label):}"
        echo "$line"
        total=$((total + 1))
        case "$line" in *": PASS") ;; *) failed=$((failed + 1)) ;; esac
    done
    grep -q '^RIG-END' "$out.txt" || { echo "rig: guest ${label:-a} did not finish (see $out)"; finished=0; }
}
for out in "$log" $([ $two_guests = 0 ] || echo "$log_b"); do
    echo "---- console of $(basename "$out") ----"
    tr -d '\r' < "$out" | grep -v '^RIG' || true
done
echo "-----------------------"
result "$log" "$qemu_rc" "" $scenarios
[ $two_guests = 0 ] || result "$log_b" "$qemu_rc_b" "guest b" $scenarios_b
# The two-guest transport figures (TCG: slow; recorded as they are).
grep -h '^RIG-FIGURE: ' "$log.txt" 2>/dev/null | sed 's/^RIG-FIGURE: /rig: figure: /' || true
say "wall time $(( $(date +%s) - t0 ))s"
# The plain closing line test harnesses read.
echo "rig: $((total - failed)) passed, $failed failed"
[ $failed -eq 0 ] && [ $finished -eq 1 ]
