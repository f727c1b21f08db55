public import NTBHardware
public import PCIKit
public import Synchronization

/// What the control plane (link management) and one queue pair's data path share.
///
/// The control plane never touches a queue pair's rings while its data path may: it publishes a new
/// `target` generation (with the channel for it in `slot`), waits until the data path
/// `acknowledged` it (having returned every in-flight buffer of the old one), and only then resets
/// the shared memory and runs the QP_LINKS exchange, finally publishing `up`.
public final class QueuePairLink<Channel: TransportChannel>: @unchecked Sendable {
    /// Generation the control plane wants the queue pair at; 0 = no memory (transport link down).
    public let target = Atomic<UInt64>(0)
    /// Last generation the data path adopted.
    public let acknowledged = Atomic<UInt64>(0)
    /// Generation in which the queue pair link is up (0 = not up).
    public let up = Atomic<UInt64>(0)
    /// Set by the data path when the peer sent LINK_DOWN: the control plane renegotiates.
    public let downRequest = Atomic<Bool>(false)
    /// Set when the client took the queue pair down (`ntb_transport_link_down`): no relink.
    public let clientDown = Atomic<Bool>(false)
    /// The channel for `target`, handed over once.
    @usableFromInline let slot = Mutex<Channel?>(nil)

    init() {}
}

/// A queue pair: one bidirectional message channel to the peer (Linux `struct ntb_transport_qp`).
///
/// The client posts receive buffers, sends messages, and collects completions with ``poll(limit:_:)``
/// (or ``wait(timeout:)`` then `poll`). One thread drives a queue pair; different queue pairs may run
/// on different threads. The data path allocates nothing and takes no lock.
///
/// Semantics follow Linux with two deliberate differences, both so that nothing is lost silently:
/// a send on a link-down queue pair throws ``TransportError/linkDown(queuePair:)`` (Linux returns 0
/// and drops), and a send completes when the PEER has consumed the frame (its published ring tail
/// passed it), so at link down every unconsumed send and every posted receive buffer comes back with
/// status ``Completion/Status/linkDown``, followed by a ``Completion/Kind/linkDown`` event.
@safe
public final class QueuePair<Device: NTBDevice, Backend: TransportBackend>: @unchecked Sendable {
    public typealias Channel = Backend.Channel

    /// The queue pair number (its doorbell bit).
    public let index: Int
    /// This queue pair's counters.
    public let counters: QueuePairCounters
    @usableFromInline let device: Device
    @usableFromInline let link: QueuePairLink<Channel>
    @usableFromInline let doorbellBit: UInt64

    /// The data path's mutable state lives behind a pointer: accesses through it are plain loads and
    /// stores, while stored `var`s of a class would pay a dynamic exclusivity check on every access.
    @usableFromInline
    @safe struct State {
        @usableFromInline var hasChannel = false
        @usableFromInline var adopted: UInt64 = 0
        @usableFromInline var isUp = false
        // Sends in flight (written, not yet consumed by the peer): FIFO of cookies and lengths.
        @usableFromInline var txCookies: UnsafeMutablePointer<UInt64>
        @usableFromInline var txLengths: UnsafeMutablePointer<Int>
        @usableFromInline var txCapacity = 0
        @usableFromInline var txOldest = 0
        @usableFromInline var txPending = 0
        @usableFromInline var txReaped = 0
        // Posted receive buffers: FIFO.
        @usableFromInline var rxOldest = 0
        @usableFromInline var rxCount = 0
        // rx_err_ver is counted once per bad frame, not once per poll of it.
        @usableFromInline var lastBadVersion: UInt64 = .max
        // Adaptive waiting: spin iterations before sleeping on the doorbell.
        @usableFromInline var spinLimit = 4096
        // Polls since the gauges (ring positions for `stats`) were last refreshed.
        @usableFromInline var pollsSinceGauges = 0
        // DMA channels: per send slot 0 = in flight, 1 = done, 2 = aborted (sends finish by tag).
        @usableFromInline var txStatus: UnsafeMutablePointer<UInt8>
        // DMA channels: posted receive buffers (from the oldest) offered to the peer's ring.
        @usableFromInline var rxOffered = 0
        // DMA channels: the channel reported a fault or corruption; the next poll takes the queue pair down.
        @usableFromInline var faulted = false
        @usableFromInline var waitMode: TransportConfiguration.WaitMode = .adaptive
        // DMA channels whose completions raise our doorbell, in interrupt mode: the completion
        // interrupt was taken and the engine's status not read since; when the status was last read.
        @usableFromInline var completionSignalled = true
        @usableFromInline var lastStatusLook = ContinuousClock.Instant.now
        @usableFromInline init(txCookies: UnsafeMutablePointer<UInt64>, txLengths: UnsafeMutablePointer<Int>, txStatus: UnsafeMutablePointer<UInt8>) {
            unsafe self.txCookies = txCookies
            unsafe self.txLengths = txLengths
            unsafe self.txStatus = txStatus
        }
    }
    @usableFromInline let state: UnsafeMutablePointer<State>
    /// The channel once a link set one up (`hasChannel`); uninitialised before.
    @usableFromInline let channelSlot: UnsafeMutablePointer<Channel>

    /// The channel, addressed in place (no copy of the struct, no optional tag per access).
    /// - Precondition: `hasChannel`.
    @inlinable var channel: Channel {
        unsafeAddress { unsafe UnsafePointer(channelSlot) }
        unsafeMutableAddress { unsafe channelSlot }
    }
    @inlinable var hasChannel: Bool {
        get { unsafe state.pointee.hasChannel }
        set { unsafe state.pointee.hasChannel = newValue }
    }
    @inlinable var adopted: UInt64 {
        get { unsafe state.pointee.adopted }
        set { unsafe state.pointee.adopted = newValue }
    }
    @inlinable var isUp: Bool {
        get { unsafe state.pointee.isUp }
        set { unsafe state.pointee.isUp = newValue }
    }
    @inlinable var txCookies: UnsafeMutablePointer<UInt64> {
        get { unsafe state.pointee.txCookies }
        set { unsafe state.pointee.txCookies = newValue }
    }
    @inlinable var txLengths: UnsafeMutablePointer<Int> {
        get { unsafe state.pointee.txLengths }
        set { unsafe state.pointee.txLengths = newValue }
    }
    @inlinable var txCapacity: Int {
        get { unsafe state.pointee.txCapacity }
        set { unsafe state.pointee.txCapacity = newValue }
    }
    @inlinable var txOldest: Int {
        get { unsafe state.pointee.txOldest }
        set { unsafe state.pointee.txOldest = newValue }
    }
    @inlinable var txPending: Int {
        get { unsafe state.pointee.txPending }
        set { unsafe state.pointee.txPending = newValue }
    }
    @inlinable var txReaped: Int {
        get { unsafe state.pointee.txReaped }
        set { unsafe state.pointee.txReaped = newValue }
    }
    @inlinable var rxOldest: Int {
        get { unsafe state.pointee.rxOldest }
        set { unsafe state.pointee.rxOldest = newValue }
    }
    @inlinable var rxCount: Int {
        get { unsafe state.pointee.rxCount }
        set { unsafe state.pointee.rxCount = newValue }
    }
    @inlinable var lastBadVersion: UInt64 {
        get { unsafe state.pointee.lastBadVersion }
        set { unsafe state.pointee.lastBadVersion = newValue }
    }
    @inlinable var pollsSinceGauges: Int {
        get { unsafe state.pointee.pollsSinceGauges }
        set { unsafe state.pointee.pollsSinceGauges = newValue }
    }
    @inlinable var spinLimit: Int {
        get { unsafe state.pointee.spinLimit }
        set { unsafe state.pointee.spinLimit = newValue }
    }
    @inlinable var txStatus: UnsafeMutablePointer<UInt8> {
        get { unsafe state.pointee.txStatus }
        set { unsafe state.pointee.txStatus = newValue }
    }
    @inlinable var rxOffered: Int {
        get { unsafe state.pointee.rxOffered }
        set { unsafe state.pointee.rxOffered = newValue }
    }
    /// How ``wait(timeout:)`` waits: from the configuration at set-up; the thread driving the queue
    /// pair may change it between waits (e.g. interrupt-driven bulk sends, then polling round trips).
    @inlinable public var waitMode: TransportConfiguration.WaitMode {
        get { unsafe state.pointee.waitMode }
        set { unsafe state.pointee.waitMode = newValue }
    }
    @inlinable var faulted: Bool {
        get { unsafe state.pointee.faulted }
        set { unsafe state.pointee.faulted = newValue }
    }
    @inlinable var completionSignalled: Bool {
        get { unsafe state.pointee.completionSignalled }
        set { unsafe state.pointee.completionSignalled = newValue }
    }
    @inlinable var lastStatusLook: ContinuousClock.Instant {
        get { unsafe state.pointee.lastStatusLook }
        set { unsafe state.pointee.lastStatusLook = newValue }
    }

    // Posted receive buffers: FIFO storage (fixed at set-up).
    @usableFromInline let rxBases: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    @usableFromInline let rxCapacities: UnsafeMutablePointer<Int>
    @usableFromInline let rxCookies: UnsafeMutablePointer<UInt64>
    /// Bus addresses of the posted buffers (DMA channels; nil = not DMA-mapped, through a bounce buffer).
    @usableFromInline let rxBusAddresses: UnsafeMutablePointer<UInt64?>
    @usableFromInline let rxDepth: Int

    init(index: Int, device: Device, link: QueuePairLink<Channel>, counters: QueuePairCounters, configuration: TransportConfiguration) {
        precondition(configuration.receiveQueueDepth > 0)
        self.index = index
        self.device = device
        self.link = link
        self.counters = counters
        self.doorbellBit = 1 << UInt64(index)
        rxDepth = configuration.receiveQueueDepth
        unsafe rxBases = .allocate(capacity: rxDepth)
        unsafe rxBases.initialize(repeating: nil, count: rxDepth)
        unsafe rxCapacities = .allocate(capacity: rxDepth)
        unsafe rxCookies = .allocate(capacity: rxDepth)
        unsafe rxBusAddresses = .allocate(capacity: rxDepth)
        unsafe rxBusAddresses.initialize(repeating: nil, count: rxDepth)
        unsafe channelSlot = .allocate(capacity: 1)
        unsafe state = .allocate(capacity: 1)
        unsafe state.initialize(to: State(txCookies: .allocate(capacity: 1), txLengths: .allocate(capacity: 1), txStatus: .allocate(capacity: 1)))
        unsafe state.pointee.waitMode = configuration.waitMode
    }

    deinit {
        unsafe rxBases.deallocate()
        unsafe rxCapacities.deallocate()
        unsafe rxCookies.deallocate()
        unsafe rxBusAddresses.deallocate()
        unsafe txCookies.deallocate()
        unsafe txLengths.deallocate()
        unsafe txStatus.deallocate()
        unsafe state.deinitialize(count: 1)
        unsafe state.deallocate()
        if hasChannel { unsafe channelSlot.deinitialize(count: 1) }
        unsafe channelSlot.deallocate()
    }

    // MARK: State

    /// Whether the queue pair link is up (`ntb_transport_link_query`), as of the last poll.
    @inlinable public var isLinkUp: Bool { isUp }
    /// The largest message a send accepts (`ntb_transport_max_size`); 0 while no link was set up.
    @inlinable public var maxPayload: Int { hasChannel ? channel.maxPayload : 0 }
    /// Transmit ring entries: frames (`host`) or descriptors (`edma`); 0 while no link was set up.
    @inlinable public var transmitEntries: Int { hasChannel ? channel.transmitEntries : 0 }
    /// Free transmit frames (`ntb_transport_tx_free_entry`), limited by unreported completions.
    @inlinable public var transmitFree: Int { isUp ? free : 0 }

    /// Frames we may write: the ring's free frames, but never more sends outstanding (in flight or
    /// consumed but not yet reported by `poll`) than the completion FIFO holds (2·N).
    @inlinable var free: Int { min(channel.transmitFree, txCapacity &- txPending) }
    /// Posted receive buffers not yet filled.
    @inlinable public var postedReceives: Int { rxCount }
    /// Sends written but not yet consumed by the peer.
    @inlinable public var sendsInFlight: Int { txPending }

    // MARK: Receive buffers (ntb_transport_rx_enqueue)

    /// Posts a buffer for one incoming message. The buffer must stay valid until its completion.
    /// - Throws: ``TransportError/receiveQueueFull(queuePair:capacity:)`` when `receiveQueueDepth` are posted.
    ///
    /// `busAddress` is where a DMA engine reaches `buffer` (memory from ``allocateBuffer(length:)``):
    /// a backend that moves payloads by DMA (`edma`) then receives into the buffer itself; without it
    /// the payload goes through one of the channel's bounce buffers and is copied. `host` ignores it.
    @inlinable
    public func postReceive(_ buffer: UnsafeMutableRawBufferPointer, busAddress: UInt64? = nil, cookie: UInt64) throws(TransportError) {
        guard rxCount < rxDepth else { throw .receiveQueueFull(queuePair: index, capacity: rxDepth) }
        var slot = rxOldest &+ rxCount
        if slot >= rxDepth { slot &-= rxDepth }
        unsafe rxBases[slot] = buffer.baseAddress
        unsafe rxCapacities[slot] = buffer.count
        unsafe rxCookies[slot] = cookie
        unsafe rxBusAddresses[slot] = busAddress
        rxCount &+= 1
    }

    /// Memory a DMA engine on this port can reach (IOMMU-mapped on VFIO; the mock link's RAM): send
    /// from it and post it for receives with its bus address, and the `edma` backend moves messages
    /// without a CPU copy. The buffer is the caller's; close it after the transport is closed.
    public func allocateBuffer(length: Int) throws(TransportError) -> DMABuffer {
        do throws(NTBError) { return try device.allocateInboundBuffer(length: length, alignment: 4096) }
        catch { throw .device(error) }
    }

    /// Takes back every posted receive buffer not filled yet (`ntb_transport_rx_remove`), oldest first,
    /// e.g. before the memory behind them goes away. Returns their cookies' count.
    @discardableResult
    @inlinable
    public func removeReceives(_ handle: (UInt64) -> Void = { _ in }) -> Int {
        let n = rxCount
        // Buffers already offered to the peer's ring stay there until the link resets; the queue pair
        // forgets them (the peer can still fill them: only remove receives whose memory stays valid).
        while rxCount > 0 {
            let (_, _, cookie) = unsafe popReceive()
            handle(cookie)
        }
        rxOldest = 0
        rxOffered = 0
        return n
    }

    // MARK: Sends (ntb_transport_tx_enqueue)

    /// Sends one message: copies it into the next frame and rings the peer's doorbell. The buffer is
    /// free again on return; the completion (cookie) reports when the peer consumed it.
    /// - Throws: `linkDown`, `emptyMessage`, `messageTooLarge`, `ringFull` (poll and retry).
    ///
    /// With a backend that moves payloads by DMA (`edma`), the send completes when its DMA did, and
    /// the buffer must stay unchanged until then; `busAddress` (memory from ``allocateBuffer(length:)``)
    /// lets the engine read it in place, without it the message is copied to a bounce buffer first.
    @inlinable
    public func send(_ bytes: UnsafeRawBufferPointer, busAddress: UInt64? = nil, cookie: UInt64) throws(TransportError) {
        try unsafe admit(bytes)
        if free == 0 {
            reap()
            guard free > 0 else { counters.add(.txRingFull); throw .ringFull(queuePair: index) }
        }
        if Channel.movesByDMA {
            try unsafe writeDMA(bytes, busAddress: busAddress, cookie: cookie)
            if channel.startTransmit() { counters.add(.dmaChains) }
            return
        }
        unsafe write(bytes, cookie: cookie)
        ring()
    }

    /// Sends up to `count` messages from DMA memory (``allocateBuffer(length:)``) as one chain (`edma`)
    /// or with one doorbell (`host`); `message(i)` gives the i-th message, its bus address and cookie.
    /// Returns how many were sent, as ``sendBatch(count:_:)``.
    @inlinable
    public func sendBatch(count: Int, dma message: (Int) -> (bytes: UnsafeRawBufferPointer, busAddress: UInt64, cookie: UInt64)) throws(TransportError) -> Int {
        guard Channel.movesByDMA else { return try unsafe sendBatch(count: count) { i in let m = unsafe message(i); return unsafe (m.bytes, m.cookie) } }
        guard isUp else { counters.add(.txErrLinkDown); throw .linkDown(queuePair: index) }
        return try unsafe sendBatchDMA(count: count) { i in let m = unsafe message(i); return unsafe (m.bytes, m.busAddress, m.cookie) }
    }

    /// The batch of a DMA channel: every message queued on one chain, started once.
    @inlinable
    func sendBatchDMA(count: Int, _ message: (Int) -> (bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64)) throws(TransportError) -> Int {
        if free < count { reap() }
        var sent = 0
        while sent < count {
            if free == 0 { counters.add(.txRingFull); break }
            let m = unsafe message(sent)
            do throws(TransportError) {
                try unsafe admit(m.bytes)
                try unsafe writeDMA(m.bytes, busAddress: m.busAddress, cookie: m.cookie)
            } catch .ringFull {
                break
            } catch {
                if sent > 0, channel.startTransmit() { counters.add(.dmaChains) }
                throw error
            }
            sent &+= 1
        }
        if sent > 0, channel.startTransmit() { counters.add(.dmaChains) }
        return sent
    }

    /// Queues one message on a DMA channel, in the next send slot (its tag).
    @inlinable @inline(__always)
    func writeDMA(_ bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) {
        var slot = txOldest &+ txPending
        if slot >= txCapacity { slot &-= txCapacity }
        if let refusal = unsafe channel.enqueueTransmit(bytes, busAddress: busAddress, tag: slot) {
            switch refusal {
            case .busy:
                counters.add(.txRingFull)
                throw .ringFull(queuePair: index)
            case let .tooLarge(capacity):
                throw .messageTooLarge(length: bytes.count, maxPayload: capacity)
            case .corrupt:
                counters.add(.txErrIndex)
                faulted = true
                throw .linkDown(queuePair: index)
            }
        }
        unsafe txCookies[slot] = cookie
        unsafe txLengths[slot] = bytes.count
        unsafe txStatus[slot] = 0
        txPending &+= 1
        counters.add(.txPackets)
        counters.add(.txBytes, UInt64(bytes.count))
        counters.add(.txAsync)
    }

    /// Sends up to `count` messages with one doorbell; `message(i)` gives the i-th message and cookie.
    /// Returns how many were sent: fewer than `count` when the ring filled up (counted in tx_ring_full).
    /// - Throws: `linkDown` before anything was sent; `emptyMessage` / `messageTooLarge` for message i
    ///   (messages before it were sent and rung).
    @inlinable
    public func sendBatch(count: Int, _ message: (Int) -> (bytes: UnsafeRawBufferPointer, cookie: UInt64)) throws(TransportError) -> Int {
        guard isUp else { counters.add(.txErrLinkDown); throw .linkDown(queuePair: index) }
        if Channel.movesByDMA {
            // Through bounce buffers (no bus addresses): ``sendBatch(count:dma:)`` avoids the copy.
            return try unsafe sendBatchDMA(count: count) { i in let m = unsafe message(i); return unsafe (m.bytes, nil, m.cookie) }
        }
        if free < count { reap() }
        var sent = 0
        while sent < count {
            if free == 0 { counters.add(.txRingFull); break }
            let m = unsafe message(sent)
            do throws(TransportError) { try unsafe admit(m.bytes) } catch {
                if sent > 0 { channel.publishStaged(); ring() }
                throw error
            }
            unsafe write(m.bytes, cookie: m.cookie, staged: true)
            sent &+= 1
        }
        if sent > 0 { channel.publishStaged(); ring() }
        return sent
    }

    @inlinable @inline(__always)
    func admit(_ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        guard isUp else { counters.add(.txErrLinkDown); throw .linkDown(queuePair: index) }
        guard bytes.count > 0 else { throw .emptyMessage }
        guard bytes.count <= channel.maxPayload else {
            throw .messageTooLarge(length: bytes.count, maxPayload: channel.maxPayload)
        }
    }

    @inlinable @inline(__always)
    func write(_ bytes: UnsafeRawBufferPointer, cookie: UInt64, staged: Bool = false) {
        if staged { unsafe channel.stageTransmit(bytes) } else { unsafe channel.transmit(bytes, flags: 0) }
        var slot = txOldest &+ txPending
        if slot >= txCapacity { slot &-= txCapacity }
        unsafe txCookies[slot] = cookie
        unsafe txLengths[slot] = bytes.count
        txPending &+= 1
        counters.add(.txPackets)
        counters.add(.txBytes, UInt64(bytes.count))
        counters.add(.txMemcpy)
    }

    @inlinable @inline(__always)
    func ring() {
        // Payload, barrier, flags (in transmit), read-back (flushTransmit), doorbell.
        channel.flushTransmit()
        device.ringPeerDoorbell(doorbellBit)
        counters.add(.doorbells)
    }

    /// Interrupt mode, DMA: the longest a queue pair goes without reading the engine's status while
    /// sends are in flight, interrupt or not (the stall watch needs looks; a lost interrupt costs
    /// at most this).
    @inlinable static var statusLookInterval: Duration { .milliseconds(1) }

    @inlinable @inline(__always)
    func reap() {
        if Channel.movesByDMA {
            guard txPending > 0 else { return }
            let now = ContinuousClock.now
            if waitMode == .interrupt && channel.completionRaisesDoorbell {
                // Linux reads int_status only in the eDMA interrupt handler (dw_edma_interrupt): read
                // the engine's status after our completion interrupt, and at least every
                // ``statusLookInterval`` (stall detection). A status read crosses PCIe and first waits
                // for our own posted register writes to land, so it is not done per send.
                if device.takeDoorbells(doorbellBit) != 0 { completionSignalled = true }
                guard completionSignalled || now - lastStatusLook >= Self.statusLookInterval else { return }
                completionSignalled = false
                lastStatusLook = now
                counters.add(.dmaStatusReads)
            }
            let status = unsafe txStatus, counters = counters
            let r = channel.reapDMATransmits(now: now) { tag, ok in
                unsafe status[tag] = ok ? 1 : 2
                if !ok { counters.add(.txErrAbort) }
            }
            if r.ringDoorbell {
                device.ringPeerDoorbell(doorbellBit)
                counters.add(.doorbells)
            }
            if r.chainStarted { counters.add(.dmaChains) }
            if r.fault { counters.add(.dmaFaults); faulted = true }
            return
        }
        let consumed = channel.reapTransmitted()
        if consumed < 0 { counters.add(.txErrIndex) } else { txReaped &+= consumed }
    }

    // MARK: Completions

    /// Reports finished sends and receives and link events to `handle`; returns how many.
    /// Receives at most `limit` messages per call (Linux processes at most rx_max_entry per tasklet run).
    @inlinable @discardableResult
    public func poll(limit: Int = 64, _ handle: (Completion) -> Void) -> Int {
        unsafe pollCore(limit: limit, inPlace: false, { _ in }, handle)
    }

    /// ``poll(limit:_:)`` with zero-copy receive: a frame that finds no posted receive buffer is handed
    /// to `frame` straight from the receive ring (our memory, which the peer wrote) and released when
    /// `frame` returns; nothing is copied. Linux always copies into the client's buffer; this is the
    /// DPDK-style alternative for clients that consume a message where it lies (a counter, a parser,
    /// a `write(2)`). Frames still go to posted buffers first. DMA channels (`edma`) always deliver
    /// into posted buffers (their payload lands there without a copy already).
    @inlinable @discardableResult
    public func poll(limit: Int = 64, inPlace frame: (UnsafeRawBufferPointer) -> Void, _ handle: (Completion) -> Void) -> Int {
        unsafe pollCore(limit: limit, inPlace: true, frame, handle)
    }

    @inlinable
    func pollCore(limit: Int, inPlace: Bool, _ frame: (UnsafeRawBufferPointer) -> Void, _ handle: (Completion) -> Void) -> Int {
        var reported = 0
        let target = link.target.load(ordering: .acquiring)
        if target != adopted { reported &+= transition(to: target, handle) }
        if !isUp {
            guard adopted != 0, !link.downRequest.load(ordering: .relaxed),
                  link.up.load(ordering: .acquiring) == adopted else { return reported }
            isUp = true
            counters.add(.linkUps)
            updateGauges()
            handle(Completion(kind: .linkUp, status: .ok, cookie: 0, length: 0))
            reported &+= 1
        }
        if Channel.movesByDMA { return reported &+ pollDMA(limit: limit, handle) }
        // Sends the peer consumed.
        reap()
        while txReaped > 0 {
            let c = unsafe txCookies[txOldest], l = unsafe txLengths[txOldest]
            txOldest = txOldest &+ 1 == txCapacity ? 0 : txOldest &+ 1
            txPending &-= 1
            txReaped &-= 1
            handle(Completion(kind: .send, status: .ok, cookie: c, length: l))
            reported &+= 1
        }
        // Frames the peer wrote (ntb_process_rxc).
        var received = 0
        loop: while received < limit {
            switch channel.peekReceive() {
            case .empty:
                counters.add(.rxRingEmpty)
                break loop
            case let .frame(length):
                guard rxCount > 0 else {
                    guard inPlace else { counters.add(.rxErrNoBuf); break loop }
                    unsafe frame(channel.receivedBytes(length: length))
                    counters.add(.rxPackets)
                    counters.add(.rxBytes, UInt64(length))
                    channel.consumeReceived()
                    received &+= 1
                    continue loop
                }
                let (base, capacity, cookie) = unsafe popReceive()
                if length > capacity {
                    counters.add(.rxErrOverflow)
                    handle(Completion(kind: .receive, status: .overflow, cookie: cookie, length: 0))
                } else {
                    let bytes = unsafe channel.receivedBytes(length: length)
                    if let base = unsafe base, length > 0 { unsafe base.copyMemory(from: bytes.baseAddress!, byteCount: length) }
                    counters.add(.rxPackets)
                    counters.add(.rxBytes, UInt64(length))
                    counters.add(.rxMemcpy)
                    handle(Completion(kind: .receive, status: .ok, cookie: cookie, length: length))
                }
                // Unlike Linux (which leaves rx_pkts behind on overflow and then refuses every later
                // frame as a version error), the packet number advances for every consumed frame.
                channel.consumeReceived()
                received &+= 1
            case .linkDown:
                channel.clearLinkDownFrame()
                channel.publishReceiveTail()
                return reported &+ received &+ peerTookDown(handle)
            case let .badVersion(found, expected):
                let key = UInt64(channel.receiveIndex) << 32 | UInt64(found)
                if key != lastBadVersion {
                    lastBadVersion = key
                    counters.add(.rxErrVersion)
                }
                _ = expected
                break loop
            case .badLength:
                guard rxCount > 0 else {
                    guard inPlace else { counters.add(.rxErrNoBuf); break loop }
                    counters.add(.rxErrLength)
                    channel.consumeReceived()
                    received &+= 1
                    continue loop
                }
                counters.add(.rxErrLength)
                let (_, _, cookie) = unsafe popReceive()
                handle(Completion(kind: .receive, status: .invalidFrame, cookie: cookie, length: 0))
                channel.consumeReceived()
                received &+= 1
            }
        }
        if received > 0 { channel.publishReceiveTail() }
        pollsSinceGauges &+= 1
        if pollsSinceGauges >= 4096 { pollsSinceGauges = 0; updateGauges() }
        return reported &+ received
    }

    /// ``poll(limit:_:)`` on a DMA channel: finished DMAs, buffers the peer's engine filled.
    @inlinable
    func pollDMA(limit: Int, _ handle: (Completion) -> Void) -> Int {
        var reported = 0
        reap()
        if faulted {
            faulted = false
            return peerTookDown(handle)
        }
        while txPending > 0 {
            let s = unsafe txStatus[txOldest]
            if s == 0 { break }
            unsafe txStatus[txOldest] = 0
            let c = unsafe txCookies[txOldest], l = unsafe txLengths[txOldest]
            txOldest = txOldest &+ 1 == txCapacity ? 0 : txOldest &+ 1
            txPending &-= 1
            handle(Completion(kind: .send, status: s == 1 ? .ok : .aborted, cookie: c, length: s == 1 ? l : 0))
            reported &+= 1
        }
        offerReceives()
        var received = 0
        loop: while received < limit {
            switch channel.takeReceived() {
            case .empty:
                counters.add(.rxRingEmpty)
                break loop
            case let .received(length, inPlace):
                // Every filled buffer was offered, so one is posted (the channel checked the length
                // against what was offered).
                let (base, _, cookie) = unsafe popReceive()
                rxOffered &-= 1
                if !inPlace, let base = unsafe base, length > 0 {
                    unsafe base.copyMemory(from: channel.bouncedBytes(length: length).baseAddress!, byteCount: length)
                    counters.add(.rxMemcpy)
                }
                channel.releaseReceived()
                counters.add(.rxPackets)
                counters.add(.rxBytes, UInt64(length))
                counters.add(.rxAsync)
                handle(Completion(kind: .receive, status: .ok, cookie: cookie, length: length))
                received &+= 1
            case .linkDown:
                return reported &+ received &+ peerTookDown(handle)
            case .corrupt:
                counters.add(.rxErrLength)
                return reported &+ received &+ peerTookDown(handle)
            }
        }
        if received > 0 { offerReceives() }
        pollsSinceGauges &+= 1
        if pollsSinceGauges >= 4096 { pollsSinceGauges = 0; updateGauges() }
        return reported &+ received
    }

    /// Offers posted buffers the peer has not seen yet to the channel (DMA channels).
    @inlinable
    func offerReceives() {
        guard rxOffered < rxCount else { return }
        var offered = false
        while rxOffered < rxCount {
            var slot = rxOldest &+ rxOffered
            if slot >= rxDepth { slot &-= rxDepth }
            guard unsafe channel.offerReceive(busAddress: rxBusAddresses[slot], capacity: min(rxCapacities[slot], channel.maxPayload)) else { break }
            rxOffered &+= 1
            offered = true
        }
        if offered && channel.publishReceives() {
            device.ringPeerDoorbell(doorbellBit)
            counters.add(.doorbells)
        }
    }

    @inlinable @inline(__always)
    func popReceive() -> (UnsafeMutableRawPointer?, Int, UInt64) {
        let r = unsafe (rxBases[rxOldest], rxCapacities[rxOldest], rxCookies[rxOldest])
        rxOldest = rxOldest &+ 1 == rxDepth ? 0 : rxOldest &+ 1
        rxCount &-= 1
        return unsafe r
    }

    /// Returns every in-flight send and posted receive with `linkDown`, then the link-down event.
    @inlinable
    func failInFlight(_ handle: (Completion) -> Void) -> Int {
        var n = 0
        // DMA sends that finished before the link dropped keep their outcome.
        if Channel.movesByDMA {
            while txPending > 0 {
                let s = unsafe txStatus[txOldest]
                unsafe txStatus[txOldest] = 0
                handle(Completion(kind: .send, status: s == 1 ? .ok : s == 2 ? .aborted : .linkDown, cookie: unsafe txCookies[txOldest], length: s == 1 ? unsafe txLengths[txOldest] : 0))
                txOldest = txOldest &+ 1 == txCapacity ? 0 : txOldest &+ 1
                txPending &-= 1; n &+= 1
            }
            rxOffered = 0
            faulted = false
        }
        // Sends the peer consumed before the link dropped still succeeded.
        while txReaped > 0, txPending > 0 {
            handle(Completion(kind: .send, status: .ok, cookie: unsafe txCookies[txOldest], length: unsafe txLengths[txOldest]))
            txOldest = txOldest &+ 1 == txCapacity ? 0 : txOldest &+ 1
            txPending &-= 1; txReaped &-= 1; n &+= 1
        }
        while txPending > 0 {
            handle(Completion(kind: .send, status: .linkDown, cookie: unsafe txCookies[txOldest], length: 0))
            txOldest = txOldest &+ 1 == txCapacity ? 0 : txOldest &+ 1
            txPending &-= 1; n &+= 1
        }
        txOldest = 0; txReaped = 0
        while rxCount > 0 {
            let (_, _, cookie) = unsafe popReceive()
            handle(Completion(kind: .receive, status: .linkDown, cookie: cookie, length: 0))
            n &+= 1
        }
        rxOldest = 0
        if isUp {
            isUp = false
            counters.add(.linkDowns)
            handle(Completion(kind: .linkDown, status: .ok, cookie: 0, length: 0))
            n &+= 1
        }
        updateGauges()
        return n
    }

    /// The control plane moved us to generation `target` (link down: 0, or a new set-up).
    @inlinable
    func transition(to target: UInt64, _ handle: (Completion) -> Void) -> Int {
        var n = 0
        if isUp || txPending > 0 { n = failInFlight(handle) }
        isUp = false
        lastBadVersion = .max
        if target != 0, var next = link.slot.withLock({ slot -> Channel? in defer { slot = nil }; return slot }) {
            next.resetIndices()
            if 2 * next.transmitEntries != txCapacity {
                unsafe txCookies.deallocate(); unsafe txLengths.deallocate(); unsafe txStatus.deallocate()
                txCapacity = 2 * next.transmitEntries
                unsafe txCookies = .allocate(capacity: txCapacity)
                unsafe txLengths = .allocate(capacity: txCapacity)
                unsafe txStatus = .allocate(capacity: txCapacity)
                unsafe txStatus.initialize(repeating: 0, count: txCapacity)
            }
            if hasChannel { channel = next } else { unsafe channelSlot.initialize(to: next); hasChannel = true }
        }
        txOldest = 0; txPending = 0; txReaped = 0
        rxOffered = 0
        faulted = false
        adopted = target
        link.acknowledged.store(target, ordering: .releasing)
        updateGauges()
        return n
    }

    /// The peer sent LINK_DOWN (`ntb_qp_link_down` → `ntb_qp_link_cleanup`).
    @inlinable
    func peerTookDown(_ handle: (Completion) -> Void) -> Int {
        let n = failInFlight(handle)
        link.downRequest.store(true, ordering: .releasing)
        return n
    }

    /// Refreshes the gauge counters (ring positions) for `stats`; not called per message.
    @inlinable
    public func updateGauges() {
        guard hasChannel else {
            counters[.linkIsUp] = 0
            return
        }
        counters[.rxIndex] = UInt64(channel.receiveIndex)
        counters[.rxMaxEntry] = UInt64(channel.receiveEntries)
        counters[.txIndex] = UInt64(channel.transmitIndex)
        counters[.remoteRxEntry] = UInt64(channel.transmitTail)
        counters[.txMaxEntry] = UInt64(channel.transmitEntries)
        counters[.txFree] = UInt64(channel.transmitFree)
        counters[.maxPayload] = UInt64(channel.maxPayload)
        counters[.linkIsUp] = isUp ? 1 : 0
    }

    // MARK: Waiting (polling, interrupt, adaptive)

    /// Whether a poll would report something now (cheap: a flag, a tail and two atomics).
    @inlinable
    public func hasWork() -> Bool {
        if link.target.load(ordering: .relaxed) != adopted { return true }
        if !isUp { return adopted != 0 && link.up.load(ordering: .relaxed) == adopted }
        if Channel.movesByDMA {
            if faulted || channel.receivePending() { return true }
            if rxOffered < rxCount && channel.receivePostable > 0 { return true }
            guard txPending > 0 else { return false }
            if unsafe txStatus[txOldest] != 0 { return true }
            reap()
            if faulted { return true }
            return unsafe txStatus[txOldest] != 0
        }
        if txReaped > 0 || channel.receivePending() { return true }
        if txPending > 0 { reap(); return txReaped > 0 }
        return false
    }

    /// Waits until ``poll(limit:_:)`` has something to report or `timeout` passes; returns whether it has.
    ///
    /// `polling` spins; `interrupt` sleeps on the doorbell interrupt (`waitForEvents`) right away;
    /// `adaptive` spins up to a budget, then sleeps, and doubles the budget when work arrived soon
    /// after falling asleep (spinning would have caught it) or halves it when the sleep was long.
    @inlinable
    public func wait(timeout: Duration) -> Bool {
        waitCore(bits: doorbellBit, timeout: timeout, { hasWork() }, taken: { _ in completionSignalled = true })
    }

    /// Waits until any of `queuePairs` has something to report or `timeout` passes; returns whether
    /// one has. For one thread that drives several queue pairs (as a DPDK lcore polls several
    /// queues): it sleeps once, on the doorbells of all of them, instead of once per queue pair.
    ///
    /// The queue pairs must belong to one transport and be driven by the calling thread. The wait
    /// mode and the adaptive spin budget are the first queue pair's, and the wait is counted there.
    @inlinable
    public static func wait(anyOf queuePairs: [QueuePair], timeout: Duration) -> Bool {
        precondition(!queuePairs.isEmpty, "wait on at least one queue pair")
        if queuePairs.count == 1 { return queuePairs[0].wait(timeout: timeout) }
        var bits: UInt64 = 0
        for q in queuePairs {
            precondition(q.device === queuePairs[0].device, "wait(anyOf:) takes queue pairs of one transport")
            bits |= q.doorbellBit
        }
        return queuePairs[0].waitCore(bits: bits, timeout: timeout, {
            for q in queuePairs where q.hasWork() { return true }
            return false
        }, taken: { seen in
            for q in queuePairs where seen & q.doorbellBit != 0 { q.completionSignalled = true }
        })
    }

    /// ``wait(timeout:)`` on the doorbell `bits` until `ready()`; `taken(bits)` learns the pending
    /// bits a sleep takes (a DMA queue pair then reads its engine's status).
    @inlinable
    func waitCore(bits: UInt64, timeout: Duration, _ ready: () -> Bool, taken: (UInt64) -> Void) -> Bool {
        if ready() { return true }
        let clock = ContinuousClock()
        switch waitMode {
        case .polling:
            counters.add(.pollWaits)
            // Most waits on a polling data path end within a microsecond: spin a round before the first
            // clock read (a vDSO call costs about as much as 10 ring checks).
            for _ in 0..<256 where ready() { return true }
            let deadline = clock.now.advanced(by: timeout)
            var rounds = 0
            while clock.now < deadline {
                for _ in 0..<256 where ready() { return true }
                // On a machine with more spinning threads than cores, let the peer run now and then.
                rounds &+= 1
                if rounds & 3 == 0 { TransportThread.yield() }
            }
            return ready()
        case .interrupt:
            return sleepOnDoorbell(bits, until: clock.now.advanced(by: timeout), clock: clock, ready, taken)
        case .adaptive:
            let deadline = clock.now.advanced(by: timeout)
            var spins = 0
            while spins < spinLimit {
                if ready() { counters.add(.pollWaits); return true }
                spins &+= 1
                if spins & 1023 == 0 { TransportThread.yield() }
            }
            let before = clock.now
            let found = sleepOnDoorbell(bits, until: deadline, clock: clock, ready, taken)
            let slept = clock.now - before
            if found && slept < .microseconds(100) { spinLimit = min(spinLimit * 2, 1 << 20) }
            else if slept > .milliseconds(1) { spinLimit = max(spinLimit / 2, 256) }
            return found
        }
    }

    @inlinable
    func sleepOnDoorbell(_ bits: UInt64, until deadline: ContinuousClock.Instant, clock: ContinuousClock, _ ready: () -> Bool, _ taken: (UInt64) -> Void) -> Bool {
        counters.add(.interruptWaits)
        while true {
            // ntb_transport_rxc_db: clear our doorbell bit, then re-check, so a doorbell that arrives
            // between the check and the sleep still wakes us. The bits taken may be DMA completion
            // interrupts: the re-check reads the engine's status for those.
            let seen = device.takeDoorbells(bits)
            if seen != 0 { taken(seen) }
            if ready() { return true }
            let now = clock.now
            if now >= deadline { return false }
            // Link transitions come from the control plane without a doorbell: sleep in short slices.
            _ = device.waitForDoorbells(bits, timeout: min(deadline - now, .milliseconds(2)))
            if ready() { return true }
        }
    }

    // MARK: Client link down (ntb_transport_link_down)

    /// Takes this queue pair down on purpose: clears our QP_LINKS bit in the peer, sends the LINK_DOWN
    /// frame if the link is up (`ntb_send_link_down`), and returns every in-flight buffer through
    /// `handle`. The queue pair does not relink until the transport is set up again.
    @inlinable
    public func shutdown(_ handle: (Completion) -> Void = { _ in }) {
        link.clientDown.store(true, ordering: .releasing)
        let spad = HostWire.Scratchpad.queuePairLinks
        let val = device.readScratchpad(spad)
        device.writePeerScratchpad(spad, val & ~UInt32(truncatingIfNeeded: doorbellBit))
        if isUp && Channel.movesByDMA {
            if channel.sendLinkDown() { device.ringPeerDoorbell(doorbellBit) }
        } else if isUp {
            reap()
            if channel.transmitFree > 0 {
                unsafe channel.transmit(UnsafeRawBufferPointer(start: nil, count: 0), flags: HostWire.linkDownFlag)
                ring()
            }
        }
        _ = failInFlight(handle)
    }
}
