#if canImport(Glibc)
import Glibc
#endif
public import PCIKit

/// The HDMA native register map (`EDMA_MF_HDMA_NATIVE`, `dw-hdma-v0-regs.h`, docs/hardware-reference.md §1.9): no
/// global registers; a 0x100-byte block per channel, write ch n at n·0x200, read ch n at n·0x200 + 0x100.
public enum HDMARegisters {
    /// `HDMA_V0_MAX_NR_CH` in the stored mainline copy.
    public static let maxChannels = 64
    /// Start of channel `channel`'s block of direction `d`.
    @inlinable public static func channelBase(_ d: EDMADirection, channel: Int) -> Int {
        precondition(channel >= 0 && channel < maxChannels)
        return channel * 0x200 + (d == .write ? 0 : 0x100)
    }
    public static let channelEnable = 0x00     // ch_en: BIT(0)
    public static let doorbell = 0x04          // BIT(0) = start
    public static let prefetch = 0x08
    public static let handshake = 0x0C
    public static let llpLow = 0x10
    public static let llpHigh = 0x14
    public static let cycleSync = 0x18         // CONSUMER_CYCLE_STAT BIT(1) | CONSUMER_CYCLE_BIT BIT(0)
    public static let transferSize = 0x1C
    public static let sarLow = 0x20
    public static let sarHigh = 0x24
    public static let darLow = 0x28
    public static let darHigh = 0x2C
    public static let watermarkEnable = 0x30
    public static let control1 = 0x34          // BIT(0) = LINKLIST_EN
    public static let functionNumber = 0x38
    public static let qos = 0x3C
    public static let channelStatus = 0x80     // [1:0]: 1 running, 3 done
    public static let intStatus = 0x84         // BIT(0) STOP, BIT(2) ABORT
    public static let intSetup = 0x88
    public static let intClear = 0x8C
    public static let msiStopLow = 0x90
    public static let msiStopHigh = 0x94
    public static let msiWatermarkLow = 0x98
    public static let msiAbortLow = 0xA0
    public static let msiAbortHigh = 0xA4
    public static let msiMessageData = 0xA8

    // int_stat / int_clear / int_setup bits.
    public static let stop: UInt32 = 1 << 0             // HDMA_V0_STOP_INT_MASK
    public static let abort: UInt32 = 1 << 2            // HDMA_V0_ABORT_INT_MASK
    public static let remoteStopEnable: UInt32 = 1 << 3
    public static let localStopEnable: UInt32 = 1 << 4
    public static let remoteAbortEnable: UInt32 = 1 << 5
    public static let localAbortEnable: UInt32 = 1 << 6
    public static let consumerCycleBit: UInt32 = 1 << 0
    public static let consumerCycleStat: UInt32 = 1 << 1
    public static let linkListEnable: UInt32 = 1 << 0
    public static let doorbellStart: UInt32 = 1 << 0
}

/// The HDMA native core (`dw-hdma-v0-core.c`). Same 24-byte LL elements and CB/TCB link recipe as v0,
/// but no LIE/RIE in data elements (the interrupt comes from the channel's `int_setup`), per-channel
/// status, enable and doorbell. Channel counts cannot be read from the hardware: the caller supplies them.
///
/// Not exercised by the engine model (which models the v0 map); tested against the Linux access trace.
@safe
public struct HDMAv0Core<Space: RegisterSpace>: EDMACore {
    public let registers: Space
    public let writeChannels: Int
    public let readChannels: Int

    init(registers: Space, writeChannels: Int, readChannels: Int) {
        self.registers = registers
        self.writeChannels = writeChannels
        self.readChannels = readChannels
    }

    @inlinable func store(_ d: EDMADirection, _ ch: Int, _ reg: Int, _ v: UInt32) {
        registers.store32(v, at: HDMARegisters.channelBase(d, channel: ch) + reg)
    }
    @inlinable func load(_ d: EDMADirection, _ ch: Int, _ reg: Int) -> UInt32 {
        registers.load32(at: HDMARegisters.channelBase(d, channel: ch) + reg)
    }

    public func channelCount(_ d: EDMADirection) -> Int { d == .write ? writeChannels : readChannels }

    /// `dw_hdma_v0_core_ch_status` (Linux passes id and dir swapped to GET_CH_32 there; this reads the
    /// channel's own `ch_stat`).
    @inlinable
    public func channelStatus(_ d: EDMADirection, channel: Int) -> ChannelStatus {
        ChannelStatus(rawValue: load(d, channel, HDMARegisters.channelStatus) & 0b11)
    }

    @inlinable
    public func channelInterrupt(_ d: EDMADirection, channel: Int) -> ChannelInterrupt {
        let s = load(d, channel, HDMARegisters.intStatus)
        if s == 0xFFFF_FFFF { return ChannelInterrupt(done: false, abort: false, noResponse: true) }
        return ChannelInterrupt(done: s & HDMARegisters.stop != 0, abort: s & HDMARegisters.abort != 0, noResponse: false)
    }

    /// `clear_done_int` then `clear_abort_int`: one `int_clear` write each, as Linux does.
    @inlinable
    public func clearChannelInterrupt(_ d: EDMADirection, channel: Int, done: Bool, abort: Bool) {
        if done { store(d, channel, HDMARegisters.intClear, HDMARegisters.stop) }
        if abort { store(d, channel, HDMARegisters.intClear, HDMARegisters.abort) }
    }

    @inlinable
    public func linkedListPointer(_ d: EDMADirection, channel: Int) -> UInt64 {
        UInt64(load(d, channel, HDMARegisters.llpHigh)) << 32 | UInt64(load(d, channel, HDMARegisters.llpLow))
    }

    /// `dw_hdma_v0_core_write_chunk`: no interrupt bits in the elements (the channel's `int_setup`
    /// raises them; ``LLElement/writeChain(ll:llBusAddress:transfers:cycle:lastControl:)``).
    @inlinable
    public func writeChunk<LL: RegisterSpace>(ll: LL, llBusAddress: UInt64,
                                              transfers: UnsafeBufferPointer<EDMATransfer>, cycle: Bool) {
        unsafe LLElement.writeChain(ll: ll, llBusAddress: llBusAddress, transfers: transfers, cycle: cycle, lastControl: 0)
    }

    /// `dw_hdma_v0_core_start`. `maskLocalInterrupt` leaves out the LOCAL stop/abort enables (remote-only
    /// routing; Linux always sets them).
    @inlinable
    public func start<LL: RegisterSpace>(_ d: EDMADirection, channel: Int, ll: LL, llBusAddress: UInt64,
                                         transfers: UnsafeBufferPointer<EDMATransfer>, cycle: Bool,
                                         first: Bool, mode: EDMAMode, maskLocalInterrupt: Bool = false) {
        unsafe writeChunk(ll: ll, llBusAddress: llBusAddress, transfers: transfers, cycle: cycle)
        Barrier.write()
        if first {
            // Enable engine.
            store(d, channel, HDMARegisters.channelEnable, 1)
            // Interrupt unmask (stop, abort) and enable.
            var setup = load(d, channel, HDMARegisters.intSetup)
            setup &= ~(HDMARegisters.stop | HDMARegisters.abort)
            if !maskLocalInterrupt { setup |= HDMARegisters.localStopEnable | HDMARegisters.localAbortEnable }
            if mode == .remote { setup |= HDMARegisters.remoteStopEnable | HDMARegisters.remoteAbortEnable }
            store(d, channel, HDMARegisters.intSetup, setup)
            // Channel control, then the LL pointer as two 32-bit writes.
            store(d, channel, HDMARegisters.control1, HDMARegisters.linkListEnable)
            store(d, channel, HDMARegisters.llpLow, UInt32(truncatingIfNeeded: llBusAddress))
            store(d, channel, HDMARegisters.llpHigh, UInt32(truncatingIfNeeded: llBusAddress >> 32))
        }
        // Set consumer cycle (every start).
        store(d, channel, HDMARegisters.cycleSync, HDMARegisters.consumerCycleStat | HDMARegisters.consumerCycleBit)
        if mode == .remote { _ = ll.load32(at: 0) }   // dw_hdma_v0_sync_ll_data
        store(d, channel, HDMARegisters.doorbell, HDMARegisters.doorbellStart)
    }

    /// `dw_hdma_v0_core_ch_config`: per-channel stop and abort MSI address and message data.
    public func configureInterrupt(_ d: EDMADirection, channel: Int, address: UInt64, data: UInt16) {
        let lo = UInt32(truncatingIfNeeded: address), hi = UInt32(truncatingIfNeeded: address >> 32)
        store(d, channel, HDMARegisters.msiStopLow, lo)
        store(d, channel, HDMARegisters.msiStopHigh, hi)
        store(d, channel, HDMARegisters.msiAbortLow, lo)
        store(d, channel, HDMARegisters.msiAbortHigh, hi)
        store(d, channel, HDMARegisters.msiMessageData, UInt32(data))
    }

    /// `dw_hdma_v0_core_off`, over the configured channels (Linux walks all 64, which may lie outside a
    /// smaller mapped block).
    public func powerOff() {
        let both = HDMARegisters.stop | HDMARegisters.abort
        for ch in 0..<max(writeChannels, readChannels) {
            for reg in [HDMARegisters.intSetup, HDMARegisters.intClear] {
                if ch < writeChannels { store(.write, ch, reg, both) }
                if ch < readChannels { store(.read, ch, reg, both) }
            }
            if ch < writeChannels { store(.write, ch, HDMARegisters.channelEnable, 0) }
            if ch < readChannels { store(.read, ch, HDMARegisters.channelEnable, 0) }
        }
    }
}

/// A DesignWare HDMA (native map) reached through `Space`: the one ``EDMAController`` over the HDMA core.
public typealias DWHDMAController<Space: RegisterSpace> = EDMAController<HDMAv0Core<Space>>

extension EDMAController {
    /// HDMA has no channel-count register (`dw_hdma_v0_core_ch_count`): give the platform's counts.
    public convenience init<Space: RegisterSpace>(registers: Space, writeChannels: Int, readChannels: Int,
                                                   mode: EDMAMode, ownership: EDMAOwnership) where Core == HDMAv0Core<Space> {
        precondition((0...HDMARegisters.maxChannels).contains(writeChannels) && (0...HDMARegisters.maxChannels).contains(readChannels))
        precondition(HDMARegisters.channelBase(.read, channel: max(writeChannels, readChannels, 1) - 1) + 0x100 <= registers.length,
                     "the register space does not cover the channel blocks")
        self.init(core: HDMAv0Core(registers: registers, writeChannels: writeChannels, readChannels: readChannels),
                  state: EDMAControllerState(), mode: mode, ownership: ownership,
                  writeChannels: writeChannels, readChannels: readChannels)
    }
}
