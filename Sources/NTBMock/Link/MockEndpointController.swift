import CNTBShim
public import NTBHardware
public import PCIKit
import Synchronization

/// The endpoint controller of the mock link (what `pci_epc_*` does on a real SoC), in the endpoint's process.
///
/// - Inbound (host → endpoint): the host maps `mwN.bar` as its MW BAR. Pointing window N at endpoint RAM
///   bus address X copies the RAM there into `mwN.bar` and maps `mwN.bar` over X in this process's view of
///   `ep.ram`; host writes then land in endpoint memory at X at once, as through an inbound iATU. Moving
///   the translation copies the window's content back into `ep.ram` first.
/// - Outbound (endpoint → host): each outbound window is a reserved range; CONFIGURE_MW maps `host.ram`
///   at the host's address over it (`pci_epc_map_addr`); unmapped parts are private zero memory, so writes
///   there reach nobody.
/// - MSI: vector v of the host is the FIFO `msi<v>.fifo`; raising MSI n (1-based) signals FIFO n-1 if the
///   host enabled at least n vectors with CONFIGURE_DOORBELL.
@safe
public final class MockEndpointController: EndpointController, @unchecked Sendable {
    public let link: MockLink
    public let configSpace: MMIORegion
    public let doorbellSpace: MMIORegion
    public let memoryWindowSizes: [Int]
    public let memoryWindowOffsets: [Int]?
    public let msiVectorCount: Int
    /// Endpoint RAM (bus 0x8000_0000) and host RAM (bus 0x1_0000_0000) as mapped in this process.
    public let endpointRAM: RAMArena
    public let hostRAM: MockMemorySegment

    private let endpointRAMFD: Int32
    private let hostRAMFD: Int32
    private let windowFDs: [Int32]
    private let outbound: [UnsafeMutableRawPointer]
    private let msi: [EventNotifier]
    private let enabledVectors = Atomic<Int>(0)
    private let inbound = Mutex<[(bus: UInt64, size: Int)?]>([])
    private var defaultBuffers: [DMABuffer] = []

    init(link: MockLink) throws(NTBError) {
        self.link = link
        let c = link.configuration
        let map = c.profile.map
        let sizes = c.barSizes
        configSpace = try link.mapFile(MockLink.configFile, length: sizes[map.config]).region
        doorbellSpace = try link.mapFile(MockLink.doorbellFile, length: sizes[map.doorbell]).region
        memoryWindowSizes = Array(repeating: c.memoryWindowSize, count: c.memoryWindowCount)
        memoryWindowOffsets = c.profile.usesWindowOffsets ? (0..<c.memoryWindowCount).map { $0 * c.memoryWindowSize } : nil
        msiVectorCount = c.msiVectors
        let ep = try link.mapFile(MockLink.endpointRAMFile)
        endpointRAMFD = ep.fd
        let host = try link.mapFile(MockLink.hostRAMFile)
        hostRAMFD = host.fd
        endpointRAM = RAMArena(segment: unsafe MockMemorySegment(name: "endpoint RAM", busAddress: MockLinkConfiguration.endpointRAMBus, length: ep.region.length, pointer: ep.region.baseAddress))
        hostRAM = unsafe MockMemorySegment(name: "host RAM", busAddress: MockLinkConfiguration.hostRAMBus, length: host.region.length, pointer: host.region.baseAddress)
        var fds: [Int32] = []
        var out: [UnsafeMutableRawPointer] = unsafe []
        for n in 0..<c.memoryWindowCount {
            fds.append(try link.openFD(MockLink.windowFile(n)))
            unsafe out.append(try link.reserve(c.memoryWindowSize))
        }
        windowFDs = fds
        unsafe outbound = out
        msi = try (0..<c.msiVectors).map { n throws(NTBError) in try link.interrupt(MockLink.msiFile(n), slot: n) }
        inbound.withLock { $0 = Array(repeating: nil, count: c.memoryWindowCount) }
        // pci_epf_alloc_space at bind: each MW BAR gets its own buffer in endpoint memory.
        for n in 0..<c.memoryWindowCount {
            let buffer = try endpointRAM.allocate(length: c.memoryWindowSize, alignment: 4096)
            defaultBuffers.append(buffer)
            try setInboundTranslation(window: n, busAddress: buffer.region.busAddress, size: c.memoryWindowSize)
        }
    }

    private func pointer(_ bus: UInt64) -> UnsafeMutableRawPointer {
        unsafe endpointRAM.segment.pointer + Int(bus - endpointRAM.segment.busAddress)
    }

    public func setInboundTranslation(window: Int, busAddress: UInt64, size: Int) throws(NTBError) {
        let seg = endpointRAM.segment
        guard seg.contains(busAddress, length: size), busAddress % 4096 == 0, size > 0, size <= memoryWindowSizes[window] else {
            throw .unsupported("mock endpoint: MW\(window) cannot translate to 0x\(String(busAddress, radix: 16))+\(size): outside the endpoint RAM 0x\(String(seg.busAddress, radix: 16))+\(seg.length) or not 4 KiB aligned")
        }
        let mapped = MockSys.roundUp(size, MockSys.pageSize)
        try inbound.withLock { (table) throws(NTBError) in
            for (n, t) in table.enumerated() where n != window {
                if let t, busAddress < t.bus + UInt64(MockSys.roundUp(t.size, MockSys.pageSize)), t.bus < busAddress + UInt64(mapped) {
                    throw .unsupported("mock endpoint: MW\(window) at 0x\(String(busAddress, radix: 16)) would overlap MW\(n)'s translation; the mock cannot alias one buffer through two windows")
                }
            }
            try restore(&table, window)
            let p = unsafe pointer(busAddress)
            unsafe MockSys.writeFile(windowFDs[window], from: p, length: mapped, offset: 0)
            _ = try unsafe MockSys.map(windowFDs[window], offset: 0, length: mapped, at: p, what: "mw\(window).bar")
            table[window] = (busAddress, size)
            publish(window, busAddress)
        }
    }

    /// Puts the window's current content back into `ep.ram` and maps `ep.ram` there again.
    private func restore(_ table: inout [(bus: UInt64, size: Int)?], _ window: Int) throws(NTBError) {
        guard let old = table[window] else { return }
        let mapped = MockSys.roundUp(old.size, MockSys.pageSize)
        let offset = Int(old.bus - endpointRAM.segment.busAddress)
        let p = unsafe pointer(old.bus)
        unsafe MockSys.writeFile(endpointRAMFD, from: p, length: mapped, offset: offset)
        _ = try unsafe MockSys.map(endpointRAMFD, offset: offset, length: mapped, at: p, what: "ep.ram")
        table[window] = nil
    }

    private func publish(_ window: Int, _ bus: UInt64) {
        let page = link.page
        page.store64(page.load64(at: Page.inboundSeq) &+ 1, at: Page.inboundSeq)
        page.store64(bus, at: Page.inboundBus + 8 * window)
    }

    /// Points the window back at the function's own buffer.
    public func clearInboundTranslation(window: Int) {
        let buffer = defaultBuffers[window]
        try? setInboundTranslation(window: window, busAddress: buffer.region.busAddress, size: memoryWindowSizes[window])
    }

    /// The endpoint RAM bus address each inbound window translates to.
    public var inboundTranslations: [(bus: UInt64, size: Int)?] { inbound.withLock { $0 } }

    public func mapOutbound(window: Int, hostAddress: UInt64, size: Int) throws(NTBError) {
        guard hostRAM.contains(hostAddress, length: size), hostAddress % 4096 == 0 else {
            throw .unsupported("mock endpoint: CONFIGURE_MW \(window) to 0x\(String(hostAddress, radix: 16))+\(size) is outside the host RAM 0x\(String(hostRAM.busAddress, radix: 16))+\(hostRAM.length)")
        }
        unmapOutbound(window: window)
        _ = try unsafe MockSys.map(hostRAMFD, offset: Int(hostAddress - hostRAM.busAddress), length: MockSys.roundUp(size, MockSys.pageSize), at: outbound[window], what: "host.ram")
    }

    public func unmapOutbound(window: Int) {
        _ = try? unsafe MockSys.mapAnonymous(length: MockSys.roundUp(memoryWindowSizes[window], MockSys.pageSize), at: outbound[window])
    }

    public func outboundWindow(_ window: Int) -> MMIORegion {
        unsafe MMIORegion(base: outbound[window], length: memoryWindowSizes[window])
    }

    public func raiseMSI(_ number: Int) {
        let vector = number - 1
        guard vector >= 0 && vector < msi.count && vector < enabledVectors.load(ordering: .acquiring) else { return }
        msi[vector].signal()
    }

    /// The interrupt behind the host's MSI vector `vector` (0-based), for memory writes to the MSI
    /// window that a model delivers as that vector (the eDMA's IMWr).
    public func msiNotifier(_ vector: Int) -> EventNotifier? { vector >= 0 && vector < msi.count ? msi[vector] : nil }

    public func enableMSI(vectors: Int, msix: Bool) { enabledVectors.store(vectors, ordering: .releasing) }

    public func allocate(length: Int, alignment: Int) throws(NTBError) -> DMABuffer {
        try endpointRAM.allocate(length: length, alignment: alignment)
    }
}
