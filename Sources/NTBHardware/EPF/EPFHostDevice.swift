public import PCIKit
import Synchronization

/// The host side of an endpoint-function NTB (what Linux `ntb_hw_epf.c` drives): a vNTB endpoint
/// (`pci-epf-vntb.c`) seen through its BARs (docs/hardware-reference.md §3).
///
/// Works on ``MMIORegion`` views of the BARs and one ``EventNotifier`` per MSI/MSI-X vector, so the
/// same code runs on VFIO-mapped BARs and on the mock link's shared-memory files.
///
/// Differences from Linux, on purpose:
/// - Doorbell bits are a bitmask on both sides: host vector `v >= 2` reports bit `v - 2`, because the
///   endpoint raises vector `b + 2` for its bit `b` (`vntb_epf_peer_db_set`). Linux `ntb_epf_db_read`
///   returns "last vector + 1" instead. Vector 1 is never raised by vNTB and is ignored.
/// - `ringPeerDoorbell` writes every set bit (Linux writes only the lowest, `ffs`).
/// - `doorbellValidMask` only has bits whose slot the host can ring (`b + 2 <= db_count`); Linux
///   advertises one bit more, which `ntb_epf_peer_db_set` then refuses.
/// - Failed CONFIGURE_MW / TEARDOWN_MW throw (Linux ignores the status).
/// - CONFIGURE_DOORBELL is sent by ``enableLink()`` (Linux sends it at probe), so the device can be
///   opened and inspected while the endpoint is not running yet. After a peer reset ``enableLink()``
///   configures doorbells and re-applies the memory-window translations again.
@safe
public final class EPFHostDevice: NTBDevice, @unchecked Sendable {
    public let name: String
    public let map: EPFBARMap
    public private(set) var configuration: EPFConfiguration
    /// How long a command may take before ``NTBError/commandTimeout(command:after:)`` (Linux: 1 s).
    public let commandTimeout: Duration

    @usableFromInline let ctrl: MMIORegion
    @usableFromInline let doorbellBAR: MMIORegion
    @usableFromInline let ownSpads: MMIORegion
    @usableFromInline let peerSpads: MMIORegion
    private let windows: [MMIORegion]
    private let vectors: [EventNotifier]
    private let msix: Bool
    private let poller: DescriptorPoller
    private let extraSources: [EventNotifier]
    private let barLengths: [Int]
    private let allocator: (Int, Int) throws(NTBError) -> DMABuffer
    private let resources: [AnyObject]

    /// Per slot: byte offset in the doorbell BAR (low 32 bits) and the value to write (high 32 bits), from
    /// db_offset/db_data at CONFIGURE_DOORBELL. Atomics in a fixed table: ringing reads them without locks,
    /// allocation or reference counting; 0 = not configured.
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    /// Host doorbell vectors minus the link vector (`ndev->db_count`).
    public let doorbellCount: Int

    private let doorbells = SoftwareDoorbells()
    private let linkSeen = Atomic<Bool>(false)
    private let linkEventPending = Atomic<Bool>(false)
    private let commandLock = Mutex<Void>(())
    private let state = Mutex<(doorbellConfigured: Bool, enabled: Bool, translations: [Int: (UInt64, Int)])>((false, false, [:]))

    /// Opens the device.
    /// - Parameters:
    ///   - bars: views of BAR 0...5 (nil = not mapped).
    ///   - vectors: the MSI or MSI-X vectors the host allocated (4...32; vector 0 = link event).
    ///   - extraEventSources: further descriptors ``waitForEvents(timeout:)`` wakes on (e.g. a mock link monitor).
    ///   - resources: objects that must live as long as the device (BAR mappings, the VFIO device).
    ///   - allocator: allocates DMA memory for inbound windows (length, alignment).
    public init(
        name: String, bars: [MMIORegion?], map: EPFBARMap, vectors: [EventNotifier], msix: Bool,
        extraEventSources: [EventNotifier] = [], commandTimeout: Duration = .seconds(1),
        retaining resources: [AnyObject] = [],
        allocator: @escaping (Int, Int) throws(NTBError) -> DMABuffer
    ) throws(NTBError) {
        precondition(bars.count == 6, "pass all six BAR slots")
        guard vectors.count >= EPFControl.minimumVectors && vectors.count <= EPFControl.maximumVectors else {
            throw .unsupported("\(name): \(vectors.count) interrupt vectors; the EPF NTB needs \(EPFControl.minimumVectors)...\(EPFControl.maximumVectors) MSI or MSI-X vectors (ntb_epf_init_dev)")
        }
        guard let ctrl = bars[map.config] else { throw .unsupported("\(name): config BAR \(map.config) is not mapped") }
        guard let db = bars[map.doorbell] else { throw .unsupported("\(name): doorbell BAR \(map.doorbell) is not mapped") }
        if map.peerScratchpad != map.config && bars[map.peerScratchpad] == nil {
            throw .unsupported("\(name): peer scratchpad BAR \(map.peerScratchpad) is not mapped")
        }
        let lengths = bars.map { $0?.length ?? 0 }
        let config = try EPFConfiguration.read(ctrl: ctrl, map: map, barLengths: lengths)
        self.name = name
        self.map = map
        self.configuration = config
        self.commandTimeout = commandTimeout
        self.ctrl = ctrl
        self.doorbellBAR = db
        self.ownSpads = ctrl.subregion(offset: config.scratchpadOffset, length: config.scratchpadCount * 4)
        if map.peerScratchpad == map.config {
            // ntb_epf_init_pci: peer spads follow the host's own in the config BAR (hardware-reference §3.3).
            self.peerSpads = ctrl.subregion(offset: config.scratchpadOffset + config.scratchpadCount * 4, length: config.scratchpadCount * 4)
        } else {
            self.peerSpads = bars[map.peerScratchpad]!.subregion(offset: 0, length: config.scratchpadCount * 4)
        }
        self.windows = config.memoryWindows.map { bars[$0.bar]!.subregion(offset: $0.offset, length: $0.size) }
        self.vectors = vectors
        self.msix = msix
        self.extraSources = extraEventSources
        self.barLengths = lengths
        self.poller = DescriptorPoller(vectors.map(\.fd) + extraEventSources.map(\.fd))
        self.allocator = allocator
        self.resources = resources
        self.doorbellCount = vectors.count - 1
        unsafe self.slots = .allocate(capacity: EPFControl.slots)
        for n in 0..<EPFControl.slots { unsafe (slots + n).initialize(to: Atomic<UInt64>(0)) }
        // Start clean: interrupts raised before we opened belong to nobody.
        for v in vectors { v.consume() }
        linkSeen.store(Self.linkBit(ctrl), ordering: .relaxed)
    }

    deinit {
        unsafe slots.deinitialize(count: EPFControl.slots)
        unsafe slots.deallocate()
    }

    // MARK: Commands (ntb_epf_send_command)

    /// Sends one command and waits for the endpoint's status (hardware-reference §3.1: argument, then command;
    /// poll `command_status` every 5–10 µs up to the timeout; then write 0 to it).
    public func send(_ command: EPFCommand, argument: UInt32) throws(NTBError) {
        let result: NTBError? = commandLock.withLock { _ -> NTBError? in
            ctrl.store32(argument, at: EPFControl.argument)
            Barrier.write()
            ctrl.store32(command.rawValue, at: EPFControl.command)
            let deadline = now() + commandTimeout
            var outcome: NTBError? = nil
            while true {
                let expired = now() >= deadline
                let status = ctrl.load16(at: EPFControl.commandStatus)
                if status == EPFControl.statusOK { break }
                if status == EPFControl.statusError { outcome = .commandFailed(command: command.description, status: UInt32(status)); break }
                if status != 0 && status != 0xFFFF {
                    outcome = .invalidPeerValue(field: "command_status", value: UInt64(status), expected: "0, 1 (OK) or 2 (ERROR)")
                    break
                }
                if expired {
                    // Withdraw the command so a late endpoint does not act on it.
                    ctrl.store32(0, at: EPFControl.command)
                    outcome = .commandTimeout(command: command.description, after: commandTimeout)
                    break
                }
                sleep(for: .microseconds(5))
            }
            ctrl.store16(0, at: EPFControl.commandStatus)
            return outcome
        }
        if let result { throw result }
    }

    // MARK: Link

    @inline(__always)
    static func linkBit(_ ctrl: MMIORegion) -> Bool {
        let status = ctrl.load16(at: EPFControl.linkStatus)
        return status != 0xFFFF && status & EPFControl.linkUpBit != 0   // all-ones: the device is gone
    }

    public var isLinkUp: Bool { Self.linkBit(ctrl) }

    /// Configures doorbells (first time, or after a peer reset), re-applies the translations set with
    /// ``setMemoryWindowTranslation(_:busAddress:size:)``, then sends LINK_UP.
    public func enableLink() throws(NTBError) {
        let (configured, translations) = state.withLock { ($0.doorbellConfigured, $0.translations) }
        if !configured {
            _ = try EPFConfiguration.read(ctrl: ctrl, map: map, barLengths: barLengths)
                .checkedSame(as: configuration)
            try configureDoorbells()
            for (window, t) in translations.sorted(by: { $0.key < $1.key }) {
                try sendTranslation(window, busAddress: t.0, size: t.1)
            }
            state.withLock { $0.doorbellConfigured = true }
        }
        try send(.linkUp, argument: 0)
        state.withLock { $0.enabled = true }
        linkEventPending.store(true, ordering: .releasing)
    }

    public func disableLink() throws(NTBError) {
        state.withLock { $0.enabled = false }
        try send(.linkDown, argument: 0)
        linkEventPending.store(true, ordering: .releasing)
    }

    /// Whether ``enableLink()`` was called and ``disableLink()`` was not.
    public var isLinkEnabled: Bool { state.withLock { $0.enabled } }

    /// Forgets what the endpoint was told (its function was reset or restarted): the next
    /// ``enableLink()`` sends CONFIGURE_DOORBELL and the translations again.
    public func peerReset() {
        state.withLock { $0.doorbellConfigured = false }
        linkEventPending.store(true, ordering: .releasing)
    }

    /// CONFIGURE_DOORBELL with the vector count (`ntb_epf_init_isr`), then reads the doorbell slots.
    private func configureDoorbells() throws(NTBError) {
        let count = UInt32(vectors.count)
        try send(.configureDoorbell, argument: (msix ? EPFControl.msixEnable : 0) | count)
        // Slot n (n = bit + 2) is at db_entry_size * n + db_offset[n] and takes db_data[n]
        // (ntb_epf_peer_db_set). Validate every slot we may ring against the doorbell BAR.
        let entry = configuration.doorbellEntrySize
        var offsets = [Int](repeating: 0, count: vectors.count)
        var data = [UInt32](repeating: 0, count: vectors.count)
        for n in 2..<vectors.count {
            let off = ctrl.load32(at: EPFControl.doorbellOffset(n))
            let at = UInt64(entry) * UInt64(n) + UInt64(off)
            guard at % 4 == 0, at + 4 <= UInt64(doorbellBAR.length) else {
                throw .invalidPeerValue(field: "db_offset[\(n)]", value: UInt64(off), expected: "a 4-byte aligned offset that keeps slot \(n) inside the \(doorbellBAR.length)-byte doorbell BAR")
            }
            offsets[n] = Int(at)
            data[n] = ctrl.load32(at: EPFControl.doorbellData(n))
        }
        for n in 2..<vectors.count {
            unsafe slots[n].store(UInt64(data[n]) << 32 | UInt64(offsets[n]), ordering: .releasing)
        }
    }

    // MARK: Inbound windows (the endpoint's outbound window mapped onto our memory)

    public var memoryWindowCount: Int { configuration.memoryWindowCount }

    public func memoryWindowAlignment(_ window: Int) throws(NTBError) -> MemoryWindowAlignment {
        precondition(window >= 0 && window < memoryWindowCount, "memory window \(window) out of range")
        // ntb_epf_mw_get_align: SZ_4K, 1, the MW BAR size (the RFC: mw_size[n]).
        return MemoryWindowAlignment(addressAlignment: EPFControl.translationAlignment, sizeAlignment: 1,
                                     maxSize: UInt64(configuration.memoryWindows[window].size))
    }

    public func allocateInboundBuffer(length: Int, alignment: Int) throws(NTBError) -> DMABuffer {
        try allocator(length, max(alignment, Int(EPFControl.translationAlignment)))
    }

    public func setMemoryWindowTranslation(_ window: Int, busAddress: UInt64, size: Int) throws(NTBError) {
        precondition(window >= 0 && window < memoryWindowCount, "memory window \(window) out of range")
        let limit = configuration.memoryWindows[window].size
        guard size > 0 && size <= limit else {
            throw .unsupported("\(name): MW\(window) translation of \(size) bytes; the window takes 1...\(limit) bytes")
        }
        guard busAddress % EPFControl.translationAlignment == 0 else {
            throw .unsupported("\(name): MW\(window) translation address 0x\(String(busAddress, radix: 16)) is not 4 KiB aligned")
        }
        let configured = state.withLock { $0.doorbellConfigured }
        if configured { try sendTranslation(window, busAddress: busAddress, size: size) }
        state.withLock { $0.translations[window] = (busAddress, size) }
    }

    private func sendTranslation(_ window: Int, busAddress: UInt64, size: Int) throws(NTBError) {
        // ntb_epf_mw_set_trans: addr and size halves, then CONFIGURE_MW with the index.
        ctrl.store32(UInt32(truncatingIfNeeded: busAddress), at: EPFControl.lowerAddress)
        ctrl.store32(UInt32(truncatingIfNeeded: busAddress >> 32), at: EPFControl.upperAddress)
        ctrl.store32(UInt32(truncatingIfNeeded: UInt64(size)), at: EPFControl.lowerSize)
        ctrl.store32(UInt32(truncatingIfNeeded: UInt64(size) >> 32), at: EPFControl.upperSize)
        try send(.configureMemoryWindow, argument: UInt32(window))
    }

    public func clearMemoryWindowTranslation(_ window: Int) throws(NTBError) {
        precondition(window >= 0 && window < memoryWindowCount, "memory window \(window) out of range")
        let (configured, had) = state.withLock { s in (s.doorbellConfigured, s.translations.removeValue(forKey: window) != nil) }
        if configured && had { try send(.teardownMemoryWindow, argument: UInt32(window)) }
    }

    // MARK: Outbound windows (MW BARs)

    public var peerMemoryWindowCount: Int { configuration.memoryWindowCount }

    public func peerMemoryWindow(_ window: Int) throws(NTBError) -> MMIORegion {
        precondition(window >= 0 && window < peerMemoryWindowCount, "peer memory window \(window) out of range")
        return windows[window]
    }

    // MARK: Scratchpads (ntb_epf_spad_* / ntb_epf_peer_spad_*)

    public var scratchpadCount: Int { configuration.scratchpadCount }

    @inlinable public func readScratchpad(_ index: Int) -> UInt32 { ownSpads.load32(at: index * 4) }
    @inlinable public func writeScratchpad(_ index: Int, _ value: UInt32) { ownSpads.store32(value, at: index * 4) }
    @inlinable public func readPeerScratchpad(_ index: Int) -> UInt32 { peerSpads.load32(at: index * 4) }
    @inlinable public func writePeerScratchpad(_ index: Int, _ value: UInt32) { peerSpads.store32(value, at: index * 4) }

    // MARK: Doorbells

    public var doorbellValidMask: UInt64 { (UInt64(1) << UInt64(doorbellCount - 1)) - 1 }

    public func doorbellVectorMask(_ vector: Int) -> UInt64 {
        vector >= 2 && vector <= doorbellCount ? UInt64(1) << UInt64(vector - 2) : 0
    }

    public func readDoorbell() -> UInt64 { doorbells.read() }
    public func clearDoorbell(_ bits: UInt64) { doorbells.clear(bits) }
    public func setDoorbellMask(_ bits: UInt64) { doorbells.setMask(bits) }
    public func clearDoorbellMask(_ bits: UInt64) { doorbells.clearMask(bits) }
    /// Masked bits (kept in software: vNTB has no mask register, `ntb_epf_db_set_mask` is a no-op).
    public var doorbellMask: UInt64 { doorbells.maskBits }

    /// Writes `db_data[n]` to slot `n = bit + 2` of the doorbell BAR for every set bit (ntb_epf_peer_db_set).
    public func ringPeerDoorbell(_ bits: UInt64) {
        precondition(bits & ~doorbellValidMask == 0, "doorbell bits 0x\(String(bits, radix: 16)) outside the valid mask 0x\(String(doorbellValidMask, radix: 16))")
        var rest = bits
        while rest != 0 {
            let bit = rest.trailingZeroBitCount
            rest &= rest - 1
            let slot = bit + 2
            let entry = unsafe slots[slot].load(ordering: .acquiring)
            guard entry != 0 else { continue }   // not configured: the endpoint has no doorbell array yet
            doorbellBAR.store32(UInt32(truncatingIfNeeded: entry >> 32), at: Int(UInt32(truncatingIfNeeded: entry)))
        }
    }

    // MARK: Events

    public func pollEvents() -> NTBEvents {
        _ = poller.wait(milliseconds: 0)
        return collect()
    }

    public func waitForEvents(timeout: Duration) -> NTBEvents {
        waitForDoorbells(.max, timeout: timeout)
    }

    /// One queue pair's wait: every ready vector still becomes a pending bit (ntb_epf_vec_isr), but
    /// only `bits`, the link and the mock monitor end the wait (other queue pairs' doorbells stay
    /// pending for their own threads).
    public func waitForDoorbells(_ bits: UInt64, timeout: Duration) -> NTBEvents {
        // vNTB raises no interrupt for link changes, so wake at least every 10 ms to look at link_status
        // (NTB_LINK_DOWN_TIMEOUT is 10 ms in ntb_transport).
        let deadline = now() + timeout
        func ours(_ found: NTBEvents) -> NTBEvents {
            var events = found
            events.remove(.doorbell)
            if doorbells.hasUnmasked(bits) { events.insert(.doorbell) }
            return events
        }
        // Bits another waiter already collected end the wait without a system call.
        if doorbells.hasUnmasked(bits) { return ours(collect()) }
        while true {
            // One poll per round, no non-blocking one first: a poll returns at once when a vector is
            // already ready.
            let left = deadline - now()
            // To the nanosecond (ppoll): a caller's sub-millisecond slice (a sender re-checking the
            // peer's tail) must not become a whole millisecond.
            _ = poller.wait(timeout: left > .zero ? min(left, .milliseconds(10)) : .zero)
            let events = ours(collect())
            if !events.isEmpty || left <= .zero { return events }
        }
    }


    /// Turns ready vectors into pending bits (ntb_epf_vec_isr) and compares link_status with the last look.
    private func collect() -> NTBEvents {
        var events: NTBEvents = []
        for v in 0..<vectors.count where poller.isReady(v) {
            guard vectors[v].consume() > 0 else { continue }
            if v == 0 {
                events.insert(.link)
            } else if v >= 2 {
                doorbells.post(UInt64(1) << UInt64(v - 2))
            }
        }
        for e in 0..<extraSources.count where poller.isReady(vectors.count + e) {
            if extraSources[e].consume() > 0 { events.insert(.link) }   // link-side changes (mock link monitor)
        }
        if doorbells.hasUnmasked { events.insert(.doorbell) }
        let up = Self.linkBit(ctrl)
        if linkSeen.exchange(up, ordering: .relaxed) != up { events.insert(.link) }
        if linkEventPending.exchange(false, ordering: .acquiring) { events.insert(.link) }
        return events
    }
}

extension EPFConfiguration {
    /// Re-reading after a peer reset must give the same geometry (the BARs did not change size).
    func checkedSame(as old: EPFConfiguration) throws(NTBError) -> EPFConfiguration {
        guard self.memoryWindowCount == old.memoryWindowCount else {
            throw .invalidPeerValue(field: "num_mws", value: UInt64(memoryWindowCount), expected: "\(old.memoryWindowCount) as at open; reopen the device")
        }
        guard self.scratchpadCount == old.scratchpadCount && self.scratchpadOffset == old.scratchpadOffset else {
            throw .invalidPeerValue(field: "spad_count", value: UInt64(scratchpadCount), expected: "\(old.scratchpadCount) at offset \(old.scratchpadOffset) as at open; reopen the device")
        }
        return self
    }
}
