/// The per-queue-pair data mover of a backend: the ring protocol on the wire.
///
/// A channel belongs to one of two families, and the family chooses the queue pair's data path
/// statically (through ``DataPath``): ``FrameChannel`` (the CPU copies each message into a frame,
/// `host`) or ``DMAChannel`` (a DMA engine moves each message by bus address, `edma`). Conform to
/// one of those two, not to this protocol alone.
///
/// Implementations are structs whose members are `@inlinable`, so `QueuePair` specialises to direct
/// code (no existentials, no allocation per message). One thread drives a channel's data path;
/// ``prepareSharedMemory()`` runs on the control plane while the data path is idle.
public protocol TransportChannel: Sendable {
    /// The queue pair's data path for this channel family: `FrameDataPath<Self>` for a
    /// ``FrameChannel``, `DMADataPath<Self>` for a ``DMAChannel`` (declare it with the conformance).
    associatedtype DataPath: QueuePairDataPath where DataPath.Channel == Self

    /// Largest message one transfer carries (`ntb_transport_max_size`).
    var maxPayload: Int { get }
    /// Entries in the transmit ring (`tx_max_entry`): frames (`host`) or descriptors (`edma`).
    var transmitEntries: Int { get }
    /// Messages the sender may write now (`ntb_transport_tx_free_entry`).
    var transmitFree: Int { get }

    /// Resets the shared memory this side owns before the queue pair link comes up.
    func prepareSharedMemory()
    /// Resets the ring positions and packet numbers (`ntb_qp_link_context_reset`).
    mutating func resetIndices()
    /// Whether a message is waiting at the receive position; cheap, for adaptive waiting.
    func receivePending() -> Bool

    /// Ring positions for statistics: transmit head, transmit tail (as the peer published it), receive position.
    var transmitIndex: UInt32 { get }
    var transmitTail: UInt32 { get }
    var receiveIndex: UInt32 { get }
    /// Entries in the receive ring (`rx_max_entry`).
    var receiveEntries: Int { get }
}

/// A channel whose sender copies each message into a frame of the peer's memory and whose receiver
/// reads frames from its own (Linux `ntb_transport` v4, the `host` backend).
public protocol FrameChannel: TransportChannel {
    /// Reads the tail the peer published; returns how many frames it consumed since the last call,
    /// or −1 if the published value is impossible (out of range, or ahead of what we sent).
    mutating func reapTransmitted() -> Int
    /// Writes one frame at the head (payload, barrier, flags|DONE) and advances.
    /// - Precondition: `transmitFree > 0` and `payload.count <= maxPayload`.
    mutating func transmit(_ payload: UnsafeRawBufferPointer, flags: UInt32)
    /// Writes one frame's length, packet number and payload, without its flags, and advances.
    /// - Precondition: `transmitFree > 0` and `payload.count <= maxPayload`.
    mutating func stageTransmit(_ payload: UnsafeRawBufferPointer)
    /// One barrier, then DONE on every staged frame.
    mutating func publishStaged()
    /// Makes every written frame visible to the peer before its doorbell (read-back of the last flags,
    /// for write-combining windows).
    func flushTransmit()

    /// Looks at the frame at the receive position without consuming it.
    mutating func peekReceive() -> ReceivePeek
    /// The payload of the frame at the receive position (valid until ``consumeReceived()``).
    func receivedBytes(length: Int) -> UnsafeRawBufferPointer
    /// Releases the frame at the receive position (clears its flags) and advances.
    mutating func consumeReceived()
    /// Clears a LINK_DOWN frame at the receive position without counting a packet (`hdr->flags = 0`).
    mutating func clearLinkDownFrame()
    /// Publishes the receive position to the peer (`rx_info->entry` = last consumed index).
    mutating func publishReceiveTail()
}


/// A channel that moves each message with a DMA engine, by bus address, into a buffer the peer
/// offered (the `edma` backend, RFC v3).
public protocol DMAChannel: TransportChannel {
    /// Queues one message (a send completes when its DMA completes). `busAddress` is where the
    /// engine reads the payload; nil copies it into a bounce buffer first. `tag` identifies the send
    /// in ``reapDMATransmits(now:_:)``.
    mutating func enqueueTransmit(_ payload: UnsafeRawBufferPointer, busAddress: UInt64?, tag: Int) -> TransmitRefusal?
    /// Starts the queued messages (one chain) if the engine is idle; otherwise they start when
    /// the chain in flight completes. Returns whether a chain was started.
    @discardableResult
    mutating func startTransmit() -> Bool
    /// Takes finished transfers; calls `finished(tag, ok)` for each (not necessarily in order:
    /// an abort fails one message and retries the ones after it).
    mutating func reapDMATransmits(now: ContinuousClock.Instant, _ finished: (_ tag: Int, _ ok: Bool) -> Void) -> DMATransmitReap
    /// Whether every transmit completion (and abort) raises this queue pair's doorbell bit (an
    /// MSI the engine writes). Then, in interrupt mode, the queue pair reads the engine's status only
    /// after that interrupt, as Linux reads `int_status` only in `dw_edma_interrupt`.
    var completionRaisesDoorbell: Bool { get }
    /// Receive buffers the channel can still offer to the peer.
    var receivePostable: Int { get }
    /// Offers a receive buffer to the peer (by bus address; nil = through a bounce buffer of the
    /// channel). Returns false when none can be offered now. Call ``publishReceives()`` after.
    mutating func offerReceive(busAddress: UInt64?, capacity: Int) -> Bool
    /// Makes the offered buffers visible to the peer. Returns whether to ring the peer's doorbell:
    /// the peer had no buffer of ours left and may be waiting for one (a channel that tells the peer
    /// another way does so itself and returns false).
    mutating func publishReceives() -> Bool
    /// Takes the next filled buffer, in offer order.
    mutating func takeReceived() -> DMAReceiveEvent
    /// The bounce buffer of the buffer just taken (when it was offered without a bus address).
    func bouncedBytes(length: Int) -> UnsafeRawBufferPointer
    /// Releases the bounce buffer of the buffer just taken, if it had one.
    mutating func releaseReceived()
    /// Tells the peer this queue pair goes down (a LINK_DOWN descriptor) if the ring allows it now.
    mutating func sendLinkDown() -> Bool
}


/// What the receive side of a frame channel found at its ring position.
public enum ReceivePeek: Equatable, Sendable {
    /// No frame (DONE clear): `rx_ring_empty`.
    case empty
    /// A valid frame of `length` bytes.
    case frame(length: Int)
    /// The peer's LINK_DOWN frame: the peer took this queue pair down.
    case linkDown
    /// DONE set but `ver` is not the expected packet number: `rx_err_ver`; the frame is not consumed.
    case badVersion(found: UInt32, expected: UInt32)
    /// DONE set, version right, but `len` exceeds the frame's payload: never trusted.
    case badLength(UInt32)
}

/// Why a DMA channel did not queue a message.
public enum TransmitRefusal: Equatable, Sendable {
    /// No buffer posted by the peer, the chain is full, or no bounce buffer is free: poll, then retry.
    case busy
    /// The peer's next posted buffer holds at most `capacity` bytes.
    case tooLarge(capacity: Int)
    /// The peer wrote an impossible ring value: the queue pair must go down.
    case corrupt
}

/// What ``DMAChannel/reapDMATransmits(now:_:)`` found besides finished sends.
public struct DMATransmitReap: Equatable, Sendable {
    /// The peer must be told (its ring tail moved) by the queue pair's doorbell.
    public var ringDoorbell = false
    /// The engine stopped completing or vanished: the queue pair must go down (a link fault).
    public var fault = false
    /// The queued messages were started as the next chain.
    public var chainStarted = false
    @inlinable public init(ringDoorbell: Bool = false, fault: Bool = false, chainStarted: Bool = false) {
        self.ringDoorbell = ringDoorbell
        self.fault = fault
        self.chainStarted = chainStarted
    }
}

/// What ``DMAChannel/takeReceived()`` found.
public enum DMAReceiveEvent: Equatable, Sendable {
    case empty
    /// The oldest offered buffer holds `length` bytes; `inPlace`: in the client's buffer itself,
    /// else in the bounce buffer (``DMAChannel/bouncedBytes(length:)``).
    case received(length: Int, inPlace: Bool)
    /// The peer took the queue pair down.
    case linkDown
    /// The peer wrote something impossible: the queue pair must go down.
    case corrupt
}
