public import PCIKit
import Synchronization
import CNTBShim
#if canImport(Glibc)
import Glibc
#endif

/// An NTB made of shared memory: an ivshmem-plain device's BAR2 (PCI 1af4:1110, QEMU
/// `docs/specs/ivshmem-spec.rst`) that two VMs map, or a plain shared file two processes map.
///
/// Everything is polled (ivshmem-plain has no interrupts without ivshmem-server): the header
/// (`ntb_ivshmem.h`) holds each side's heartbeat, session, state, scratchpads and doorbell word; the
/// rest is memory windows. Side A's inbound window `w` is side B's outbound window `w`, the same bytes.
///
/// Link: up when both sides enabled the link and each sees the other beat; down when the peer writes
/// the clean-shutdown state, stops beating for ``Options/peerTimeout``, or starts a new session.
/// A monitor thread beats every ``Options/beatInterval`` and re-evaluates the link.
///
/// Differences from NTB hardware: a window is a fixed region of the shared memory, so the buffer for
/// inbound window `w` is that region (``allocateInboundBuffer(length:alignment:)`` hands them out in
/// window order) and a translation must point at it; the "bus address" is the offset in the region.
public final class IVSHMEMDevice: NTBDevice, @unchecked Sendable {
    public let name: String
    public let side: IVSHMEMSide
    public let geometry: IVSHMEMGeometry
    public let options: Options
    @usableFromInline let memory: MMIORegion
    @usableFromInline let own: Int
    @usableFromInline let peer: Int
    @usableFromInline let validMask: UInt64
    private let shared: Shared
    private var monitor: pthread_t?
    /// Local doorbell mask (software, as on EPF).
    private let mask = Atomic<UInt64>(0)

    /// Timing of the link.
    public struct Options: Sendable {
        /// How often this side beats and looks at the peer.
        public var beatInterval: Duration = .milliseconds(20)
        /// A peer whose heartbeat has not moved for this long is gone (link down).
        public var peerTimeout: Duration = .milliseconds(500)
        /// How long `waitForEvents` sleeps between looks at the doorbell word.
        public var pollInterval: Duration = .microseconds(50)
        /// How long to wait for the other side to finish writing the header of a zeroed region.
        public var initialisationWait: Duration = .seconds(2)
        /// Windows per side when this side writes the header (1...4).
        public var memoryWindows = 1
        public init() {}
    }

    /// State shared with the monitor thread (which must not retain the device).
    private final class Shared: @unchecked Sendable {
        let memory: MMIORegion
        let resources: [AnyObject]
        let stop = Atomic<Bool>(false)
        let linkUp = Atomic<Bool>(false)
        let linkEvent = Atomic<Bool>(false)
        let enabled = Atomic<Bool>(false)
        /// Serialises the writers of our state word (the monitor's beat, enable/disableLink), so that the
        /// word always ends with the state of the last `enabled` change: a beat that read `enabled` before
        /// enableLink cannot overwrite "enabled" with "open" after it.
        let stateWriters = Mutex<Void>(())
        /// Bit w: inbound window w is handed out as a buffer.
        let windowsTaken = Mutex<UInt8>(0)
        init(memory: MMIORegion, resources: [AnyObject]) {
            self.memory = memory
            self.resources = resources
        }
    }

    /// Opens side `side` of the region `memory` (kept mapped by `retaining`). A zeroed region gets a
    /// header; an existing one is validated; garbage is an error that says so.
    public init(name: String, memory: MMIORegion, side: IVSHMEMSide, options: Options = Options(), retaining: [AnyObject] = []) throws(NTBError) {
        typealias L = IVSHMEMLayout
        self.name = name
        self.side = side
        self.options = options
        self.memory = memory
        own = L.side(side)
        peer = L.side(side.peer)
        guard memory.length >= L.headerSize + 2 * L.windowAlignment else {
            throw .unsupported("\(name): \(memory.length) bytes of shared memory cannot hold the ivshmem NTB header and two windows; give the device more memory (e.g. size=4M)")
        }
        let base = unsafe memory.baseAddress
        // A zeroed region: the side that swaps the magic from 0 writes the geometry, then the magic.
        if unsafe ntb_ivshmem_cas64(base, UInt(L.magicOffset), 0, L.initialising) != 0 {
            try IVSHMEMGeometry.make(sharedSize: memory.length, windows: options.memoryWindows).write(to: memory)
            _ = unsafe ntb_ivshmem_cas64(base, UInt(L.magicOffset), L.initialising, L.magic)
        }
        let deadline = ContinuousClock.now + options.initialisationWait
        var magic = memory.load64(at: L.magicOffset)
        while magic == L.initialising && ContinuousClock.now < deadline {
            sleep(for: .milliseconds(1))
            magic = memory.load64(at: L.magicOffset)
        }
        guard magic != L.initialising else {
            throw .unsupported("\(name): the ivshmem header stayed half-written for \(options.initialisationWait) (a side died while writing it); stop both sides and zero the shared memory")
        }
        guard magic == L.magic else {
            throw .unsupported("\(name): the shared memory does not start with an ntb-transport ivshmem header (magic 0x\(String(magic, radix: 16)), expected 0x\(String(L.magic, radix: 16)) or zeroed memory); it is used by something else: point --port at the right device or file, or zero it")
        }
        Barrier.read()
        geometry = try IVSHMEMGeometry.read(from: memory, name: name)
        validMask = geometry.doorbellValidMask

        // Another live process on this side? Its heartbeat moves.
        let state = SharedWord.load32(memory, at: own + L.state)
        if state == L.State.open.rawValue || state == L.State.enabled.rawValue {
            let beat = SharedWord.load64(memory, at: own + L.heartbeat)
            let watchUntil = ContinuousClock.now + options.peerTimeout
            while ContinuousClock.now < watchUntil {
                sleep(for: options.beatInterval)
                if SharedWord.load64(memory, at: own + L.heartbeat) != beat {
                    let pid = memory.load32(at: own + L.pid)
                    throw .unsupported("\(name): side \(side) (--role \(side == .a ? "host" : "endpoint")) is in use by process \(pid), whose heartbeat is running; stop it or open the other role")
                }
            }
        }
        // Claim the side: fresh scratchpads and doorbells, a new session, then the state.
        for i in 0..<geometry.scratchpadCount { memory.store32(0, at: own + L.scratchpad0 + 4 * i) }
        memory.store64(0, at: own + L.doorbell)
        memory.store32(UInt32(truncatingIfNeeded: getpid()), at: own + L.pid)
        let boot = readBootID()
        for i in 0..<16 { memory.store8(i < boot.count ? boot[i] : 0, at: own + L.bootID + i) }
        SharedWord.store64(UInt64.random(in: 1...UInt64.max), memory, at: own + L.session)
        Barrier.full()
        SharedWord.store32(L.State.open.rawValue, memory, at: own + L.state)

        shared = Shared(memory: memory, resources: retaining)
        let s = shared, ownOff = own, peerOff = peer, opts = options
        monitor = spawnThread { IVSHMEMDevice.monitor(s, own: ownOff, peer: peerOff, options: opts) }
    }

    deinit { close() }

    /// Writes the clean-shutdown state (the peer sees link down at once) and stops the monitor.
    /// Called by deinit; later calls do nothing.
    public func close() {
        guard let thread = monitor else { return }
        monitor = nil
        shared.stop.store(true, ordering: .releasing)
        _ = pthread_join(thread, nil)
        shared.linkUp.store(false, ordering: .releasing)
        SharedWord.store32(IVSHMEMLayout.State.closed.rawValue, memory, at: own + IVSHMEMLayout.state)
        Barrier.full()
    }

    /// The monitor: beat, look at the peer, decide the link (no allocation per beat).
    private static func monitor(_ s: Shared, own: Int, peer: Int, options: Options) {
        typealias L = IVSHMEMLayout
        let m = s.memory
        var lastBeat = SharedWord.load64(m, at: peer + L.heartbeat)
        var lastSession = SharedWord.load64(m, at: peer + L.session)
        // Not alive until its heartbeat is seen moving (a stale header from a dead process stays down).
        var lastChange = ContinuousClock.now - options.peerTimeout - .seconds(1)
        var holdDownUntil = ContinuousClock.now
        var beat: UInt64 = SharedWord.load64(m, at: own + L.heartbeat)
        while !s.stop.load(ordering: .acquiring) {
            beat &+= 1
            SharedWord.store64(beat, m, at: own + L.heartbeat)
            s.stateWriters.withLock { _ in
                SharedWord.store32(s.enabled.load(ordering: .acquiring) ? L.State.enabled.rawValue : L.State.open.rawValue, m, at: own + L.state)
            }
            let now = ContinuousClock.now
            let peerBeat = SharedWord.load64(m, at: peer + L.heartbeat)
            let session = SharedWord.load64(m, at: peer + L.session)
            if peerBeat != lastBeat { lastBeat = peerBeat; lastChange = now }
            if session != lastSession {
                // The peer restarted: the link must be seen down before it comes up with the new session.
                lastSession = session
                holdDownUntil = now + options.beatInterval * 3
            }
            let peerState = SharedWord.load32(m, at: peer + L.state)
            let up = s.enabled.load(ordering: .acquiring) && peerState == L.State.enabled.rawValue
                && now - lastChange < options.peerTimeout && now >= holdDownUntil
            if s.linkUp.exchange(up, ordering: .acquiringAndReleasing) != up {
                s.linkEvent.store(true, ordering: .releasing)
            }
            sleep(for: options.beatInterval)
        }
    }

    // MARK: Link

    public var isLinkUp: Bool { shared.linkUp.load(ordering: .acquiring) }

    /// Enables the link: it comes up (asynchronously, at the next beat) once the peer enabled it too.
    public func enableLink() throws(NTBError) {
        shared.stateWriters.withLock { _ in
            shared.enabled.store(true, ordering: .releasing)
            SharedWord.store32(IVSHMEMLayout.State.enabled.rawValue, memory, at: own + IVSHMEMLayout.state)
        }
    }

    public func disableLink() throws(NTBError) {
        shared.stateWriters.withLock { _ in
            shared.enabled.store(false, ordering: .releasing)
            SharedWord.store32(IVSHMEMLayout.State.open.rawValue, memory, at: own + IVSHMEMLayout.state)
        }
        if shared.linkUp.exchange(false, ordering: .acquiringAndReleasing) { shared.linkEvent.store(true, ordering: .releasing) }
    }

    // MARK: Memory windows

    public var memoryWindowCount: Int { geometry.memoryWindowCount }

    public func memoryWindowAlignment(_ window: Int) throws(NTBError) -> MemoryWindowAlignment {
        precondition(window >= 0 && window < geometry.memoryWindowCount, "ivshmem window \(window) out of range")
        let page = UInt64(IVSHMEMLayout.windowAlignment)
        return MemoryWindowAlignment(addressAlignment: page, sizeAlignment: page, maxSize: UInt64(geometry.memoryWindowSize))
    }

    /// Hands out the next free inbound window region (in window order) as the buffer.
    public func allocateInboundBuffer(length: Int, alignment: Int) throws(NTBError) -> DMABuffer {
        precondition(length > 0 && alignment > 0)
        guard length <= geometry.memoryWindowSize else {
            throw .unsupported("\(name): an inbound buffer of \(length) bytes does not fit an ivshmem window (\(geometry.memoryWindowSize) bytes); give the device more memory")
        }
        let count = geometry.memoryWindowCount
        let window: Int? = shared.windowsTaken.withLock { taken in
            for w in 0..<count where taken & (1 << w) == 0 {
                taken |= 1 << w
                return w
            }
            return nil
        }
        guard let window else {
            throw .unsupported("\(name): all \(count) ivshmem windows are in use; close a buffer first")
        }
        let offset = geometry.windowOffset(side, window)
        guard offset % alignment == 0 else {
            shared.windowsTaken.withLock { $0 &= ~(1 << window) }
            throw .unsupported("\(name): ivshmem window \(window) is at offset 0x\(String(offset, radix: 16)), not aligned to \(alignment) bytes")
        }
        let s = shared
        return unsafe DMABuffer(
            region: DMARegion(address: memory.baseAddress + offset, busAddress: UInt64(offset), length: length),
            release: { _ in s.windowsTaken.withLock { $0 &= ~(1 << window) } })
    }

    /// The window is fixed: the translation must be the window's own region (what the buffer from
    /// ``allocateInboundBuffer(length:alignment:)`` for this window is).
    public func setMemoryWindowTranslation(_ window: Int, busAddress: UInt64, size: Int) throws(NTBError) {
        precondition(window >= 0 && window < geometry.memoryWindowCount, "ivshmem window \(window) out of range")
        let offset = geometry.windowOffset(side, window)
        guard busAddress == UInt64(offset), size > 0, size <= geometry.memoryWindowSize else {
            throw .unsupported("\(name): ivshmem window \(window) is fixed at offset 0x\(String(offset, radix: 16)) (\(geometry.memoryWindowSize) bytes) and cannot translate to 0x\(String(busAddress, radix: 16)) + \(size); use the buffer allocateInboundBuffer gives for it")
        }
    }

    public func clearMemoryWindowTranslation(_ window: Int) throws(NTBError) {
        precondition(window >= 0 && window < geometry.memoryWindowCount, "ivshmem window \(window) out of range")
    }

    public var peerMemoryWindowCount: Int { geometry.memoryWindowCount }

    public func peerMemoryWindow(_ window: Int) throws(NTBError) -> MMIORegion {
        precondition(window >= 0 && window < geometry.memoryWindowCount, "ivshmem window \(window) out of range")
        return memory.subregion(offset: geometry.windowOffset(side.peer, window), length: geometry.memoryWindowSize)
    }

    // MARK: Scratchpads

    public var scratchpadCount: Int { geometry.scratchpadCount }

    @inlinable func spad(_ base: Int, _ index: Int) -> Int {
        precondition(index >= 0 && index < geometry.scratchpadCount, "ivshmem scratchpad \(index) out of range")
        return base + IVSHMEMLayout.scratchpad0 + 4 * index
    }
    @inlinable public func readScratchpad(_ index: Int) -> UInt32 { memory.load32(at: spad(own, index)) }
    @inlinable public func writeScratchpad(_ index: Int, _ value: UInt32) { memory.store32(value, at: spad(own, index)) }
    @inlinable public func readPeerScratchpad(_ index: Int) -> UInt32 { memory.load32(at: spad(peer, index)) }
    @inlinable public func writePeerScratchpad(_ index: Int, _ value: UInt32) { memory.store32(value, at: spad(peer, index)) }

    // MARK: Doorbells

    public var doorbellValidMask: UInt64 { validMask }
    /// One (polled) vector carries every doorbell.
    public func doorbellVectorMask(_ vector: Int) -> UInt64 { vector == 0 ? validMask : 0 }
    @inlinable public func readDoorbell() -> UInt64 { memory.load64(at: own + IVSHMEMLayout.doorbell) & validMask }
    @inlinable public func clearDoorbell(_ bits: UInt64) {
        _ = unsafe ntb_ivshmem_fetch_and64(memory.baseAddress, UInt(own + IVSHMEMLayout.doorbell), ~bits)
    }
    public func setDoorbellMask(_ bits: UInt64) { mask.bitwiseOr(bits & validMask, ordering: .relaxed) }
    public func clearDoorbellMask(_ bits: UInt64) { mask.bitwiseAnd(~bits, ordering: .relaxed) }
    /// Masked doorbell bits.
    public var doorbellMask: UInt64 { mask.load(ordering: .relaxed) }
    /// An atomic OR into the peer's word; its full barrier orders the window stores before it.
    @inlinable public func ringPeerDoorbell(_ bits: UInt64) {
        _ = unsafe ntb_ivshmem_fetch_or64(memory.baseAddress, UInt(peer + IVSHMEMLayout.doorbell), bits & validMask)
    }

    // MARK: Events

    public func pollEvents() -> NTBEvents {
        var events: NTBEvents = []
        if shared.linkEvent.exchange(false, ordering: .acquiringAndReleasing) { events.insert(.link) }
        if readDoorbell() & ~mask.load(ordering: .relaxed) != 0 { events.insert(.doorbell) }
        return events
    }

    public func waitForEvents(timeout: Duration) -> NTBEvents {
        let deadline = ContinuousClock.now + timeout
        while true {
            let events = pollEvents()
            if !events.isEmpty { return events }
            let now = ContinuousClock.now
            if now >= deadline { return [] }
            sleep(for: min(options.pollInterval, deadline - now))
        }
    }

    // MARK: Diagnostics

    /// The peer's process id and state as its header block says (for `info`-style output and tests).
    public var peerState: (state: UInt32, pid: UInt32, heartbeat: UInt64) {
        (SharedWord.load32(memory, at: peer + IVSHMEMLayout.state), memory.load32(at: peer + IVSHMEMLayout.pid), SharedWord.load64(memory, at: peer + IVSHMEMLayout.heartbeat))
    }
}
