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
