public import NTBHardware
import PCIKit
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
/// The queue pair is a core (generations, the completion and receive FIFOs, waiting) and the data
/// path of its channel family, ``TransportChannel/DataPath`` (``FrameDataPath`` for `host`,
/// ``DMADataPath`` for `edma`), chosen statically: nothing here branches on the backend.
///
/// Semantics follow Linux with two deliberate differences, both so that nothing is lost silently:
/// a send on a link-down queue pair throws ``TransportError/linkDown(queuePair:)`` (Linux returns 0
/// and drops), and a send completes when the PEER has consumed it, so at link down every unconsumed
/// send and every posted receive buffer comes back with status ``Completion/Status/linkDown``,
/// followed by a ``Completion/Kind/linkDown`` event.
@safe
public final class QueuePair<Device: NTBDevice, Backend: TransportBackend>: @unchecked Sendable {
    public typealias Channel = Backend.Channel
    @usableFromInline typealias DataPath = Channel.DataPath

    /// The queue pair number (its doorbell bit).
    public let index: Int
    /// This queue pair's counters.
    public let counters: QueuePairCounters
    @usableFromInline let device: Device
    @usableFromInline let link: QueuePairLink<Channel>
    @usableFromInline let doorbellBit: UInt64

    /// The shared data-path state (plain loads and stores through the pointer, no exclusivity checks).
    @usableFromInline let state: UnsafeMutablePointer<QueuePairState>
    /// The data path's own state.
    @usableFromInline let path: UnsafeMutablePointer<DataPath>
    /// The channel once a link set one up (`state.hasChannel`); uninitialised before.
    @usableFromInline let channelSlot: UnsafeMutablePointer<Channel>
    /// Memory of ``makeBuffers(count:length:)``, freed with the queue pair.
    let ownedBuffers = Mutex<[OwnedBuffer]>([])

    /// The channel, addressed in place (no copy of the struct, no optional tag per access).
    /// - Precondition: `state.hasChannel`.
    @inlinable var channel: Channel {
        unsafeAddress { unsafe UnsafePointer(channelSlot) }
        unsafeMutableAddress { unsafe channelSlot }
    }

    init(index: Int, device: Device, link: QueuePairLink<Channel>, counters: QueuePairCounters, configuration: TransportConfiguration) {
        precondition(configuration.receiveQueueDepth > 0)
        self.index = index
        self.device = device
        self.link = link
        self.counters = counters
        self.doorbellBit = 1 << UInt64(index)
        unsafe state = .allocate(capacity: 1)
        unsafe state.initialize(to: QueuePairState(receiveDepth: configuration.receiveQueueDepth, waitMode: configuration.waitMode))
        unsafe path = .allocate(capacity: 1)
        unsafe path.initialize(to: DataPath())
        unsafe channelSlot = .allocate(capacity: 1)
    }

    deinit {
        // The channel first: whether there is one is in `state`, which goes last.
        if unsafe state.pointee.hasChannel { unsafe channelSlot.deinitialize(count: 1) }
        unsafe channelSlot.deallocate()
        unsafe path.pointee.deallocate()
        unsafe path.deinitialize(count: 1)
        unsafe path.deallocate()
        unsafe state.pointee.deallocate()
        unsafe state.deinitialize(count: 1)
        unsafe state.deallocate()
        // ownedBuffers goes after this body: nothing the queue pair holds points into them any more.
    }

    // MARK: State

    /// Whether the queue pair link is up (`ntb_transport_link_query`), as of the last poll.
    @inlinable public var isLinkUp: Bool { unsafe state.pointee.isUp }
    /// The largest message a send accepts (`ntb_transport_max_size`); 0 while no link was set up.
    @inlinable public var maxPayload: Int { unsafe state.pointee.hasChannel ? channel.maxPayload : 0 }
    /// Transmit ring entries: frames (`host`) or descriptors (`edma`); 0 while no link was set up.
    @inlinable public var transmitEntries: Int { unsafe state.pointee.hasChannel ? channel.transmitEntries : 0 }
    /// Free transmit entries (`ntb_transport_tx_free_entry`), limited by unreported completions.
    @inlinable public var transmitFree: Int { unsafe state.pointee.isUp ? free : 0 }
    /// Posted receive buffers not yet filled.
    @inlinable public var postedReceives: Int { unsafe state.pointee.receives.count }
    /// Sends written but not yet consumed by the peer.
    @inlinable public var sendsInFlight: Int { unsafe state.pointee.sends.pending }
    /// How ``wait(timeout:)`` waits: from the configuration at set-up; the thread driving the queue
    /// pair may change it between waits (e.g. interrupt-driven bulk sends, then polling round trips).
    @inlinable public var waitMode: TransportConfiguration.WaitMode {
        get { unsafe state.pointee.waitMode }
        set { unsafe state.pointee.waitMode = newValue }
    }
    /// Whether messages move best from DMA memory (the `edma` backend): then
    /// ``makeBuffers(count:length:)`` hands out memory a DMA engine reaches (and receives land in
    /// it without a copy). Clients that use `makeBuffers` need not look at this.
    @inlinable public var prefersDMABuffers: Bool { DataPath.prefersDMABuffers }
    /// Whether a send completes after the call returned, when an engine has moved it (`edma`), rather
    /// than being written by the CPU during the call (`host`). A sender with little else to do may
    /// then sleep on the completion interrupt (``waitMode`` `.interrupt`) instead of spinning.
    @inlinable public var sendsCompleteLater: Bool { DataPath.prefersDMABuffers }
    /// Whether ``poll(limit:inPlace:_:)`` hands messages to its closure straight from the receive
    /// ring when no receive buffer is posted (frame channels, `host`). When false (`edma`) every
    /// message lands in a posted buffer: keep buffers posted.
    @inlinable public var receivesInPlace: Bool { !DataPath.prefersDMABuffers }
    /// Messages per ``sendBatch(count:buffers:)`` a bulk sender should use: half the transmit ring
    /// when an engine moves them (one chain runs while the next, as long, fills: longer batches leave
    /// nothing queued when a chain completes, shorter ones mean more chains and wakes per GB); 32
    /// frames per doorbell when the CPU writes them. 0 while no link was set up.
    @inlinable public var preferredBatch: Int {
        guard unsafe state.pointee.hasChannel else { return 0 }
        return sendsCompleteLater ? max(1, (transmitEntries + 1) / 2) : 32
    }

    /// Messages we may write: the ring's free entries, but never more sends outstanding (in flight or
    /// finished but not yet reported by `poll`) than the completion FIFO holds (2·N).
    @inlinable var free: Int { unsafe min(channel.transmitFree, state.pointee.sends.room) }

    // MARK: Receive buffers (ntb_transport_rx_enqueue)

    /// Posts a buffer of ordinary memory for one incoming message. The buffer must stay valid until
    /// its completion. A data path that moves payloads by DMA (`edma`) receives into one of the
    /// channel's bounce buffers and copies; ``postReceive(_:cookie:)`` with a buffer of
    /// ``makeBuffers(count:length:)`` receives without a copy on every backend.
    /// - Throws: ``TransportError/receiveQueueFull(queuePair:capacity:)`` when `receiveQueueDepth` are posted.
    @inlinable
    public func postReceive(_ buffer: UnsafeMutableRawBufferPointer, cookie: UInt64) throws(TransportError) {
        try unsafe post(buffer, busAddress: nil, cookie: cookie)
    }

    @inlinable
    func post(_ buffer: UnsafeMutableRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) {
        let s = unsafe state
        guard unsafe s.pointee.receives.count < s.pointee.receives.depth else {
            throw unsafe .receiveQueueFull(queuePair: index, capacity: s.pointee.receives.depth)
        }
        unsafe s.pointee.receives.push(buffer, busAddress: busAddress, cookie: cookie)
    }

    /// Memory a DMA engine on this port can reach, for ``makeBuffers(count:length:)``.
    func allocateDMAMemory(length: Int) throws(TransportError) -> DMABuffer {
        do throws(NTBError) { return try device.allocateInboundBuffer(length: length, alignment: 4096) }
        catch { throw .device(error) }
    }

    /// Takes back every posted receive buffer not filled yet (`ntb_transport_rx_remove`), oldest first,
    /// e.g. before the memory behind them goes away. Returns their cookies' count.
    ///
    /// On a DMA data path, buffers already offered to the peer's ring stay there until the link
    /// resets (the peer can still fill them): only remove receives whose memory stays valid, as the
    /// buffers of ``makeBuffers(count:length:)`` do.
    @discardableResult
    @inlinable
    public func removeReceives(_ handle: (UInt64) -> Void = { _ in }) -> Int {
        let s = unsafe state
        let n = unsafe s.pointee.receives.count
        while unsafe s.pointee.receives.count > 0 {
            let (_, _, cookie) = unsafe s.pointee.receives.pop()
            handle(cookie)
        }
        unsafe s.pointee.receives.oldest = 0
        unsafe path.pointee.receivesRemoved()
        return n
    }

    // MARK: Sends (ntb_transport_tx_enqueue)

    /// Sends one message from ordinary memory: `host` copies it into the next frame and rings the
    /// peer's doorbell, `edma` copies it to a bounce buffer and queues it on the engine; either way
    /// the buffer is free again on return. The completion (cookie) reports when the peer has it.
    /// ``send(_:length:cookie:)`` from a buffer of ``makeBuffers(count:length:)`` moves no byte with
    /// the CPU on a DMA data path.
    /// - Throws: `linkDown`, `emptyMessage`, `messageTooLarge`, `ringFull` (poll and retry).
    @inlinable
    public func send(_ bytes: UnsafeRawBufferPointer, cookie: UInt64) throws(TransportError) {
        try unsafe path.pointee.send(self, bytes, busAddress: nil, cookie: cookie)
    }

    /// Sends up to `count` messages from ordinary memory with one doorbell (`host`) or as one chain
    /// (`edma`); `message(i)` gives the i-th message and cookie. Returns how many were sent: fewer
    /// than `count` when the ring filled up (counted in tx_ring_full).
    /// - Throws: `linkDown` before anything was sent; `emptyMessage` / `messageTooLarge` for message i
    ///   (messages before it were sent).
    @inlinable
    public func sendBatch(count: Int, _ message: (Int) -> (bytes: UnsafeRawBufferPointer, cookie: UInt64)) throws(TransportError) -> Int {
        guard unsafe state.pointee.isUp else { counters.add(.txErrLinkDown); throw .linkDown(queuePair: index) }
        return try unsafe path.pointee.sendBatch(self, count: count) { i in let m = unsafe message(i); return unsafe (m.bytes, nil, m.cookie) }
    }

    /// Checks a message before a data path writes it.
    @inlinable @inline(__always)
    func admit(_ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        guard unsafe state.pointee.isUp else { counters.add(.txErrLinkDown); throw .linkDown(queuePair: index) }
        guard bytes.count > 0 else { throw .emptyMessage }
        guard bytes.count <= channel.maxPayload else {
            throw .messageTooLarge(length: bytes.count, maxPayload: channel.maxPayload)
        }
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
        let s = unsafe state
        var reported = 0
        let target = link.target.load(ordering: .acquiring)
        if unsafe target != s.pointee.adopted { reported &+= transition(to: target, handle) }
        if unsafe !s.pointee.isUp {
            guard unsafe s.pointee.adopted != 0, !link.downRequest.load(ordering: .relaxed),
                  unsafe link.up.load(ordering: .acquiring) == s.pointee.adopted else { return reported }
            unsafe s.pointee.isUp = true
            counters.add(.linkUps)
            updateGauges()
            handle(Completion(kind: .linkUp, status: .ok, cookie: 0, length: 0))
            reported &+= 1
        }
        let r = unsafe path.pointee.poll(self, limit: limit, inPlace: inPlace, frame, handle)
        reported &+= r.reported
        if r.peerDown { return reported &+ peerTookDown(handle) }
        unsafe s.pointee.pollsSinceGauges &+= 1
        if unsafe s.pointee.pollsSinceGauges >= 4096 { unsafe s.pointee.pollsSinceGauges = 0; updateGauges() }
        return reported
    }
}
