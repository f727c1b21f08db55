public import PCIKit

/// Optional capability of an NTB device whose link carries a DesignWare eDMA that the transport's
/// `edma` backend drives (hardware-reference §4: the endpoint's eDMA, reached by the host through the
/// dedicated last memory window, RFC v3 patch 25).
///
/// The transport is generic over it (`Device: NTBDevice & PeerEDMAAccess`), so it reaches the engine
/// without knowing the device type: no casts, no existentials, statically dispatched.
///
/// - Host role: ``peerEDMARegisters()`` is the peer's eDMA register block as this side reaches it
///   (remote mode: the host drives the endpoint's read channels). On silicon that is the register
///   slot at 2P of the eDMA window (an inbound iATU sub-mapping the endpoint sets up, RFC v3 patch 25); the mock
///   link gives its engine model's host-side register space.
/// - Endpoint role: ``localEDMARegisters(writeChannels:readChannels:)`` starts (or finds) this side's
///   own engine and returns its registers (local mode: the endpoint drives its write channels).
///   It must run before the endpoint publishes the window (hardware-reference §4.3 "Init order").
public protocol PeerEDMAAccess: NTBDevice {
    /// Which side of the eDMA this device is: the endpoint hosts the engine, the host drives it remotely.
    var edmaSide: EDMASide { get }
    /// The register space both roles see (the same access path type on one device).
    associatedtype EDMARegisterSpace: RegisterSpace
    /// Host: the peer's eDMA registers.
    /// - Throws: ``NTBError`` when this side is not the host, or no engine answers on the link.
    func peerEDMARegisters() throws(NTBError) -> EDMARegisterSpace
    /// Endpoint: starts this side's eDMA (once; later calls return the same engine, whatever the
    /// counts) and returns its registers.
    /// - Throws: ``NTBError`` when this side is not the endpoint or the engine cannot start.
    func localEDMARegisters(writeChannels: Int, readChannels: Int) throws(NTBError) -> EDMARegisterSpace
    /// Host: where the peer's eDMA writes (IMWr, RIE) when a transfer of queue pair `queuePair`
    /// completes, so that this side's ``NTBDevice/waitForEvents(timeout:)`` wakes: one of this
    /// side's MSI vectors. nil (the default): completions are found by polling.
    func edmaCompletionInterrupt(queuePair: Int) -> EDMAInterruptTarget?
}

extension PeerEDMAAccess {
    public func edmaCompletionInterrupt(queuePair: Int) -> EDMAInterruptTarget? { nil }
}

/// An MSI as a DMA engine raises it: a 32-bit memory write of `data` to `address` (the eDMA's IMWr).
public struct EDMAInterruptTarget: Sendable, Equatable {
    public var address: UInt64
    public var data: UInt16
    public init(address: UInt64, data: UInt16) {
        self.address = address
        self.data = data
    }
}

/// The two sides of the eDMA over an NTB link (hardware-reference §4: ring selection and channel direction
/// follow it).
public enum EDMASide: String, Sendable, Equatable, CustomStringConvertible {
    /// The root-complex side: transmits with the peer's read channels, reached through the window.
    case host
    /// The side whose SoC has the eDMA: publishes the window, transmits with its local write channels.
    case endpoint

    public var description: String { rawValue }
}
