public import PCIKit

/// Alignment and size limits of one inbound memory window (Linux `ntb_mw_get_align`).
public struct MemoryWindowAlignment: Sendable, Equatable {
    /// The translated (bus) address must be a multiple of this.
    public var addressAlignment: UInt64
    /// The window size must be a multiple of this.
    public var sizeAlignment: UInt64
    /// The largest size the window can translate.
    public var maxSize: UInt64

    public init(addressAlignment: UInt64, sizeAlignment: UInt64, maxSize: UInt64) {
        self.addressAlignment = addressAlignment
        self.sizeAlignment = sizeAlignment
        self.maxSize = maxSize
    }
}

/// What happened on a device since the last look.
public struct NTBEvents: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The link went up or down (read ``NTBDevice/isLinkUp``).
    public static let link = NTBEvents(rawValue: 1 << 0)
    /// One or more doorbell bits are set (read ``NTBDevice/readDoorbell()``).
    public static let doorbell = NTBEvents(rawValue: 1 << 1)
    /// Another interrupt of this side fired (e.g. its DMA engine's, which shares the wait): look at
    /// what it may have changed (rings, completions).
    public static let other = NTBEvents(rawValue: 1 << 2)
}

/// Everything the transport needs from NTB hardware: the userspace counterpart of Linux
/// `struct ntb_dev_ops` (`include/linux/ntb.h`), for one port and its one peer.
///
/// Implementations are final classes (hardware adapters: EPF host side, vNTB endpoint side, ivshmem;
/// and the mock link). The transport is generic over the device type, so calls in the data path are
/// statically dispatched.
///
/// Indices (window, scratchpad) are checked by the implementation: a bad index is a programmer error.
/// Anything an implementation reads that the peer wrote (control regions, sizes, counts) is validated
/// and reported as ``NTBError``, never trusted.
public protocol NTBDevice: AnyObject {
    /// A name for messages and statistics, e.g. `0000:01:00.0` or `mock:/dev/shm/ntb0`.
    var name: String { get }

    // MARK: Link (ntb_link_is_up / ntb_link_enable / ntb_link_disable)

    /// Whether the NTB link to the peer is up.
    var isLinkUp: Bool { get }
    /// Allows the link to come up (EPF: LINK_UP command).
    func enableLink() throws(NTBError)
    /// Takes the link down (EPF: LINK_DOWN command).
    func disableLink() throws(NTBError)

    // MARK: Inbound memory windows: the peer writes into our memory (ntb_mw_*)

    /// Number of inbound memory windows (`ntb_mw_count`).
    var memoryWindowCount: Int { get }
    /// Alignment and size limits for inbound window `window` (`ntb_mw_get_align`).
    func memoryWindowAlignment(_ window: Int) throws(NTBError) -> MemoryWindowAlignment
    /// Allocates memory the peer can reach through an inbound window: DMA-mapped for the device.
    func allocateInboundBuffer(length: Int, alignment: Int) throws(NTBError) -> DMABuffer
    /// Points inbound window `window` at `busAddress` for `size` bytes (`ntb_mw_set_trans`).
    func setMemoryWindowTranslation(_ window: Int, busAddress: UInt64, size: Int) throws(NTBError)
    /// Removes the translation of inbound window `window` (`ntb_mw_clear_trans`).
    func clearMemoryWindowTranslation(_ window: Int) throws(NTBError)

    // MARK: Outbound memory windows: our mapping of the peer's memory (ntb_peer_mw_*)

    /// Number of outbound windows (`ntb_peer_mw_count`).
    var peerMemoryWindowCount: Int { get }
    /// The CPU mapping of outbound window `window`; valid while the device is open.
    func peerMemoryWindow(_ window: Int) throws(NTBError) -> MMIORegion

    // MARK: Scratchpads (ntb_spad_* / ntb_peer_spad_*)

    /// Number of scratchpads on each side (`ntb_spad_count`).
    var scratchpadCount: Int { get }
    /// Reads own scratchpad `index` (written by the peer's `writePeerScratchpad`).
    func readScratchpad(_ index: Int) -> UInt32
    /// Writes own scratchpad `index`.
    func writeScratchpad(_ index: Int, _ value: UInt32)
    /// Reads the peer's scratchpad `index`.
    func readPeerScratchpad(_ index: Int) -> UInt32
    /// Writes the peer's scratchpad `index` (what the peer reads with `readScratchpad`).
    func writePeerScratchpad(_ index: Int, _ value: UInt32)

    // MARK: Doorbells (ntb_db_* / ntb_peer_db_set)

    /// Bits that are valid doorbells (`ntb_db_valid_mask`).
    var doorbellValidMask: UInt64 { get }
    /// Doorbell bits that interrupt vector `vector` reports (`ntb_db_vector_mask`).
    func doorbellVectorMask(_ vector: Int) -> UInt64
    /// Pending doorbell bits (`ntb_db_read`).
    func readDoorbell() -> UInt64
    /// Clears pending doorbell bits (`ntb_db_clear`).
    func clearDoorbell(_ bits: UInt64)
    /// Takes the pending bits among `bits`: returns them and clears exactly those (a bit that comes
    /// after the read stays pending). The default reads, then clears what it read.
    func takeDoorbells(_ bits: UInt64) -> UInt64
    /// Masks doorbell bits: they stay pending but raise no event (`ntb_db_set_mask`).
    func setDoorbellMask(_ bits: UInt64)
    /// Unmasks doorbell bits (`ntb_db_clear_mask`).
    func clearDoorbellMask(_ bits: UInt64)
    /// Rings the peer's doorbell bits (`ntb_peer_db_set`).
    func ringPeerDoorbell(_ bits: UInt64)

    // MARK: Events

    /// Checks for link changes and doorbells without blocking (polling mode).
    func pollEvents() -> NTBEvents
    /// Blocks until a link change or doorbell arrives or `timeout` passes (interrupt mode: waits on
    /// the eventfds of the device's vectors; devices without interrupts poll at their interval).
    func waitForEvents(timeout: Duration) -> NTBEvents
    /// Like ``waitForEvents(timeout:)``, for one waiter among several (a queue pair's thread): returns
    /// on one of `bits`, a link change or another wake-up source, but not on doorbells of other
    /// bits, which other threads take (Linux: one interrupt vector per queue pair). Devices whose
    /// doorbells share one wake-up implement it; the default waits for any event.
    func waitForDoorbells(_ bits: UInt64, timeout: Duration) -> NTBEvents
}

extension NTBDevice {
    public func waitForDoorbells(_ bits: UInt64, timeout: Duration) -> NTBEvents { waitForEvents(timeout: timeout) }
    @inlinable
    public func takeDoorbells(_ bits: UInt64) -> UInt64 {
        let pending = readDoorbell() & bits
        if pending != 0 { clearDoorbell(pending) }
        return pending
    }
}
