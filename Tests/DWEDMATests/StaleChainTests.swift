#if canImport(Glibc)
import Glibc
#endif
import Testing
import PCIKit
import NTBMock
import Synchronization
@testable import DWEDMA

/// Fuzz finding 6 (F5): a new owner of a channel whose previous owner died mid-chain. The claim only knows
/// this process; the first start must make the hardware channel its own (wait, stop, clear stale bits).
@Suite(.serialized) struct StaleChainTests {
    final class Slow: @unchecked Sendable {
        let micros = Atomic<Int>(0)
        let held = Atomic<Bool>(false)
        func hook(_ d: EDMADirection, _ c: Int) {
            while held.load(ordering: .acquiring) { usleep(200) }
            let us = micros.load(ordering: .relaxed)
            if us > 0 { usleep(UInt32(us)) }
        }
    }

    static func fill(_ f: ModelFixture, hostOffset: Int, length: Int, byte: UInt8) {
        unsafe memset(f.host.base + hostOffset, Int32(byte), length)
    }
    static func epBytes(_ f: ModelFixture, offset: Int, length: Int) -> [UInt8] {
        unsafe Array(UnsafeRawBufferPointer(start: f.ep.base + offset, count: length))
    }

    @Test(arguments: [false, true])
    func aNewOwner_doesNotTakeTheDeadOwnersChainForItsOwn(_ mustStop: Bool) throws {
        let slow = Slow()
        let f = try ModelFixture(copyHook: { d, c in slow.hook(d, c) })
        let regs = f.model.registerSpace(.host)
        let (llRegion, llBus) = f.ll(.read, 0)
        let oldDest = f.dataStart, newDest = f.dataStart + 0x10000
        Self.fill(f, hostOffset: 0, length: 4096, byte: 0xAA)
        Self.fill(f, hostOffset: 0x8000, length: 256, byte: 0x5C)
        slow.micros.store(5_000, ordering: .relaxed)   // 40 elements: ~200 ms
        do {
            // The dead owner: a long chain started, never waited for; the process "dies" (claim gone).
            let old = try DWEDMAController(registers: regs, mode: .remote, ownership: .channels)
            var ch = try old.channel(.read, 0, ll: llRegion, llBusAddress: llBus)
            let chain = (0..<40).map { i in
                EDMATransfer(source: ModelFixture.hostBus, destination: ModelFixture.epBus + UInt64(oldDest + i * 64), length: 64)
            }
            _ = try ch.submit(chain)
        }
        // The posted doorbell is applied by the model's thread: the old chain runs before the new owner comes.
        for _ in 0..<10_000 where f.model.counters.doorbells < 1 { usleep(100) }
        #expect(f.model.counters.doorbells == 1)
        #expect(ChannelControl(rawValue: regs.load32(at: EDMARegisters.unrollChannelBase(.read, channel: 0) + EDMARegisters.Channel.control1)).status == .running)
        let edma = try DWEDMAController(registers: regs, mode: .remote, ownership: .channels)
        var ch = try edma.channel(.read, 0, ll: llRegion, llBusAddress: llBus)
        if mustStop { ch.staleChainBound = .milliseconds(10) } else { ch.staleChainBound = .seconds(5) }
        let id = try ch.submit(EDMATransfer(source: ModelFixture.hostBus + 0x8000,
                                            destination: ModelFixture.epBus + UInt64(newDest), length: 256))
        slow.micros.store(0, ordering: .relaxed)
        #expect(try ch.wait(timeout: .seconds(5)) == .done(submission: id))
        // Our doorbell was taken (not ignored by a running channel) and our bytes arrived.
        #expect(f.model.counters.doorbells == 2)
        #expect(Self.epBytes(f, offset: newDest, length: 256) == [UInt8](repeating: 0x5C, count: 256))
        if mustStop {
            // Stopped early: the old chain did not run to its end.
            #expect(Self.epBytes(f, offset: oldDest + 39 * 64, length: 64) != [UInt8](repeating: 0xAA, count: 64))
        } else {
            #expect(Self.epBytes(f, offset: oldDest + 39 * 64, length: 64) == [UInt8](repeating: 0xAA, count: 64))
        }
    }

    @Test func aStaleDone_ofTheDeadOwner_isNotTakenForTheFirstSubmission() throws {
        let slow = Slow()
        let f = try ModelFixture(copyHook: { d, c in slow.hook(d, c) })
        let regs = f.model.registerSpace(.host)
        let (llRegion, llBus) = f.ll(.read, 1)
        do {
            let old = try DWEDMAController(registers: regs, mode: .remote, ownership: .channels)
            var ch = try old.channel(.read, 1, ll: llRegion, llBusAddress: llBus)
            _ = try ch.submit(EDMATransfer(source: ModelFixture.hostBus, destination: ModelFixture.epBus + UInt64(f.dataStart), length: 64))
            // Dies before polling: its DONE stays set in int_status.
            for _ in 0..<10_000 where regs.load32(at: EDMARegisters.intStatus(.read)) & InterruptBits.done(1) == 0 { usleep(100) }
        }
        #expect(regs.load32(at: EDMARegisters.intStatus(.read)) & InterruptBits.done(1) != 0)
        let edma = try DWEDMAController(registers: regs, mode: .remote, ownership: .channels)
        var ch = try edma.channel(.read, 1, ll: llRegion, llBusAddress: llBus)
        slow.held.store(true, ordering: .releasing)   // our chain cannot finish yet
        let id = try ch.submit(EDMATransfer(source: ModelFixture.hostBus, destination: ModelFixture.epBus + UInt64(f.dataStart + 64), length: 64))
        usleep(20_000)
        #expect(ch.poll() == nil, "the dead owner's DONE was taken for this submission")
        slow.held.store(false, ordering: .releasing)
        #expect(try ch.wait(timeout: .seconds(5)) == .done(submission: id))
    }
}
