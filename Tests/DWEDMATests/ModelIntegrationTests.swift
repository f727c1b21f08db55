#if canImport(Glibc)
import Glibc
#endif
import Testing
import PCIKit
import NTBMock
@testable import DWEDMA

/// Driver + engine model: random transfer sets give exactly the bytes a memcpy gives; injected aborts
/// are reported at the right element and the channel recovers.
@Suite(.serialized) struct ModelIntegrationTests {
    /// Fills both arenas' data areas with random bytes; returns CPU copies to compute expectations.
    static func randomise(_ f: ModelFixture, _ rng: inout SplitMix) {
        for arena in [f.ep, f.host] {
            let p = unsafe arena.base.assumingMemoryBound(to: UInt64.self)
            for i in 0..<(arena.length / 8) { unsafe p[i] = rng.next() }
        }
        unsafe memset(f.ep.base, 0, f.dataStart)   // LL regions start clean
    }

    /// Random elements for a direction: sources and destinations inside the data areas.
    static func randomTransfers(_ f: ModelFixture, _ d: EDMADirection, count: Int, _ rng: inout SplitMix) -> [EDMATransfer] {
        (0..<count).map { _ in
            let len = Int.random(in: 1...4096, using: &rng)
            let epOff = Int.random(in: f.dataStart...(f.ep.length - len), using: &rng)
            let hostOff = Int.random(in: 0...(f.host.length - len), using: &rng)
            let ep = ModelFixture.epBus + UInt64(epOff), host = ModelFixture.hostBus + UInt64(hostOff)
            return d == .write ? EDMATransfer(source: ep, destination: host, length: UInt32(len))
                               : EDMATransfer(source: host, destination: ep, length: UInt32(len))
        }
    }

    /// Applies the transfers with memmove on CPU copies of the arenas (the reference result).
    static func reference(_ f: ModelFixture, _ t: [EDMATransfer], ep: inout [UInt8], host: inout [UInt8]) {
        for x in t {
            let (srcArr, srcOff, isEPSrc) = x.source >= ModelFixture.hostBus
                ? (host, Int(x.source - ModelFixture.hostBus), false) : (ep, Int(x.source - ModelFixture.epBus), true)
            let bytes = Array(srcArr[srcOff..<(srcOff + Int(x.length))])
            if isEPSrc {
                let o = Int(x.destination - ModelFixture.hostBus); host.replaceSubrange(o..<(o + bytes.count), with: bytes)
            } else {
                let o = Int(x.destination - ModelFixture.epBus); ep.replaceSubrange(o..<(o + bytes.count), with: bytes)
            }
        }
    }

    static func snapshot(_ a: SharedMemoryArena) -> [UInt8] {
        unsafe Array(UnsafeRawBufferPointer(start: a.base, count: a.length))
    }

    @Test(arguments: [(EDMAMode.local, EDMAMapFormat.unroll, UInt64(1)), (.remote, .unroll, 2), (.local, .legacy, 3), (.remote, .legacy, 4)])
    func randomTransfersMatchMemcpy(_ mode: EDMAMode, _ format: EDMAMapFormat, _ seed: UInt64) throws {
        let f = try ModelFixture(format: format)
        var rng = SplitMix(seed: seed)
        Self.randomise(f, &rng)
        let edma = try DWEDMAController(registers: f.model.registerSpace(mode == .local ? .endpoint : .host),
                                        format: format, mode: mode, ownership: .engine)
        #expect(edma.writeChannels == 4 && edma.readChannels == 4)
        var ep = Self.snapshot(f.ep), host = Self.snapshot(f.host)
        for round in 0..<12 {
            let d: EDMADirection = round % 2 == 0 ? .write : .read
            let chIndex = Int.random(in: 0..<4, using: &rng)
            let (llRegion, llBus) = f.ll(d, chIndex)
            var ch = try edma.channel(d, chIndex, ll: llRegion, llBusAddress: llBus)
            for _ in 0..<3 {
                let t = Self.randomTransfers(f, d, count: Int.random(in: 1...40, using: &rng), &rng)
                // The LL lives in EP RAM; keep the reference copy of it in sync after the run.
                let id = try ch.submit(t)
                #expect(try ch.wait(timeout: .seconds(10)) == .done(submission: id))
                Self.reference(f, t, ep: &ep, host: &host)
                let llOff = f.llOffset(d, chIndex)
                let llNow = Self.snapshot(f.ep)[llOff..<(llOff + f.llBytes)]
                ep.replaceSubrange(llOff..<(llOff + f.llBytes), with: llNow)
                #expect(Self.snapshot(f.host) == host)
                #expect(Self.snapshot(f.ep) == ep)
            }
        }
        #expect(f.model.counters.aborts == 0)
    }

    @Test func injectedAbortsAreReportedAndTheChannelRecovers() throws {
        let f = try ModelFixture()
        var rng = SplitMix(seed: 99)
        Self.randomise(f, &rng)
        let edma = try DWEDMAController(registers: f.model.registerSpace(.endpoint), mode: .local, ownership: .engine)
        for d in EDMADirection.allCases {
            let (llRegion, llBus) = f.ll(d, 3)
            var ch = try edma.channel(d, 3, ll: llRegion, llBusAddress: llBus)
            for _ in 0..<6 {
                let n = Int.random(in: 1...30, using: &rng)
                let k = Int.random(in: 0..<n, using: &rng)
                f.model.injectAbort(direction: d, channel: 3, element: k)
                let t = Self.randomTransfers(f, d, count: n, &rng)
                let id = try ch.submit(t)
                let result = try ch.wait(timeout: .seconds(10))
                guard case .aborted(let a) = result else { Issue.record("expected abort, got \(result)"); continue }
                #expect(a.submission == id)
                #expect(a.element == k)
                #expect(a.status.isError)
                #expect(f.model.lastAbortReason(d, channel: 3) == .injected)
                #expect(ch.needsFullStart && ch.cycle)
                // Recovery: the next submission completes and copies correctly.
                var ep = Self.snapshot(f.ep), host = Self.snapshot(f.host)
                let good = Self.randomTransfers(f, d, count: Int.random(in: 1...30, using: &rng), &rng)
                let id2 = try ch.submit(good)
                #expect(try ch.wait(timeout: .seconds(10)) == .done(submission: id2))
                Self.reference(f, good, ep: &ep, host: &host)
                let llOff = f.llOffset(d, 3)
                ep.replaceSubrange(llOff..<(llOff + f.llBytes), with: Self.snapshot(f.ep)[llOff..<(llOff + f.llBytes)])
                #expect(Self.snapshot(f.host) == host)
                #expect(Self.snapshot(f.ep) == ep)
            }
            #expect(ch.counters.aborts == 6)
            #expect(ch.counters.completions == 6)
        }
    }

    @Test func unmappedAddressAbortsWithoutCrashing() throws {
        let f = try ModelFixture()
        let edma = try DWEDMAController(registers: f.model.registerSpace(.endpoint), mode: .local, ownership: .engine)
        let (llRegion, llBus) = f.ll(.write, 0)
        var ch = try edma.channel(.write, 0, ll: llRegion, llBusAddress: llBus)
        let t = [EDMATransfer(source: ModelFixture.epBus + 0x20000, destination: ModelFixture.hostBus, length: 16),
                 EDMATransfer(source: ModelFixture.epBus + 0x20000, destination: 0xDEAD_0000_0000, length: 16)]
        _ = try ch.submit(t)
        guard case .aborted(let a) = try ch.wait(timeout: .seconds(5)) else { Issue.record("no abort"); return }
        #expect(a.element == 1)
        #expect(f.model.lastAbortReason(.write, channel: 0) == .unmappedDestination(0xDEAD_0000_0000))
    }

    @Test func doneInterruptArrivesAsIMWrOnTheRegisteredMSI() throws {
        let f = try ModelFixture()
        let msi = try EventNotifier()
        f.model.registerMSI(address: 0xFEE0_0000, data: 0x25, notifier: msi)
        let edma = try DWEDMAController(registers: f.model.registerSpace(.host), mode: .remote, ownership: .channels)
        let (llRegion, llBus) = f.ll(.read, 1)
        var ch = try edma.channel(.read, 1, ll: llRegion, llBusAddress: llBus)
        ch.useInterrupt(msiAddress: 0xFEE0_0000, baseData: 0x20, vector: 5)
        let id = try ch.submit(EDMATransfer(source: ModelFixture.hostBus, destination: ModelFixture.epBus + 0x40000, length: 512))
        #expect(msi.wait(timeout: .seconds(5)))
        #expect(try ch.wait(timeout: .seconds(5), notifier: msi) == .done(submission: id))
        #expect(f.model.counters.imwrDelivered == 1)
        #expect(unsafe memcmp(f.host.base, f.ep.base + 0x40000, 512) == 0)
    }

    @Test func remoteOnlyRoutingKeepsTheLocalInterruptMasked() throws {
        let irq = try EventNotifier(), msi = try EventNotifier()
        let f = try ModelFixture(localInterrupt: irq)
        f.model.registerMSI(address: 0xFEE0_0040, data: nil, notifier: msi)
        let edma = try DWEDMAController(registers: f.model.registerSpace(.host), mode: .remote, ownership: .channels)
        let (llRegion, llBus) = f.ll(.read, 3)
        var ch = try edma.channel(.read, 3, ll: llRegion, llBusAddress: llBus)
        ch.useInterrupt(msiAddress: 0xFEE0_0040, baseData: 0, vector: 1)
        ch.routeInterruptsRemoteOnly()
        let id = try ch.submit(EDMATransfer(source: ModelFixture.hostBus, destination: ModelFixture.epBus + 0x40000, length: 64))
        #expect(try ch.wait(timeout: .seconds(5), notifier: msi) == .done(submission: id))
        #expect(f.model.counters.imwrDelivered == 1)
        #expect(f.model.counters.localInterrupts == 0)
        #expect(irq.consume() == 0)
        #expect(f.model.registerSpace(.host).load32(at: EDMARegisters.intMask(.read)) & InterruptBits.channel(3).rawValue
                == InterruptBits.channel(3).rawValue)
    }

    @Test func emulatedInterruptIsADoorbellToTheEndpoint() throws {
        let irq = try EventNotifier()
        let f = try ModelFixture(localInterrupt: irq)
        let host = try DWEDMAController(registers: f.model.registerSpace(.host), mode: .remote, ownership: .channels)
        host.raiseEmulatedInterrupt(.read)
        #expect(irq.wait(timeout: .seconds(5)))
        #expect(irq.consume() == 1)
        host.clearEmulatedInterrupt(.read)
        #expect(f.model.registerSpace(.host).load32(at: EDMARegisters.intStatus(.read)) == 0)
        #expect(f.model.counters.emulatedInterrupts == 1)
    }

    @Test func localModeRaisesTheLocalInterruptNotIMWr() throws {
        let irq = try EventNotifier()
        let f = try ModelFixture(localInterrupt: irq)
        let edma = try DWEDMAController(registers: f.model.registerSpace(.endpoint), mode: .local, ownership: .engine)
        let (llRegion, llBus) = f.ll(.write, 2)
        var ch = try edma.channel(.write, 2, ll: llRegion, llBusAddress: llBus)
        let id = try ch.submit(EDMATransfer(source: ModelFixture.epBus + 0x40000, destination: ModelFixture.hostBus + 64, length: 100))
        #expect(irq.wait(timeout: .seconds(5)))
        #expect(try ch.wait(timeout: .seconds(5), notifier: irq) == .done(submission: id))
        #expect(f.model.counters.localInterrupts >= 1)
        #expect(f.model.counters.imwrDelivered + f.model.counters.imwrToMemory == 0)
    }

    @Test func aSecondMappingOfTheFilesDrivesTheSameModel() throws {
        // What another process does: map edma-regs and edma-rings from the directory.
        let f = try ModelFixture()
        let mapping = try EDMARegisterMapping.attach(directory: f.dir.path)
        let edma = try DWEDMAController(registers: mapping.space(.host), mode: .remote, ownership: .channels)
        let (llRegion, llBus) = f.ll(.read, 0)
        var ch = try edma.channel(.read, 0, ll: llRegion, llBusAddress: llBus)
        unsafe memset(f.host.base, 0x5A, 4096)
        let id = try ch.submit([EDMATransfer(source: ModelFixture.hostBus, destination: ModelFixture.epBus + 0x80000, length: 2048),
                                EDMATransfer(source: ModelFixture.hostBus + 2048, destination: ModelFixture.epBus + 0x90000, length: 2048)])
        #expect(try ch.wait(timeout: .seconds(5)) == .done(submission: id))
        #expect(unsafe memcmp(f.host.base, f.ep.base + 0x80000, 2048) == 0)
        #expect(unsafe memcmp(f.host.base, f.ep.base + 0x90000, 2048) == 0)
        // The register file is inspectable: ch_control1 of read ch0 shows CCS|LLE and CS = done.
        let ctl = ChannelControl(rawValue: mapping.registerFile.load32(at: 0x300))
        #expect(ctl.status == .done && ctl.linkedListEnable)
    }

    @Test func stoppedModelReadsAllOnes() throws {
        let f = try ModelFixture()
        let space = f.model.registerSpace(.host)
        #expect(space.load32(at: 0x008) == 0x0004_0004)
        f.model.stop()
        #expect(space.load32(at: 0x008) == 0xFFFF_FFFF)
    }
}
