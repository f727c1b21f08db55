#if canImport(Glibc)
import Glibc
#endif
import DWEDMA
import NTBMock
import PCIKit
import Testing
@testable import NTBTransport

/// A box so that non-copyable channel senders can live in arrays.
final class Box<T: ~Copyable> {
    var value: T
    init(_ value: consuming T) { self.value = value }
}

/// Deterministic random numbers for reproducible payloads.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Both sides of an edma link in one process, over the DW eDMA engine model (NTBMock): endpoint RAM
/// and host RAM arenas, the eDMA window published by the endpoint at the start of its RAM and
/// validated by the host, endpoint-local WRITE channels, host-driven remote READ channels (4 data +
/// the notify channel), and per-QP ring areas on both sides.
final class EDMALinkFixture: @unchecked Sendable {
    typealias Ring = MMIORegion
    typealias HostCore = EDMAv0Core<PostedWriteRegisterSpace>
    typealias Sender = EDMAChannelSender<MMIORegion, MMIORegion, HostCore, MMIORegion>

    static let epBus: UInt64 = 0x1000_0000
    static let hostBus: UInt64 = 0x8_0000_0000
    static let page = 4096
    static let bufferSize = 4096
    static let dataChannels = 4
    /// Endpoint RAM: eDMA window at 0, write-channel LLs at 64K, QP areas at 128K, buffers from 1M.
    static let windowLength = 0x10000
    static let epWriteLL = 0x10000
    static let epAreas = 0x20000
    /// Host RAM: QP areas at 0, notify source at 64K, buffers from 1M.
    static let hostAreas = 0
    static let notifySource = 0x10000
    static let rxBuffers = 0x10_0000
    static let txBuffers = 0x20_0000

    let directory: String
    let ep: SharedMemoryArena
    let host: SharedMemoryArena
    let model: EDMAEngineModel
    let epInterrupt: EventNotifier
    let queuePairs: Int
    let validated: ValidatedEDMAWindow
    let epController: DWEDMAController<PostedWriteRegisterSpace>
    let hostController: DWEDMAController<PostedWriteRegisterSpace>
    var hostSenders: [Box<Sender>] = []
    var epSenders: [Box<Sender>] = []
    var epReceivers: [EDMAQueueReceiver<MMIORegion, MMIORegion>] = []
    var hostReceivers: [EDMAQueueReceiver<MMIORegion, MMIORegion>] = []
    let hostNotifier: Box<EDMAHostNotifier<MMIORegion, HostCore, MMIORegion>>

    init(queuePairs: Int, stall: Duration = .seconds(5)) throws {
        precondition(queuePairs >= 1 && queuePairs <= 16)
        self.queuePairs = queuePairs
        var template = Array("/tmp/ntb-edma-dp-XXXXXX".utf8CString)
        let made = unsafe template.withUnsafeMutableBufferPointer { unsafe mkdtemp($0.baseAddress!) }
        precondition(unsafe made != nil)
        directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        ep = try SharedMemoryArena(path: directory + "/ep-mem", busBase: Self.epBus, length: 4 << 20)
        host = try SharedMemoryArena(path: directory + "/host-mem", busBase: Self.hostBus, length: 4 << 20)
        epInterrupt = try EventNotifier()
        model = try EDMAEngineModel(EDMAModelConfiguration(
            directory: directory, writeChannels: Self.dataChannels, readChannels: Self.dataChannels + 1,
            localSpace: BusAddressSpace([ep.segment]), pcieSpace: BusAddressSpace([host.segment]),
            localInterrupt: epInterrupt))

        // Endpoint: publish the window before link-up (RFC v3 patch 25), one LL region per read channel.
        let layout = EDMAWindowLayout(pageSize: Self.page, registerSize: EDMAModelFiles.registerFileSize,
                                      channelCount: Self.dataChannels + 1)
        let epWindow = ep.region.mmio.subregion(offset: 0, length: Self.windowLength)
        EDMAInfo(registerSize: UInt32(layout.registerSize), notifyAddress: Self.epBus + UInt64(layout.notifyOffset),
                 linkedListAddresses: (0...Self.dataChannels).map { Self.epBus + UInt64(layout.linkedListOffset($0)) })
            .publish(into: epWindow)

        // Host: validate what the peer published, then drive its read channels through the window.
        var locator = EDMALocator()
        locator.dataChannels = Self.dataChannels
        validated = try EDMAInfo.validate(window: epWindow, windowIndex: 1,
                                          expecting: EDMAWindowExpectation(locator, peerWindowBase: Self.epBus))
        epController = try DWEDMAController(registers: model.registerSpace(.endpoint), mode: .local, ownership: .channels)
        hostController = try DWEDMAController(registers: model.registerSpace(.host), mode: .remote, ownership: .channels)

        let hostMemory = host.region.mmio, epMemory = ep.region.mmio
        func hostArea(_ q: Int) -> MMIORegion { hostMemory.subregion(offset: Self.hostAreas + q * 0x2000, length: EDMARing.queuePairAreaSize) }
        func epArea(_ q: Int) -> MMIORegion { epMemory.subregion(offset: Self.epAreas + q * 0x2000, length: EDMARing.queuePairAreaSize) }
        func ring(_ area: MMIORegion, _ n: Int) -> MMIORegion { area.subregion(offset: EDMARing.ringOffset(n), length: EDMARing.size) }
        let hostTx = EDMARing.ringNumber(.transmit, isEndpoint: false), epTx = EDMARing.ringNumber(.transmit, isEndpoint: true)
        for q in 0..<queuePairs {
            epReceivers.append(EDMAQueueReceiver(ring: EDMARingReceiver(local: ring(epArea(q), hostTx), remote: ring(hostArea(q), hostTx))))
            hostReceivers.append(EDMAQueueReceiver(ring: EDMARingReceiver(local: ring(hostArea(q), epTx), remote: ring(epArea(q), epTx))))
        }
        for c in 0..<min(Self.dataChannels, queuePairs) {
            let qps = Array(stride(from: c, to: queuePairs, by: Self.dataChannels))
            let hostRings = qps.map { EDMARingSender(local: ring(hostArea($0), hostTx), remote: ring(epArea($0), hostTx)) }
            let epRings = qps.map { EDMARingSender(local: ring(epArea($0), epTx), remote: ring(hostArea($0), epTx)) }
            let readLL = epWindow.subregion(offset: validated.layout.linkedListOffset(c), length: Self.page)
            hostSenders.append(Box(Sender(channel: try hostController.channel(.read, c, ll: readLL, llBusAddress: validated.info.linkedListAddresses[c]), core: hostController.core,
                                          queuePairs: qps, rings: hostRings, stallBound: stall)))
            let writeLL = ep.region.mmio.subregion(offset: Self.epWriteLL + c * Self.page, length: Self.page)
            epSenders.append(Box(Sender(channel: try epController.channel(.write, c, ll: writeLL, llBusAddress: Self.epBus + UInt64(Self.epWriteLL + c * Self.page)), core: epController.core,
                                        queuePairs: qps, rings: epRings, stallBound: stall)))
        }
        let notifyChannel = EDMAChannelMap.notifyChannel(dataChannels: Self.dataChannels)
        let notifyLL = epWindow.subregion(offset: validated.layout.linkedListOffset(notifyChannel), length: Self.page)
        host.region.mmio.store32(1, at: Self.notifySource)
        hostNotifier = Box(EDMAHostNotifier(
            page: epWindow.subregion(offset: validated.layout.notifyOffset, length: Self.page),
            channel: try hostController.channel(.read, notifyChannel, ll: notifyLL, llBusAddress: validated.info.linkedListAddresses[notifyChannel]),
            source: Self.hostBus + UInt64(Self.notifySource), target: validated.info.notifyAddress))
    }

    deinit {
        model.stop()
        for name in ["ep-mem", "host-mem", EDMAModelFiles.registers, EDMAModelFiles.rings] { _ = unsafe unlink(directory + "/" + name) }
        _ = unsafe rmdir(directory)
    }

    /// The endpoint's notification page (its own memory).
    var epNotifyPage: MMIORegion { ep.region.mmio.subregion(offset: validated.layout.notifyOffset, length: Self.page) }
}

/// Traffic in both directions with random sizes; every message checked byte for byte.
struct TrafficRun {
    let fixture: EDMALinkFixture
    let perQueuePair: Int
    var rng: SplitMix64
    /// Per direction (0: host → EP, 1: EP → host), per QP: lengths of the messages, in order.
    var lengths: [[[Int]]] = [[], []]
    var sent: [[Int]]
    var received: [[Int]]
    var delivered: [[[Int]]]
    var aborted: [[UInt64]] = [[], []]
    var notifiedQueuePairs: UInt64 = 0
    var epInterrupts = 0

    init(_ fixture: EDMALinkFixture, perQueuePair: Int, seed: UInt64) {
        self.fixture = fixture
        self.perQueuePair = perQueuePair
        rng = SplitMix64(state: seed)
        let q = fixture.queuePairs
        sent = [Array(repeating: 0, count: q), Array(repeating: 0, count: q)]
        received = sent
        delivered = [Array(repeating: [], count: q), Array(repeating: [], count: q)]
        for d in 0..<2 {
            lengths[d] = (0..<q).map { _ in (0..<perQueuePair).map { _ in Int.random(in: 1...EDMALinkFixture.bufferSize, using: &rng) } }
        }
        // Payloads: message m of QP q in direction d lives at its own source buffer, filled with bytes
        // derived from (d, q, m).
        for d in 0..<2 {
            for qp in 0..<q {
                for m in 0..<perQueuePair {
                    let (arena, offset) = source(d, qp, m)
                    for i in 0..<lengths[d][qp][m] { arena.region.mmio.store8(Self.byte(d, qp, m, i), at: offset + i) }
                }
            }
        }
        for qp in 0..<q { post(0, qp, count: 32); post(1, qp, count: 32) }
    }

    static func byte(_ d: Int, _ q: Int, _ m: Int, _ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: d &* 131 &+ q &* 31 &+ m &* 7 &+ i &* 13 &+ (i >> 8)) }

    func source(_ d: Int, _ q: Int, _ m: Int) -> (SharedMemoryArena, Int) {
        (d == 0 ? fixture.host : fixture.ep, EDMALinkFixture.txBuffers + (q * perQueuePair + m) * EDMALinkFixture.bufferSize)
    }
    /// Receive buffer slot s of QP q in direction d (in the receiver's RAM).
    func sink(_ d: Int, _ q: Int, _ slot: Int) -> (SharedMemoryArena, Int) {
        (d == 0 ? fixture.ep : fixture.host, EDMALinkFixture.rxBuffers + (q * 32 + slot) * EDMALinkFixture.bufferSize)
    }

    mutating func post(_ d: Int, _ q: Int, count: Int) {
        for _ in 0..<count {
            let slot = Int(postedSoFar[d][q] % 32)
            let (arena, offset) = sink(d, q, slot)
            let ok = d == 0
                ? fixture.epReceivers[q].post(busAddress: arena.busBase + UInt64(offset), length: EDMALinkFixture.bufferSize, cookie: UInt64(slot))
                : fixture.hostReceivers[q].post(busAddress: arena.busBase + UInt64(offset), length: EDMALinkFixture.bufferSize, cookie: UInt64(slot))
            precondition(ok)
            postedSoFar[d][q] += 1
        }
        if d == 0 { fixture.epReceivers[q].publish() } else { fixture.hostReceivers[q].publish() }
    }
    lazy var postedSoFar: [[Int]] = [Array(repeating: 0, count: fixture.queuePairs), Array(repeating: 0, count: fixture.queuePairs)]

    var done: Bool {
        (0..<2).allSatisfy { d in (0..<fixture.queuePairs).allSatisfy { q in delivered[d][q].count + aborted[d].filter { Int($0 >> 32) == q }.count == perQueuePair } }
    }

    /// One pass: queue what fits, start chains, take completions, notify, receive and check.
    mutating func step(now: ContinuousClock.Instant = .now) -> (fault: EDMALinkFault?, corrupt: String?) {
        var fault: EDMALinkFault?
        for d in 0..<2 {
            let senders = d == 0 ? fixture.hostSenders : fixture.epSenders
            for (c, box) in senders.enumerated() {
                for (r, q) in box.value.queuePairs.enumerated() {
                    while sent[d][q] < perQueuePair {
                        let m = sent[d][q]
                        let (arena, offset) = source(d, q, m)
                        let result = box.value.enqueue(ring: r, source: arena.busBase + UInt64(offset), length: UInt32(lengths[d][q][m]),
                                                       cookie: UInt64(q) << 32 | UInt64(m))
                        if result == .busy { break }
                        guard result == .queued else { return (nil, "enqueue \(result)") }
                        sent[d][q] += 1
                    }
                }
                box.value.flush()
                var failed: [UInt64] = []
                let poll = box.value.poll(now: now) { c in if c.status == .aborted { failed.append(c.cookie) } }
                aborted[d] += failed
                fault = fault ?? poll.fault
                if d == 0 && poll.notify != 0 {
                    notifiedQueuePairs |= poll.notify
                    fixture.hostNotifier.value.notify(poll.notify)
                }
                _ = c
            }
        }
        // Endpoint: the notify channel's completion interrupt → scan the page.
        if fixture.epInterrupt.wait(timeout: .zero) {
            fixture.epInterrupt.consume()
            epInterrupts += 1
            _ = EDMANotifyPage.collect(fixture.epNotifyPage, queuePairs: fixture.queuePairs)
        }
        for d in 0..<2 {
            for q in 0..<fixture.queuePairs {
                var got: [(UInt64, Int)] = []
                let r = d == 0 ? fixture.epReceivers[q].poll { got.append(($0.cookie, $0.length)) }
                               : fixture.hostReceivers[q].poll { got.append(($0.cookie, $0.length)) }
                if case let .failure(why) = r { return (fault, why.description) }
                for (slot, length) in got {
                    // Which message is this? The next one not aborted, in order.
                    var m = delivered[d][q].last.map { $0 + 1 } ?? 0
                    while aborted[d].contains(UInt64(q) << 32 | UInt64(m)) { m += 1 }
                    guard length == lengths[d][q][m] else { return (fault, "dir \(d) qp \(q) message \(m): length \(length), sent \(lengths[d][q][m])") }
                    let (arena, offset) = sink(d, q, Int(slot))
                    for i in 0..<length where arena.region.mmio.load8(at: offset + i) != Self.byte(d, q, m, i) {
                        return (fault, "dir \(d) qp \(q) message \(m): byte \(i) differs")
                    }
                    delivered[d][q].append(m)
                    post(d, q, count: 1)
                }
            }
        }
        return (fault, nil)
    }

    mutating func run(timeout: Duration = .seconds(30)) -> String? {
        let deadline = ContinuousClock.now + timeout
        while !done {
            let (fault, corrupt) = step()
            if let corrupt { return corrupt }
            if let fault { return "link fault: \(fault)" }
            if ContinuousClock.now > deadline { return "timed out: delivered \(delivered.map { $0.map(\.count) })" }
        }
        return nil
    }
}

@Suite(.serialized) struct EDMADataPathTests {
    @Test(arguments: [(1, UInt64(1)), (4, 2), (6, 3)])
    func randomSizesAndQueuePairCountsArriveIntact(queuePairs: Int, seed: UInt64) throws {
        let f = try EDMALinkFixture(queuePairs: queuePairs)
        var run = TrafficRun(f, perQueuePair: 60, seed: seed)
        let failure = run.run()
        #expect(failure == nil, "\(failure ?? "")")
        #expect(run.aborted.allSatisfy { $0.isEmpty })
        for d in 0..<2 { for q in 0..<queuePairs { #expect(run.delivered[d][q] == Array(0..<60)) } }
        // Host → endpoint notifications went through the notify channel into the endpoint's page.
        #expect(run.notifiedQueuePairs == (1 << UInt64(queuePairs)) - 1)
        let notifies = f.hostNotifier.value.transfers
        #expect(notifies > 0)
        #expect(run.epInterrupts > 0)
        #expect(f.model.counters.aborts == 0)
        // Host transmits with remote READ channels, the endpoint with its local WRITE channels.
        let used = min(queuePairs, EDMALinkFixture.dataChannels)
        for c in 0..<used {
            let hostElements = f.hostSenders[c].value.counters.elements, epElements = f.epSenders[c].value.counters.elements
            #expect(hostElements > 0 && epElements > 0)
        }
    }

    @Test(arguments: [0, 3, 9])
    func anInjectedAbortFailsExactlyTheAffectedTransfer(element: Int) throws {
        let f = try EDMALinkFixture(queuePairs: 1)
        var run = TrafficRun(f, perQueuePair: 20, seed: 7)
        let lengths = run.lengths[0][0]
        // Queue ten host → endpoint messages into one chain, with element `element` failing.
        let sender = f.hostSenders[0]
        for m in 0..<10 {
            let (arena, offset) = run.source(0, 0, m)
            let queued = sender.value.enqueue(ring: 0, source: arena.busBase + UInt64(offset), length: UInt32(lengths[m]), cookie: UInt64(m))
            #expect(queued == .queued)
        }
        run.sent[0][0] = 10
        f.model.injectAbort(direction: .read, channel: 0, element: element)
        let started = sender.value.flush()
        #expect(started)
        var results: [EDMASendCompletion] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while results.count < 10 && ContinuousClock.now < deadline {
            _ = sender.value.poll(now: .now) { results.append($0) }
        }
        #expect(results.filter { $0.status == .aborted }.map(\.cookie) == [UInt64(element)])
        #expect(results.filter { $0.status == .ok }.map(\.cookie) == (0..<10).filter { $0 != element }.map(UInt64.init))
        #expect(f.model.lastAbortReason(.read, channel: 0) == .injected)
        let aborts = sender.value.counters.aborts
        #expect(aborts == 1)
        // The queue pair goes on: the rest of the traffic (both directions) arrives, the aborted
        // message excepted, in order.
        run.aborted[0] = [UInt64(element)]
        let failure = run.run()
        #expect(failure == nil, "\(failure ?? "")")
        #expect(run.delivered[0][0] == (0..<20).filter { $0 != element })
        #expect(run.delivered[1][0] == Array(0..<20))
    }

    @Test func anEngineThatStopsCompletingIsALinkFault() throws {
        // The doorbell never reaches the engine: the transfer stays in flight, nothing completes.
        let f = try EDMALinkFixture(queuePairs: 1)
        let run = TrafficRun(f, perQueuePair: 4, seed: 11)
        let lost = LostDoorbellSpace(base: f.model.registerSpace(.host))
        let controller = try DWEDMAController(registers: lost, mode: .remote, ownership: .channels)
        let window = f.ep.region.mmio.subregion(offset: 0, length: EDMALinkFixture.windowLength)
        let hostArea = f.host.region.mmio.subregion(offset: EDMALinkFixture.hostAreas, length: EDMARing.queuePairAreaSize)
        let epArea = f.ep.region.mmio.subregion(offset: EDMALinkFixture.epAreas, length: EDMARing.queuePairAreaSize)
        let ring = EDMARingSender(local: hostArea.subregion(offset: 0, length: EDMARing.size), remote: epArea.subregion(offset: 0, length: EDMARing.size))
        // Use read channel 3 (the fixture's senders hold 0; one queue pair uses only channel 0).
        var sender = EDMAChannelSender(
            channel: try controller.channel(.read, 3, ll: window.subregion(offset: f.validated.layout.linkedListOffset(3), length: EDMALinkFixture.page),
                                            llBusAddress: f.validated.info.linkedListAddresses[3]),
            core: controller.core, queuePairs: [0], rings: [ring], stallBound: .milliseconds(200))
        let (arena, offset) = run.source(0, 0, 0)
        let queued = sender.enqueue(ring: 0, source: arena.busBase + UInt64(offset), length: 100, cookie: 1)
        #expect(queued == .queued)
        let started = sender.flush()
        #expect(started)
        let t0 = ContinuousClock.now
        let first = sender.poll(now: t0) { _ in Issue.record("completion without a doorbell") }
        let second = sender.poll(now: t0 + .milliseconds(100)) { _ in }
        let third = sender.poll(now: t0 + .milliseconds(250)) { _ in }
        #expect(first.fault == nil && second.fault == nil)
        #expect(third.fault == .stalled(bound: .milliseconds(200)))
        // The queue pair goes down: the message comes back to the client.
        var failed: [EDMASendCompletion] = []
        sender.failAll { failed.append($0) }
        #expect(failed == [EDMASendCompletion(queuePair: 0, cookie: 1, length: 0, status: .linkDown)])
        #expect(EDMALinkFault.stalled(bound: .milliseconds(200)).description.hasPrefix("the eDMA completed nothing for 0.2 seconds"))
    }

    @Test func aVanishedEngineIsALinkFaultNotAnAbort() throws {
        let f = try EDMALinkFixture(queuePairs: 1)
        let run = TrafficRun(f, perQueuePair: 4, seed: 12)
        f.model.stop()
        let sender = f.hostSenders[0]
        let (arena, offset) = run.source(0, 0, 0)
        let queued = sender.value.enqueue(ring: 0, source: arena.busBase + UInt64(offset), length: 100, cookie: 1)
        #expect(queued == .queued)
        _ = sender.value.flush()
        var reported: [EDMASendCompletion] = []
        let report = sender.value.poll(now: .now) { reported.append($0) }
        #expect(report.fault == .engineGone)
        #expect(reported.isEmpty, "nothing is retried or reported as delivered")
        sender.value.failAll { reported.append($0) }
        #expect(reported.map(\.status) == [.linkDown])
    }
}

/// Forwards every access to the engine model except doorbell writes, which are lost: a channel that
/// never starts (a fault injection for stall detection).
struct LostDoorbellSpace: RegisterSpace {
    let base: PostedWriteRegisterSpace
    var length: Int { base.length }
    func load8(at offset: Int) -> UInt8 { base.load8(at: offset) }
    func load16(at offset: Int) -> UInt16 { base.load16(at: offset) }
    func load32(at offset: Int) -> UInt32 { base.load32(at: offset) }
    func load64(at offset: Int) -> UInt64 { base.load64(at: offset) }
    func store8(_ value: UInt8, at offset: Int) { base.store8(value, at: offset) }
    func store16(_ value: UInt16, at offset: Int) { base.store16(value, at: offset) }
    func store32(_ value: UInt32, at offset: Int) {
        if offset == EDMARegisters.doorbell(.read) || offset == EDMARegisters.doorbell(.write) { return }
        base.store32(value, at: offset)
    }
    func store64(_ value: UInt64, at offset: Int) { base.store64(value, at: offset) }
}
