public import PCIKit
public import NTBHardware
import Synchronization

/// The memory of one queue pair once the link handshake has set up the windows
/// (`ntb_transport_init_queue` for the transmit side, `ntb_transport_setup_qp_mw` for the receive side).
public struct QueuePairMemory: Sendable {
    /// Queue pair number (its doorbell bit).
    public let queuePair: Int
    /// How many queue pairs the transport runs.
    public let queuePairCount: Int
    /// Our area in the PEER's memory, through our outbound window (`qp->tx_mw`, `tx_mw_size`).
    public let transmitArea: MMIORegion
    /// The outbound window index.
    public let transmitWindow: Int
    /// Our area in OUR inbound buffer, which the peer writes (`qp->rx_buff`).
    public let receiveArea: MMIORegion
    /// The bus address of `receiveArea` (for DMA engines).
    public let receiveBusAddress: UInt64
    /// `transport_mtu`.
    public let mtu: Int

    public init(queuePair: Int, queuePairCount: Int, transmitArea: MMIORegion, transmitWindow: Int,
                receiveArea: MMIORegion, receiveBusAddress: UInt64, mtu: Int) {
        self.queuePair = queuePair
        self.queuePairCount = queuePairCount
        self.transmitArea = transmitArea
        self.transmitWindow = transmitWindow
        self.receiveArea = receiveArea
        self.receiveBusAddress = receiveBusAddress
        self.mtu = mtu
    }
}

/// What the receive side found at its ring position.
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

/// The per-queue-pair data mover of a backend: the ring protocol on the wire.
///
/// Implementations are structs whose members are `@inlinable`, so `QueuePair` specialises to direct
/// code (no existentials, no allocation per message). One thread drives a channel's data path;
/// ``prepareSharedMemory()`` runs on the control plane while the data path is idle.
public protocol TransportChannel: Sendable {
    /// Largest message one frame carries (`ntb_transport_max_size`).
    var maxPayload: Int { get }
    /// Frames in the transmit ring (`tx_max_entry`).
    var transmitEntries: Int { get }
    /// Frames the sender may write now (`ntb_transport_tx_free_entry`), from the last ``reapTransmitted()``.
    var transmitFree: Int { get }

    /// Resets the shared memory this side owns before the queue pair link comes up: headers of the
    /// receive ring zeroed, the transmit tail (`remote_rx_info->entry`) set to N − 1.
    func prepareSharedMemory()
    /// Resets the ring positions and packet numbers (`ntb_qp_link_context_reset`).
    mutating func resetIndices()

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
    /// Whether a frame is waiting (DONE set at the receive position); cheap, for adaptive waiting.
    func receivePending() -> Bool

    /// Ring positions for statistics: transmit head, transmit tail (as the peer published it), receive position.
    var transmitIndex: UInt32 { get }
    var transmitTail: UInt32 { get }
    var receiveIndex: UInt32 { get }
    /// Frames in the receive ring (`rx_max_entry`).
    var receiveEntries: Int { get }

    // MARK: DMA channels (the payload moves by bus address; see ``movesByDMA``)

    /// Whether this channel moves payloads with a DMA engine by bus address (the `edma` backend),
    /// instead of the CPU copying frames (`host`). Static, so the queue pair's data path keeps only
    /// one of the two paths after specialisation. Default false: the frame methods above are used;
    /// when true, the methods below are.
    static var movesByDMA: Bool { get }
    /// DMA: queues one message (a send completes when its DMA completes). `busAddress` is where the
    /// engine reads the payload; nil copies it into a bounce buffer first. `tag` identifies the send
    /// in ``reapDMATransmits(now:_:)``.
    mutating func enqueueTransmit(_ payload: UnsafeRawBufferPointer, busAddress: UInt64?, tag: Int) -> TransmitRefusal?
    /// DMA: starts the queued messages (one chain) if the engine is idle; otherwise they start when
    /// the chain in flight completes. Returns whether a chain was started.
    @discardableResult
    mutating func startTransmit() -> Bool
    /// DMA: takes finished transfers; calls `finished(tag, ok)` for each (not necessarily in order:
    /// an abort fails one message and retries the ones after it).
    mutating func reapDMATransmits(now: ContinuousClock.Instant, _ finished: (_ tag: Int, _ ok: Bool) -> Void) -> DMATransmitReap
    /// DMA: whether every transmit completion (and abort) raises this queue pair's doorbell bit (an
    /// MSI the engine writes). Then, in interrupt mode, the queue pair reads the engine's status only
    /// after that interrupt, as Linux reads `int_status` only in `dw_edma_interrupt`.
    var completionRaisesDoorbell: Bool { get }
    /// DMA: receive buffers the channel can still offer to the peer.
    var receivePostable: Int { get }
    /// DMA: offers a receive buffer to the peer (by bus address; nil = through a bounce buffer of the
    /// channel). Returns false when none can be offered now. Call ``publishReceives()`` after.
    mutating func offerReceive(busAddress: UInt64?, capacity: Int) -> Bool
    /// DMA: makes the offered buffers visible to the peer. Returns whether to ring the peer's doorbell:
    /// the peer had no buffer of ours left and may be waiting for one (a channel that tells the peer
    /// another way does so itself and returns false).
    mutating func publishReceives() -> Bool
    /// DMA: takes the next filled buffer, in offer order.
    mutating func takeReceived() -> DMAReceiveEvent
    /// DMA: the bounce buffer of the buffer just taken (when it was offered without a bus address).
    func bouncedBytes(length: Int) -> UnsafeRawBufferPointer
    /// DMA: releases the bounce buffer of the buffer just taken, if it had one.
    mutating func releaseReceived()
    /// DMA: tells the peer this queue pair goes down (a LINK_DOWN descriptor) if the ring allows it now.
    mutating func sendLinkDown() -> Bool
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

/// What ``TransportChannel/reapDMATransmits(now:_:)`` found besides finished sends.
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

/// What ``TransportChannel/takeReceived()`` found.
public enum DMAReceiveEvent: Equatable, Sendable {
    case empty
    /// The oldest offered buffer holds `length` bytes; `inPlace`: in the client's buffer itself,
    /// else in the bounce buffer (``TransportChannel/bouncedBytes(length:)``).
    case received(length: Int, inPlace: Bool)
    /// The peer took the queue pair down.
    case linkDown
    /// The peer wrote something impossible: the queue pair must go down.
    case corrupt
}

/// Frame channels (`host`) need none of the DMA methods; DMA channels none of the frame methods.
/// Calling a method of the other family is a programmer error (``TransportChannel/movesByDMA`` decides).
extension TransportChannel {
    @inlinable public static var movesByDMA: Bool { false }
    public mutating func enqueueTransmit(_ payload: UnsafeRawBufferPointer, busAddress: UInt64?, tag: Int) -> TransmitRefusal? { preconditionFailure("not a DMA channel") }
    public mutating func startTransmit() -> Bool { preconditionFailure("not a DMA channel") }
    public mutating func reapDMATransmits(now: ContinuousClock.Instant, _ finished: (_ tag: Int, _ ok: Bool) -> Void) -> DMATransmitReap { preconditionFailure("not a DMA channel") }
    @inlinable public var completionRaisesDoorbell: Bool { false }
    public var receivePostable: Int { 0 }
    public mutating func offerReceive(busAddress: UInt64?, capacity: Int) -> Bool { preconditionFailure("not a DMA channel") }
    public mutating func publishReceives() -> Bool { preconditionFailure("not a DMA channel") }
    public mutating func takeReceived() -> DMAReceiveEvent { preconditionFailure("not a DMA channel") }
    public func bouncedBytes(length: Int) -> UnsafeRawBufferPointer { preconditionFailure("not a DMA channel") }
    public mutating func releaseReceived() { preconditionFailure("not a DMA channel") }
    public mutating func sendLinkDown() -> Bool { preconditionFailure("not a DMA channel") }
}

/// Frame-method defaults for DMA channels (never called: ``TransportChannel/movesByDMA`` is true).
public protocol DMATransportChannel: TransportChannel {}
extension DMATransportChannel {
    @inlinable public static var movesByDMA: Bool { true }
    public mutating func transmit(_ payload: UnsafeRawBufferPointer, flags: UInt32) { preconditionFailure("a DMA channel has no frames") }
    public mutating func stageTransmit(_ payload: UnsafeRawBufferPointer) { preconditionFailure("a DMA channel has no frames") }
    public mutating func publishStaged() { preconditionFailure("a DMA channel has no frames") }
    public func flushTransmit() { preconditionFailure("a DMA channel has no frames") }
    public mutating func reapTransmitted() -> Int { preconditionFailure("a DMA channel has no frames") }
    public mutating func peekReceive() -> ReceivePeek { preconditionFailure("a DMA channel has no frames") }
    public func receivedBytes(length: Int) -> UnsafeRawBufferPointer { preconditionFailure("a DMA channel has no frames") }
    public mutating func consumeReceived() { preconditionFailure("a DMA channel has no frames") }
    public mutating func clearLinkDownFrame() { preconditionFailure("a DMA channel has no frames") }
    public mutating func publishReceiveTail() { preconditionFailure("a DMA channel has no frames") }
}

/// A backend: how queue pairs move bytes. The built-in ones are chosen by ``TransportBackendKind`` at
/// set-up (``TransportBackends``); the data path is generic over it.
public protocol TransportBackend: Sendable {
    associatedtype Channel: TransportChannel
    /// What this backend needs besides the generic ``TransportConfiguration`` (host: nothing; edma: where
    /// the eDMA is and what a probe already found, ``EDMABackendOptions``).
    associatedtype Options: Sendable = Void
    /// The name in messages and results (`host`, `edma`: the ``TransportBackendKind`` raw value for the
    /// built-in backends).
    static var name: String { get }
    /// One line for `--help` and the demo table.
    static var summary: String { get }
    /// Memory windows the backend keeps for itself at the end of the device's windows (hardware-reference
    /// §4, RFC v3 patch 25: the edma backend keeps the last one for the eDMA window, `mw_count -= 1`). The
    /// transport uses only the windows before them, on both sides, so the handshake's NUM_MWS agrees.
    /// Default 0.
    static var reservedMemoryWindows: Int { get }
    /// The options a transport opened without any uses.
    static var defaultOptions: Options { get }
    /// Makes the backend for `device` at set-up.
    init<Device: NTBDevice>(device: Device, configuration: TransportConfiguration, options: Options) throws(TransportError)
    /// Builds queue pair `memory.queuePair`'s channel once the link is up.
    func makeChannel(_ memory: QueuePairMemory) throws(TransportError) -> Channel
}

extension TransportBackend {
    public static var reservedMemoryWindows: Int { 0 }
}

extension TransportBackend where Options == Void {
    public static var defaultOptions: Void { () }
}

/// The built-in backends, one per ``TransportBackendKind`` (the enum the policy, `--backend` and this
/// registry share).
public enum TransportBackends {
    /// Every backend name, host first (for help texts and messages).
    public static var names: [String] { TransportBackendKind.allCases.map(\.rawValue) }

    /// The backend kind called `name`, or ``TransportError/unknownBackend(_:available:)``.
    public static func kind(named name: String) throws(TransportError) -> TransportBackendKind {
        guard let kind = TransportBackendKind(rawValue: name) else { throw .unknownBackend(name, available: names) }
        return kind
    }
}

/// Something to run with the backend chosen at set-up, with that backend's options. The built-in
/// backends are visited with their concrete type, so everything the visitor calls is specialised
/// (static dispatch in the data path).
public protocol TransportBackendVisitor {
    associatedtype Result
    func visit<Backend: TransportBackend>(_ backend: Backend.Type, options: Backend.Options) throws -> Result
}

extension TransportBackends {
    /// Calls `visitor.visit(B.self, options:)` for backend `kind` on a device of type `Device`: the
    /// edma backend is opened with the device's type when it has the eDMA capability it needs
    /// (``PeerEDMAAccess``), and refused with what to use instead when it has not.
    /// - Parameter edma: the edma backend's options (where the eDMA is; a window a probe validated).
    @inlinable
    public static func visit<Device: NTBDevice, V: TransportBackendVisitor>(
        _ kind: TransportBackendKind, device: Device.Type, edma: EDMABackendOptions = EDMABackendOptions(), _ visitor: V
    ) throws -> V.Result {
        switch kind {
        case .host: return try visitor.visit(HostBackend.self, options: ())
        case .edma:
            guard let access = Device.self as? any PeerEDMAAccess.Type else {
                throw TransportError.invalidConfiguration("the edma backend needs a DesignWare eDMA the transport can reach over the link (an endpoint's eDMA behind the NTB, hardware-reference §4); this port's device (\(Device.self)) has none; use --backend host")
            }
            return try openEDMA(access, edma, visitor)
        }
    }

    /// Calls the visitor for the backend called `name` (``kind(named:)``).
    @inlinable
    public static func visit<Device: NTBDevice, V: TransportBackendVisitor>(_ name: String, device: Device.Type, _ visitor: V) throws -> V.Result {
        try visit(try kind(named: name), device: device, visitor)
    }

    @inlinable
    static func openEDMA<D: PeerEDMAAccess, V: TransportBackendVisitor>(_ device: D.Type, _ options: EDMABackendOptions, _ visitor: V) throws -> V.Result {
        try visitor.visit(EDMABackend<D>.self, options: options)
    }
}
