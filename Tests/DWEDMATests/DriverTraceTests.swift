import Testing
import PCIKit
@testable import DWEDMA

/// The exact register and LL accesses of the driver, compared with the Linux recipe
/// (`dw_edma_v0_core_write_chunk`, `dw_edma_v0_core_start`; docs/hardware-reference.md §1.6).
@Suite struct DriverTraceTests {
    let log = TraceLog()
    let regMemory = Memory(0x2000)
    let llMemory = Memory(4096)

    func controller(format: EDMAMapFormat = .unroll, mode: EDMAMode) throws -> DWEDMAController<TracingSpace> {
        regMemory.region.store32(ControlRegister(writeChannels: 4, readChannels: 2).rawValue, at: 0x008)
        regMemory.region.store32(0x00FF_00FF, at: 0x054)   // reset: masked
        regMemory.region.store32(0x00FF_00FF, at: 0x0A8)
        return try DWEDMAController(registers: TracingSpace(name: "reg", log: log, memory: regMemory.region),
                                    format: format, mode: mode, ownership: .engine)
    }
    var llSpace: TracingSpace { TracingSpace(name: "ll", log: log, memory: llMemory.region) }

    static let llBus: UInt64 = 0x1_2345_6000

    /// Linux's stores for a chain, in order: per element control, size, sar, dar; then the link.
    func expectedLL(_ t: [EDMATransfer], cycle: Bool, remote: Bool) -> [Access] {
        var out: [Access] = []
        for (i, x) in t.enumerated() {
            var c: UInt32 = cycle ? 1 : 0
            if i == t.count - 1 { c |= 0x8; if remote { c |= 0x10 } }
            out += [.store("ll", i * 24, UInt64(c), width: 4), .store("ll", i * 24 + 4, UInt64(x.length), width: 4),
                    .store("ll", i * 24 + 8, x.source, width: 8), .store("ll", i * 24 + 16, x.destination, width: 8)]
        }
        let n = t.count * 24
        out += [.store("ll", n, UInt64(0x6 | (cycle ? 0 : 1)), width: 4), .store("ll", n + 8, Self.llBus, width: 8)]
        return out
    }

    @Test(arguments: [EDMAMode.local, .remote])
    func firstStartFollowsLinuxRecipeUnroll(_ mode: EDMAMode) throws {
        let edma = try controller(mode: mode)
        var ch = try edma.channel(.write, 1, ll: llSpace, llBusAddress: Self.llBus)
        try ch.takeOver()   // the claim's one-time check (StaleChainTests); the trace below is the start recipe
        log.accesses.removeAll()
        let t = [EDMATransfer(source: 0x1000, destination: 0x9_0000_0000, length: 64),
                 EDMATransfer(source: 0x2000, destination: 0x9_0000_1000, length: 128)]
        _ = try ch.submit(t)
        var expected = expectedLL(t, cycle: true, remote: mode == .remote)
        expected += [
            .store("reg", 0x00C, 1, width: 4),                       // wr_engine_en = BIT(0)
            .load("reg", 0x054, width: 4),                            // wr_int_mask RMW: unmask done+abort ch1
            .store("reg", 0x054, 0x00FF_00FF & ~0x0002_0002, width: 4),
            .load("reg", 0x090, width: 4),                            // wr_linked_list_err_en |= BIT(1)
            .store("reg", 0x090, 0x2, width: 4),
            .store("reg", 0x400, 0x300, width: 4),                    // ch1 ch_control1 = CCS|LLE
            .store("reg", 0x41C, 0x2345_6000, width: 4),              // llp.lsb
            .store("reg", 0x420, 0x1, width: 4),                      // llp.msb
        ]
        if mode == .remote { expected.append(.load("ll", 0, width: 4)) }   // dw_edma_v0_sync_ll_data
        expected.append(.store("reg", 0x010, 1, width: 4))                  // wr_doorbell = channel 1
        #expect(log.accesses == expected)
    }

    /// Before the first start: `ch_status` of this channel, then one `int_clear` of only its DONE and ABORT
    /// bits (stale state of a previous owner); an idle channel is neither waited for nor stopped.
    @Test func takeOverReadsTheStatusAndClearsOnlyThisChannelsBits() throws {
        let edma = try controller(mode: .remote)
        var ch = try edma.channel(.read, 1, ll: llSpace, llBusAddress: Self.llBus)
        log.accesses.removeAll()
        try ch.takeOver()
        #expect(log.only("reg") == [.load("reg", 0x500, width: 4), .store("reg", 0x0AC, 0x0002_0002, width: 4)])
        log.accesses.removeAll()
        try ch.takeOver()   // once per claim
        #expect(log.accesses.isEmpty)
    }

    /// A channel still running a chain nobody waits for: after the bound a STOP doorbell (bit 31 | channel);
    /// a channel that ignores it is refused with a clear error, and nothing is started on it.
    @Test func aChannelThatKeepsRunning_isStoppedThenRefused() throws {
        let edma = try controller(mode: .remote)
        var ch = try edma.channel(.read, 1, ll: llSpace, llBusAddress: Self.llBus)
        ch.staleChainBound = .milliseconds(5)
        regMemory.region.store32(ChannelControl.ccs | ChannelControl.lle | 1 << 5, at: 0x500)   // CS = running
        log.accesses.removeAll()
        #expect(throws: EDMAError.self) { _ = try ch.submit(EDMATransfer(source: 0x9_0000_0000, destination: 0x1000, length: 8)) }
        let stores = log.only("reg").filter { if case .store = $0 { return true } else { return false } }
        #expect(stores == [.store("reg", 0x030, 0x8000_0001, width: 4)])   // rd_doorbell = STOP | ch1, nothing else
        do { _ = try ch.submit(EDMATransfer(source: 0x9_0000_0000, destination: 0x1000, length: 8)) } catch {
            guard case .staleChainRunning(.read, 1, _) = error else { Issue.record("wrong error \(error)"); return }
            #expect(error.description.contains("previous owner"))
        }
    }

    @Test func readChannelUsesReadRegisters() throws {
        let edma = try controller(mode: .remote)
        var ch = try edma.channel(.read, 0, ll: llSpace, llBusAddress: Self.llBus)
        try ch.takeOver()   // the claim's one-time check (StaleChainTests); the trace below is the start recipe
        log.accesses.removeAll()
        _ = try ch.submit(EDMATransfer(source: 0x9_0000_0000, destination: 0x1000, length: 8))
        let regs = log.only("reg")
        #expect(regs == [
            .store("reg", 0x02C, 1, width: 4), .load("reg", 0x0A8, width: 4), .store("reg", 0x0A8, 0x00FE_00FE, width: 4),
            .load("reg", 0x0C4, width: 4), .store("reg", 0x0C4, 0x1, width: 4),
            .store("reg", 0x300, 0x300, width: 4), .store("reg", 0x31C, 0x2345_6000, width: 4), .store("reg", 0x320, 1, width: 4),
            .store("reg", 0x030, 0, width: 4),
        ])
    }

    @Test func legacyModeSelectsTheViewportBeforeEachChannelRegister() throws {
        let edma = try controller(format: .legacy, mode: .local)
        var ch = try edma.channel(.read, 1, ll: llSpace, llBusAddress: Self.llBus)
        log.accesses.removeAll()
        _ = try ch.submit(EDMATransfer(source: 0x9_0000_0000, destination: 0x1000, length: 8))
        let regs = log.only("reg")
        let sel: UInt64 = 0x8000_0001
        #expect(Array(regs.suffix(7)) == [
            .store("reg", 0x0FC, sel, width: 4), .store("reg", 0x100, 0x300, width: 4),
            .store("reg", 0x0FC, sel, width: 4), .store("reg", 0x11C, 0x2345_6000, width: 4),
            .store("reg", 0x0FC, sel, width: 4), .store("reg", 0x120, 1, width: 4),
            .store("reg", 0x030, 1, width: 4),
        ])
    }

    /// Marks the channel done in the fake register file, as the engine would.
    func complete(_ d: EDMADirection, _ ch: Int) {
        let off = EDMARegisters.intStatus(d)
        regMemory.region.store32(regMemory.region.load32(at: off) | InterruptBits.done(ch), at: off)
    }

    @Test func cycleBitFlipsPerSubmissionAndOnlyTheFirstStartInitialises() throws {
        let edma = try controller(mode: .local)
        var ch = try edma.channel(.write, 2, ll: llSpace, llBusAddress: Self.llBus)
        try ch.takeOver()   // the claim's one-time check (StaleChainTests); the trace below is the start recipe
        let t = [EDMATransfer(source: 0x10, destination: 0x20, length: 4)]
        var cycles: [UInt32] = []
        for i in 0..<5 {
            log.accesses.removeAll()
            let id = try ch.submit(t)
            #expect(id == UInt64(i + 1))
            cycles.append(llMemory.region.load32(at: 0) & 1)
            // Link element CB is the opposite of the data CB, with LLP|TCB.
            #expect(llMemory.region.load32(at: 24) == 0x6 | (cycles.last! ^ 1))
            let regs = log.only("reg")
            if i == 0 {
                #expect(regs.count == 9)
            } else {
                #expect(regs == [.store("reg", 0x010, 2, width: 4)])   // just the doorbell
            }
            #expect(ch.poll() == nil)   // not done yet: no W1C
            complete(.write, 2)
            log.accesses.removeAll()
            #expect(ch.poll() == .done(submission: UInt64(i + 1)))
            // W1C of only channel 2's DONE bit.
            #expect(log.only("reg") == [.load("reg", 0x04C, width: 4), .store("reg", 0x058, 0x4, width: 4)])
            regMemory.region.store32(0, at: 0x04C)
        }
        #expect(cycles == [1, 0, 1, 0, 1])
    }

    /// One `int_status` read serves every channel of a direction (dw_edma_interrupt): a channel that
    /// uses another channel's read clears its own bit without reading the register again, and a word
    /// that does not show it finished (or is of the other direction) reports nothing.
    @Test func aChannelCompletesFromAnotherChannelsStatusRead() throws {
        let edma = try controller(mode: .remote)
        var data = try edma.channel(.read, 0, ll: llSpace, llBusAddress: Self.llBus)
        let notifyLL = Memory(4096)
        var notify = try edma.channel(.read, 1, ll: TracingSpace(name: "ll1", log: log, memory: notifyLL.region), llBusAddress: Self.llBus + 0x1000)
        let t = EDMATransfer(source: 0x10, destination: 0x20, length: 4)
        _ = try data.submit(t)
        _ = try notify.submit(t)
        #expect(data.poll() == nil)
        let before = data.lastSharedStatus!
        #expect(notify.poll(observed: before) == nil)          // not done in that word
        complete(.read, 0)
        complete(.read, 1)
        log.accesses.removeAll()
        #expect(data.poll() == .done(submission: 1))
        let word = data.lastSharedStatus!
        #expect(word.direction == .read && word.bits.isDone(1))
        var wrongDirection = word
        wrongDirection.direction = .write
        #expect(notify.poll(observed: wrongDirection) == nil)
        #expect(notify.poll(observed: word) == .done(submission: 1))
        let busy = notify.isBusy
        #expect(!busy)
        // One read for both channels; each clears only its own DONE bit (rd_int_status 0x0A0, rd_int_clear 0x0AC).
        #expect(log.only("reg") == [.load("reg", 0x0A0, width: 4), .store("reg", 0x0AC, 0x1, width: 4),
                                    .store("reg", 0x0AC, 0x2, width: 4)])
        // Idle: an observation has nothing to complete.
        #expect(notify.poll(observed: word) == nil)
    }

    @Test func llBytesForOneNAndCapacityFillingChains() throws {
        let edma = try controller(mode: .remote)
        var ch = try edma.channel(.write, 0, ll: llSpace, llBusAddress: Self.llBus)
        #expect(ch.capacity == 169)
        for n in [1, 7, 169] {
            let t: [EDMATransfer] = (0..<n).map { (i: Int) -> EDMATransfer in
                let dst: UInt64 = 0xA_0000_0000 + UInt64(i * 0x40)
                return EDMATransfer(source: UInt64(0x1000 * i), destination: dst, length: UInt32(1 + i))
            }
            _ = try ch.submit(t)
            let cycle: UInt32 = ch.cycle ? 1 : 0
            for i in 0..<n {
                var control = cycle
                if i == n - 1 { control |= 0x18 }   // LIE|RIE (remote)
                #expect(llMemory.region.load32(at: i * 24) == control)
                #expect(llMemory.region.load32(at: i * 24 + 4) == UInt32(1 + i))
                #expect(llMemory.region.load64(at: i * 24 + 8) == UInt64(0x1000 * i))
                #expect(llMemory.region.load64(at: i * 24 + 16) == 0xA_0000_0000 + UInt64(i * 0x40))
            }
            #expect(llMemory.region.load32(at: n * 24) == 0x6 | (cycle ^ 1))
            #expect(llMemory.region.load32(at: n * 24 + 4) == 0)
            #expect(llMemory.region.load64(at: n * 24 + 8) == Self.llBus)
            complete(.write, 0)
            #expect(ch.poll() == .done(submission: ch.counters.submissions))
        }
        #expect(throws: EDMAError.tooManyElements(requested: 170, capacity: 169)) {
            _ = try ch.submit(Array(repeating: EDMATransfer(source: 0, destination: 0, length: 1), count: 170))
        }
    }

    @Test func submissionErrorsAreValuesAndBusyIsReported() throws {
        let edma = try controller(mode: .local)
        var ch = try edma.channel(.write, 0, ll: llSpace, llBusAddress: Self.llBus)
        #expect(throws: EDMAError.emptySubmission) { _ = try ch.submit([EDMATransfer]()) }
        #expect(throws: EDMAError.zeroLength(element: 1)) {
            _ = try ch.submit([EDMATransfer(source: 0, destination: 0, length: 1), EDMATransfer(source: 0, destination: 0, length: 0)])
        }
        _ = try ch.submit(EDMATransfer(source: 0, destination: 0, length: 1))
        #expect(throws: EDMAError.channelBusy(.write, 0)) { _ = try ch.submit(EDMATransfer(source: 0, destination: 0, length: 1)) }
        #expect(throws: EDMAError.channelClaimed(.write, 0)) { _ = try edma.channel(.write, 0, ll: llSpace, llBusAddress: Self.llBus) }
        #expect(throws: EDMAError.noSuchChannel(.read, 2, available: 2)) { _ = try edma.channel(.read, 2, ll: llSpace, llBusAddress: Self.llBus) }
        #expect(throws: EDMAError.badLinkedListRegion(size: 4096, busAddress: 4)) { _ = try edma.channel(.read, 0, ll: llSpace, llBusAddress: 4) }
    }

    @Test func channelIsReleasedWhenDropped() throws {
        let edma = try controller(mode: .local)
        do { _ = try edma.channel(.read, 1, ll: llSpace, llBusAddress: Self.llBus) }
        _ = try edma.channel(.read, 1, ll: llSpace, llBusAddress: Self.llBus)
    }

    @Test func imwrProgrammingPacksTwoChannelsPerRegister() throws {
        let edma = try controller(mode: .remote)
        let c1 = try edma.channel(.read, 1, ll: llSpace, llBusAddress: Self.llBus)
        let c0 = try edma.channel(.read, 0, ll: llSpace, llBusAddress: Self.llBus)
        c1.useInterrupt(msiAddress: 0xFEE0_1000_0000_0040, baseData: 0x40, vector: 3)
        c0.useInterrupt(msiAddress: 0xFEE0_1000_0000_0040, baseData: 0x40, vector: 2)
        let r = regMemory.region
        #expect(r.load32(at: 0x0CC) == 0x0000_0040 && r.load32(at: 0x0D0) == 0xFEE0_1000)
        #expect(r.load32(at: 0x0D4) == 0x0000_0040 && r.load32(at: 0x0D8) == 0xFEE0_1000)
        #expect(r.load32(at: 0x0DC) == 0x0043_0042)   // odd ch1 high half, even ch0 low half
    }

    @Test func powerOffOnlyForTheEngineOwner() throws {
        let edma = try controller(mode: .local)
        log.accesses.removeAll()
        try edma.powerOff()
        #expect(log.accesses == [
            .store("reg", 0x054, 0x00FF_00FF, width: 4), .store("reg", 0x0A8, 0x00FF_00FF, width: 4),
            .store("reg", 0x058, 0x00FF_00FF, width: 4), .store("reg", 0x0AC, 0x00FF_00FF, width: 4),
            .store("reg", 0x00C, 0, width: 4), .store("reg", 0x02C, 0, width: 4),
        ])
        let shared = try DWEDMAController(registers: TracingSpace(name: "reg", log: log, memory: regMemory.region),
                                          mode: .remote, ownership: .channels)
        log.accesses.removeAll()
        #expect(throws: EDMAError.notEngineOwner) { try shared.powerOff() }
        #expect(log.accesses.isEmpty)
    }

    @Test func missingEngineIsAnError() throws {
        regMemory.region.store32(0xFFFF_FFFF, at: 0x008)
        #expect(throws: EDMAError.noEngine(ctrl: 0xFFFF_FFFF)) {
            _ = try DWEDMAController(registers: regMemory.region, mode: .local, ownership: .engine)
        }
    }
}
