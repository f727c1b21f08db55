import CNTBShim
import Testing
@testable import DWEDMA

/// Every offset and bit against docs/hardware-reference.md §1.2–§1.5 (the reference values, typed in by hand).
@Suite struct RegisterMapTests {
    struct Row: Sendable, CustomStringConvertible {
        let name: String, actual: Int, expected: Int
        var description: String { name }
    }

    static let globals: [Row] = [
        Row(name: "ctrl", actual: EDMARegisters.ctrl, expected: 0x008),
        Row(name: "wr_engine_en", actual: EDMARegisters.engineEnable(.write), expected: 0x00C),
        Row(name: "wr_doorbell", actual: EDMARegisters.doorbell(.write), expected: 0x010),
        Row(name: "wr_ch_arb_weight", actual: EDMARegisters.channelArbWeightLow(.write), expected: 0x018),
        Row(name: "rd_engine_en", actual: EDMARegisters.engineEnable(.read), expected: 0x02C),
        Row(name: "rd_doorbell", actual: EDMARegisters.doorbell(.read), expected: 0x030),
        Row(name: "rd_ch_arb_weight", actual: EDMARegisters.channelArbWeightLow(.read), expected: 0x038),
        Row(name: "wr_int_status", actual: EDMARegisters.intStatus(.write), expected: 0x04C),
        Row(name: "wr_int_mask", actual: EDMARegisters.intMask(.write), expected: 0x054),
        Row(name: "wr_int_clear", actual: EDMARegisters.intClear(.write), expected: 0x058),
        Row(name: "wr_err_status", actual: EDMARegisters.errStatus(.write), expected: 0x05C),
        Row(name: "wr_done_imwr.lo", actual: EDMARegisters.doneIMWrLow(.write), expected: 0x060),
        Row(name: "wr_done_imwr.hi", actual: EDMARegisters.doneIMWrHigh(.write), expected: 0x064),
        Row(name: "wr_abort_imwr.lo", actual: EDMARegisters.abortIMWrLow(.write), expected: 0x068),
        Row(name: "wr_abort_imwr.hi", actual: EDMARegisters.abortIMWrHigh(.write), expected: 0x06C),
        Row(name: "wr_ch01_imwr_data", actual: EDMARegisters.imwrData(.write, channel: 0), expected: 0x070),
        Row(name: "wr_ch01_imwr_data(1)", actual: EDMARegisters.imwrData(.write, channel: 1), expected: 0x070),
        Row(name: "wr_ch23_imwr_data", actual: EDMARegisters.imwrData(.write, channel: 2), expected: 0x074),
        Row(name: "wr_ch45_imwr_data", actual: EDMARegisters.imwrData(.write, channel: 5), expected: 0x078),
        Row(name: "wr_ch67_imwr_data", actual: EDMARegisters.imwrData(.write, channel: 7), expected: 0x07C),
        Row(name: "wr_linked_list_err_en", actual: EDMARegisters.linkedListErrorEnable(.write), expected: 0x090),
        Row(name: "rd_int_status", actual: EDMARegisters.intStatus(.read), expected: 0x0A0),
        Row(name: "rd_int_mask", actual: EDMARegisters.intMask(.read), expected: 0x0A8),
        Row(name: "rd_int_clear", actual: EDMARegisters.intClear(.read), expected: 0x0AC),
        Row(name: "rd_err_status.lo", actual: EDMARegisters.errStatus(.read), expected: 0x0B4),
        Row(name: "rd_linked_list_err_en", actual: EDMARegisters.linkedListErrorEnable(.read), expected: 0x0C4),
        Row(name: "rd_done_imwr.lo", actual: EDMARegisters.doneIMWrLow(.read), expected: 0x0CC),
        Row(name: "rd_done_imwr.hi", actual: EDMARegisters.doneIMWrHigh(.read), expected: 0x0D0),
        Row(name: "rd_abort_imwr.lo", actual: EDMARegisters.abortIMWrLow(.read), expected: 0x0D4),
        Row(name: "rd_abort_imwr.hi", actual: EDMARegisters.abortIMWrHigh(.read), expected: 0x0D8),
        Row(name: "rd_ch01_imwr_data", actual: EDMARegisters.imwrData(.read, channel: 0), expected: 0x0DC),
        Row(name: "rd_ch67_imwr_data", actual: EDMARegisters.imwrData(.read, channel: 6), expected: 0x0E8),
        Row(name: "viewport_sel (not 0x0F8)", actual: EDMARegisters.viewportSelect, expected: 0x0FC),
        Row(name: "wr_engine_chgroup", actual: EDMARegisters.writeEngineChannelGroup, expected: 0x100),
        Row(name: "rd_engine_chgroup", actual: EDMARegisters.readEngineChannelGroup, expected: 0x104),
        Row(name: "wr_engine_hshake_cnt", actual: EDMARegisters.writeEngineHandshakeCount, expected: 0x108),
        Row(name: "rd_engine_hshake_cnt (not 0x120)", actual: EDMARegisters.readEngineHandshakeCount, expected: 0x118),
        Row(name: "wr_ch0_pwr_en", actual: EDMARegisters.channelPowerEnable(.write, channel: 0), expected: 0x128),
        Row(name: "rd_ch5_pwr_en (not 0x18c)", actual: EDMARegisters.channelPowerEnable(.read, channel: 5), expected: 0x17C),
        Row(name: "legacy channel window", actual: EDMARegisters.legacyChannelWindow, expected: 0x100),
        Row(name: "unroll end (not 0x1120)", actual: EDMARegisters.unrollEnd, expected: 0x1200),
        Row(name: "ch block size", actual: EDMARegisters.channelBlockSize, expected: 0x24),
        Row(name: "ch_control1", actual: EDMARegisters.Channel.control1, expected: 0x00),
        Row(name: "ch_control2", actual: EDMARegisters.Channel.control2, expected: 0x04),
        Row(name: "transfer_size", actual: EDMARegisters.Channel.transferSize, expected: 0x08),
        Row(name: "sar.lo", actual: EDMARegisters.Channel.sarLow, expected: 0x0C),
        Row(name: "sar.hi", actual: EDMARegisters.Channel.sarHigh, expected: 0x10),
        Row(name: "dar.lo", actual: EDMARegisters.Channel.darLow, expected: 0x14),
        Row(name: "dar.hi", actual: EDMARegisters.Channel.darHigh, expected: 0x18),
        Row(name: "llp.lo", actual: EDMARegisters.Channel.llpLow, expected: 0x1C),
        Row(name: "llp.hi", actual: EDMARegisters.Channel.llpHigh, expected: 0x20),
        Row(name: "EDMA_LL_SZ", actual: LLElement.slotSize, expected: 24),
        Row(name: "lli.control", actual: LLElement.dataControl, expected: 0),
        Row(name: "lli.transfer_size", actual: LLElement.dataTransferSize, expected: 4),
        Row(name: "lli.sar", actual: LLElement.dataSAR, expected: 8),
        Row(name: "lli.dar", actual: LLElement.dataDAR, expected: 16),
        Row(name: "llp.control", actual: LLElement.linkControl, expected: 0),
        Row(name: "llp.llp", actual: LLElement.linkPointer, expected: 8),
        Row(name: "C lli size", actual: MemoryLayout<ntb_edma_lli>.size, expected: 24),
        Row(name: "C lli.sar", actual: MemoryLayout<ntb_edma_lli>.offset(of: \.sar)!, expected: 8),
        Row(name: "C lli.dar", actual: MemoryLayout<ntb_edma_lli>.offset(of: \.dar)!, expected: 16),
        Row(name: "C lli.transfer_size", actual: MemoryLayout<ntb_edma_lli>.offset(of: \.transfer_size)!, expected: 4),
        Row(name: "C llp size", actual: MemoryLayout<ntb_edma_llp>.size, expected: 16),
        Row(name: "C llp.llp", actual: MemoryLayout<ntb_edma_llp>.offset(of: \.llp)!, expected: 8),
        Row(name: "NTB_EDMA_LL_SZ", actual: Int(NTB_EDMA_LL_SZ), expected: 24),
    ]

    @Test(arguments: globals)
    func offsetMatchesReference(_ row: Row) {
        #expect(row.actual == row.expected, "\(row.name)")
    }

    @Test(arguments: 0..<8)
    func unrolledChannelBlocks(_ n: Int) {
        #expect(EDMARegisters.unrollChannelBase(.write, channel: n) == 0x200 + n * 0x200)
        #expect(EDMARegisters.unrollChannelBase(.read, channel: n) == 0x300 + n * 0x200)
        #expect(EDMARegisters.imwrDataShift(channel: n) == (n % 2 == 0 ? 0 : 16))
    }

    @Test func controlBits() {
        #expect(ChannelControl.cb == 1 << 0)
        #expect(ChannelControl.tcb == 1 << 1)
        #expect(ChannelControl.llp == 1 << 2)
        #expect(ChannelControl.lie == 1 << 3)
        #expect(ChannelControl.rie == 1 << 4)
        #expect(ChannelControl.csMask == 0x60)
        #expect(ChannelControl.ccs == 1 << 8)
        #expect(ChannelControl.lle == 1 << 9)
        var c = ChannelControl(rawValue: 0)
        c.status = .done
        #expect(c.rawValue == 0x60)
        c.consumerCycle = true; c.linkedListEnable = true
        #expect(c.rawValue == 0x360)
        #expect(ChannelControl(rawValue: 0x20).status == .running)
        #expect(ChannelStatus.running.isError == false && ChannelStatus.done.isError == false)
        #expect(ChannelStatus(rawValue: 0).isError && ChannelStatus(rawValue: 2).isError)
    }

    @Test func interruptBitsAndRegisters() {
        #expect(InterruptBits.doneMask == 0xFF && InterruptBits.abortMask == 0xFF_0000)
        #expect(InterruptBits.channel(3).rawValue == 0x0008_0008)
        #expect(InterruptBits(rawValue: 0x0004_0001).doneChannels == 0x1)
        #expect(InterruptBits(rawValue: 0x0004_0001).abortedChannels == 0x4)
        let ctrl = ControlRegister(rawValue: 0x0002_0004)
        #expect(ctrl.writeChannels == 4 && ctrl.readChannels == 2)
        #expect(ControlRegister(rawValue: 0x000F_000F).writeChannels == 8)   // capped
        #expect(ViewportSelect(.read, channel: 5).rawValue == 0x8000_0005)
        #expect(ViewportSelect(.write, channel: 2).rawValue == 2)
        #expect(DoorbellValue(channel: 6).rawValue == 6)
    }

    @Test func capacityKeepsOneSlotForTheLink() {
        #expect(LLElement.capacity(regionBytes: 4096) == 169)
        #expect(LLElement.capacity(regionBytes: 48) == 1)
        #expect(LLElement.capacity(regionBytes: 47) == 0)
        #expect(LLElement.capacity(regionBytes: 0x800) == 84)
    }
}
