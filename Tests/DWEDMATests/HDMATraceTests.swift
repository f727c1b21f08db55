import Testing
import PCIKit
@testable import DWEDMA

/// HDMA native map: offsets against docs/hardware-reference.md §1.9 and the access trace of
/// `dw_hdma_v0_core_start` / `handle_int` / `ch_config` / `off`.
@Suite struct HDMATraceTests {
    let log = TraceLog()
    let regMemory = Memory(0x1000)
    let llMemory = Memory(4096)
    static let llBus: UInt64 = 0x2_0000_1000

    @Test func offsetsAndBitsMatchTheReference() {
        typealias H = HDMARegisters
        let table: [(Int, Int)] = [
            (H.channelEnable, 0x00), (H.doorbell, 0x04), (H.prefetch, 0x08), (H.handshake, 0x0C),
            (H.llpLow, 0x10), (H.llpHigh, 0x14), (H.cycleSync, 0x18), (H.transferSize, 0x1C),
            (H.sarLow, 0x20), (H.sarHigh, 0x24), (H.darLow, 0x28), (H.darHigh, 0x2C), (H.watermarkEnable, 0x30),
            (H.control1, 0x34), (H.functionNumber, 0x38), (H.qos, 0x3C), (H.channelStatus, 0x80),
            (H.intStatus, 0x84), (H.intSetup, 0x88), (H.intClear, 0x8C), (H.msiStopLow, 0x90),
            (H.msiWatermarkLow, 0x98), (H.msiAbortLow, 0xA0), (H.msiMessageData, 0xA8),
            (H.channelBase(.write, channel: 3), 0x600), (H.channelBase(.read, channel: 3), 0x700),
        ]
        for (actual, expected) in table { #expect(actual == expected) }
        #expect(H.stop == 1 && H.abort == 4 && H.remoteStopEnable == 8 && H.localStopEnable == 16)
        #expect(H.remoteAbortEnable == 32 && H.localAbortEnable == 64)
        #expect(H.consumerCycleBit | H.consumerCycleStat == 3)
        #expect(H.maxChannels == 64)
    }

    @Test(arguments: [EDMAMode.local, .remote])
    func startFollowsTheLinuxRecipe(_ mode: EDMAMode) throws {
        let edma = DWHDMAController(registers: TracingSpace(name: "reg", log: log, memory: regMemory.region),
                                    writeChannels: 2, readChannels: 2, mode: mode, ownership: .engine)
        var ch = try edma.channel(.read, 1, ll: TracingSpace(name: "ll", log: log, memory: llMemory.region), llBusAddress: Self.llBus)
        try ch.takeOver()   // the claim's one-time check (StaleChainTests); the trace below is the start recipe
        let base = 0x300
        for i in 0..<2 {
            log.accesses.removeAll()
            let id = try ch.submit([EDMATransfer(source: 0x9_0000_0000, destination: 0x4000, length: 256)])
            let cycle: UInt64 = i == 0 ? 1 : 0
            var expected: [Access] = [
                .store("ll", 0, cycle, width: 4), .store("ll", 4, 256, width: 4),    // no LIE/RIE on HDMA
                .store("ll", 8, 0x9_0000_0000, width: 8), .store("ll", 16, 0x4000, width: 8),
                .store("ll", 24, 0x6 | (cycle ^ 1), width: 4), .store("ll", 32, Self.llBus, width: 8),
            ]
            if i == 0 {
                let setup: UInt64 = 0x50 | (mode == .remote ? 0x28 : 0)
                expected += [
                    .store("reg", base + 0x00, 1, width: 4),                 // ch_en
                    .load("reg", base + 0x88, width: 4), .store("reg", base + 0x88, setup, width: 4),   // int_setup
                    .store("reg", base + 0x34, 1, width: 4),                 // control1 = LINKLIST_EN
                    .store("reg", base + 0x10, 0x1000, width: 4), .store("reg", base + 0x14, 2, width: 4),
                ]
            }
            expected.append(.store("reg", base + 0x18, 3, width: 4))           // cycle_sync
            if mode == .remote { expected.append(.load("ll", 0, width: 4)) }
            expected.append(.store("reg", base + 0x04, 1, width: 4))           // doorbell
            #expect(log.accesses == expected)
            // Completion: STOP in the channel's int_stat, cleared with int_clear.
            regMemory.region.store32(HDMARegisters.stop, at: base + 0x84)
            log.accesses.removeAll()
            #expect(ch.poll() == .done(submission: id))
            #expect(log.accesses == [.load("reg", base + 0x84, width: 4), .store("reg", base + 0x8C, 1, width: 4)])
            regMemory.region.store32(0, at: base + 0x84)
        }
    }

    @Test func abortIsReportedAndBothBitsClearedAsLinuxDoes() throws {
        let edma = DWHDMAController(registers: TracingSpace(name: "reg", log: log, memory: regMemory.region),
                                    writeChannels: 1, readChannels: 1, mode: .local, ownership: .channels)
        var ch = try edma.channel(.write, 0, ll: llMemory.region, llBusAddress: Self.llBus)
        _ = try ch.submit([EDMATransfer(source: 1, destination: 2, length: 8), EDMATransfer(source: 3, destination: 4, length: 8)])
        regMemory.region.store32(HDMARegisters.abort, at: 0x84)
        regMemory.region.store32(UInt32(truncatingIfNeeded: Self.llBus + 24), at: 0x10)
        regMemory.region.store32(2, at: 0x14)
        regMemory.region.store32(2, at: 0x80)
        log.accesses.removeAll()
        guard case .aborted(let a) = ch.poll() else { Issue.record("no abort"); return }
        #expect(a.element == 1 && a.status.isError)
        #expect(Array(log.accesses.prefix(3)) == [.load("reg", 0x84, width: 4), .store("reg", 0x8C, 1, width: 4), .store("reg", 0x8C, 4, width: 4)])
        let recovers = ch.needsFullStart
        #expect(recovers)
        #expect(throws: EDMAError.notEngineOwner) { try edma.powerOff() }
    }

    @Test func msiConfigAndPowerOff() throws {
        let edma = DWHDMAController(registers: TracingSpace(name: "reg", log: log, memory: regMemory.region),
                                    writeChannels: 1, readChannels: 1, mode: .remote, ownership: .engine)
        let ch = try edma.channel(.read, 0, ll: llMemory.region, llBusAddress: Self.llBus)
        log.accesses.removeAll()
        ch.useInterrupt(msiAddress: 0x1_FEE0_0000, baseData: 0x30, vector: 2)
        #expect(log.accesses == [
            .store("reg", 0x190, 0xFEE0_0000, width: 4), .store("reg", 0x194, 1, width: 4),
            .store("reg", 0x1A0, 0xFEE0_0000, width: 4), .store("reg", 0x1A4, 1, width: 4),
            .store("reg", 0x1A8, 0x32, width: 4),
        ])
        log.accesses.removeAll()
        try edma.powerOff()
        #expect(log.accesses == [
            .store("reg", 0x088, 5, width: 4), .store("reg", 0x188, 5, width: 4),
            .store("reg", 0x08C, 5, width: 4), .store("reg", 0x18C, 5, width: 4),
            .store("reg", 0x000, 0, width: 4), .store("reg", 0x100, 0, width: 4),
        ])
    }
}
