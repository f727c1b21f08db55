/// Register map and register values of the DesignWare eDMA, v0 map (legacy and unrolled).
///
/// Offsets are byte offsets from the eDMA register base, computed from the layout of Linux
/// `struct dw_edma_v0_regs` (`dw-edma-v0-regs.h`), not from its comments (docs/hardware-reference.md §1.2, §1.3).

/// The direction of an eDMA channel. The names are the engine's, not the transfer's:
/// a WRITE channel moves endpoint-local memory → PCIe, a READ channel moves PCIe → endpoint-local
/// memory, whoever programs it (docs/hardware-reference.md §1.8).
public enum EDMADirection: Int, Sendable, CaseIterable, CustomStringConvertible {
    case write = 0
    case read = 1
    public var description: String { self == .write ? "write" : "read" }
}

/// How the channel register blocks are reached (`enum dw_edma_map_format`, docs/hardware-reference.md §1.1).
public enum EDMAMapFormat: UInt32, Sendable, CustomStringConvertible {
    /// One channel window at 0x100, selected through `viewport_sel` (0x0FC).
    case legacy = 0x0
    /// Every channel block at its own offset (write ch n at 0x200 + n·0x200, read at 0x300 + n·0x200).
    case unroll = 0x1
    public var description: String { self == .legacy ? "legacy" : "unroll" }
}

/// The v0 register map as a table of offsets (docs/hardware-reference.md §1.2, §1.3, §5 fact 1 and 3).
public enum EDMARegisters {
    /// Largest channel count per direction (`EDMA_MAX_WR_CH`, `EDMA_MAX_RD_CH`).
    public static let maxChannels = 8

    // MARK: Global registers (identical for legacy and unroll up to 0x0FB)
    /// `ctrl_data_arb_prior` (unused by the driver).
    public static let ctrlDataArbPrior = 0x000
    /// `ctrl`: [3:0] write channel count, [19:16] read channel count.
    public static let ctrl = 0x008
    /// `wr_engine_en` / `rd_engine_en`: BIT(0) enables the engine of that direction.
    @inlinable public static func engineEnable(_ d: EDMADirection) -> Int { d == .write ? 0x00C : 0x02C }
    /// `wr_doorbell` / `rd_doorbell`: the channel number in [2:0] (not a bitmask).
    @inlinable public static func doorbell(_ d: EDMADirection) -> Int { d == .write ? 0x010 : 0x030 }
    /// `wr_ch_arb_weight` / `rd_ch_arb_weight` lo (unused).
    @inlinable public static func channelArbWeightLow(_ d: EDMADirection) -> Int { d == .write ? 0x018 : 0x038 }
    /// `wr_int_status` 0x04C / `rd_int_status` 0x0A0 (not symmetric with the other pairs):
    /// DONE [7:0], ABORT [23:16]. A write here is interrupt emulation (§1.7).
    @inlinable public static func intStatus(_ d: EDMADirection) -> Int { d == .write ? 0x04C : 0x0A0 }
    /// `wr_int_mask` / `rd_int_mask`: same layout as the status, 1 = masked.
    @inlinable public static func intMask(_ d: EDMADirection) -> Int { d == .write ? 0x054 : 0x0A8 }
    /// `wr_int_clear` / `rd_int_clear`: write 1 to clear the status bit.
    @inlinable public static func intClear(_ d: EDMADirection) -> Int { d == .write ? 0x058 : 0x0AC }
    /// `wr_err_status` / `rd_err_status` lo (not decoded; docs/hardware-reference.md §6).
    @inlinable public static func errStatus(_ d: EDMADirection) -> Int { d == .write ? 0x05C : 0x0B4 }
    /// `wr_done_imwr` / `rd_done_imwr` lo (hi at +4): MSI address for DONE, one per direction.
    @inlinable public static func doneIMWrLow(_ d: EDMADirection) -> Int { d == .write ? 0x060 : 0x0CC }
    @inlinable public static func doneIMWrHigh(_ d: EDMADirection) -> Int { doneIMWrLow(d) + 4 }
    /// `wr_abort_imwr` / `rd_abort_imwr` lo (hi at +4): MSI address for ABORT.
    @inlinable public static func abortIMWrLow(_ d: EDMADirection) -> Int { d == .write ? 0x068 : 0x0D4 }
    @inlinable public static func abortIMWrHigh(_ d: EDMADirection) -> Int { abortIMWrLow(d) + 4 }
    /// `wr_chXY_imwr_data` / `rd_chXY_imwr_data`: two channels per register, even channel in [15:0],
    /// odd channel in [31:16].
    @inlinable public static func imwrData(_ d: EDMADirection, channel: Int) -> Int {
        precondition(channel >= 0 && channel < maxChannels)
        return (d == .write ? 0x070 : 0x0DC) + (channel / 2) * 4
    }
    /// Bit position of `channel`'s IMWr data half within its `chXY_imwr_data` register.
    @inlinable public static func imwrDataShift(channel: Int) -> Int { (channel & 1) * 16 }
    /// `wr_linked_list_err_en` / `rd_linked_list_err_en`: BIT(ch).
    @inlinable public static func linkedListErrorEnable(_ d: EDMADirection) -> Int { d == .write ? 0x090 : 0x0C4 }
    /// Legacy `viewport_sel`: [2:0] channel, BIT(31) = read channel. At 0x0FC (the header comment's
    /// 0x0F8 is wrong, docs/hardware-reference.md §1.3).
    public static let viewportSelect = 0x0FC

    // MARK: Unroll extras (§1.3)
    public static let writeEngineChannelGroup = 0x100
    public static let readEngineChannelGroup = 0x104
    public static let writeEngineHandshakeCount = 0x108
    public static let readEngineHandshakeCount = 0x118
    /// `wr_chN_pwr_en` 0x128 + 4N / `rd_chN_pwr_en` 0x168 + 4N (HDMA_COMPAT only).
    @inlinable public static func channelPowerEnable(_ d: EDMADirection, channel: Int) -> Int {
        (d == .write ? 0x128 : 0x168) + 4 * channel
    }

    // MARK: Channel blocks (struct dw_edma_v0_ch_regs, 0x24 bytes)
    /// Start of the legacy channel window (selected by `viewport_sel`).
    public static let legacyChannelWindow = 0x100
    /// Start of channel `channel`'s block of direction `d` in the unrolled map.
    @inlinable public static func unrollChannelBase(_ d: EDMADirection, channel: Int) -> Int {
        precondition(channel >= 0 && channel < maxChannels)
        return (d == .write ? 0x200 : 0x300) + channel * 0x200
    }
    /// End of the unrolled map with 8 channels (0x1200; the header comment says 0x1120).
    public static let unrollEnd = 0x1200
    /// Size of one channel block.
    public static let channelBlockSize = 0x24

    /// Offsets within a channel block.
    public enum Channel {
        /// `ch_control1`: see ``ChannelControl``.
        public static let control1 = 0x00
        /// `ch_control2` (unused).
        public static let control2 = 0x04
        /// `transfer_size`.
        public static let transferSize = 0x08
        /// `sar` lo/hi: not 8-byte aligned, 32-bit accesses only.
        public static let sarLow = 0x0C
        public static let sarHigh = 0x10
        /// `dar` lo/hi.
        public static let darLow = 0x14
        public static let darHigh = 0x18
        /// `llp` lo/hi: "llp is not aligned on 64bit -> keep 32bit accesses" (write lo then hi).
        public static let llpLow = 0x1C
        public static let llpHigh = 0x20
    }
}

/// `ch_control1` and the control word of LL elements share these bits (`enum dw_edma_control`,
/// docs/hardware-reference.md §1.4).
public struct ChannelControl: RawRepresentable, Equatable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let cb: UInt32 = 1 << 0      // cycle bit
    public static let tcb: UInt32 = 1 << 1     // toggle cycle bit (link element)
    public static let llp: UInt32 = 1 << 2     // element is a link element
    public static let lie: UInt32 = 1 << 3     // local interrupt enable
    public static let rie: UInt32 = 1 << 4     // remote interrupt enable (IMWr)
    public static let csShift: UInt32 = 5      // channel status [6:5]
    public static let csMask: UInt32 = 0b11 << 5
    public static let ccs: UInt32 = 1 << 8     // consumer cycle state
    public static let lle: UInt32 = 1 << 9     // linked-list enable

    @inlinable func bit(_ b: UInt32) -> Bool { rawValue & b != 0 }
    @inlinable mutating func set(_ b: UInt32, _ on: Bool) { if on { rawValue |= b } else { rawValue &= ~b } }

    public var cycle: Bool { get { bit(Self.cb) } set { set(Self.cb, newValue) } }
    public var toggleCycle: Bool { get { bit(Self.tcb) } set { set(Self.tcb, newValue) } }
    public var isLink: Bool { get { bit(Self.llp) } set { set(Self.llp, newValue) } }
    public var localInterrupt: Bool { get { bit(Self.lie) } set { set(Self.lie, newValue) } }
    public var remoteInterrupt: Bool { get { bit(Self.rie) } set { set(Self.rie, newValue) } }
    public var consumerCycle: Bool { get { bit(Self.ccs) } set { set(Self.ccs, newValue) } }
    public var linkedListEnable: Bool { get { bit(Self.lle) } set { set(Self.lle, newValue) } }
    /// The channel status field [6:5] (`EDMA_V0_CH_STATUS_MASK`).
    public var status: ChannelStatus {
        get { ChannelStatus(rawValue: (rawValue & Self.csMask) >> Self.csShift) }
        set { rawValue = (rawValue & ~Self.csMask) | (newValue.rawValue << Self.csShift) }
    }

    public var description: String {
        var parts: [String] = []
        if cycle { parts.append("CB") }
        if toggleCycle { parts.append("TCB") }
        if isLink { parts.append("LLP") }
        if localInterrupt { parts.append("LIE") }
        if remoteInterrupt { parts.append("RIE") }
        if consumerCycle { parts.append("CCS") }
        if linkedListEnable { parts.append("LLE") }
        parts.append("CS=\(status.rawValue)")
        return parts.joined(separator: "|")
    }
}

/// The 2-bit channel status of `ch_control1` [6:5] (`dw_edma_v0_core_ch_status`): 1 = running,
/// 3 = done; anything else is an error. The databook names ("halted", "stopped") are unverified.
public struct ChannelStatus: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue & 0b11 }
    public static let running = ChannelStatus(rawValue: 1)
    public static let done = ChannelStatus(rawValue: 3)
    /// What the engine model reports after an abort (2; the hardware value is unverified).
    public static let halted = ChannelStatus(rawValue: 2)
    @inlinable public var isError: Bool { rawValue != 1 && rawValue != 3 }
}

/// `int_status`, `int_mask`, `int_clear`: DONE [7:0] and ABORT [23:16], one bit per channel
/// (`EDMA_V0_DONE_INT_MASK`, `EDMA_V0_ABORT_INT_MASK`).
public struct InterruptBits: RawRepresentable, Equatable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let doneMask: UInt32 = 0x0000_00FF
    public static let abortMask: UInt32 = 0x00FF_0000
    /// The DONE and ABORT bits of one channel.
    @inlinable public static func channel(_ ch: Int) -> InterruptBits {
        InterruptBits(rawValue: (1 << UInt32(ch)) | (1 << UInt32(16 + ch)))
    }
    @inlinable public static func done(_ ch: Int) -> UInt32 { 1 << UInt32(ch) }
    @inlinable public static func abort(_ ch: Int) -> UInt32 { 1 << UInt32(16 + ch) }
    @inlinable public func isDone(_ ch: Int) -> Bool { rawValue & Self.done(ch) != 0 }
    @inlinable public func isAborted(_ ch: Int) -> Bool { rawValue & Self.abort(ch) != 0 }
    /// Channels with DONE set, as a bitmask.
    @inlinable public var doneChannels: UInt32 { rawValue & Self.doneMask }
    /// Channels with ABORT set, as a bitmask.
    @inlinable public var abortedChannels: UInt32 { (rawValue & Self.abortMask) >> 16 }
}

/// `ctrl` (0x008): channel counts (`dw_edma_v0_core_ch_count`; the driver caps each at 8).
public struct ControlRegister: RawRepresentable, Equatable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(writeChannels: Int, readChannels: Int) {
        rawValue = UInt32(writeChannels & 0xF) | (UInt32(readChannels & 0xF) << 16)
    }
    /// [3:0], capped at 8.
    @inlinable public var writeChannels: Int { min(Int(rawValue & 0xF), EDMARegisters.maxChannels) }
    /// [19:16], capped at 8.
    @inlinable public var readChannels: Int { min(Int((rawValue >> 16) & 0xF), EDMARegisters.maxChannels) }
    @inlinable public func channels(_ d: EDMADirection) -> Int { d == .write ? writeChannels : readChannels }
}

/// Legacy `viewport_sel` (0x0FC): [2:0] channel, BIT(31) = read direction.
public struct ViewportSelect: RawRepresentable, Equatable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ d: EDMADirection, channel: Int) {
        rawValue = UInt32(channel & 0x7) | (d == .read ? 1 << 31 : 0)
    }
    @inlinable public var channel: Int { Int(rawValue & 0x7) }
    @inlinable public var direction: EDMADirection { rawValue & (1 << 31) != 0 ? .read : .write }
}

/// Doorbell value: the channel number in [2:0] (`EDMA_V0_DOORBELL_CH_MASK`).
public struct DoorbellValue: RawRepresentable, Equatable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(channel: Int) { rawValue = UInt32(channel) & 0x7 }
    @inlinable public var channel: Int { Int(rawValue & 0x7) }
    /// Bit 31, STOP (DesignWare databook; not used by Linux, inferred: ``EDMAv0Core/requestStop(_:channel:)``).
    public static let stop: UInt32 = 1 << 31
    @inlinable public var isStop: Bool { rawValue & Self.stop != 0 }
}

/// Offsets within an LL element, mirroring `ntb_edma_lli` / `ntb_edma_llp` in `ntb_edma.h`.
public enum LLElement {
    /// `EDMA_LL_SZ`: bytes per slot.
    public static let slotSize = 24
    public static let dataControl = 0
    public static let dataTransferSize = 4
    public static let dataSAR = 8
    public static let dataDAR = 16
    public static let linkControl = 0
    public static let linkPointer = 8
    /// Data elements a region of `bytes` holds: one slot is kept for the link (`ll_max`).
    @inlinable public static func capacity(regionBytes bytes: Int) -> Int { max(0, bytes / slotSize - 1) }
}
