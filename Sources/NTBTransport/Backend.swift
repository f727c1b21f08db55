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

/// A backend: how queue pairs move bytes. Chosen once by name at set-up (``TransportBackends``); the
/// data path is generic over it.
public protocol TransportBackend: Sendable {
    associatedtype Channel: TransportChannel
    /// The registry name (`host`, `edma`).
    static var name: String { get }
    /// One line for `--help` and the demo table.
    static var summary: String { get }
    /// Memory windows the backend keeps for itself at the end of the device's windows (hardware-reference
    /// §4, RFC v3 patch 25: the edma backend keeps the last one for the eDMA window, `mw_count -= 1`). The
    /// transport uses only the windows before them, on both sides, so the handshake's NUM_MWS agrees.
    /// Default 0.
    static var reservedMemoryWindows: Int { get }
    /// Makes the backend for `device` at set-up.
    init<Device: NTBDevice>(device: Device, configuration: TransportConfiguration) throws(TransportError)
    /// Builds queue pair `memory.queuePair`'s channel once the link is up.
    func makeChannel(_ memory: QueuePairMemory) throws(TransportError) -> Channel
}

extension TransportBackend {
    public static var reservedMemoryWindows: Int { 0 }
}

/// The backends by name. `host` is built in; other modules add theirs with ``register(_:)`` before set-up.
public enum TransportBackends {
    private static let registry = Mutex<[(name: String, type: any TransportBackend.Type)]>([
        (HostBackend.name, HostBackend.self),
    ])

    /// Adds (or replaces) a backend.
    public static func register(_ type: any TransportBackend.Type) {
        registry.withLock { list in
            list.removeAll { $0.name == type.name }
            list.append((type.name, type))
        }
    }

    /// Backends built in but generic over the device (they need a device capability, e.g. the eDMA
    /// of ``PeerEDMAAccess``); ``visit(_:device:_:)`` opens them with the device's type.
    public static let deviceSpecificNames = [EDMABackendName.name]

    /// Every backend name: the registered ones (host first), then the device-specific built-ins.
    public static var names: [String] {
        var list = registry.withLock { $0.map(\.name) }
        for n in deviceSpecificNames where !list.contains(n) { list.insert(n, at: min(1, list.count)) }
        return list
    }

    /// The backend called `name`. Pass the result to a generic function to open it once:
    /// `func run<B: TransportBackend>(_: B.Type)`; everything below is statically dispatched.
    public static func lookup(_ name: String) throws(TransportError) -> any TransportBackend.Type {
        guard let type = registry.withLock({ $0.first { $0.name == name }?.type }) else {
            if deviceSpecificNames.contains(name) {
                throw .invalidConfiguration("the \(name) backend is opened with its device (TransportBackends.visit(_:device:_:))")
            }
            throw .unknownBackend(name, available: names)
        }
        return type
    }
}

/// Something to run with the backend chosen by name. The built-in backends are visited with their
/// concrete type, so everything the visitor calls is specialised (static dispatch in the data path);
/// backends registered at run time are opened from the existential.
public protocol TransportBackendVisitor {
    associatedtype Result
    func visit<Backend: TransportBackend>(_ backend: Backend.Type) throws -> Result
}

extension TransportBackends {
    /// Calls `visitor.visit(B.self)` for the backend named `name`.
    @inlinable
    public static func visit<V: TransportBackendVisitor>(_ name: String, _ visitor: V) throws -> V.Result {
        switch name {
        case HostBackend.name: return try visitor.visit(HostBackend.self)
        default: return try openAndVisit(try lookup(name), visitor)
        }
    }

    @inlinable
    static func openAndVisit<B: TransportBackend, V: TransportBackendVisitor>(_ backend: B.Type, _ visitor: V) throws -> V.Result {
        try visitor.visit(backend)
    }

    /// Calls `visitor.visit(B.self)` for the backend named `name` on a device of type `Device`: the
    /// device-specific backends (`edma`) are opened with the device's type when it has the capability
    /// they need, and refused with what to use instead when it has not.
    @inlinable
    public static func visit<Device: NTBDevice, V: TransportBackendVisitor>(_ name: String, device: Device.Type, _ visitor: V) throws -> V.Result {
        switch name {
        case HostBackend.name: return try visitor.visit(HostBackend.self)
        case EDMABackendName.name:
            guard let edma = Device.self as? any PeerEDMAAccess.Type else {
                throw TransportError.invalidConfiguration("the edma backend needs a DesignWare eDMA the transport can reach over the link (an endpoint's eDMA behind the NTB, hardware-reference §4); this port's device (\(Device.self)) has none; use --backend host")
            }
            return try openEDMA(edma, visitor)
        default: return try openAndVisit(try lookup(name), visitor)
        }
    }

    @inlinable
    static func openEDMA<D: PeerEDMAAccess, V: TransportBackendVisitor>(_ device: D.Type, _ visitor: V) throws -> V.Result {
        try visitor.visit(EDMABackend<D>.self)
    }
}
