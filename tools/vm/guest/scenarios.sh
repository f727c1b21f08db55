# Scenarios of the rig's guest, sourced by /init (busybox sh). Each prints exactly one line
#   RIG: <name>: PASS
#   RIG: <name>: FAIL (<first reason>)
# with the commands' own output indented above it, so a failure shows what the project printed.
#
# Devices (fixed addresses, set by rig.sh): two QEMU edu devices (1234:11e8), one for the VFIO
# scenarios and one for the UIO scenario, behind the emulated Intel IOMMU.
EDU_VFIO=0000:00:04.0
EDU_UIO=0000:00:05.0
IVSHMEM=0000:00:06.0

# Runs a command with a time limit (a hung step fails its scenario, the others still run),
# indenting its output; returns its status.
STEP_TIMEOUT=120
step() {
    echo "  \$ $*"
    timeout $STEP_TIMEOUT "$@" > /tmp/step.out 2>&1
    rc=$?
    case $rc in 124|143) echo "timed out after $STEP_TIMEOUT s: $*" >> /tmp/step.out ;; esac
    sed 's/^/    /' /tmp/step.out
    [ $rc -eq 0 ] || echo "    (exit $rc)"
    return $rc
}

pass() { echo "RIG: $1: PASS"; }
fail() { echo "RIG: $1: FAIL ($2)"; }

driver_of() {
    [ -e "/sys/bus/pci/devices/$1/driver" ] && basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
}

# The guest itself: IOMMU on (DMA remapping and interrupt remapping), modules loaded, edu devices
# present and unbound. Everything else relies on this.
scenario_boot() {
    n=boot
    [ -d /sys/class/iommu ] && [ -n "$(ls /sys/class/iommu)" ] || { fail $n "no IOMMU in /sys/class/iommu: intel_iommu=on not in effect"; return; }
    for m in vfio vfio_iommu_type1 vfio_pci uio_pci_generic; do
        [ -d "/sys/module/$m" ] || { fail $n "module $m not loaded"; return; }
    done
    for d in $EDU_VFIO $EDU_UIO; do
        [ "$(cat /sys/bus/pci/devices/$d/vendor 2>/dev/null):$(cat /sys/bus/pci/devices/$d/device 2>/dev/null)" = "0x1234:0x11e8" ] \
            || { fail $n "no edu device at $d"; return; }
        [ -e "/sys/bus/pci/devices/$d/iommu_group" ] || { fail $n "$d has no IOMMU group"; return; }
    done
    grep -q 'DMAR-IR: Enabled IRQ remapping' /tmp/dmesg.boot || { fail $n "interrupt remapping not enabled"; return; }
    pass $n
}

# 1. bind (driver_override) -> info (BARs) -> IOMMU-mapped DMA buffer -> edu DMA round trip -> MSI.
scenario_vfio_dma() {
    n=vfio-dma
    step ntb-transport bind $EDU_VFIO --driver vfio-pci || { fail $n "ntb-transport bind failed"; return; }
    [ "$(driver_of $EDU_VFIO)" = vfio-pci ] || { fail $n "$EDU_VFIO is bound to '$(driver_of $EDU_VFIO)', not vfio-pci"; return; }
    [ "$(cat /sys/bus/pci/devices/$EDU_VFIO/driver_override)" = vfio-pci ] || { fail $n "driver_override is not vfio-pci"; return; }
    step ntb-transport info $EDU_VFIO || { fail $n "ntb-transport info failed"; return; }
    # edu has one BAR: BAR0, 1 MiB of 32-bit non-prefetchable memory.
    grep -Eq 'BAR ?0.*(1 MiB|1048576|0x100000)' /tmp/step.out || { fail $n "info does not show edu's 1 MiB BAR0"; return; }
    step ntb-vmtest vfio-dma $EDU_VFIO || { fail $n "$(tail -n1 /tmp/step.out)"; return; }
    pass $n
}

# 2. A DMA aimed at an IOVA the project did not map is blocked by the IOMMU: the data does not land,
#    ntb-vmtest says so, and the kernel logged a DMAR fault for the device. The target is memory with
#    a known physical address from PCIKit's UIO allocator (the second edu, bound by uio-irq).
scenario_iommu_isolation() {
    n=iommu-isolation
    [ "$(driver_of $EDU_VFIO)" = vfio-pci ] || { fail $n "$EDU_VFIO not bound to vfio-pci (vfio-dma failed?)"; return; }
    [ "$(driver_of $EDU_UIO)" = uio_pci_generic ] || { fail $n "$EDU_UIO not bound to uio_pci_generic (uio-irq failed?)"; return; }
    step ntb-vmtest iommu-isolation $EDU_VFIO --physical-from $EDU_UIO || { fail $n "$(tail -n1 /tmp/step.out)"; return; }
    # The fault interrupt is handled asynchronously: give the kernel a moment to log it.
    for i in 1 2 3 4 5; do
        dmesg | grep -qi 'DMAR.*\[DMA Write.*Request device \[00:04.0\]' && break
        sleep 1
    done
    dmesg | grep -i 'DMAR.*fault' | sed 's/^/    kernel: /' | tail -n 3
    dmesg | grep -qi 'DMAR.*\[DMA Write.*Request device \[00:04.0\]' \
        || { fail $n "the kernel logged no DMAR write fault for 00:04.0"; return; }
    pass $n
}

# 3. edu bound to uio_pci_generic; BAR mapped and an INTx interrupt received through PCIKit's UIO code.
scenario_uio_irq() {
    n=uio-irq
    step ntb-transport bind $EDU_UIO --driver uio_pci_generic || { fail $n "ntb-transport bind failed"; return; }
    [ "$(driver_of $EDU_UIO)" = uio_pci_generic ] || { fail $n "$EDU_UIO is bound to '$(driver_of $EDU_UIO)', not uio_pci_generic"; return; }
    step ntb-vmtest uio-irq $EDU_UIO || { fail $n "$(tail -n1 /tmp/step.out)"; return; }
    pass $n
}

# The rig must notice a broken ioctl: with NTB_VMTEST_BREAK=region-index ntb-vmtest asks VFIO for
# region 9, which vfio-pci does not have. That run must fail, with the project's VFIO error.
scenario_broken_ioctl() {
    n=broken-ioctl
    [ "$(driver_of $EDU_VFIO)" = vfio-pci ] || { fail $n "$EDU_VFIO not bound to vfio-pci (vfio-dma failed?)"; return; }
    if step env NTB_VMTEST_BREAK=region-index ntb-vmtest vfio-dma $EDU_VFIO; then
        fail $n "ntb-vmtest passed with a broken ioctl: the rig cannot see ioctl failures"; return
    fi
    grep -q 'VFIO_DEVICE_GET_REGION_INFO' /tmp/step.out \
        || { fail $n "it failed, but not with the VFIO region-info error: $(tail -n1 /tmp/step.out)"; return; }
    pass $n
}

# Two guests (rig.guest=a and b) map BAR2 of their ivshmem-plain devices, backed by one host file,
# through VFIO and exchange data through it: a writes first, b answers.
scenario_ivshmem_share() {
    n=ivshmem-share
    step ntb-transport bind $IVSHMEM --driver vfio-pci || { fail $n "ntb-transport bind failed"; return; }
    step ntb-vmtest ivshmem-share $IVSHMEM --role "${RIG_GUEST:-a}" || { fail $n "$(tail -n1 /tmp/step.out)"; return; }
    pass $n
}

# 4. The transport between the two guests over the ivshmem NTB adapter (--port ivshmem:ADDR, polled
#    header + windows in BAR2) with the host backend (Linux ntb_transport v4). Guest a (--role host)
#    drives; guest b (--role endpoint) serves and, at the end, powers off with the link up, so a is the
#    survivor that must see link down. Both sides run transport-link; then a runs perf, pingpong, file
#    and link-down while b runs transport-serve (one `serve` answering all three) and transport-poweroff.
TPORT="--port ivshmem:$IVSHMEM"
TWAIT=100   # seconds a side waits for the other guest (they boot together but run at their own pace)
# The first error line of the last step (stdout and stderr interleave in /tmp/step.out), else its last line.
step_reason() { grep -m1 -i 'error' /tmp/step.out || tail -n1 /tmp/step.out; }
transport_role() { [ "${RIG_GUEST:-a}" = b ] && echo endpoint || echo host; }
# The file both guests can produce: the first MiB of the (identical) ntb-transport binary.
transport_payload() { head -c 1048576 /usr/local/bin/ntb-transport > /tmp/payload.bin; }

ensure_ivshmem_bound() {
    [ "$(driver_of $IVSHMEM)" = vfio-pci ] || step ntb-transport bind $IVSHMEM --driver vfio-pci
}

# Both guests: the NTB link comes up (each side sees the other's heartbeat and link-enable); each then
# keeps its side open for 3 s, so the slower guest sees it too before the faster one closes.
scenario_transport_link() {
    n=transport-link
    ensure_ivshmem_bound || { fail $n "ntb-transport bind failed"; return; }
    step ntb-transport tool $TPORT --role "$(transport_role)" "link up" "link wait up $((TWAIT * 1000))" "sleep 3000" \
        || { fail $n "$(step_reason)"; return; }
    pass $n
}

# Guest a: throughput for 2 s with 64 KiB messages (TCG: slow; the figure is recorded, not judged).
scenario_transport_perf() {
    n=transport-perf
    step ntb-transport perf $TPORT --role host --link-timeout $TWAIT --size 65524 --duration 2 \
        || { fail $n "$(step_reason)"; return; }
    grep -q '^host ' /tmp/step.out || { fail $n "perf printed no result row"; return; }
    sed -n 's/^host .*/RIG-FIGURE: perf &/p' /tmp/step.out
    pass $n
}

# Guest a: 300 round trips of 64 bytes (after perf's own 1000 warm-up ones).
scenario_transport_pingpong() {
    n=transport-pingpong
    step ntb-transport pingpong $TPORT --role host --link-timeout $TWAIT --size 64 --count 300 \
        || { fail $n "$(step_reason)"; return; }
    grep -q '^host ' /tmp/step.out || { fail $n "pingpong printed no result row"; return; }
    sed -n 's/^host .*/RIG-FIGURE: pingpong &/p' /tmp/step.out
    pass $n
}

# Guest a: a 1 MiB file; the receiver checks the CRC-32C end to end (send says "verified by the peer");
# guest b also compares the bytes with its own copy (transport-serve).
scenario_transport_file() {
    n=transport-file
    transport_payload
    step ntb-transport send $TPORT --role host --link-timeout $TWAIT /tmp/payload.bin \
        || { fail $n "$(step_reason)"; return; }
    grep -q 'verified by the peer' /tmp/step.out || { fail $n "the peer did not verify the checksum"; return; }
    echo "    sha256 $(sha256sum /tmp/payload.bin | cut -d' ' -f1)"
    pass $n
}

# Guest a: the survivor. Holds the link while guest b powers off (b's side never shuts down cleanly:
# its heartbeat stops); the link must go down within the peer timeout (500 ms) plus scheduling.
scenario_transport_link_down() {
    n=transport-link-down
    step ntb-transport tool $TPORT --role host "link up" "link wait up $((TWAIT * 1000))" "link wait down 60000" \
        || { fail $n "$(step_reason)"; return; }
    [ "$(tail -n1 /tmp/step.out)" = "link: down" ] || { fail $n "the survivor did not see link down"; return; }
    pass $n
}

# Guest b: one `serve` answers a's perf, pingpong and file sessions; passes when the file arrived, is
# the same as b's own copy, and serve is still running (it holds the link for transport-poweroff).
scenario_transport_serve() {
    n=transport-serve
    ensure_ivshmem_bound || { fail $n "ntb-transport bind failed"; return; }
    transport_payload
    mkdir -p /tmp/rx
    ntb-transport serve $TPORT --role endpoint --link-timeout $TWAIT --dir /tmp/rx > /tmp/serve.out 2>&1 &
    serve_pid=$!
    waited=0
    while [ ! -f /tmp/rx/payload.bin ] && [ $waited -lt $((STEP_TIMEOUT * 3)) ] && kill -0 $serve_pid 2>/dev/null; do
        sleep 1; waited=$((waited + 1))
    done
    sed 's/^/    /' /tmp/serve.out
    [ -f /tmp/rx/payload.bin ] || { fail $n "no file arrived within ${waited} s"; return; }
    cmp /tmp/rx/payload.bin /tmp/payload.bin || { fail $n "the received file differs from the sent one"; return; }
    echo "    sha256 $(sha256sum /tmp/rx/payload.bin | cut -d' ' -f1)"
    kill -0 $serve_pid 2>/dev/null || { fail $n "serve exited"; return; }
    pass $n
}

# Guest b: gives guest a time to take the link up again (its transport-link-down), then the guest
# powers off (init's poweroff -f) with serve still holding its side: no clean shutdown reaches a.
scenario_transport_poweroff() {
    n=transport-poweroff
    sleep 8
    kill -0 "${serve_pid:-0}" 2>/dev/null || { fail $n "serve is not running, so the link is not held"; return; }
    pass $n
}

# 5. Linux interop (docs/qemu-rig.md "Linux interop"): Linux's own ntb.ko, ntb_transport.ko and
#    ntb_netdev.ko, built unmodified from Debian's linux-source-6.1, over the project's ntb_hw_ivshmem
#    (kernel/ntb_hw_ivshmem) on the ivshmem device both guests share. In /lib/modules/ntb, loaded only
#    by these scenarios (init loads the VFIO/UIO list only).
#    linux-kernel: both guests run the Linux stack; interface ntb0 on each, 10.16.0.1 (a) and
#    10.16.0.2 (b); ping both ways at several frame sizes, a 1 MiB file fetched both ways with wget from
#    the other's busybox httpd and compared, iperf3 both ways (a is the client) when the initramfs has it.
#    linux-userspace: guest b unloads the Linux stack and runs ntb-transport (host backend, side B)
#    on the same device; guest a keeps Linux's ntb_transport + ntb_netdev. Proves the NTB link and the
#    queue-pair link come up between the two implementations and frames cross both ways.
NTB_KO=/lib/modules/ntb
LNET_A=10.16.0.1
LNET_B=10.16.0.2
LMAC_A=02:4e:54:42:00:01
LMAC_B=02:4e:54:42:00:02
# An ICMP echo request from b (10.16.0.2, LMAC_B) to a (10.16.0.1, LMAC_A), id 0x4e54 seq 1, 56 bytes of
# text; IP and ICMP checksums valid, so a's kernel answers it only if every byte arrived intact.
LINUX_ICMP_FRAME=024e54420001024e5442000208004500005412340000400154530a1000020a10000108005fb14e5400016e74622d7472616e73706f72742075736572737061636520746f204c696e7578206e74625f6e65746465762c20696e746163742121210a2e

linux_side() { [ "${RIG_GUEST:-a}" = b ] && echo b || echo a; }
linux_me() { [ "$(linux_side)" = b ] && echo $LNET_B || echo $LNET_A; }
linux_peer() { [ "$(linux_side)" = b ] && echo $LNET_A || echo $LNET_B; }
# Waits up to $2 seconds for `$1` (a shell condition) to hold.
wait_for() {
    w=0
    while ! eval "$1"; do
        [ $w -ge "$2" ] && return 1
        sleep 1; w=$((w + 1))
    done
}
carrier() { [ "$(cat /sys/class/net/ntb0/carrier 2>/dev/null)" = "$1" ]; }
icmp_in_echos() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i; h = 1 } else { print $c; exit } }' /proc/net/snmp; }

# Whether ntb_hw_ivshmem logged the peer's side going from enabled to open (its NTB client disabled
# the link): a log line stays, where a poll of the link could miss a short down.
peer_left() { dmesg | awk '/ntb_hw_ivshmem.*peer side .: state enabled/ { e = 1 } e && /ntb_hw_ivshmem.*peer side .: state open/ { f = 1 } END { exit !f }'; }

# Loads ntb.ko and ntb_hw_ivshmem on this guest's side (unless linux-perf did).
linux_hw_up() {
    [ -d /sys/module/ntb ] || step insmod $NTB_KO/ntb.ko || return 1
    [ -d /sys/module/ntb_hw_ivshmem ] || step insmod $NTB_KO/ntb_hw_ivshmem.ko side=$(linux_side) || return 1
}

# Both guests: Linux's ntb_perf over ntb_hw_ivshmem (its inbound buffer comes from the ivshmem PCI
# device's DMA ops, pci_dma_windows). Guest a runs the test (64 MiB in 512 KiB chunks into 1 MiB of
# the window) and unloads ntb_perf (its link-disable puts a's side in state open); b sees that in
# the driver's log and unloads too; a waits for b's side to go to open before linux-kernel enables
# the link again (else b's ntb_perf would meet a's ntb_transport). Both keep ntb_hw_ivshmem loaded.
scenario_linux_perf() {
    n=linux-perf
    if [ "$(linux_side)" = a ]; then
        # Bad input first: without side= the driver binds nothing and says what to pass.
        step insmod $NTB_KO/ntb.ko || { fail $n "insmod ntb.ko failed"; return; }
        insmod $NTB_KO/ntb_hw_ivshmem.ko
        dmesg | grep -q 'load ntb_hw_ivshmem with side=a or side=b' \
            || { fail $n "ntb_hw_ivshmem without side= gave no error naming the fix"; return; }
        [ -e /sys/bus/pci/devices/$IVSHMEM/driver ] && { fail $n "ntb_hw_ivshmem without side= bound the device"; return; }
        echo "    without side=: $(dmesg | grep -m1 'load ntb_hw_ivshmem with side' | sed 's/^\[[^]]*\] //')"
        rmmod ntb_hw_ivshmem
    fi
    linux_hw_up || { fail $n "loading ntb_hw_ivshmem failed: $(tail -n1 /tmp/step.out)"; return; }
    # max_mw_size 1 MiB: ntb_perf copies whole 512 KiB chunks and checks the window's end only after
    # each one, so a window that is no multiple of the chunk (ours: 2 MiB - 4 KiB) is overrun (Oops in
    # memcpy_toio from perf_run_test, seen here).
    step insmod $NTB_KO/ntb_perf.ko total_order=26 max_mw_size=1048576 || { fail $n "insmod ntb_perf failed"; return; }
    grep -q " /sys/kernel/debug " /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug
    d=/sys/kernel/debug/ntb_perf/$IVSHMEM
    wait_for "grep -q 'Link status: up' $d/info 2>/dev/null" $TWAIT || { fail $n "ntb_perf saw no link"; rmmod ntb_perf; return; }
    if [ "$(linux_side)" = a ]; then
        # The write waits (interruptibly) for the peers' exchange of buffer sizes and translations.
        timeout 60 sh -c "echo 0 > $d/run" || {
            dmesg | grep -i 'ntb\|perf\|ivshmem' | tail -n 20 | sed 's/^/    kernel: /'; sed 's/^/    info: /' $d/info
            fail $n "ntb_perf did not run: $(dmesg | grep -i perf | tail -n1)"; rmmod ntb_perf; return; }
        sed 's/^/    /' $d/run | tee /tmp/perf.out
        rmmod ntb_perf
        wait_for peer_left $TWAIT || { fail $n "guest b's ntb_perf never left"; return; }
        grep -q 'copied .* bytes in' /tmp/perf.out || { fail $n "ntb_perf reported no transfer"; return; }
        sed -n 's/^ *0: copied \(.*\)/RIG-FIGURE: linux-perf ntb_perf a-to-b (memcpy_toio, 64 MiB): \1/p' /tmp/perf.out
    else
        wait_for peer_left $((TWAIT * 2)) || {
            dmesg | grep -i 'ntb\|perf\|ivshmem' | tail -n 20 | sed 's/^/    kernel: /'; sed 's/^/    info: /' $d/info
            fail $n "guest a's ntb_perf never left"; rmmod ntb_perf; return; }
        rmmod ntb_perf
    fi
    pass $n
}

# Loads the Linux NTB stack on this guest's side of the ivshmem device and brings ntb0 up.
linux_stack_up() {
    side=$(linux_side)
    mac=$LMAC_A; [ "$side" = b ] && mac=$LMAC_B
    linux_hw_up || return 1
    step insmod $NTB_KO/ntb_transport.ko || return 1
    step insmod $NTB_KO/ntb_netdev.ko || return 1
    # ntb_netdev names its interface eth%d: the one with a device behind it (the guests have no NIC).
    wait_for '[ -n "$(for i in /sys/class/net/*; do [ -e $i/device ] && echo $i; done)" ]' 10 \
        || { echo "    ntb_netdev made no interface"; return 1; }
    dev=$(for i in /sys/class/net/*; do [ -e $i/device ] && basename $i; done | head -n1)
    [ "$dev" = ntb0 ] || ip link set "$dev" name ntb0 || return 1
    [ -e /proc/sys/net/ipv6/conf/ntb0/disable_ipv6 ] && echo 1 > /proc/sys/net/ipv6/conf/ntb0/disable_ipv6
    ip link set ntb0 address $mac && ip addr add "$(linux_me)/24" dev ntb0 && ip link set ntb0 up || return 1
    echo "    ntb0: mtu $(cat /sys/class/net/ntb0/mtu), $(dmesg | grep -m1 'ntb_hw_ivshmem.*side' | sed 's/^\[[^]]*\] //')"
}

scenario_linux_kernel() {
    n=linux-kernel
    linux_stack_up || { fail $n "loading the Linux NTB stack failed: $(tail -n1 /tmp/step.out)"; return; }
    transport_payload
    mkdir -p /tmp/www && cp /tmp/payload.bin /tmp/www/payload.bin
    httpd -p 8080 -h /tmp/www || { fail $n "httpd did not start"; return; }
    wait_for 'carrier 1' $TWAIT || { fail $n "ntb0 has no carrier after $TWAIT s (the transport's queue pair did not come up; dmesg: $(dmesg | grep -i 'ntb\|ivshmem' | tail -n1))"; return; }
    echo "    ntb0 carrier up: $(dmesg | grep -m1 'qp 0: Link Up' | sed 's/^\[[^]]*\] //')"
    peer=$(linux_peer)
    wait_for "ping -c 1 -W 2 $peer > /dev/null 2>&1" $TWAIT || { fail $n "$peer does not answer ping"; return; }
    for size in 56 1472 8972 65000; do
        step ping -c 5 -W 5 -s $size $peer || { fail $n "ping -s $size $peer failed"; return; }
        grep -q ' 0% packet loss' /tmp/step.out || { fail $n "ping -s $size $peer lost packets"; return; }
        [ "$(linux_side)" = a ] && sed -n "s|^round-trip min/avg/max = \(.*\)|RIG-FIGURE: linux-kernel ping -s $size: \1|p" /tmp/step.out
    done
    t0=$(cut -d' ' -f1 /proc/uptime)
    step wget -q -O /tmp/from-peer.bin "http://$peer:8080/payload.bin" || { fail $n "wget of the peer's file failed"; return; }
    cmp /tmp/from-peer.bin /tmp/payload.bin || { fail $n "the file fetched from $peer differs"; return; }
    t1=$(cut -d' ' -f1 /proc/uptime)
    secs=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
    echo "    1 MiB fetched from $peer with wget in $secs s, identical (cmp), sha256 $(sha256sum /tmp/from-peer.bin | cut -d' ' -f1)"
    [ "$(linux_side)" = a ] && echo "RIG-FIGURE: linux-kernel wget 1 MiB b-to-a: $secs s"
    if command -v iperf3 > /dev/null; then
        if [ "$(linux_side)" = b ]; then
            iperf3 -s -D -p 5201 || { fail $n "iperf3 -s did not start"; return; }
            touch /tmp/www/iperf-ready
        else
            wait_for "wget -q -O /dev/null http://$peer:8080/iperf-ready 2>/dev/null" $TWAIT || { fail $n "the peer's iperf3 server never got ready"; return; }
            for dir in "" -R; do
                step iperf3 -c $peer -p 5201 -t 3 -f m $dir || { fail $n "iperf3 $dir failed"; return; }
                rate=$(grep -E 'receiver$' /tmp/step.out | tail -n1 | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /bits\/sec/) print $(i - 1), $i }')
                echo "RIG-FIGURE: linux-kernel iperf3 tcp $([ -z "$dir" ] && echo a-to-b || echo b-to-a): $rate"
            done
        fi
    else
        echo "    (no iperf3 in the initramfs)"
    fi
    # Guest b switches to the userspace stack only once guest a is done (it polls this marker).
    touch /tmp/www/kernel-done
    pass $n
}

scenario_linux_userspace() {
    n=linux-userspace
    if [ "$(linux_side)" = b ]; then
        wait_for "wget -q -O /dev/null http://$LNET_A:8080/kernel-done 2>/dev/null" $TWAIT || { fail $n "guest a never finished linux-kernel"; return; }
        killall httpd iperf3 2>/dev/null
        ip link set ntb0 down
        for m in ntb_netdev ntb_transport ntb_hw_ivshmem; do
            step rmmod $m || { fail $n "unloading $m failed"; return; }
        done
        step ntb-transport bind $IVSHMEM --driver vfio-pci || { fail $n "ntb-transport bind failed"; return; }
        # 1. Linux -> ntb-transport: guest a pings, ntb_netdev sends ARP requests (42 bytes) on queue
        #    pair 0; serve expects a control message and stops at the first frame, naming its size.
        step ntb-transport serve $TPORT --role endpoint --backend host --link-timeout $TWAIT --dir /tmp \
            && { fail $n "serve ended without seeing a frame"; return; }
        grep -q 'got 42 bytes of data' /tmp/step.out || { fail $n "no 42-byte ARP frame arrived: $(step_reason)"; return; }
        # 2. ntb-transport -> Linux: a file holding one Ethernet frame (an ICMP echo request to a) is
        #    sent; the frame is one message, which ntb_netdev hands to a's stack (a checks its counters).
        #    send then waits for a result that never comes (a answers with ARP): it fails, as it must.
        echo "$LINUX_ICMP_FRAME" | xxd -r -p > /tmp/ntb-icmp-frame.bin
        step ntb-transport send $TPORT --role endpoint --backend host --link-timeout $TWAIT /tmp/ntb-icmp-frame.bin
        pass $n
        return
    fi
    # Guest a: the Linux stack stays; the peer leaves (carrier off) and comes back as ntb-transport.
    wait_for 'carrier 0' $TWAIT || { fail $n "ntb0 kept its carrier: the peer's rmmod was not seen as link down"; return; }
    echo "    ntb0 carrier down (guest b unloaded the Linux stack)"
    wait_for 'carrier 1' $((TWAIT * 2)) || { fail $n "ntb0 has no carrier with ntb-transport on the other side: Linux's queue pair did not come up; dmesg: $(dmesg | grep -i 'ntb' | tail -n 3 | tr '\n' ' ')"; return; }
    echo "    ntb0 carrier up with ntb-transport as the peer: $(dmesg | grep 'qp 0: Link Up' | tail -n1 | sed 's/^\[[^]]*\] //')"
    echos0=$(icmp_in_echos)
    tx0=$(cat /sys/class/net/ntb0/statistics/tx_packets)
    ip neigh flush dev ntb0 > /dev/null 2>&1
    # ARP requests only: ntb-transport does not answer them.
    ping -c 3 -W 1 $LNET_B > /dev/null 2>&1
    echo "    ntb0 sent $(( $(cat /sys/class/net/ntb0/statistics/tx_packets) - tx0 )) frames to ntb-transport"
    wait_for '[ "$(icmp_in_echos)" -gt "$echos0" ]' $((TWAIT * 2)) \
        || { fail $n "the ICMP frame ntb-transport sent never reached a's stack (InEchos $echos0; ntb0 rx_packets $(cat /sys/class/net/ntb0/statistics/rx_packets), rx_errors $(cat /sys/class/net/ntb0/statistics/rx_errors))"; return; }
    echo "    a's stack took ntb-transport's ICMP echo request (Icmp InEchos $echos0 -> $(icmp_in_echos)); ntb0 rx_packets $(cat /sys/class/net/ntb0/statistics/rx_packets)"
    pass $n
}

run_scenarios() {
    dmesg > /tmp/dmesg.boot
    for s in $RIG_SCENARIOS; do
        case "$s" in
            boot) scenario_boot ;;
            vfio-dma) scenario_vfio_dma ;;
            iommu-isolation) scenario_iommu_isolation ;;
            uio-irq) scenario_uio_irq ;;
            broken-ioctl) scenario_broken_ioctl ;;
            ivshmem-share) scenario_ivshmem_share ;;
            transport-link) scenario_transport_link ;;
            transport-perf) scenario_transport_perf ;;
            transport-pingpong) scenario_transport_pingpong ;;
            transport-file) scenario_transport_file ;;
            transport-link-down) scenario_transport_link_down ;;
            transport-serve) scenario_transport_serve ;;
            transport-poweroff) scenario_transport_poweroff ;;
            linux-perf) scenario_linux_perf ;;
            linux-kernel) scenario_linux_kernel ;;
            linux-userspace) scenario_linux_userspace ;;
            *) fail "$s" "unknown scenario" ;;
        esac
    done
}
