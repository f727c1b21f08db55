public import PCIKit
import Synchronization
import CNTBShim
#if canImport(Glibc)
import Glibc
#endif

/// The endpoint side of a virtual NTB, behaving like Linux `pci-epf-vntb.c`: it publishes the control
/// region, serves the host's commands and polls the host's doorbells from a service thread every
/// ``pollInterval`` (5 ms like `epf_ntb_cmd_handler`; shorter in fast mode), and rings the host with MSIs.
///
/// Fast mode (a ``pollInterval`` below Linux's 5 ms) backs off while nothing needs it: after a pass
/// that served no command, with no thread asleep in ``waitForEvents(timeout:)``, the next pass comes
/// twice as late, up to Linux's 5 ms (``linuxPollInterval``); a served command or a sleeping waiter
/// brings it back to ``pollInterval`` at once (a waiter wakes the service thread when it backed off).
/// A waiter keeps it there only while doorbells come (one was seen in the last ``busyWindow``): an idle
/// link with a thread asleep on it is polled as by Linux, at most every 5 ms, not 10 000 times a second.
/// Nobody can tell the difference, because ``pollEvents()`` and ``readDoorbell()`` scan the doorbell
/// array themselves, and the pass only matters to a sleeper. This deviation from vNTB (which polls at
/// one fixed period) keeps a fast-mode endpoint from waking 10 000 times a second on the core of a
/// polling data path (docs/hardware-reference.md §3.2: doorbells are polled by a delayed work).
///
/// Doorbell numbering (docs/hardware-reference.md §3.2): the host writes slot `b + 2` for its bit `b`; this side
/// reports it as bit `b` (vNTB reports `slot - 1`, an off-by-one between the two Linux sides that Linux
/// hides by kicking every queue). Ringing bit `b` raises MSI `b + 3` (1-based), host vector `b + 2`.
public final class VNTBEndpointDevice<Controller: EndpointController>: NTBDevice, @unchecked Sendable {
    public let name: String
    public let controller: Controller
    /// How often the service thread looks at commands and doorbells (while it has something to do; see
    /// the type's documentation for the idle back-off).
    public let pollInterval: Duration
    /// `epf_ntb_cmd_handler`'s period: `queue_delayed_work(kpcintf_workqueue, &ntb->cmd_handler,
    /// msecs_to_jiffies(5))`; the longest a fast-mode service thread sleeps when idle.
    public static var linuxPollInterval: Duration { .milliseconds(5) }
    public let scratchpadCount: Int
    /// Doorbell slots served (configfs `db_count`).
    public let doorbellSlots: Int

    @usableFromInline let ctrl: MMIORegion
    @usableFromInline let ownSpads: MMIORegion
    @usableFromInline let peerSpads: MMIORegion
    private let dbSpace: MMIORegion
    private let windowSizes: [Int]

    private let doorbells = SoftwareDoorbells()
    private let linkEventPending = Atomic<Bool>(false)
    private let linkSeen = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let serviceLock = Mutex<Void>(())
    /// Signalled when a doorbell or link event arrives, for ``waitForEvents(timeout:)``.
    public let eventNotifier: EventNotifier
    /// Optional interrupt for host doorbell writes (vNTB `msi_doorbell`, `pci_epf_alloc_doorbell`): when it
    /// fires the doorbell array is scanned at once instead of at the next poll.
    private let doorbellInterrupt: EventNotifier?
    private let poller: DescriptorPoller
    /// Wakes a backed-off service thread when a waiter arrives.
    private let serviceWake: EventNotifier
    /// Threads asleep in ``waitForEvents(timeout:)``: while any, the service thread polls at ``pollInterval``.
    private let sleepers = Atomic<Int>(0)
    /// Whether the service thread currently sleeps longer than ``pollInterval`` (a waiter must wake it).
    private let backedOff = Atomic<Bool>(false)
    /// Set by every scan that found a rung doorbell; the service thread takes it each pass.
    private let doorbellSeen = Atomic<Bool>(false)
    /// When a scan last found a rung doorbell (nanoseconds of the monotonic clock): a waiter wakes a
    /// backed-off service thread only while doorbells come.
    private let lastDoorbellNanos = Atomic<Int64>(0)
    /// How long after the last doorbell a sleeping waiter still keeps the service thread at ``pollInterval``.
    static var busyWindow: Duration { .milliseconds(20) }
    static var busyWindowNanos: Int64 { 20_000_000 }
    static func monotonicNanos() -> Int64 {
        var t = timespec()
        unsafe clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) &* 1_000_000_000 &+ Int64(t.tv_nsec)
    }
    /// Service passes so far, for tests and statistics.
    public var servicePasses: Int { passes.load(ordering: .relaxed) }
    private let passes = Atomic<Int>(0)
    private var thread: pthread_t?
    /// Commands served, for tests and statistics.
    public var commandsServed: Int { served.load(ordering: .relaxed) }
    private let served = Atomic<Int>(0)

    /// Publishes the control region (`epf_ntb_config_spad_bar_alloc`, `epf_ntb_db_bar_init`) and starts the
    /// service thread.
    public init(
        name: String, controller: Controller, scratchpadCount: Int = 64, doorbellSlots: Int = 16,
        pollInterval: Duration = .milliseconds(5), doorbellInterrupt: EventNotifier? = nil
    ) throws(NTBError) {
        precondition(scratchpadCount >= 0 && scratchpadCount <= EPFControl.maximumScratchpads)
        precondition(doorbellSlots >= EPFControl.minimumVectors && doorbellSlots <= EPFControl.slots)
        let sizes = controller.memoryWindowSizes
        precondition(!sizes.isEmpty && sizes.count <= EPFControl.maxMemoryWindows)
        self.name = name
        self.controller = controller
        self.pollInterval = pollInterval
        self.scratchpadCount = scratchpadCount
        self.doorbellSlots = doorbellSlots
        self.windowSizes = sizes
        let config = controller.configSpace
        let version1 = controller.memoryWindowOffsets != nil
        // ctrl_size = ALIGN(sizeof(struct epf_ntb_ctrl), 4); spads follow it.
        let ctrlSize = version1 ? EPFControl.sizeVersion1 : EPFControl.sizeVersion0
        guard config.length >= ctrlSize + 2 * 4 * scratchpadCount else {
            throw .unsupported("\(name): the config BAR (\(config.length) bytes) cannot hold the control region and \(scratchpadCount) scratchpads per side")
        }
        guard controller.doorbellSpace.length >= 4 * doorbellSlots else {
            throw .unsupported("\(name): the doorbell BAR (\(controller.doorbellSpace.length) bytes) cannot hold \(doorbellSlots) slots")
        }
        self.ctrl = config
        self.peerSpads = config.subregion(offset: ctrlSize, length: 4 * scratchpadCount)
        self.ownSpads = config.subregion(offset: ctrlSize + 4 * scratchpadCount, length: 4 * scratchpadCount)
        self.dbSpace = controller.doorbellSpace
        do { self.eventNotifier = try EventNotifier() } catch { throw .pci(error) }
        self.doorbellInterrupt = doorbellInterrupt
        do { self.serviceWake = try EventNotifier() } catch { throw .pci(error) }
        self.poller = DescriptorPoller((doorbellInterrupt.map { [$0.fd] } ?? []) + [serviceWake.fd])

        // Fresh function: everything zero, then the fields vNTB publishes.
        for off in stride(from: 0, to: ctrlSize + 8 * scratchpadCount, by: 4) { config.store32(0, at: off) }
        for off in stride(from: 0, to: dbSpace.length - dbSpace.length % 4, by: 4) { dbSpace.store32(0, at: off) }
        publishOwnedFields()
        Barrier.full()
        startService()
    }

    deinit { stop() }

    /// Control-region words restored by ``publishOwnedFields()`` because a host had overwritten them.
    public var ownedFieldsRepaired: Int { repaired.load(ordering: .relaxed) }
    private let repaired = Atomic<Int>(0)

    /// Writes (again) every field of the control region the endpoint function owns, as
    /// `epf_ntb_config_spad_bar_alloc` and `epf_ntb_db_bar_init` publish them at bind: topology, `num_mws`,
    /// `spad_offset`/`spad_count`, `db_entry_size`, `db_data[]`/`db_offset[]`, `mw_offset[]`/`mw_size[]`
    /// (docs/hardware-reference.md §3.1). A host only writes command, argument, addr, size and reads the rest,
    /// so a value that differs is a hostile or broken host's: Linux never rewrites them (it trusts its host),
    /// here they are rewritten when a host session ends and checked on every service pass, so one bad host
    /// cannot make every later host refuse the link. Only words that differ are written. Returns how many.
    @discardableResult
    func publishOwnedFields() -> Int {
        let ctrlSize = controller.memoryWindowOffsets != nil ? EPFControl.sizeVersion1 : EPFControl.sizeVersion0
        var fixed = 0
        func put(_ value: UInt32, _ offset: Int) {
            if ctrl.load32(at: offset) != value { ctrl.store32(value, at: offset); fixed += 1 }
        }
        put(controller.memoryWindowOffsets != nil ? 1 : 0, EPFControl.topology)
        put(UInt32(windowSizes.count), EPFControl.memoryWindowCount)
        put(UInt32(ctrlSize), EPFControl.spadOffset)
        put(UInt32(scratchpadCount), EPFControl.spadCount)
        put(4, EPFControl.doorbellEntrySize)
        for n in 0..<EPFControl.slots {
            put(UInt32(n + 1), EPFControl.doorbellData(n))   // db_data[i] = 1 + i
            put(0, EPFControl.doorbellOffset(n))
        }
        if let offsets = controller.memoryWindowOffsets {
            for n in 0..<windowSizes.count {
                put(UInt32(offsets[n]), EPFControl.mwOffset(n))
                put(UInt32(truncatingIfNeeded: windowSizes[n]), EPFControl.mwSize(n))
            }
        }
        if fixed > 0 { Barrier.write() }
        return fixed
    }

    // MARK: Service thread (epf_ntb_cmd_handler)

    private func startService() {
        running.store(true, ordering: .relaxed)
        let box = ServiceBox(self)
        thread = spawnThread { box.run() }
    }

    /// Stops the service thread (the function is unbound). Idempotent.
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        stopping.store(true, ordering: .releasing)
        serviceWake.signal()
        if let thread {
            // The last reference may be dropped on the service thread itself: then it just ends.
            if pthread_equal(thread, pthread_self()) != 0 { pthread_detach(thread) } else { pthread_join(thread, nil) }
        }
        thread = nil
    }

    private final class ServiceBox: @unchecked Sendable {
        weak var device: VNTBEndpointDevice?
        let interval: Duration
        let idleInterval: Duration
        init(_ device: VNTBEndpointDevice) {
            self.device = device
            self.interval = device.pollInterval
            self.idleInterval = max(device.pollInterval, VNTBEndpointDevice.linuxPollInterval)
        }
        func run() {
            var next = interval
            var lastDoorbell = ContinuousClock.now
            while let device, !device.stopping.load(ordering: .acquiring) {
                let served = device.serviceOnce()
                let now = ContinuousClock.now
                if device.doorbellSeen.exchange(false, ordering: .relaxed) { lastDoorbell = now }
                let ringing = now - lastDoorbell < VNTBEndpointDevice.busyWindow
                // Back off while idle (no command, nobody asleep on a link that rings); see the type's documentation.
                if served || (ringing && device.sleepers.load(ordering: .sequentiallyConsistent) > 0) { next = interval } else { next = min(next * 2, idleInterval) }
                device.backedOff.store(next > interval, ordering: .sequentiallyConsistent)
                // A waiter that arrived after the look above sees backedOff and wakes us (store, then load on
                // both sides, sequentially consistent: one of the two sees the other).
                if next > interval, ringing, device.sleepers.load(ordering: .sequentiallyConsistent) > 0 { next = interval; device.backedOff.store(false, ordering: .sequentiallyConsistent) }
                if next <= .zero { sched_yield(); continue }
                // msi_doorbell: doorbells also interrupt us; commands are still polled (vNTB: every 500 ms,
                // here at the configured interval so tests stay fast).
                if device.poller.wait(timeout: next) > 0 {
                    if device.doorbellInterrupt != nil, device.poller.isReady(0) { device.doorbellInterrupt!.consume() }
                    if device.poller.isReady(device.poller.count - 1) { device.serviceWake.consume() }
                }
            }
        }
    }

    /// One pass of `epf_ntb_cmd_handler`: scan doorbells, then take and serve one command. Returns
    /// whether there was a command.
    @discardableResult
    public func serviceOnce() -> Bool {
        passes.add(1, ordering: .relaxed)
        return serviceLock.withLock { _ -> Bool in
            scanDoorbells()
            // Validate the owned fields every pass (a few dozen loads; writes only on a difference).
            let fixed = publishOwnedFields()
            if fixed > 0 { repaired.add(fixed, ordering: .relaxed) }
            let command = ctrl.load32(at: EPFControl.command)
            guard command != 0 else { return false }
            Barrier.read()
            let argument = ctrl.load32(at: EPFControl.argument)
            ctrl.store32(0, at: EPFControl.command)
            ctrl.store32(0, at: EPFControl.argument)
            let ok = serve(command, argument)
            Barrier.write()
            ctrl.store16(ok ? EPFControl.statusOK : EPFControl.statusError, at: EPFControl.commandStatus)
            served.add(1, ordering: .relaxed)
            return true
        }
    }

    private func serve(_ raw: UInt32, _ argument: UInt32) -> Bool {
        guard let command = EPFCommand(rawValue: raw) else { return false }
        switch command {
        case .configureDoorbell:
            // vNTB answers OK; the vector count tells the controller which MSIs the host listens to.
            let vectors = Int(argument & 0xFFFF)
            guard vectors >= 1 && vectors <= EPFControl.maximumVectors else { return false }
            controller.enableMSI(vectors: vectors, msix: argument & EPFControl.msixEnable != 0)
            return true
        case .teardownDoorbell:
            controller.enableMSI(vectors: 0, msix: false)
            return true
        case .configureMemoryWindow:
            // epf_ntb_configure_mw: map the outbound window onto host address `addr`, `size` bytes.
            let window = Int(argument)
            guard window < windowSizes.count else { return false }
            let addr = ctrl.load64(at: EPFControl.lowerAddress)
            let size = ctrl.load64(at: EPFControl.lowerSize)
            guard size > 0 && size <= UInt64(windowSizes[window]) else { return false }
            do { try controller.mapOutbound(window: window, hostAddress: addr, size: Int(size)) } catch { return false }
            return true
        case .teardownMemoryWindow:
            let window = Int(argument)
            guard window < windowSizes.count else { return false }
            controller.unmapOutbound(window: window)
            return true
        case .linkUp:
            setLink(true)
            return true
        case .linkDown:
            setLink(false)
            return true
        }
    }

    /// epf_ntb_link_up: set or clear LINK_STATUS_UP and raise a link event locally.
    private func setLink(_ up: Bool) {
        // One atomic read-modify-write: the link word is read by other threads (isLinkUp) and by the host.
        SharedWord.update16(ctrl, at: EPFControl.linkStatus, mask: EPFControl.linkUpBit, on: up)
        linkEventPending.store(true, ordering: .releasing)
        eventNotifier.signal()
    }

    /// The host went away (reset, crash, cable): link down, outbound windows and MSIs torn down, as a
    /// LINK_DOWN plus TEARDOWN_* would do.
    public func hostLost() {
        serviceLock.withLock { _ in
            for w in 0..<windowSizes.count { controller.unmapOutbound(window: w) }
            controller.enableMSI(vectors: 0, msix: false)
            ctrl.store32(0, at: EPFControl.command)
            ctrl.store16(0, at: EPFControl.commandStatus)
            // The next host must find the control region as bound, whatever the last one wrote.
            let fixed = publishOwnedFields()
            if fixed > 0 { repaired.add(fixed, ordering: .relaxed) }
            setLink(false)
        }
    }

    /// Takes every rung slot (atomically, so a ring between look and clear is not lost) into pending bits.
    @discardableResult
    private func scanDoorbells() -> Bool {
        var found: UInt64 = 0
        for slot in 2..<doorbellSlots {
            let p = unsafe UnsafeMutableRawPointer(dbSpace.baseAddress + slot * 4).assumingMemoryBound(to: UInt32.self)
            // Relaxed exchange on memory the host writes through the BAR (plain memory on the EP side).
            if unsafe ntb_xchg32(p, 0) != 0 { found |= UInt64(1) << UInt64(slot - 2) }
        }
        guard found != 0 else { return false }
        doorbellSeen.store(true, ordering: .relaxed)
        lastDoorbellNanos.store(Self.monotonicNanos(), ordering: .relaxed)
        if doorbells.post(found) { eventNotifier.signal() }
        return true
    }

    // MARK: Link

    public var isLinkUp: Bool { SharedWord.load16(ctrl, at: EPFControl.linkStatus) & EPFControl.linkUpBit != 0 }
    /// vntb_epf_link_enable/disable do nothing: the host drives the link.
    public func enableLink() throws(NTBError) {}
    public func disableLink() throws(NTBError) {}

    // MARK: Inbound windows (MW BARs into our memory)

    public var memoryWindowCount: Int { windowSizes.count }

    public func memoryWindowAlignment(_ window: Int) throws(NTBError) -> MemoryWindowAlignment {
        precondition(window >= 0 && window < windowSizes.count, "memory window \(window) out of range")
        // vntb_epf_mw_get_align: SZ_4K, 1, mws_size[idx].
        return MemoryWindowAlignment(addressAlignment: EPFControl.translationAlignment, sizeAlignment: 1, maxSize: UInt64(windowSizes[window]))
    }

    public func allocateInboundBuffer(length: Int, alignment: Int) throws(NTBError) -> DMABuffer {
        try controller.allocate(length: length, alignment: max(alignment, Int(EPFControl.translationAlignment)))
    }

    public func setMemoryWindowTranslation(_ window: Int, busAddress: UInt64, size: Int) throws(NTBError) {
        precondition(window >= 0 && window < windowSizes.count, "memory window \(window) out of range")
        guard size > 0 && size <= windowSizes[window] else {
            throw .unsupported("\(name): MW\(window) translation of \(size) bytes; the window takes 1...\(windowSizes[window]) bytes")
        }
        guard busAddress % EPFControl.translationAlignment == 0 else {
            throw .unsupported("\(name): MW\(window) translation address 0x\(String(busAddress, radix: 16)) is not 4 KiB aligned")
        }
        try controller.setInboundTranslation(window: window, busAddress: busAddress, size: size)
    }

    public func clearMemoryWindowTranslation(_ window: Int) throws(NTBError) {
        precondition(window >= 0 && window < windowSizes.count, "memory window \(window) out of range")
        controller.clearInboundTranslation(window: window)
    }

    // MARK: Outbound windows (mapped by the host's CONFIGURE_MW)

    public var peerMemoryWindowCount: Int { windowSizes.count }

    public func peerMemoryWindow(_ window: Int) throws(NTBError) -> MMIORegion {
        precondition(window >= 0 && window < windowSizes.count, "peer memory window \(window) out of range")
        return controller.outboundWindow(window)
    }

    // MARK: Scratchpads: own = second half, peer = first half (hardware-reference §3.3)

    @inlinable public func readScratchpad(_ index: Int) -> UInt32 { ownSpads.load32(at: index * 4) }
    @inlinable public func writeScratchpad(_ index: Int, _ value: UInt32) { ownSpads.store32(value, at: index * 4) }
    @inlinable public func readPeerScratchpad(_ index: Int) -> UInt32 { peerSpads.load32(at: index * 4) }
    @inlinable public func writePeerScratchpad(_ index: Int, _ value: UInt32) { peerSpads.store32(value, at: index * 4) }

    // MARK: Doorbells

    public var doorbellValidMask: UInt64 {
        // Bits whose slot we serve (slot = bit + 2 < db_count) and whose MSI the function has (bit + 3).
        let bySlots = doorbellSlots - 2
        let byMSI = controller.msiVectorCount - 2
        return (UInt64(1) << UInt64(max(0, min(bySlots, byMSI)))) - 1
    }

    public func doorbellVectorMask(_ vector: Int) -> UInt64 {
        // ntb_db_event(ntb, i) is called with the slot number: slot i carries bit i - 2.
        vector >= 2 && vector < doorbellSlots ? UInt64(1) << UInt64(vector - 2) : 0
    }

    /// Pending bits, after a scan of the doorbell array (as ``pollEvents()``), so a reader never depends
    /// on the service thread's period.
    public func readDoorbell() -> UInt64 {
        scanDoorbells()
        return doorbells.read()
    }
    public func clearDoorbell(_ bits: UInt64) { doorbells.clear(bits) }
    /// vntb_epf_db_set_mask is a no-op; the mask is kept in software.
    public func setDoorbellMask(_ bits: UInt64) { doorbells.setMask(bits) }
    public func clearDoorbellMask(_ bits: UInt64) { doorbells.clearMask(bits) }
    public var doorbellMask: UInt64 { doorbells.maskBits }

    /// Raises MSI `b + 3` for every set bit `b` (vntb_epf_peer_db_set: `ffs(db_bits) + 1`, plus one because
    /// MSI numbers are 1-based).
    public func ringPeerDoorbell(_ bits: UInt64) {
        precondition(bits & ~doorbellValidMask == 0, "doorbell bits 0x\(String(bits, radix: 16)) outside the valid mask 0x\(String(doorbellValidMask, radix: 16))")
        var rest = bits
        while rest != 0 {
            let bit = rest.trailingZeroBitCount
            rest &= rest - 1
            controller.raiseMSI(bit + 3)
        }
    }

    // MARK: Events

    /// Scans the doorbell array itself (no system call), so a spinning caller sees a host doorbell at once.
    public func pollEvents() -> NTBEvents {
        scanDoorbells()
        var events: NTBEvents = []
        if doorbells.hasUnmasked { events.insert(.doorbell) }
        let up = isLinkUp
        if linkSeen.exchange(up, ordering: .relaxed) != up { events.insert(.link) }
        if linkEventPending.exchange(false, ordering: .acquiring) { events.insert(.link) }
        return events
    }

    public func waitForEvents(timeout: Duration) -> NTBEvents {
        waitForDoorbells(.max, timeout: timeout)
    }

    /// One queue pair's wait: returns on `bits`, a link change, or another wake of this side's
    /// interrupt (the eDMA engine's), not on other queue pairs' doorbells.
    public func waitForDoorbells(_ bits: UInt64, timeout: Duration) -> NTBEvents {
        let deadline = now() + timeout
        // A sleeper keeps the service thread at pollInterval (it signals the eventNotifier on a doorbell).
        sleepers.add(1, ordering: .sequentiallyConsistent)
        defer { sleepers.subtract(1, ordering: .releasing) }
        if backedOff.load(ordering: .sequentiallyConsistent),
           Self.monotonicNanos() &- lastDoorbellNanos.load(ordering: .relaxed) < Self.busyWindowNanos { serviceWake.signal() }
        func look() -> NTBEvents {
            var events = pollEvents()
            events.remove(.doorbell)
            if doorbells.hasUnmasked(bits) { events.insert(.doorbell) }
            return events
        }
        while true {
            eventNotifier.consume()   // before looking, so a signal after the look wakes the wait below
            let events = look()
            if !events.isEmpty { return events }
            let left = deadline - now()
            if left <= .zero { return [] }
            if eventNotifier.wait(timeout: min(left, max(pollInterval, .milliseconds(1)))) {
                // Woken without a doorbell of ours or a link change: another source of this side's
                // interrupt (the eDMA engine's, edma backend) — the caller looks at its rings.
                let after = look()
                return after.isEmpty ? .other : after
            }
        }
    }
}
