#if canImport(Glibc)
import Glibc
#endif
public import PCIKit

/// How much of the engine this side owns (the RFC's partial ownership, docs/hardware-reference.md §1.7, §5 fact 8).
public enum EDMAOwnership: Sendable, Equatable {
    /// This side owns the whole engine and may run the global power-off sequence.
    case engine
    /// This side owns only the channels it claims; global power-off is refused.
    case channels
}

/// Shared state of one controller: the lock of `dw->lock` and which channels are claimed.
/// Channels keep a strong reference only for their lifetime; the data path uses the raw lock pointer.
@safe
final class EDMAControllerState: @unchecked Sendable {
    let lock: UnsafeMutablePointer<pthread_mutex_t>
    var claimed: [UInt64] = [0, 0]

    init() {
        unsafe lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        unsafe lock.initialize(to: pthread_mutex_t())
        unsafe pthread_mutex_init(lock, nil)
    }

    deinit {
        unsafe pthread_mutex_destroy(lock)
        unsafe lock.deinitialize(count: 1)
        unsafe lock.deallocate()
    }

    func claim(_ d: EDMADirection, _ ch: Int) -> Bool {
        unsafe pthread_mutex_lock(lock)
        defer { unsafe pthread_mutex_unlock(lock) }
        let bit = UInt64(1) << UInt64(ch)
        if claimed[d.rawValue] & bit != 0 { return false }
        claimed[d.rawValue] |= bit
        return true
    }

    func release(_ d: EDMADirection, _ ch: Int) {
        unsafe pthread_mutex_lock(lock)
        claimed[d.rawValue] &= ~(UInt64(1) << UInt64(ch))
        unsafe pthread_mutex_unlock(lock)
    }
}

/// A DesignWare eDMA engine reached through its register map's core: ``EDMAv0Core`` (the v0 map, legacy
/// or unroll; ``DWEDMAController``) or ``HDMAv0Core`` (HDMA native; ``DWHDMAController``), each generic over
/// the register space, so the hardware path specialises to plain volatile accesses. One controller, as
/// Linux has one `dw_edma` with a `dw_edma_core_ops` per map.
///
/// ```swift
/// let edma = try DWEDMAController(registers: bar.subregion(offset: 0x80000, length: 0x2000),
///                                 mode: .remote, ownership: .channels)
/// var ch = try edma.channel(.read, 0, ll: llRegion.mmio, llBusAddress: llBus)
/// let id = try ch.submit([EDMATransfer(source: hostBus, destination: epBus, length: 4096)])
/// let result = try ch.wait(timeout: .seconds(1))
/// ```
public final class EDMAController<Core: EDMACore>: @unchecked Sendable {
    /// The register-level operations (one ops layer, as Linux `dw_edma_core_ops`).
    public let core: Core
    public let mode: EDMAMode
    public let ownership: EDMAOwnership
    /// Channel counts (v0: from `ctrl`, capped at 8; HDMA: the platform's).
    public let writeChannels: Int
    public let readChannels: Int
    let state: EDMAControllerState

    init(core: Core, state: EDMAControllerState, mode: EDMAMode, ownership: EDMAOwnership, writeChannels: Int, readChannels: Int) {
        self.core = core
        self.state = state
        self.mode = mode
        self.ownership = ownership
        self.writeChannels = writeChannels
        self.readChannels = readChannels
    }

    /// Channel count of a direction.
    public func channels(_ d: EDMADirection) -> Int { d == .write ? writeChannels : readChannels }

    /// Claims channel `index` of direction `d` with its LL region: `ll` is the CPU view of the region
    /// (coherent memory, or a BAR window when driving remotely), `llBusAddress` where the eDMA sees it.
    /// - Throws: ``EDMAError`` when the channel does not exist, is claimed, or the region is unusable.
    public func channel<LL: RegisterSpace>(_ d: EDMADirection, _ index: Int, ll: LL,
                                           llBusAddress: UInt64) throws(EDMAError) -> EDMAChannel<Core, LL> {
        guard index >= 0 && index < channels(d) else { throw .noSuchChannel(d, index, available: channels(d)) }
        guard LLElement.capacity(regionBytes: ll.length) >= 1, llBusAddress & 7 == 0 else {
            throw .badLinkedListRegion(size: ll.length, busAddress: llBusAddress)
        }
        guard state.claim(d, index) else { throw .channelClaimed(d, index) }
        return EDMAChannel(core: core, direction: d, index: index, mode: mode, ll: ll,
                           llBusAddress: llBusAddress, owner: state)
    }

    /// The core's power-off (`dw_edma_v0_core_off`, `dw_hdma_v0_core_off`). Refused under partial
    /// ownership: a remote side must never disable the other side's engine.
    public func powerOff() throws(EDMAError) {
        guard ownership == .engine else { throw .notEngineOwner }
        core.powerOff()
    }
}

/// A DesignWare eDMA with the v0 register map: the one ``EDMAController`` over the v0 core.
public typealias DWEDMAController<Space: RegisterSpace> = EDMAController<EDMAv0Core<Space>>

extension EDMAController {
    /// Reads the channel counts from `ctrl` and checks an engine answers.
    /// - Throws: ``EDMAError/noEngine(ctrl:)`` when `ctrl` reads all ones or no channels.
    public convenience init<Space: RegisterSpace>(registers: Space, format: EDMAMapFormat = .unroll, mode: EDMAMode,
                                                   ownership: EDMAOwnership) throws(EDMAError) where Core == EDMAv0Core<Space> {
        let state = EDMAControllerState()
        let ctrl = registers.load32(at: EDMARegisters.ctrl)
        let c = ControlRegister(rawValue: ctrl)
        if ctrl == 0xFFFF_FFFF || (c.writeChannels == 0 && c.readChannels == 0) { throw .noEngine(ctrl: ctrl) }
        self.init(core: unsafe EDMAv0Core(registers: registers, format: format, lock: state.lock), state: state,
                  mode: mode, ownership: ownership, writeChannels: c.writeChannels, readChannels: c.readChannels)
    }

    /// Interrupt emulation (hardware-reference §1.7, X1): a write to `int_status` asserts the endpoint's eDMA
    /// interrupt without setting DONE/ABORT; usable as a host→endpoint doorbell on implementations that
    /// support it (the engine model does). v0 map only.
    public func raiseEmulatedInterrupt<Space: RegisterSpace>(_ d: EDMADirection) where Core == EDMAv0Core<Space> {
        core.registers.store32(0, at: EDMARegisters.intStatus(d))
    }

    /// Deasserts an emulated interrupt: a write of 0 to `int_clear` (clears no status bit). v0 map only.
    public func clearEmulatedInterrupt<Space: RegisterSpace>(_ d: EDMADirection) where Core == EDMAv0Core<Space> {
        core.registers.store32(0, at: EDMARegisters.intClear(d))
    }
}

/// Why a submission ended early.
public struct EDMAAbort: Sendable, Equatable, CustomStringConvertible {
    /// The submission that aborted (as returned by ``EDMAChannel/submit(_:)-(UnsafeBufferPointer<EDMATransfer>)``).
    public var submission: UInt64
    /// The index of the failing element in the submission, from the channel's `llp` register when it
    /// points into the chain (the engine model sets it to the failing element; on hardware this
    /// reading of `llp` is inferred, not verified), nil otherwise.
    public var element: Int?
    /// `ch_control1` status after the abort.
    public var status: ChannelStatus

    public var description: String {
        "submission \(submission) aborted at element \(element.map(String.init) ?? "?") (channel status \(status.rawValue))"
    }
}

/// The end of a submission.
public enum EDMACompletion: Sendable, Equatable {
    case done(submission: UInt64)
    case aborted(EDMAAbort)
}

/// Per-channel counters (no logging in the data path).
public struct EDMAChannelCounters: Sendable, Equatable {
    public var submissions: UInt64 = 0
    public var elements: UInt64 = 0
    public var bytes: UInt64 = 0
    public var completions: UInt64 = 0
    public var aborts: UInt64 = 0
    public init() {}
}

/// One claimed eDMA channel: writes chains into its LL region, starts them, and reports completion.
///
/// One submission is in flight at a time (Linux also never rewrites a running LL): a submission is a
/// chain of up to ``capacity`` elements rung with one doorbell, so many buffers (a batch, or the
/// segments of a scatter-gather list) cost one doorbell. The cycle bit flips per submission; the
/// first submission, and the first after an abort, runs the full start sequence.
///
/// The channel is released when it goes away. Not thread-safe: one user at a time.
public struct EDMAChannel<Core: EDMACore, LL: RegisterSpace>: ~Copyable {
    public let direction: EDMADirection
    public let index: Int
    public let mode: EDMAMode
    /// Data elements the LL region holds (`ll_max = size / 24 − 1`).
    public let capacity: Int
    public let llBusAddress: UInt64
    @usableFromInline let core: Core
    @usableFromInline let ll: LL
    /// Cycle bit of the next submission (starts at 1, flips per submission).
    @inlinable
    public var cycle: Bool { _cycle }
    /// Whether the next start must run the first-start sequence (after claim or abort).
    @inlinable
    public var needsFullStart: Bool { _needsFullStart }
    /// Counters since the channel was claimed.
    @inlinable
    public var counters: EDMAChannelCounters { _counters }
    @usableFromInline var _cycle: Bool = true
    @usableFromInline var _needsFullStart: Bool = true
    @usableFromInline var _counters = EDMAChannelCounters()
    @usableFromInline var _noResponse = false
    @usableFromInline var _remoteOnly = false
    @usableFromInline var _lastShared: EDMASharedStatus?
    /// Whether the hardware channel was found idle (or made idle) since the claim; see ``takeOver()``.
    @usableFromInline var _tookOver = false
    /// How long ``takeOver()`` waits for a previous owner's chain, before and after the stop request.
    public var staleChainBound: Duration = .milliseconds(200)
    /// Whether the last poll read all ones from `int_status` (the device no longer answers).
    @inlinable
    public var lastPollHadNoResponse: Bool { _noResponse }
    @usableFromInline var inFlight: UInt64 = 0
    @usableFromInline var inFlightElements: Int = 0
    @usableFromInline var inFlightBytes: UInt64 = 0
    @usableFromInline var nextSubmission: UInt64 = 1
    let owner: EDMAControllerState

    init(core: Core, direction: EDMADirection, index: Int, mode: EDMAMode, ll: LL, llBusAddress: UInt64,
         owner: EDMAControllerState) {
        self.core = core
        self.direction = direction
        self.index = index
        self.mode = mode
        self.ll = ll
        self.llBusAddress = llBusAddress
        self.capacity = LLElement.capacity(regionBytes: ll.length)
        self.owner = owner
    }

    deinit { owner.release(direction, index) }

    /// Whether a submission is in flight.
    @inlinable
    public var isBusy: Bool { inFlight != 0 }

    /// Points this channel's DONE and ABORT IMWr at an MSI vector: address, and data = base data +
    /// vector index (the multi-vector fix of RFC v3 patch 10). The address pair is shared by all channels
    /// of the direction. Without this, completion is found by polling.
    public func useInterrupt(msiAddress: UInt64, baseData: UInt16, vector: UInt16) {
        core.configureInterrupt(direction, channel: index, address: msiAddress, data: baseData &+ vector)
    }

    /// Remote-only interrupt routing (RFC v3 patch 18 REMOTE): keep this channel's DONE/ABORT masked in
    /// `int_mask` at the next full start, so the endpoint's local interrupt stays quiet while the IMWr
    /// (RIE) still reaches the host. Takes effect at the next first start (after claim or abort).
    /// The default is Linux's: unmask.
    public mutating func routeInterruptsRemoteOnly(_ on: Bool = true) {
        precondition(mode == .remote, "remote-only routing needs a remotely driven channel (RIE)")
        precondition(inFlight == 0, "change the routing while the channel is idle")
        _remoteOnly = on
        _needsFullStart = true
        _cycle = true
    }

    /// Writes `transfers` as one chain and rings the doorbell.
    /// - Returns: the submission number, reported again by ``poll()``.
    /// - Throws: ``EDMAError`` when busy, empty, too long, or an element has length 0.
    @inlinable
    public mutating func submit(_ transfers: UnsafeBufferPointer<EDMATransfer>) throws(EDMAError) -> UInt64 {
        if inFlight != 0 { throw .channelBusy(direction, index) }
        if !_tookOver { try takeOver() }
        let n = transfers.count
        if n == 0 { throw .emptySubmission }
        if n > capacity { throw .tooManyElements(requested: n, capacity: capacity) }
        var bytes: UInt64 = 0
        for i in 0..<n {
            let len = unsafe transfers[i].length
            if len == 0 { throw .zeroLength(element: i) }
            bytes &+= UInt64(len)
        }
        unsafe core.start(direction, channel: index, ll: ll, llBusAddress: llBusAddress, transfers: transfers,
                          cycle: _cycle, first: _needsFullStart, mode: mode, maskLocalInterrupt: _remoteOnly)
        _needsFullStart = false
        inFlight = nextSubmission
        nextSubmission &+= 1
        inFlightElements = n
        inFlightBytes = bytes
        _counters.submissions &+= 1
        return inFlight
    }

    /// Makes the hardware channel this claim's own before its first start. The claim only knows this
    /// process; the engine may still run a chain of a previous owner (a host that was killed mid-transfer):
    /// its doorbell would be ignored (a running channel ignores doorbells), the old chain's DONE taken for
    /// ours, and the old chain would keep writing buffers that are no longer its. So, as
    /// `dw_edma_device_terminate_all` (which has no abort on the v0 core and lets the running chunk end):
    /// read `ch_status` (docs/hardware-reference.md §1.4, §1.7); while running, wait up to
    /// ``staleChainBound``; still running, request a stop (doorbell STOP bit, inferred, see
    /// ``EDMAv0Core/requestStop(_:channel:)``) and wait again; still running, throw
    /// ``EDMAError/staleChainRunning(_:_:waited:)``. Then clear this channel's stale DONE/ABORT bits only
    /// (never another channel's: the other side owns some). Done once per claim (an abort leaves the
    /// channel halted, and our own chains are waited for before the next submit).
    public mutating func takeOver() throws(EDMAError) {
        if _tookOver { return }
        let clock = ContinuousClock()
        let start = clock.now
        var status = core.channelStatus(direction, channel: index)
        var stopRequested = false
        var deadline = start.advanced(by: staleChainBound)
        while status == .running {
            if clock.now >= deadline {
                if stopRequested { throw .staleChainRunning(direction, index, waited: start.duration(to: clock.now)) }
                core.requestStop(direction, channel: index)
                stopRequested = true
                deadline = clock.now.advanced(by: staleChainBound)
            }
            usleep(50)
            status = core.channelStatus(direction, channel: index)
        }
        core.clearChannelInterrupt(direction, channel: index, done: true, abort: true)
        _tookOver = true
    }

    /// Submits one transfer (no allocation).
    @inlinable
    public mutating func submit(_ transfer: EDMATransfer) throws(EDMAError) -> UInt64 {
        var t = transfer
        return try unsafe withUnsafePointer(to: &t) { (p) throws(EDMAError) -> UInt64 in
            try unsafe submit(UnsafeBufferPointer(start: p, count: 1))
        }
    }

    /// Submits an array of transfers as one chain.
    public mutating func submit(_ transfers: [EDMATransfer]) throws(EDMAError) -> UInt64 {
        try unsafe transfers.withUnsafeBufferPointer { (b) throws(EDMAError) -> UInt64 in try unsafe submit(b) }
    }

    /// Checks `int_status` once. DONE or ABORT of this channel is cleared (write-1-to-clear of only
    /// this channel's bits, never another owner's) and reported; nil while running or idle.
    @inlinable
    public mutating func poll() -> EDMACompletion? {
        if inFlight == 0 { return nil }
        let status = core.channelInterrupt(direction, channel: index)
        _lastShared = status.shared
        return complete(status)
    }

    /// The shared status word the last ``poll()`` read (v0), for ``poll(observed:)`` of another
    /// channel of the same direction; nil before a poll, or with per-channel status (HDMA).
    @inlinable
    public var lastSharedStatus: EDMASharedStatus? { _lastShared }

    /// ``poll()`` from a status word another channel of the direction read (no register read): one
    /// `int_status` read serves every channel, as in `dw_edma_interrupt`. The caller must know that
    /// `observed` was read after this channel's submission in flight was started. Reports only a
    /// finished submission; nil means "not finished in that word" (read with ``poll()`` to be sure).
    @inlinable
    public mutating func poll(observed: EDMASharedStatus) -> EDMACompletion? {
        guard inFlight != 0, observed.direction == direction else { return nil }
        let status = observed.channel(index)
        guard !status.noResponse, status.done || status.abort else { return nil }
        return complete(status)
    }

    /// Acts on this channel's DONE/ABORT state (clears it, ends the submission in flight).
    @inlinable
    mutating func complete(_ status: ChannelInterrupt) -> EDMACompletion? {
        // All ones: a read from a device that is gone (surprise removal, link down, model stopped).
        if status.noResponse { _noResponse = true; return nil }
        _noResponse = false
        if status.abort {
            core.clearChannelInterrupt(direction, channel: index, done: true, abort: true)
            return finishAborted()
        }
        if status.done {
            core.clearChannelInterrupt(direction, channel: index, done: true, abort: false)
            let id = inFlight
            inFlight = 0
            _cycle.toggle()
            _counters.completions &+= 1
            _counters.elements &+= UInt64(inFlightElements)
            _counters.bytes &+= inFlightBytes
            return .done(submission: id)
        }
        return nil
    }

    @usableFromInline
    mutating func finishAborted() -> EDMACompletion {
        let llp = core.linkedListPointer(direction, channel: index)
        var element: Int? = nil
        if llp >= llBusAddress {
            let slot = Int(truncatingIfNeeded: (llp &- llBusAddress) / UInt64(LLElement.slotSize))
            if slot < inFlightElements && (llp &- llBusAddress) % UInt64(LLElement.slotSize) == 0 { element = slot }
        }
        let abort = EDMAAbort(submission: inFlight, element: element,
                              status: core.channelStatus(direction, channel: index))
        inFlight = 0
        // Recover: the next submission reinitialises CCS, LLP and the cycle (first start).
        _cycle = true
        _needsFullStart = true
        _counters.aborts &+= 1
        return .aborted(abort)
    }

    /// Polls until the submission in flight ends, sleeping on `notifier` (the IMWr/MSI or local
    /// interrupt) between polls when one is given, yielding the CPU otherwise.
    /// - Throws: ``EDMAError/timeout(_:_:)`` after `timeout`; the submission is still in flight.
    public mutating func wait(timeout: Duration, notifier: EventNotifier? = nil) throws(EDMAError) -> EDMACompletion {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var spins = 0
        while true {
            if let c = poll() { return c }
            if _noResponse { throw .noResponse(direction, index) }
            if inFlight == 0 { throw .timeout(direction, index) }
            let now = clock.now
            if now >= deadline { throw .timeout(direction, index) }
            if let notifier {
                let left = now.duration(to: deadline)
                if notifier.wait(timeout: min(left, .milliseconds(10))) { notifier.consume() }
            } else {
                spins += 1
                if spins > 64 { usleep(20) } else { sched_yield() }
            }
        }
    }
}
