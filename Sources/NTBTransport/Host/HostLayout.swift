public import CNTBShim

/// The Linux `ntb_transport` version 4 wire layout, read from the C declarations in
/// `CNTBShim/include/ntb_transport.h` (declared once, `_Static_assert`ed there).
///
/// Reference: `docs/hardware-reference.md` §2.2–2.3; Linux `ntb_transport_setup_qp_mw`, `ntb_transport_init_queue`.
public enum HostWire {
    /// `NTB_TRANSPORT_VERSION`.
    public static let version = UInt32(NTB_TRANSPORT_V4_VERSION)
    /// `sizeof(struct ntb_payload_header)` = 12.
    @inlinable public static var headerSize: Int { MemoryLayout<ntb_transport_payload_header>.size }
    /// Offset of `ver` in the header.
    public static let headerVersionOffset = MemoryLayout<ntb_transport_payload_header>.offset(of: \.ver)!
    /// Offset of `len` in the header.
    public static let headerLengthOffset = MemoryLayout<ntb_transport_payload_header>.offset(of: \.len)!
    /// Offset of `flags` in the header.
    public static let headerFlagsOffset = MemoryLayout<ntb_transport_payload_header>.offset(of: \.flags)!
    /// `sizeof(struct ntb_rx_info)` = 4.
    @inlinable public static var rxInfoSize: Int { MemoryLayout<ntb_transport_rx_info>.size }
    /// `DESC_DONE_FLAG`.
    @inlinable public static var doneFlag: UInt32 { UInt32(NTB_TRANSPORT_DESC_DONE_FLAG) }
    /// `LINK_DOWN_FLAG`.
    @inlinable public static var linkDownFlag: UInt32 { UInt32(NTB_TRANSPORT_LINK_DOWN_FLAG) }
    /// `transport_mtu` default (64 KiB).
    public static let defaultMTU = Int(NTB_TRANSPORT_DEFAULT_MTU)
    /// `NTB_TRANSPORT_MIN_SPADS`.
    public static let minimumScratchpads = Int(NTB_TRANSPORT_MIN_SPADS)
    /// `NTB_LINK_DOWN_TIMEOUT`: the handshake retry period.
    public static let linkRetry = Duration.milliseconds(Int64(NTB_TRANSPORT_LINK_RETRY_MS))

    /// Scratchpad indices (`enum { VERSION, QP_LINKS, NUM_QPS, NUM_MWS, MW0_SZ_HIGH, MW0_SZ_LOW }`).
    public enum Scratchpad {
        public static let version = Int(NTB_TRANSPORT_SPAD_VERSION.rawValue)
        public static let queuePairLinks = Int(NTB_TRANSPORT_SPAD_QP_LINKS.rawValue)
        public static let queuePairCount = Int(NTB_TRANSPORT_SPAD_NUM_QPS.rawValue)
        public static let memoryWindowCount = Int(NTB_TRANSPORT_SPAD_NUM_MWS.rawValue)
        /// High 32 bits of memory window `window`'s size (`MW0_SZ_HIGH + 2·window`).
        public static func sizeHigh(_ window: Int) -> Int { Int(NTB_TRANSPORT_SPAD_MW0_SZ_HIGH.rawValue) + 2 * window }
        /// Low 32 bits of memory window `window`'s size (`MW0_SZ_LOW + 2·window`).
        public static func sizeLow(_ window: Int) -> Int { Int(NTB_TRANSPORT_SPAD_MW0_SZ_LOW.rawValue) + 2 * window }
    }
}

/// How many queue pairs share memory window `window`, and where queue pair `queuePair`'s area starts:
/// `QP_TO_MW(qp) = qp % mw_count`; the first `qp_count % mw_count` windows carry one more queue pair.
///
/// Mirrors `ntb_transport_init_queue` / `ntb_transport_setup_qp_mw`, including the 32-bit
/// (`unsigned int`) area size.
public struct QueuePairPlacement: Equatable, Sendable {
    public let window: Int
    public let offset: Int
    public let size: Int

    public init(queuePair: Int, queuePairCount: Int, windowCount: Int, windowSize: Int) {
        precondition(queuePairCount > 0 && windowCount > 0 && queuePair >= 0 && queuePair < queuePairCount)
        window = queuePair % windowCount
        let perWindow = window < queuePairCount % windowCount ? queuePairCount / windowCount + 1 : queuePairCount / windowCount
        size = Int(UInt32(truncatingIfNeeded: windowSize / perWindow))
        offset = size * (queuePair / windowCount)
    }
}

/// The frames of one queue pair's area of `areaSize` bytes (`docs/hardware-reference.md` §2.3):
/// frame size F = min(mtu, (S − 4) / 2), N = (S − 4) / F frames, the 12-byte header in the last 12
/// bytes of each frame, `rx_info.entry` in the last 4 bytes of the area.
public struct HostQueueLayout: Equatable, Sendable {
    /// S: the queue pair's area in the window.
    public let areaSize: Int
    /// F: `rx_max_frame` / `tx_max_frame`.
    public let frameSize: Int
    /// N: `rx_max_entry` / `tx_max_entry`.
    public let entryCount: Int

    /// Lays out an area; nil when it is too small for two frames that hold at least one byte
    /// ("Due to housekeeping, there must be atleast 2 buffs").
    public init?(areaSize: Int, mtu: Int) {
        guard areaSize > HostWire.rxInfoSize, mtu > HostWire.headerSize else { return nil }
        let usable = areaSize - HostWire.rxInfoSize
        let frame = min(mtu, usable / 2)
        guard frame > HostWire.headerSize else { return nil }
        self.areaSize = areaSize
        self.frameSize = frame
        self.entryCount = usable / frame
    }

    /// Largest payload of one frame (`ntb_transport_max_size` with copy_align 0).
    @inlinable public var maxPayload: Int { frameSize - HostWire.headerSize }
    /// Offset of `struct ntb_rx_info` (the last 4 bytes of the area).
    @inlinable public var rxInfoOffset: Int { areaSize - HostWire.rxInfoSize }
    /// Offset of frame `index`'s payload.
    @inlinable public func frameOffset(_ index: Int) -> Int { index &* frameSize }
    /// Offset of frame `index`'s header (the last 12 bytes of the frame).
    @inlinable public func headerOffset(_ index: Int) -> Int { (index &+ 1) &* frameSize &- HostWire.headerSize }
}
