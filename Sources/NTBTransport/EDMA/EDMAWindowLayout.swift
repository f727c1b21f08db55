import CNTBShim

/// Offsets of the RFC's C layouts (`ntb_edma_transport.h`), taken from the C structs so that they are
/// declared once. Tests check them against hardware-reference §4.2/§4.3.
public enum EDMALayout {
    /// `NTB_EDMA_INFO_MAGIC`: "EDMA" as a little-endian u32.
    public static let infoMagic = UInt32(NTB_EDMA_INFO_MAGIC)
    /// LL address slots in `ntb_edma_info` (4 data read channels + 1 notify read channel).
    public static let infoLinkedListSlots = Int(NTB_EDMA_INFO_LL_SLOTS)
    /// Queue pairs the notification page can flag (`NTB_EDMA_NOTIFY_MAX_QP`).
    public static let notifyMaxQueuePairs = Int(NTB_EDMA_NOTIFY_MAX_QP)

    public static let infoSize = MemoryLayout<ntb_edma_info>.size
    public static let infoMagicOffset = MemoryLayout<ntb_edma_info>.offset(of: \ntb_edma_info.magic)!
    public static let infoRegisterSizeOffset = MemoryLayout<ntb_edma_info>.offset(of: \ntb_edma_info.reg_size)!
    public static let infoChannelCountOffset = MemoryLayout<ntb_edma_info>.offset(of: \ntb_edma_info.ch_cnt)!
    public static let infoNotifyBaseOffset = MemoryLayout<ntb_edma_info>.offset(of: \ntb_edma_info.db_base)!
    /// Offset of `ll_rd_phys[channel]`.
    public static func infoLinkedListOffset(_ channel: Int) -> Int {
        precondition(channel >= 0 && channel < infoLinkedListSlots, "ll_rd_phys[\(channel)] out of range")
        return MemoryLayout<ntb_edma_info>.offset(of: \ntb_edma_info.ll_rd_phys)! + channel * MemoryLayout<UInt64>.size
    }

    public static let notifyPageSize = MemoryLayout<ntb_edma_db>.size
    public static let notifyTargetOffset = MemoryLayout<ntb_edma_db>.offset(of: \ntb_edma_db.target)!
    /// Offset of `db[qp]` in the notification page.
    public static func notifyFlagOffset(queuePair qp: Int) -> Int {
        precondition(qp >= 0 && qp < notifyMaxQueuePairs, "only \(notifyMaxQueuePairs) queue pairs can be notified (qp \(qp))")
        return MemoryLayout<ntb_edma_db>.offset(of: \ntb_edma_db.db)! + qp * MemoryLayout<UInt32>.size
    }
}

/// The dedicated eDMA memory window of RFC v3 (hardware-reference §4.2), for page size P, register window
/// size R and `channelCount` read channels with an LL region:
///
/// | offset | content |
/// |---|---|
/// | 0 | `ntb_edma_info` |
/// | P | `ntb_edma_db` (notification page) |
/// | 2P | the eDMA register block (R bytes) |
/// | 2P + R + i·P | LL region of read channel i |
///
/// Required size 2P + R + channels·P (7P + R for the RFC's 5 channels).
public struct EDMAWindowLayout: Equatable, Sendable {
    public let pageSize: Int
    public let registerSize: Int
    public let channelCount: Int

    /// - Precondition: P and R are powers of two, R ≥ 256, 1 ≤ channels ≤ 5 (these come from the
    ///   policy parser or from a validated `ntb_edma_info`).
    public init(pageSize: Int, registerSize: Int, channelCount: Int) {
        precondition(pageSize >= 64 && pageSize & (pageSize - 1) == 0, "page size \(pageSize) is not a power of two")
        precondition(registerSize >= 256 && registerSize & (registerSize - 1) == 0, "register size \(registerSize) is not a power of two")
        precondition(channelCount >= 1 && channelCount <= EDMALayout.infoLinkedListSlots, "channel count \(channelCount)")
        self.pageSize = pageSize
        self.registerSize = registerSize
        self.channelCount = channelCount
    }

    public var infoOffset: Int { 0 }
    public var notifyOffset: Int { pageSize }
    public var registerOffset: Int { 2 * pageSize }
    /// Offset of read channel `channel`'s LL region (P bytes).
    public func linkedListOffset(_ channel: Int) -> Int {
        precondition(channel >= 0 && channel < channelCount, "LL region \(channel) of \(channelCount)")
        return 2 * pageSize + registerSize + channel * pageSize
    }
    /// Bytes the window must have (`ntb_mw_get_align` size_max must cover it).
    public var requiredSize: Int { 2 * pageSize + registerSize + channelCount * pageSize }

    /// Read-channel register bytes the eDMA needs in unroll mode: read channel n's block is at
    /// 0x300 + n·0x200 and is 0x24 bytes long (hardware-reference §1.3).
    public static func registerBytesNeeded(readChannels: Int) -> Int {
        0x300 + (readChannels - 1) * 0x200 + 0x24
    }
}
