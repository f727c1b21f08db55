#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import PCIKit
import DWEDMA
@testable import NTBMock

/// The engine model driven by raw register and LL writes (no driver), for the behaviour the driver
/// never provokes: zero length, bad LL, disabled engine, W1C, interrupt emulation, IMWr to memory.
@Suite(.serialized) struct EDMAEngineModelTests {
    final class Rig: @unchecked Sendable {
        let dir: String
        let ep: SharedMemoryArena
        let host: SharedMemoryArena
        let model: EDMAEngineModel
        let regs: PostedWriteRegisterSpace
        static let epBus: UInt64 = 0x2000_0000, hostBus: UInt64 = 0x4_0000_0000
        init(format: EDMAMapFormat = .unroll, irq: EventNotifier? = nil, ringCapacity: Int = 1024,
             copyHook: (@Sendable (EDMADirection, Int) -> Void)? = nil) throws {
            var template = Array("/tmp/edma-model-XXXXXX".utf8CString)
            _ = unsafe template.withUnsafeMutableBufferPointer { unsafe mkdtemp($0.baseAddress!) }
            dir = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            ep = try SharedMemoryArena(path: dir + "/ep-mem", busBase: Self.epBus, length: 1 << 18)
            host = try SharedMemoryArena(path: dir + "/host-mem", busBase: Self.hostBus, length: 1 << 18)
            model = try EDMAEngineModel(EDMAModelConfiguration(directory: dir, writeChannels: 2, readChannels: 8, format: format,
                                                               ringCapacity: ringCapacity,
                                                               localSpace: BusAddressSpace([ep.segment]),
                                                               pcieSpace: BusAddressSpace([host.segment]), localInterrupt: irq,
                                                               copyHook: copyHook))
            regs = model.registerSpace(.endpoint)
        }
        deinit {
            model.stop()
            for f in ["ep-mem", "host-mem", EDMAModelFiles.registers, EDMAModelFiles.rings] { _ = unsafe unlink(dir + "/" + f) }
            _ = unsafe rmdir(dir)
        }
        var ll: MMIORegion { ep.region.mmio }
        /// Writes a data element at slot i of the LL at EP offset `at`.
        func data(_ i: Int, control: UInt32, size: UInt32, sar: UInt64, dar: UInt64, at: Int = 0) {
            ll.store32(control, at: at + i * 24); ll.store32(size, at: at + i * 24 + 4)
            ll.store64(sar, at: at + i * 24 + 8); ll.store64(dar, at: at + i * 24 + 16)
        }
        func link(_ i: Int, control: UInt32, to: UInt64, at: Int = 0) {
            ll.store32(control, at: at + i * 24); ll.store64(to, at: at + i * 24 + 8)
        }
        /// First-start sequence for write channel `c` with the LL at EP offset `llAt`.
        func start(_ d: EDMADirection = .write, _ c: Int = 0, llErr: Bool = true, llAt: Int = 0) {
            regs.store32(1, at: EDMARegisters.engineEnable(d))
            regs.store32(0, at: EDMARegisters.intMask(d))
            if llErr { regs.store32(1 << UInt32(c), at: EDMARegisters.linkedListErrorEnable(d)) }
            let base = EDMARegisters.unrollChannelBase(d, channel: c)
            regs.store32(ChannelControl.ccs | ChannelControl.lle, at: base)
            regs.store32(UInt32(truncatingIfNeeded: Self.epBus + UInt64(llAt)), at: base + 0x1C)
            regs.store32(UInt32(truncatingIfNeeded: (Self.epBus + UInt64(llAt)) >> 32), at: base + 0x20)
            regs.store32(UInt32(c), at: EDMARegisters.doorbell(d))
        }
        func waitStatus(_ bits: UInt32, _ d: EDMADirection = .write) -> UInt32 {
            for _ in 0..<100_000 {
                let s = regs.load32(at: EDMARegisters.intStatus(d))
                if s & bits != 0 { return s }
                usleep(50)
            }
            return regs.load32(at: EDMARegisters.intStatus(d))
        }
        func status(_ d: EDMADirection = .write, _ c: Int = 0) -> ChannelStatus {
            ChannelControl(rawValue: regs.load32(at: EDMARegisters.unrollChannelBase(d, channel: c))).status
        }
    }

    @Test func resetStateAndChannelCounts() throws {
        let r = try Rig()
        #expect(r.regs.load32(at: 0x008) == 0x0008_0002)
        #expect(r.regs.load32(at: EDMARegisters.intMask(.write)) == 0x00FF_00FF)
        r.regs.store32(0x1234, at: 0x008)   // ctrl is read-only
        #expect(r.regs.load32(at: 0x008) == 0x0008_0002)
    }

    @Test func zeroLengthElementAborts() throws {
        let r = try Rig()
        r.data(0, control: 1, size: 16, sar: Rig.epBus + 0x1000, dar: Rig.hostBus)
        r.data(1, control: 1 | ChannelControl.lie, size: 0, sar: Rig.epBus + 0x1000, dar: Rig.hostBus)
        r.link(2, control: 0x6, to: Rig.epBus)
        r.start()
        let s = r.waitStatus(InterruptBits.abort(0) | InterruptBits.done(0))
        #expect(s == InterruptBits.abort(0))
        #expect(r.status() == .halted)
        #expect(r.model.lastAbortReason(.write, channel: 0) == .zeroLength)
        // llp points at the failing element.
        #expect(r.regs.load32(at: 0x21C) == UInt32(truncatingIfNeeded: Rig.epBus + 24))
        // W1C clears only the written bit.
        r.regs.store32(InterruptBits.done(0), at: EDMARegisters.intClear(.write))
        #expect(r.regs.load32(at: EDMARegisters.intStatus(.write)) == InterruptBits.abort(0))
        r.regs.store32(InterruptBits.abort(0), at: EDMARegisters.intClear(.write))
        #expect(r.regs.load32(at: EDMARegisters.intStatus(.write)) == 0)
    }

    @Test func unmappedLinkedListAbortsOnlyWithLLErrorEnabled() throws {
        let r = try Rig()
        r.link(0, control: 0x6, to: 0x7777_0000)   // link to nowhere, CB(0) == !CCS after TCB
        r.start(llErr: false)
        for _ in 0..<2000 where r.status() != .halted { usleep(100) }
        #expect(r.status() == .halted)
        #expect(r.regs.load32(at: EDMARegisters.intStatus(.write)) == 0)   // no ABORT without LL error enable
        let r2 = try Rig()
        r2.link(0, control: 0x6, to: 0x7777_0000)
        r2.start(llErr: true)
        #expect(r2.waitStatus(InterruptBits.abort(0)) == InterruptBits.abort(0))
        #expect(r2.model.lastAbortReason(.write, channel: 0) == .unmappedLinkedList(0x7777_0000))
    }

    @Test func linkLoopIsABadElementNotAHang() throws {
        let r = try Rig()
        r.link(0, control: ChannelControl.llp, to: Rig.epBus)   // no TCB: CB 0 must equal CCS 1 → stop
        r.start()
        for _ in 0..<2000 where r.status() != .done { usleep(100) }
        #expect(r.status() == .done)
        let r2 = try Rig()
        r2.link(0, control: ChannelControl.llp | ChannelControl.cb, to: Rig.epBus)   // valid link to itself, forever
        r2.start()
        #expect(r2.waitStatus(InterruptBits.abort(0)) == InterruptBits.abort(0))
        #expect(r2.model.lastAbortReason(.write, channel: 0) == .badElement)
    }

    @Test func doorbellIsGatedByEngineEnable() throws {
        let r = try Rig()
        r.data(0, control: 1 | ChannelControl.lie, size: 8, sar: Rig.epBus + 0x1000, dar: Rig.hostBus)
        r.link(1, control: 0x6, to: Rig.epBus)
        let base = EDMARegisters.unrollChannelBase(.write, channel: 0)
        r.regs.store32(ChannelControl.ccs | ChannelControl.lle, at: base)
        r.regs.store32(UInt32(Rig.epBus), at: base + 0x1C)
        r.regs.store32(0, at: EDMARegisters.doorbell(.write))   // engine disabled: ignored
        _ = r.regs.load32(at: 0x008)
        #expect(r.model.counters.doorbellsIgnored == 1)
        #expect(r.model.counters.doorbells == 0)
        r.regs.store32(1, at: EDMARegisters.engineEnable(.write))
        r.regs.store32(0, at: EDMARegisters.doorbell(.write))
        #expect(r.waitStatus(InterruptBits.done(0)) == InterruptBits.done(0))
        #expect(r.model.counters.bytes == 8)
    }

    @Test func imwrWithoutRegisteredMSIIsAMemoryWrite() throws {
        let r = try Rig()
        r.regs.store32(UInt32(truncatingIfNeeded: Rig.hostBus + 0x100), at: EDMARegisters.doneIMWrLow(.read))
        r.regs.store32(UInt32(truncatingIfNeeded: (Rig.hostBus + 0x100) >> 32), at: EDMARegisters.doneIMWrHigh(.read))
        r.regs.store32(0xBEEF_0000, at: EDMARegisters.imwrData(.read, channel: 5))   // ch5 = odd: high half
        r.data(0, control: 1 | ChannelControl.lie | ChannelControl.rie, size: 4, sar: Rig.hostBus, dar: Rig.epBus + 0x2000)
        r.link(1, control: 0x6, to: Rig.epBus)
        r.start(.read, 5)
        #expect(r.waitStatus(InterruptBits.done(5), .read) == InterruptBits.done(5))
        #expect(r.host.region.mmio.load32(at: 0x100) == 0xBEEF)
        #expect(r.model.counters.imwrToMemory == 1)
    }

    @Test func interruptEmulationAndMaskedLocalInterrupt() throws {
        let irq = try EventNotifier()
        let r = try Rig(irq: irq)
        r.regs.store32(0, at: EDMARegisters.intStatus(.read))    // emulation: IRQ, no status
        #expect(irq.wait(timeout: .seconds(2)))
        #expect(irq.consume() == 1)
        #expect(r.regs.load32(at: EDMARegisters.intStatus(.read)) == 0)
        #expect(r.model.counters.emulatedInterrupts == 1)
        // A masked DONE sets the status bit but raises no local interrupt.
        r.data(0, control: 1 | ChannelControl.lie, size: 4, sar: Rig.epBus + 0x1000, dar: Rig.hostBus)
        r.link(1, control: 0x6, to: Rig.epBus)
        r.start()
        r.regs.store32(0x00FF_00FF, at: EDMARegisters.intMask(.write))
        _ = r.waitStatus(InterruptBits.done(0))
        let raised = r.model.counters.localInterrupts
        #expect(raised <= 1)   // the mask write may land after completion; never more than one
    }

    @Test func legacyViewportMirrorsTheSelectedChannel() throws {
        let r = try Rig(format: .legacy)
        r.regs.store32(ViewportSelect(.read, channel: 3).rawValue, at: 0x0FC)
        r.regs.store32(0xABCD_0000, at: 0x100 + 0x1C)
        r.regs.store32(ViewportSelect(.write, channel: 1).rawValue, at: 0x0FC)
        #expect(r.regs.load32(at: 0x100 + 0x1C) == 0)
        r.regs.store32(ViewportSelect(.read, channel: 3).rawValue, at: 0x0FC)
        #expect(r.regs.load32(at: 0x100 + 0x1C) == 0xABCD_0000)
    }

    @Test func storesFromManyThreadsAreAppliedExactlyOnceThroughASmallRing() throws {
        let r = try Rig(ringCapacity: 8)
        // Each thread counts through its own scratch register (wr_ch_arb_weight lo/hi, rd lo/hi):
        // every store must be applied, in order per thread, none twice.
        let offsets = [0x018, 0x01C, 0x038, 0x03C]
        let space = r.model.registerSpace(.host)
        let group = UnsafeMutablePointer<pthread_t>.allocate(capacity: offsets.count)
        defer { unsafe group.deallocate() }
        final class Arg: @unchecked Sendable { let space: PostedWriteRegisterSpace; let off: Int
            init(_ s: PostedWriteRegisterSpace, _ o: Int) { space = s; off = o } }
        for (i, off) in offsets.enumerated() {
            let arg = unsafe Unmanaged.passRetained(Arg(space, off)).toOpaque()
            _ = unsafe pthread_create(group + i, nil, { p in
                let a = unsafe Unmanaged<Arg>.fromOpaque(p!).takeRetainedValue()
                for v in 1...2000 as ClosedRange<UInt32> {
                    a.space.store32(v, at: a.off)
                    if v % 500 == 0 { precondition(a.space.load32(at: a.off) == v) }
                }
                return nil
            }, arg)
        }
        for i in 0..<offsets.count { _ = unsafe pthread_join(group[i], nil) }
        for off in offsets { #expect(space.load32(at: off) == 2000) }
        #expect(r.model.counters.storesApplied >= 8000)
    }

    /// A gate a data mover waits at inside ``EDMAModelConfiguration/copyHook``.
    final class Gate: @unchecked Sendable {
        let state = Mutex<(entered: [Int], open: Bool)>(([], false))
        func pass(_ c: Int) {
            state.withLock { $0.entered.append(c) }
            while !state.withLock({ $0.open }) { usleep(100) }
        }
        func waitEntered(_ n: Int) -> Bool {
            for _ in 0..<50_000 where state.withLock({ $0.entered.count }) < n { usleep(100) }
            return state.withLock { $0.entered.count } >= n
        }
        func open() { state.withLock { $0.open = true } }
        var order: [Int] { state.withLock { $0.entered } }
    }

    /// Silicon answers register accesses while a channel moves data: a write then a read of the
    /// registers completes with the channel still running, not after its copy.
    @Test func registersAnswerWhileAnElementIsBeingCopied() throws {
        let gate = Gate()
        let r = try Rig(copyHook: { _, c in gate.pass(c) })
        for i in 0..<64 { r.ep.region.mmio.store8(UInt8(i), at: 0x1000 + i) }
        r.data(0, control: 1 | ChannelControl.lie, size: 64, sar: Rig.epBus + 0x1000, dar: Rig.hostBus)
        r.link(1, control: 0x6, to: Rig.epBus)
        r.start()
        #expect(gate.waitEntered(1))
        r.regs.store32(InterruptBits.abort(0), at: EDMARegisters.intMask(.write))   // a posted write ...
        #expect(r.status() == .running)                                             // ... and a read behind it
        #expect(r.regs.load32(at: EDMARegisters.intStatus(.write)) & InterruptBits.done(0) == 0)
        gate.open()
        #expect(r.waitStatus(InterruptBits.done(0)) & InterruptBits.done(0) != 0)
        #expect(r.status() == .done)
        for i in 0..<64 { #expect(r.host.region.mmio.load8(at: i) == UInt8(i)) }
    }

    /// The channels of a direction share its data path: the mover serves running channels round
    /// robin, one element each, so a channel rung later is not held behind a long chain.
    @Test func channelsOfADirectionAreServedRoundRobin() throws {
        let gate = Gate()
        let r = try Rig(copyHook: { _, c in gate.pass(c) })
        for (c, llAt) in [(0, 0), (1, 0x2000)] {
            for i in 0..<3 {
                r.data(i, control: 1 | (i == 2 ? ChannelControl.lie : 0), size: 16,
                       sar: Rig.epBus + 0x1000, dar: Rig.hostBus + UInt64(c * 0x100 + i * 16), at: llAt)
            }
            r.link(3, control: 0x6, to: Rig.epBus + UInt64(llAt), at: llAt)
        }
        r.start(.write, 0)
        #expect(gate.waitEntered(1))            // channel 0's first element is being copied
        r.start(.write, 1, llAt: 0x2000)
        _ = r.status(.write, 1)                  // the doorbell is applied
        gate.open()
        let both = InterruptBits.done(0) | InterruptBits.done(1)
        for _ in 0..<1000 where r.regs.load32(at: EDMARegisters.intStatus(.write)) & both != both { usleep(1000) }
        #expect(r.regs.load32(at: EDMARegisters.intStatus(.write)) & both == both)
        #expect(gate.order == [0, 1, 0, 1, 0, 1])
    }
}
