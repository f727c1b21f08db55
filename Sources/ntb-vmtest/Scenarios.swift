import PCIKit

// The rig's scenarios (docs/qemu-rig.md), run inside the QEMU guest against edu devices. They use
// only PCIKit's public API: VFIODevice / VFIOContainer / UIODevice / EventNotifier / DMABuffer.

/// Size of the DMA buffer the scenarios map: two pages (VFIO_IOMMU_MAP_DMA wants whole pages).
/// Page 0 holds the source pattern, page 1 receives the round trip.
let bufferLength = 8192
let receiveOffset = 4096
/// What untouched memory holds, so a partial or misplaced write shows.
let canary: UInt8 = 0xee
let interruptTimeout: Duration = .seconds(5)
/// edu starts a DMA 100 ms (virtual time) after the command; under TCG a few hundred ms of host time.
let dmaTimeoutMilliseconds = 5000

/// Byte `i` of the test pattern for `seed` (never equal to the canary).
func patternByte(_ i: Int, seed: UInt8) -> UInt8 {
    let b = UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed) &+ (i >> 8))
    return b == canary ? 0x11 : b
}

func fill(_ region: DMARegion, offset: Int, count: Int, seed: UInt8?) {
    precondition(offset >= 0 && count >= 0 && offset + count <= region.length)
    for i in 0..<count {
        unsafe region.address.storeBytes(of: seed.map { patternByte(i, seed: $0) } ?? canary, toByteOffset: offset + i, as: UInt8.self)
    }
}

/// Index of the first byte in `region[offset..<offset+count]` that differs from the pattern (or from
/// the canary when `seed` is nil), and how many differ.
func compare(_ region: DMARegion, offset: Int, count: Int, seed: UInt8?) -> (first: Int?, differing: Int) {
    var first: Int? = nil
    var differing = 0
    for i in 0..<count {
        let expected = seed.map { patternByte(i, seed: $0) } ?? canary
        if unsafe region.address.load(fromByteOffset: offset + i, as: UInt8.self) != expected {
            if first == nil { first = i }
            differing += 1
        }
    }
    return (first, differing)
}

/// The VFIO side shared by scenarios 1 and 2: the device opened, BAR0 mapped and probed, bus
/// mastering on, the MSI routed to an eventfd, and a DMA buffer mapped through the IOMMU.
struct VFIOEdu {
    let device: VFIODevice
    let bar0: MappedRegion
    let edu: Edu<MMIORegion>
    let msi: EventNotifier
    let buffer: DMABuffer

    init(_ address: PCIAddress, breakage: Breakage?) throws(VMTestError) {
        let device = try attempt("opening \(address) through VFIO") { () throws(PCIKitError) in try VFIODevice.open(address) }
        report("opened \(address): IOMMU group \(device.group.number), \(device.regionCount) regions, \(device.irqCount) IRQ indices")
        // The deliberate fault: a region index vfio-pci does not have, so VFIO_DEVICE_GET_REGION_INFO
        // fails in the kernel. A rig that passed with this would not be testing the ioctls.
        let index = breakage == .regionIndex ? 9 : 0
        if breakage == .regionIndex { report("NTB_VMTEST_BREAK=region-index: mapping region 9 instead of BAR0") }
        let bar0 = try attempt("mapping region \(index)") { () throws(PCIKitError) in try device.mapRegion(index) }
        report("BAR0 mapped: \(bar0.length) bytes, areas \(bar0.areas.map { "\($0.offset)+\($0.size)" })")
        let edu = Edu(registers: bar0.mmio)
        try edu.probe()
        report("edu identification \(hex(edu.registers.load32(at: EduMap.Register.identification))), liveness ok")
        try attempt("enabling bus mastering") { () throws(PCIKitError) in try device.enableBusMaster() }
        let vectors = try attempt("routing the MSI to an eventfd") { () throws(PCIKitError) in try device.enableInterrupts(.msi, count: 1) }
        let buffer = try attempt("allocating and IOMMU-mapping a DMA buffer") { () throws(PCIKitError) in
            try device.container.allocateDMA(length: bufferLength)
        }
        report("DMA buffer: \(buffer.region.length) bytes at IOVA \(hex(buffer.region.busAddress))")
        self.device = device
        self.bar0 = bar0
        self.edu = edu
        self.msi = vectors[0]
        self.buffer = buffer
    }

    /// Runs one edu DMA with a completion interrupt and waits for both the engine and the MSI.
    func dma(source: UInt64, destination: UInt64, count: Int, toRAM: Bool) throws(VMTestError) {
        edu.startDMA(source: source, destination: destination, count: count, toRAM: toRAM, interrupt: true)
        try edu.waitDMA(timeoutMilliseconds: dmaTimeoutMilliseconds)
        guard msi.wait(timeout: interruptTimeout) else {
            throw .check("no MSI on the eventfd within \(interruptTimeout) after the DMA completed (edu interrupt status \(hex(edu.interruptStatus)))")
        }
        let fired = msi.consume()
        let status = edu.interruptStatus
        guard status & EduMap.dmaCause != 0 else {
            throw .check("MSI arrived but edu's interrupt status is \(hex(status)), without the DMA cause 0x100")
        }
        edu.acknowledgeInterrupt(EduMap.dmaCause)
        report("  DMA \(toRAM ? "edu->RAM" : "RAM->edu") \(count) bytes \(hex(source)) -> \(hex(destination)): done, MSI x\(fired)")
    }

    func close() {
        buffer.close()
        try? device.disableInterrupts(.msi)
    }
}

/// Scenario 1: an edu DMA round trip RAM -> device -> RAM through an IOMMU-mapped buffer, with the MSI.
func runVFIODMA(_ address: PCIAddress) throws(VMTestError) {
    let rig = try VFIOEdu(address, breakage: try Breakage.fromEnvironment())
    defer { rig.close() }
    let region = rig.buffer.region
    let count = EduMap.maxTransfer
    let seed: UInt8 = 0x5a
    fill(region, offset: 0, count: count, seed: seed)
    fill(region, offset: receiveOffset, count: receiveOffset, seed: nil)
    try rig.dma(source: region.busAddress, destination: EduMap.bufferAddress, count: count, toRAM: false)
    try rig.dma(source: EduMap.bufferAddress, destination: region.busAddress + UInt64(receiveOffset), count: count, toRAM: true)
    let moved = compare(region, offset: receiveOffset, count: count, seed: seed)
    if let first = moved.first {
        throw .check("round trip corrupted \(moved.differing) of \(count) bytes (first at offset \(first))")
    }
    let beyond = compare(region, offset: receiveOffset + count, count: receiveOffset - count, seed: nil)
    if let first = beyond.first {
        throw .check("the device wrote \(beyond.differing) bytes past the \(count)-byte transfer (first at offset \(count + first))")
    }
    report("round trip: \(count) bytes RAM -> edu -> RAM identical, the rest of the page untouched; 2 MSIs")
}

/// Scenario 2: a DMA aimed at an IOVA the project did not map is blocked by the IOMMU.
///
/// The target is memory this process owns whose *physical* address is known (PCIKit's UIO DMA
/// allocator, through the second edu bound to uio_pci_generic): without translation a device write to
/// that address would land in it. That address is not mapped in the VFIO container, so the IOMMU must
/// drop the write. A control transfer to the mapped IOVA afterwards shows the engine did work.
func runIOMMUIsolation(_ address: PCIAddress, physicalFrom uioAddress: PCIAddress) throws(VMTestError) {
    let rig = try VFIOEdu(address, breakage: try Breakage.fromEnvironment())
    defer { rig.close() }
    let uio = try attempt("opening \(uioAddress) through UIO") { () throws(PCIKitError) in try UIODevice.open(uioAddress) }
    let target = try attempt("allocating physically addressed memory") { () throws(PCIKitError) in try uio.allocateDMA(length: 4096) }
    defer { target.close() }
    let physical = target.region.busAddress
    let mapped = rig.buffer.region.busAddress..<(rig.buffer.region.busAddress + UInt64(rig.buffer.region.length))
    guard !mapped.contains(physical) && !mapped.contains(physical + 4095) else {
        throw .check("the target's physical address \(hex(physical)) falls inside the mapped IOVA range \(hex(mapped.lowerBound))..<\(hex(mapped.upperBound)); the test would prove nothing")
    }
    report("target: 4096 bytes at physical \(hex(physical)), not mapped in the container (mapped: \(hex(mapped.lowerBound))..<\(hex(mapped.upperBound)))")

    let region = rig.buffer.region
    let count = EduMap.maxTransfer
    let seed: UInt8 = 0xa7
    fill(region, offset: 0, count: count, seed: seed)
    fill(region, offset: receiveOffset, count: receiveOffset, seed: nil)
    fill(target.region, offset: 0, count: target.region.length, seed: nil)
    try rig.dma(source: region.busAddress, destination: EduMap.bufferAddress, count: count, toRAM: false)
    // The write the IOMMU must block: IOVA = the target's physical address.
    try rig.dma(source: EduMap.bufferAddress, destination: physical, count: count, toRAM: true)
    let stray = compare(target.region, offset: 0, count: target.region.length, seed: nil)
    if let first = stray.first {
        throw .check("NOT ISOLATED: \(stray.differing) bytes of a DMA to the unmapped IOVA \(hex(physical)) landed in memory (first at offset \(first))")
    }
    report("blocked: a DMA of \(count) bytes to unmapped IOVA \(hex(physical)) left all \(target.region.length) bytes of the memory at that physical address untouched")
    // Control: the same transfer to the mapped IOVA lands.
    try rig.dma(source: EduMap.bufferAddress, destination: region.busAddress + UInt64(receiveOffset), count: count, toRAM: true)
    let moved = compare(region, offset: receiveOffset, count: count, seed: seed)
    if let first = moved.first {
        throw .check("control transfer to the mapped IOVA corrupted \(moved.differing) bytes (first at offset \(first)): the engine, not the IOMMU, may have dropped the blocked write")
    }
    report("control: the same transfer to the mapped IOVA \(hex(region.busAddress + UInt64(receiveOffset))) landed intact")
}

/// Scenario 3: edu bound to uio_pci_generic; BAR0 mapped and its INTx received through PCIKit's UIO code.
func runUIOInterrupt(_ address: PCIAddress) throws(VMTestError) {
    let uio = try attempt("opening \(address) through UIO") { () throws(PCIKitError) in try UIODevice.open(address) }
    report("opened \(address) as uio\(uio.number)")
    let bar0 = try attempt("mapping BAR0") { () throws(PCIKitError) in try uio.mapBAR(0) }
    report("BAR0 mapped: \(bar0.length) bytes")
    let edu = Edu(registers: bar0.mmio)
    try edu.probe()
    report("edu identification \(hex(edu.registers.load32(at: EduMap.Register.identification))), liveness ok")
    try attempt("enabling the interrupt") { () throws(PCIKitError) in try uio.enableInterrupt() }
    let early = try attempt("waiting for the interrupt") { () throws(PCIKitError) in try uio.waitForInterrupt(timeout: .milliseconds(200)) }
    guard !early else { throw .check("an interrupt arrived before the device raised one") }
    // Twice: the second proves that acknowledging at the device and re-enabling through /dev/uioN re-arms INTx.
    for (round, cause) in [UInt32(0x1), 0x2].enumerated() {
        edu.raiseInterrupt(cause)
        let fired = try attempt("waiting for the interrupt") { () throws(PCIKitError) in try uio.waitForInterrupt(timeout: interruptTimeout) }
        guard fired else {
            throw .check("interrupt \(round + 1) not received through /dev/uio\(uio.number) within \(interruptTimeout) (edu interrupt status \(hex(edu.interruptStatus)))")
        }
        let status = edu.interruptStatus
        guard status & cause != 0 else { throw .check("interrupt received but edu's status is \(hex(status)), without cause \(hex(cause))") }
        edu.acknowledgeInterrupt(cause)
        try attempt("re-enabling the interrupt") { () throws(PCIKitError) in try uio.enableInterrupt() }
        report("  INTx \(round + 1) (cause \(hex(cause))) received through /dev/uio\(uio.number), acknowledged, re-armed")
    }
}
