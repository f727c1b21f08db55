public import DWEDMA
public import NTBHardware
public import PCIKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One side of a mock NTB link as an ``NTBDevice``.
///
/// - Host role: the real ``EPFHostDevice`` (the `ntb_hw_epf` protocol code) over the mock BAR files, with
///   the MSI FIFOs as vectors. The link is up when the endpoint published LINK_UP *and* is alive; after the
///   endpoint restarts, the host configures it again and links up by itself if ``enableLink()`` was called.
/// - Endpoint role: a ``VNTBEndpointDevice`` over ``MockEndpointController``; the host's death is seen as
///   link down (`hostLost`).
@safe
public final class MockNTBDevice: NTBDevice, @unchecked Sendable {
    public let link: MockLink
    public let role: MockRole
    public let name: String

    @usableFromInline enum Backend {
        case host(EPFHostDevice)
        case endpoint(VNTBEndpointDevice<MockEndpointController>)
    }
    @usableFromInline let backend: Backend
    /// The same adapters, unretained, for the per-message doorbell: binding an enum payload retains it,
    /// and these objects' weak references (link callbacks) put their counts in a side table, which made
    /// every doorbell pay ~230 instructions of reference counting. `backend` keeps them alive.
    @usableFromInline let hostRef: Unmanaged<EPFHostDevice>?
    @usableFromInline let endpointRef: Unmanaged<VNTBEndpointDevice<MockEndpointController>>?
    /// Memory of this process on the link (host: host RAM; endpoint: endpoint RAM and host RAM), e.g. for
    /// the DW eDMA engine model's address map.
    public let memorySegments: [MockMemorySegment]
    private let wantLink = Flag()
    /// The endpoint went away since the link was last brought up: a new one needs configuring.
    private let needsRelink = Flag()
    private let closed = Flag()
    private let embeddedDoorbell: EventNotifier?
    /// Endpoint: the DW eDMA engine model this process hosts; host: its attached register mapping.
    private let edma = Mutex<(model: EDMAEngineModel?, mapping: EDMARegisterMapping?, copyHook: (@Sendable (EDMADirection, Int) -> Void)?)>((nil, nil, nil))

    /// Tests: the ``EDMAModelConfiguration/copyHook`` of the engine model this endpoint starts (set
    /// before the model starts, e.g. before the edma transport is opened).
    public func setEDMACopyHook(_ hook: @escaping @Sendable (EDMADirection, Int) -> Void) {
        edma.withLock { $0.copyHook = hook }
    }

    /// Options for opening a side.
    public struct Options: Sendable {
        /// Endpoint: how often vNTB looks at commands and doorbells (5 ms like Linux; shorter = fast mode).
        public var pollInterval: Duration = .milliseconds(5)
        /// Host: how long a command may take.
        public var commandTimeout: Duration = .seconds(1)
        /// Host: how long to wait for an endpoint that has never initialised the control region.
        public var endpointWait: Duration = .seconds(5)
        public init() {}
        /// Fast mode for tests and benchmarks: 100 µs endpoint polling.
        public static var fast: Options { var o = Options(); o.pollInterval = .microseconds(100); return o }
    }

    /// The endpoint's view, for tests and tools.
    public var endpoint: VNTBEndpointDevice<MockEndpointController>? {
        if case let .endpoint(d) = backend { return d }
        return nil
    }
    /// The host's EPF adapter, for tests and tools.
    public var host: EPFHostDevice? {
        if case let .host(d) = backend { return d }
        return nil
    }

    public init(directory: String = MockLink.defaultDirectory, role: MockRole, options: Options = Options()) throws(NTBError) {
        let link = try MockLink(at: directory, role: role)
        self.link = link
        self.role = role
        self.name = "mock:\(directory)[\(role)]"
        let c = link.configuration
        switch role {
        case .endpoint:
            let controller = try MockEndpointController(link: link)
            let interrupt = c.msiDoorbell ? try link.interrupt(MockLink.endpointDoorbellFile, slot: MockLink.endpointDoorbellSlot) : nil
            interrupt?.consume()
            let device = try VNTBEndpointDevice(
                name: name, controller: controller, scratchpadCount: c.scratchpadCount, doorbellSlots: c.doorbellSlots,
                pollInterval: options.pollInterval, doorbellInterrupt: interrupt)
            backend = .endpoint(device)
            unsafe hostRef = nil
            unsafe endpointRef = Unmanaged.passUnretained(device)
            memorySegments = [controller.endpointRAM.segment, controller.hostRAM]
            embeddedDoorbell = nil
            link.onPeerChange { [weak device] present in if !present { device?.hostLost() } }
            // A host that lived less than one beat was never seen arriving: a link up without a host is stale.
            link.onTick { [weak device, weak link] in
                guard let device, let link, !link.isPeerPresent, device.isLinkUp else { return }
                device.hostLost()
            }
        case .host:
            let map = c.profile.map
            let sizes = c.barSizes
            var bars = [MMIORegion?](repeating: nil, count: 6)
            bars[map.config] = try link.mapFile(MockLink.configFile, length: sizes[map.config]).region
            bars[map.doorbell] = try link.mapFile(MockLink.doorbellFile, length: sizes[map.doorbell]).region
            // MW BARs: each window file at its place in its BAR (RFC offsets, or one BAR per window).
            for n in 0..<c.memoryWindowCount {
                let bar = map.memoryWindows[n]!
                if bars[bar] == nil { bars[bar] = unsafe MMIORegion(base: try link.reserve(sizes[bar]), length: sizes[bar]) }
                let offset = c.profile.usesWindowOffsets ? n * c.memoryWindowSize : 0
                let fd = try link.openFD(MockLink.windowFile(n))
                _ = try unsafe MockSys.map(fd, offset: 0, length: c.memoryWindowSize, at: bars[bar]!.baseAddress + offset, what: "mw\(n).bar")
            }
            let ram = try link.mapFile(MockLink.hostRAMFile)
            let arena = RAMArena(segment: unsafe MockMemorySegment(name: "host RAM", busAddress: MockLinkConfiguration.hostRAMBus, length: ram.region.length, pointer: ram.region.baseAddress))
            let vectors = try (0..<c.msiVectors).map { n throws(NTBError) in try link.interrupt(MockLink.msiFile(n), slot: n) }
            embeddedDoorbell = c.msiDoorbell ? try link.interrupt(MockLink.endpointDoorbellFile, slot: MockLink.endpointDoorbellSlot) : nil
            // A control region never written means no endpoint ever ran here: wait for one.
            let ctrl = bars[map.config]!
            let deadline = ContinuousClock.now + options.endpointWait
            while ctrl.load32(at: EPFControl.memoryWindowCount) == 0 || link.page.load32(at: Page.side(MockRole.endpoint.index) + Page.sideReady) != 1 {
                if ContinuousClock.now >= deadline {
                    if ctrl.load32(at: EPFControl.memoryWindowCount) != 0 { break }   // a previous endpoint's region: usable, link down
                    throw .unsupported("mock:\(directory): no endpoint has initialised the link; start `ntb-transport ... --port mock:\(directory) --role endpoint` first")
                }
                usleep(2000)
            }
            let device = try EPFHostDevice(
                name: name, bars: bars, map: map, vectors: vectors, msix: false, extraEventSources: [link.monitorNotifier],
                commandTimeout: options.commandTimeout, retaining: [link], allocator: { (length, alignment) throws(NTBError) in try arena.allocate(length: length, alignment: alignment) })
            backend = .host(device)
            unsafe hostRef = Unmanaged.passUnretained(device)
            unsafe endpointRef = nil
            memorySegments = [arena.segment]
            let want = wantLink, needsRelink = needsRelink, closed = closed
            link.onPeerChange { [weak device] present in
                guard !present else { return }
                device?.peerReset()
                needsRelink.value.store(true, ordering: .releasing)
            }
            let relinking = Flag()
            link.onTick { [weak device, weak link] in
                // The endpoint came back: configure it again and link up (what a re-probe would do). On its own
                // thread: a command may take up to the endpoint's poll interval, and the monitor must keep beating.
                guard let device, let link, want.isSet, needsRelink.isSet, !closed.isSet, link.isPeerPresent, !device.isLinkUp,
                      !relinking.value.exchange(true, ordering: .acquiringAndReleasing) else { return }
                spawnThread(detached: true) {
                    if !closed.isSet && want.isSet, (try? device.enableLink()) != nil {
                        needsRelink.value.store(false, ordering: .releasing)
                    }
                    relinking.value.store(false, ordering: .releasing)
                }
            }
        }
        link.markReady()
        if role == .host {
            // The endpoint's monitor sees a new host process as "the old host left, a new one came":
            // it first resets what the old host configured (vNTB hostLost). A host that configured
            // the link before that beat would have its LINK_UP undone, so wait until the endpoint
            // has beaten twice after we became ready (it has then looked at us at least once).
            link.waitForPeerBeats(2, timeout: .milliseconds(Int64(20 * max(1, c.heartbeatMilliseconds)) + 500))
        }
    }

    /// A flag shared with the monitor thread without retaining the device.
    private final class Flag: Sendable {
        let value = Atomic<Bool>(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
    }

    /// Stops the side's threads; the side is released when the device is freed.
    public func close() {
        closed.value.store(true, ordering: .releasing)
        edma.withLock { $0.model?.stop() }
        link.close()
        endpoint?.stop()
    }

    // MARK: DW eDMA engine model (docs/mock-device.md, "DW eDMA engine model" and "Mock NTB link")

    /// Endpoint: starts the DW eDMA engine model in this process, as the endpoint SoC's eDMA: its
    /// local address space is the endpoint RAM (inbound windows included, so host writes through a
    /// window are seen by the engine), its PCIe space the host RAM. The model's files (`edma-regs`,
    /// `edma-rings`) live in the link directory, where the host side attaches to them. Started once;
    /// later calls return the same model. Stopped by ``close()``.
    /// - Parameter localInterrupt: the endpoint's eDMA interrupt (DONE/ABORT with LIE), if wanted.
    public func startEDMAModel(writeChannels: Int = 4, readChannels: Int = 5,
                               localInterrupt: EventNotifier? = nil) throws(NTBError) -> EDMAEngineModel {
        guard role == .endpoint else {
            throw .unsupported("\(name): the eDMA engine model runs on the endpoint side; open the port with --role endpoint")
        }
        precondition((1...8).contains(writeChannels) && (1...8).contains(readChannels), "the model has 1...8 channels per direction")
        let local = BusAddressSpace([memorySegments[0].busSegment]), pcie = BusAddressSpace([memorySegments[1].busSegment])
        return try edma.withLock { (state) throws(NTBError) -> EDMAEngineModel in
            if let model = state.model { return model }
            do {
                let model = try EDMAEngineModel(EDMAModelConfiguration(
                    directory: link.directory, writeChannels: writeChannels, readChannels: readChannels,
                    localSpace: local, pcieSpace: pcie, localInterrupt: localInterrupt, copyHook: state.copyHook))
                // The eDMA's IMWr to the host's MSI window raises the endpoint function's MSI vector
                // (PCIe: an MSI is a memory write; the host's interrupt controller turns it into an IRQ).
                if let controller = endpoint?.controller {
                    for v in 0..<controller.msiVectorCount {
                        if let n = controller.msiNotifier(v) { model.registerMSI(address: MockLinkConfiguration.msiAddress, data: UInt32(v), notifier: n) }
                    }
                }
                state.model = model
                return model
            } catch {
                throw .unsupported("\(name): cannot start the eDMA engine model: \(error); check that \(link.directory) is writable")
            }
        }
    }

    /// Host: the endpoint's eDMA registers as the host reaches them through the eDMA window (the
    /// register block at 2P of the last memory window, RFC v3 patch 25): the model's host-side posted-write
    /// register space. On silicon that part of the BAR is an inbound iATU sub-mapping of the
    /// controller's registers; the mock's window files are plain memory, which cannot forward
    /// accesses to the model, so the host reaches the model's register space here instead. The
    /// mapping lives as long as the device.
    /// - Throws: when no endpoint process hosts a model on this link.
    /// The engine model this process hosts (endpoint, after ``startEDMAModel(writeChannels:readChannels:localInterrupt:)``), if any.
    public var runningEDMAModel: EDMAEngineModel? { edma.withLock { $0.model } }

    public func peerEDMARegisters() throws(NTBError) -> PostedWriteRegisterSpace {
        guard role == .host else {
            throw .unsupported("\(name): the endpoint drives its eDMA locally (startEDMAModel); peer registers are the host's view")
        }
        return try edma.withLock { (state) throws(NTBError) -> PostedWriteRegisterSpace in
            if let mapping = state.mapping { return mapping.space(.host) }
            do {
                let mapping = try EDMARegisterMapping.attach(directory: link.directory)
                state.mapping = mapping
                return mapping.space(.host)
            } catch {
                throw .unsupported("\(name): no DW eDMA engine model serves this link (\(error)); the endpoint process starts one (tool: `edma publish`)")
            }
        }
    }

    // MARK: NTBDevice

    public var isLinkUp: Bool {
        switch backend {
        case let .host(d): link.isPeerPresent && d.isLinkUp
        case let .endpoint(d): d.isLinkUp
        }
    }

    public func enableLink() throws(NTBError) {
        switch backend {
        case let .host(d):
            wantLink.value.store(true, ordering: .releasing)
            guard link.isPeerPresent else {
                // No endpoint yet (it is being restarted): link up when it comes (the tick handler's relink),
                // so the transport waits for it within its own link timeout instead of failing at once.
                needsRelink.value.store(true, ordering: .releasing)
                return
            }
            do throws(NTBError) { try d.enableLink() } catch {
                // An endpoint that was killed is still "present" until its heartbeat goes stale (a few beats), and
                // does not answer: the same as absent. Relink when an endpoint answers; other errors stand.
                guard case .commandTimeout = error else { throw error }
                needsRelink.value.store(true, ordering: .releasing)
                return
            }
            needsRelink.value.store(false, ordering: .releasing)
        case let .endpoint(d): try d.enableLink()
        }
    }

    public func disableLink() throws(NTBError) {
        switch backend {
        case let .host(d):
            wantLink.value.store(false, ordering: .releasing)
            try d.disableLink()
        case let .endpoint(d): try d.disableLink()
        }
    }

    public var memoryWindowCount: Int {
        switch backend { case let .host(d): d.memoryWindowCount; case let .endpoint(d): d.memoryWindowCount }
    }
    public func memoryWindowAlignment(_ window: Int) throws(NTBError) -> MemoryWindowAlignment {
        switch backend { case let .host(d): try d.memoryWindowAlignment(window); case let .endpoint(d): try d.memoryWindowAlignment(window) }
    }
    public func allocateInboundBuffer(length: Int, alignment: Int) throws(NTBError) -> DMABuffer {
        switch backend { case let .host(d): try d.allocateInboundBuffer(length: length, alignment: alignment); case let .endpoint(d): try d.allocateInboundBuffer(length: length, alignment: alignment) }
    }
    public func setMemoryWindowTranslation(_ window: Int, busAddress: UInt64, size: Int) throws(NTBError) {
        switch backend { case let .host(d): try d.setMemoryWindowTranslation(window, busAddress: busAddress, size: size); case let .endpoint(d): try d.setMemoryWindowTranslation(window, busAddress: busAddress, size: size) }
    }
    public func clearMemoryWindowTranslation(_ window: Int) throws(NTBError) {
        switch backend { case let .host(d): try d.clearMemoryWindowTranslation(window); case let .endpoint(d): try d.clearMemoryWindowTranslation(window) }
    }
    public var peerMemoryWindowCount: Int {
        switch backend { case let .host(d): d.peerMemoryWindowCount; case let .endpoint(d): d.peerMemoryWindowCount }
    }
    public func peerMemoryWindow(_ window: Int) throws(NTBError) -> MMIORegion {
        switch backend { case let .host(d): try d.peerMemoryWindow(window); case let .endpoint(d): try d.peerMemoryWindow(window) }
    }
    public var scratchpadCount: Int {
        switch backend { case let .host(d): d.scratchpadCount; case let .endpoint(d): d.scratchpadCount }
    }
    @inlinable public func readScratchpad(_ index: Int) -> UInt32 {
        switch backend { case let .host(d): d.readScratchpad(index); case let .endpoint(d): d.readScratchpad(index) }
    }
    @inlinable public func writeScratchpad(_ index: Int, _ value: UInt32) {
        switch backend { case let .host(d): d.writeScratchpad(index, value); case let .endpoint(d): d.writeScratchpad(index, value) }
    }
    @inlinable public func readPeerScratchpad(_ index: Int) -> UInt32 {
        switch backend { case let .host(d): d.readPeerScratchpad(index); case let .endpoint(d): d.readPeerScratchpad(index) }
    }
    @inlinable public func writePeerScratchpad(_ index: Int, _ value: UInt32) {
        switch backend { case let .host(d): d.writePeerScratchpad(index, value); case let .endpoint(d): d.writePeerScratchpad(index, value) }
    }
    public var doorbellValidMask: UInt64 {
        switch backend { case let .host(d): d.doorbellValidMask; case let .endpoint(d): d.doorbellValidMask }
    }
    public func doorbellVectorMask(_ vector: Int) -> UInt64 {
        switch backend { case let .host(d): d.doorbellVectorMask(vector); case let .endpoint(d): d.doorbellVectorMask(vector) }
    }
    public func readDoorbell() -> UInt64 {
        switch backend { case let .host(d): d.readDoorbell(); case let .endpoint(d): d.readDoorbell() }
    }
    public func clearDoorbell(_ bits: UInt64) {
        switch backend { case let .host(d): d.clearDoorbell(bits); case let .endpoint(d): d.clearDoorbell(bits) }
    }
    public func setDoorbellMask(_ bits: UInt64) {
        switch backend { case let .host(d): d.setDoorbellMask(bits); case let .endpoint(d): d.setDoorbellMask(bits) }
    }
    public func clearDoorbellMask(_ bits: UInt64) {
        switch backend { case let .host(d): d.clearDoorbellMask(bits); case let .endpoint(d): d.clearDoorbellMask(bits) }
    }
    /// Masked doorbell bits (kept in software on both sides).
    public var doorbellMask: UInt64 {
        switch backend { case let .host(d): d.doorbellMask; case let .endpoint(d): d.doorbellMask }
    }
    public func ringPeerDoorbell(_ bits: UInt64) {
        if let hostRef = unsafe hostRef {
            unsafe hostRef._withUnsafeGuaranteedRef { $0.ringPeerDoorbell(bits) }
            embeddedDoorbell?.signal()   // msi_doorbell: the write to the doorbell BAR is an MSI at the endpoint
        } else {
            unsafe endpointRef.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.ringPeerDoorbell(bits) }
        }
    }
    public func pollEvents() -> NTBEvents {
        switch backend { case let .host(d): d.pollEvents(); case let .endpoint(d): d.pollEvents() }
    }
    public func waitForEvents(timeout: Duration) -> NTBEvents {
        switch backend { case let .host(d): d.waitForEvents(timeout: timeout); case let .endpoint(d): d.waitForEvents(timeout: timeout) }
    }
    public func waitForDoorbells(_ bits: UInt64, timeout: Duration) -> NTBEvents {
        switch backend { case let .host(d): d.waitForDoorbells(bits, timeout: timeout); case let .endpoint(d): d.waitForDoorbells(bits, timeout: timeout) }
    }
}

/// The mock link's eDMA engine model as the generic capability the transport uses: the endpoint
/// hosts the model (``MockNTBDevice/startEDMAModel(writeChannels:readChannels:localInterrupt:)``),
/// the host reaches its registers (``MockNTBDevice/peerEDMARegisters()``).
extension MockNTBDevice: PeerEDMAAccess {
    public var edmaSide: EDMASide { role == .host ? .host : .endpoint }

    /// Host: the queue pair's doorbell vector (bit q = vector q + 2), as an MSI the endpoint's eDMA
    /// can write (IMWr) when a transfer completes, so that a waiting host wakes.
    public func edmaCompletionInterrupt(queuePair: Int) -> EDMAInterruptTarget? {
        guard role == .host, queuePair + 2 < link.configuration.msiVectors else { return nil }
        return EDMAInterruptTarget(address: MockLinkConfiguration.msiAddress, data: UInt16(queuePair + 2))
    }

    public func localEDMARegisters(writeChannels: Int, readChannels: Int) throws(NTBError) -> PostedWriteRegisterSpace {
        // The engine's local interrupt (LIE: DONE/ABORT, the host's notify-channel DMA among them)
        // wakes this side's waitForEvents, as the eDMA IRQ wakes the RFC's endpoint driver.
        try startEDMAModel(writeChannels: writeChannels, readChannels: readChannels,
                           localInterrupt: endpoint?.eventNotifier).registerSpace(.endpoint)
    }
}
