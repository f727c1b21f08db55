import Testing
import Synchronization
import DWEDMA
import NTBHardware
import NTBMock
import PCIKit
@testable import NTBTransport
#if canImport(Glibc)
import Glibc
#endif

typealias EDMATransport = Transport<MockNTBDevice, EDMABackend<MockNTBDevice>>

/// The `edma` backend through the queue pair API (hardware-reference §4): both roles in one process over
/// the mock link, the endpoint hosting the DW eDMA engine model.
@Suite(.serialized) struct EDMABackendTests {
    final class Pair {
        let link: LinkFixture
        let hostDevice: MockNTBDevice, endpointDevice: MockNTBDevice
        let host: EDMATransport, endpoint: EDMATransport
        init(_ name: String, qps: Int, mtu: Int = 4096, hostWaitMode: TransportConfiguration.WaitMode = .adaptive,
             copyHook: (@Sendable (EDMADirection, Int) -> Void)? = nil) throws {
            link = try LinkFixture(name, windowSize: 1 << 20)
            endpointDevice = try link.open(.endpoint)
            if let copyHook { endpointDevice.setEDMACopyHook(copyHook) }
            hostDevice = try link.open(.host)
            // hardware-reference §4.3 "Init order": the endpoint publishes its eDMA window before link-up.
            endpoint = try EDMATransport(device: endpointDevice, configuration: LinkFixture.configuration(qps: qps, mtu: mtu))
            var hostConfiguration = LinkFixture.configuration(qps: qps, mtu: mtu)
            hostConfiguration.waitMode = hostWaitMode
            host = try EDMATransport(device: hostDevice, configuration: hostConfiguration)
        }
        deinit {
            host.close(); endpoint.close()
            hostDevice.close(); endpointDevice.close()
        }
        func linkUp() -> Bool {
            let deadline = ContinuousClock.now + .seconds(10)
            while !(host.queuePairs + endpoint.queuePairs).allSatisfy(\.isLinkUp) {
                if ContinuousClock.now > deadline { return false }
                for qp in host.queuePairs + endpoint.queuePairs { qp.poll { _ in } }
                TransportThread.sleep(.microseconds(100))
            }
            return true
        }
    }

    /// Polls both sides until the sender sees `count` buffers the receiver posted (receivers offer
    /// their buffers when they poll).
    static func awaitPostedBuffers(_ count: Int, sender: QueuePair<MockNTBDevice, EDMABackend<MockNTBDevice>>,
                                   receiver: QueuePair<MockNTBDevice, EDMABackend<MockNTBDevice>>, until deadline: ContinuousClock.Instant) -> Bool {
        while sender.transmitFree < count {
            if ContinuousClock.now >= deadline { return false }
            receiver.poll { _ in }; sender.poll { _ in }
        }
        return true
    }

    /// Deterministic message lengths and bytes, so the receiver knows what each message must hold.
    static func length(_ q: Int, _ m: Int, mtu: Int) -> Int {
        var x = UInt64(q) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(m) &* 0xBF58_476D_1CE4_E5B9 &+ 17
        x = (x ^ (x >> 31)) &* 0x94D0_49BB_1331_11EB
        return Int((x ^ (x >> 29)) % UInt64(mtu)) + 1
    }
    static func byte(_ q: Int, _ m: Int, _ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: q &* 71 &+ m &* 13 &+ i &* 7 &+ (i >> 8)) }

    /// Sends `count` messages per queue pair from `from` to `to`: even messages from DMA memory by bus
    /// address, odd ones from plain memory (bounce); the receiver posts DMA buffers for even slots and
    /// plain ones for odd slots. Checks every byte and the order.
    static func transfer(from: EDMATransport, to: EDMATransport, count: Int, mtu: Int, idle: () -> Void = {}) throws {
        let qps = from.queuePairCount
        let slots = 16
        let source = try from.queuePairs[0].makeBuffers(count: qps * slots, length: mtu)
        let sink = try to.queuePairs[0].makeBuffers(count: qps * slots, length: mtu)
        let plainSource = UnsafeMutableRawBufferPointer.allocate(byteCount: qps * slots * mtu, alignment: 64)
        let plainSink = UnsafeMutableRawBufferPointer.allocate(byteCount: qps * slots * mtu, alignment: 64)
        defer { unsafe plainSource.deallocate(); unsafe plainSink.deallocate() }
        func sinkSlot(_ q: Int, _ s: Int) -> (UnsafeMutableRawBufferPointer, MessageBuffer?) {
            let offset = (q * slots + s) * mtu
            if s % 2 == 0 { let b = sink[q * slots + s]; return unsafe (b.bytes, b) }
            return unsafe (UnsafeMutableRawBufferPointer(rebasing: plainSink[offset..<offset + mtu]), nil)
        }
        for q in 0..<qps {
            for s in 0..<slots {
                let (b, buffer) = unsafe sinkSlot(q, s)
                if let buffer { try to.queuePairs[q].postReceive(buffer, cookie: UInt64(s)) } else { unsafe try to.queuePairs[q].postReceive(b, cookie: UInt64(s)) }
            }
        }
        var sent = [Int](repeating: 0, count: qps), sendsDone = sent, received = sent
        var inFlight = [Int](repeating: 0, count: qps)
        var failures: [String] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while received.reduce(0, +) < qps * count || sendsDone.reduce(0, +) < qps * count {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out: sent \(sent), sends done \(sendsDone), received \(received)")
                return
            }
            let progress = sent.reduce(0, +) + sendsDone.reduce(0, +) + received.reduce(0, +)
            defer { if sent.reduce(0, +) + sendsDone.reduce(0, +) + received.reduce(0, +) == progress { idle() } }
            for q in 0..<qps {
                let qp = from.queuePairs[q]
                // A source slot is reused only after its send completed (the DMA reads it in place).
                while sent[q] < count && inFlight[q] < slots {
                    let m = sent[q], n = length(q, m, mtu: mtu), s = m % slots, offset = (q * slots + s) * mtu
                    let dma = m % 2 == 0
                    let base = unsafe dma ? source[q * slots + s].bytes.baseAddress! : plainSource.baseAddress! + offset
                    for i in 0..<n { unsafe base.storeBytes(of: byte(q, m, i), toByteOffset: i, as: UInt8.self) }
                    let accepted: Bool
                    do throws(TransportError) {
                        if dma { try qp.send(source[q * slots + s], length: n, cookie: UInt64(m)) }
                        else { unsafe try qp.send(UnsafeRawBufferPointer(start: base, count: n), cookie: UInt64(m)) }
                        accepted = true
                    } catch {
                        guard case .ringFull = error else { throw error }
                        accepted = false
                    }
                    if !accepted { break }
                    sent[q] += 1
                    inFlight[q] += 1
                }
                qp.poll { c in
                    if c.kind == .send {
                        if c.status != .ok { failures.append("send \(q):\(c.cookie) \(c.status)") }
                        #expect(Int(c.cookie) == sendsDone[q], "sends complete in order")
                        sendsDone[q] += 1
                        inFlight[q] -= 1
                    }
                }
                let rq = to.queuePairs[q]
                rq.poll { c in
                    guard c.kind == .receive else { return }
                    let m = received[q], s = Int(c.cookie)
                    received[q] += 1
                    guard c.status == .ok else { failures.append("receive \(q):\(m) \(c.status)"); return }
                    let (b, buffer) = unsafe sinkSlot(q, s)
                    if c.length != length(q, m, mtu: mtu) { failures.append("receive \(q):\(m) has \(c.length) bytes, sent \(length(q, m, mtu: mtu))") }
                    else if (0..<c.length).contains(where: { unsafe b[$0] != byte(q, m, $0) }) { failures.append("receive \(q):\(m) bytes differ") }
                    if let buffer { try? rq.postReceive(buffer, cookie: UInt64(s)) } else { unsafe try? rq.postReceive(b, cookie: UInt64(s)) }
                }
            }
        }
        #expect(failures.count == 0, "first failures: \(failures.prefix(5))")
        // The client buffers with bus addresses were filled in place; the others through bounce buffers.
        let stats = (0..<qps).map { to.queuePairs[$0].counters.snapshot }
        #expect(stats.allSatisfy { $0[.rxAsync] > 0 && $0[.rxMemcpy] > 0 && $0[.rxMemcpy] < $0[.rxPackets] })
        #expect((0..<qps).allSatisfy { from.queuePairs[$0].counters[.txAsync] == UInt64(count) })
    }

    @Test(arguments: [1, 3, 4])
    func messagesArriveIntactHostToEndpoint(qps: Int) throws {
        let pair = try Pair("edma-backend-h2e-\(qps)", qps: qps)
        #expect(pair.linkUp())
        let before = try pair.endpointDevice.startEDMAModel().counters.imwrDelivered
        try Self.transfer(from: pair.host, to: pair.endpoint, count: 120, mtu: 4096)
        // The host's data channels end their chains with an IMWr to its MSI window: the queue pair's
        // doorbell vector fires, so a sleeping sender wakes (hardware-reference §1.7, RIE).
        #expect(try pair.endpointDevice.startEDMAModel().counters.imwrDelivered > before)
        // The endpoint's engine interrupt (LIE) fired for the host's transfers and notifications.
        #expect(try pair.endpointDevice.startEDMAModel().counters.localInterrupts > 0)
    }

    /// A host in interrupt mode, one thread sleeping on all its queue pairs when nothing moves: every
    /// message arrives, and the engine's status is read only after a completion interrupt or a
    /// periodic look (Linux reads `int_status` only in `dw_edma_interrupt`), not at every poll.
    @Test(arguments: [1, 4])
    func interruptModeHostReadsTheEngineStatusAfterItsInterrupts(qps: Int) throws {
        let pair = try Pair("edma-backend-irq-\(qps)", qps: qps, hostWaitMode: .interrupt)
        #expect(pair.linkUp())
        let model = try pair.endpointDevice.startEDMAModel()
        let interrupts = model.counters.imwrDelivered
        let kicks = pair.endpoint.queuePairs.reduce(0) { $0 + $1.counters[.doorbells] }
        let start = ContinuousClock.now
        let host = pair.host
        try Self.transfer(from: pair.host, to: pair.endpoint, count: 120, mtu: 4096) {
            _ = QueuePair.wait(anyOf: host.queuePairs, timeout: .milliseconds(2))
        }
        let elapsed = ContinuousClock.now - start
        let reads = pair.host.queuePairs.reduce(0) { $0 + $1.counters[.dmaStatusReads] }
        let delivered = model.counters.imwrDelivered - interrupts
        let rung = pair.endpoint.queuePairs.reduce(0) { $0 + $1.counters[.doorbells] } - kicks
        // Each read follows a doorbell bit (a completion IMWr or the peer's doorbell) or a look, at
        // most one per queue pair per millisecond.
        let looks = UInt64(qps) * (UInt64(elapsed.components.seconds) * 1000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000_000) + 1)
        #expect(reads > 0)
        #expect(reads <= delivered + rung + looks, "\(reads) status reads for \(delivered) completion interrupts and \(rung) doorbells in \(elapsed)")
    }

    /// While a chain runs and no interrupt came, polling a host queue pair in interrupt mode reads no
    /// engine status (one look per millisecond at most); the completion interrupt then ends the wait.
    @Test func interruptModeHostDoesNotReadTheEngineStatusPerPoll() throws {
        let held = Mutex<(armed: Bool, entered: Bool, open: Bool)>((false, false, false))
        let pair = try Pair("edma-backend-irq-held", qps: 1, hostWaitMode: .interrupt) { d, _ in
            guard d == .read, held.withLock({ $0.armed }) else { return }
            held.withLock { $0.entered = true }
            while !held.withLock({ $0.open }) { usleep(100) }
        }
        #expect(pair.linkUp())
        let h = pair.host.queuePairs[0], e = pair.endpoint.queuePairs[0]
        let buffers = try e.makeBuffers(count: 1, length: 4096)
        let source = try h.makeBuffers(count: 1, length: 64)
        try e.postReceive(buffers[0], cookie: 1)
        #expect(Self.awaitPostedBuffers(1, sender: h, receiver: e, until: .now + .seconds(10)))
        held.withLock { $0.armed = true }
        try h.send(source[0], length: 64, cookie: 9)
        for _ in 0..<50_000 where !held.withLock({ $0.entered }) { usleep(100) }
        #expect(held.withLock { $0.entered }, "the engine model never started the copy")
        let reads = h.counters[.dmaStatusReads]
        let start = ContinuousClock.now
        for _ in 0..<500 { h.poll { _ in } }
        let elapsed = ContinuousClock.now - start
        let looks = UInt64(elapsed.components.seconds) * 1000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000_000) + 2
        #expect(h.counters[.dmaStatusReads] - reads <= looks, "500 polls read the status \(h.counters[.dmaStatusReads] - reads) times in \(elapsed)")
        held.withLock { $0.open = true }
        var done = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !done && ContinuousClock.now < deadline {
            _ = h.wait(timeout: .milliseconds(100))
            h.poll { c in if c.kind == .send && c.cookie == 9 && c.status == .ok { done = true } }
        }
        #expect(done)
        #expect(h.counters[.interruptWaits] >= 1)
    }

    /// `dma_chains` counts doorbells, not messages: sends made while a chain runs wait for it and
    /// then start together as one chain (what `tx_pkts / dma_chains`, the mean chain length, shows).
    @Test func sendsQueuedWhileAChainRunsStartAsOneChain() throws {
        let held = Mutex<(armed: Bool, entered: Bool, open: Bool)>((false, false, false))
        let pair = try Pair("edma-backend-chains", qps: 1) { d, _ in
            guard d == .read, held.withLock({ $0.armed }) else { return }
            held.withLock { $0.entered = true; $0.armed = false }
            while !held.withLock({ $0.open }) { usleep(100) }
        }
        #expect(pair.linkUp())
        let h = pair.host.queuePairs[0], e = pair.endpoint.queuePairs[0]
        let buffers = try e.makeBuffers(count: 8, length: 512)
        let source = try h.makeBuffers(count: 1, length: 64)
        for i in 0..<8 { try e.postReceive(buffers[i], cookie: UInt64(i)) }
        #expect(Self.awaitPostedBuffers(8, sender: h, receiver: e, until: .now + .seconds(10)))
        let chains = h.counters[.dmaChains]
        held.withLock { $0.armed = true }
        try h.send(source[0], length: 64, cookie: 100)
        #expect(h.counters[.dmaChains] == chains + 1)
        for _ in 0..<50_000 where !held.withLock({ $0.entered }) { usleep(100) }
        #expect(held.withLock { $0.entered }, "the engine model never started the copy")
        // Three batches of two while the first chain is held in the engine: queued, not started.
        for b in 0..<3 {
            let n = try h.sendBatch(count: 2, buffers: { i in (source[0], 64, UInt64(b * 2 + i)) })
            #expect(n == 2)
        }
        #expect(h.counters[.dmaChains] == chains + 1)
        held.withLock { $0.open = true }
        var sent = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while sent < 7 && ContinuousClock.now < deadline {
            h.poll { c in if c.kind == .send && c.status == .ok { sent += 1 } }
            e.poll { _ in }
        }
        #expect(sent == 7)
        #expect(h.counters[.dmaChains] == chains + 2, "the six queued sends started as \(h.counters[.dmaChains] - chains - 1) chains")
    }

    @Test(arguments: [1, 4])
    func messagesArriveIntactEndpointToHost(qps: Int) throws {
        let pair = try Pair("edma-backend-e2h-\(qps)", qps: qps)
        #expect(pair.linkUp())
        try Self.transfer(from: pair.endpoint, to: pair.host, count: 120, mtu: 4096)
    }

    /// An abort injected in the engine at element 3 of a ten-message chain fails exactly that message
    /// back to the client (`aborted`); the others arrive, in order, and the queue pair goes on.
    @Test func anInjectedAbortFailsExactlyOneSend() throws {
        let pair = try Pair("edma-backend-abort", qps: 1)
        #expect(pair.linkUp())
        let model = try pair.endpointDevice.startEDMAModel()
        let from = pair.host.queuePairs[0], to = pair.endpoint.queuePairs[0]
        let rx = Buffers(count: 16, size: 4096)
        for s in 0..<16 { unsafe try to.postReceive(rx.buffer(s), cookie: UInt64(s)) }
        // The receiver offers its buffers when it polls.
        let deadline = ContinuousClock.now + .seconds(10)
        guard Self.awaitPostedBuffers(10, sender: from, receiver: to, until: deadline) else { Issue.record("the endpoint posted no buffers"); return }
        let source = try from.makeBuffers(count: 10, length: 4096)
        for m in 0..<10 { for i in 0..<100 { unsafe source[m].bytes[i] = UInt8(truncatingIfNeeded: m * 31 + i) } }
        // The host drives the endpoint's read channel 0 for queue pair 0.
        model.injectAbort(direction: .read, channel: 0, element: 3)
        let n = try from.sendBatch(count: 10, buffers: { m in (source[m], 100, UInt64(m)) })
        #expect(n == 10)
        var outcomes: [UInt64: Completion.Status] = [:]
        var arrived: [[UInt8]] = []
        while outcomes.count < 10 || arrived.count < 9 {
            guard ContinuousClock.now < deadline else { Issue.record("outcomes \(outcomes), arrived \(arrived.count)"); return }
            from.poll { c in if c.kind == .send { outcomes[c.cookie] = c.status } }
            to.poll { c in if c.kind == .receive, c.status == .ok { arrived.append(rx.bytes(Int(c.cookie), c.length)) } }
        }
        #expect(outcomes[3] == .aborted)
        #expect(outcomes.filter { $0.value == .ok }.count == 9)
        #expect(arrived == [0, 1, 2, 4, 5, 6, 7, 8, 9].map { m in (0..<100).map { UInt8(truncatingIfNeeded: m * 31 + $0) } })
        #expect(from.counters[.txErrAbort] == 1)
        // The channel recovered: the next message goes through.
        try from.send(source[0], length: 100, cookie: 99)
        var again = false
        while !again {
            guard ContinuousClock.now < deadline else { Issue.record("no message after the abort"); return }
            from.poll { _ in }
            to.poll { c in if c.kind == .receive, c.status == .ok { again = rx.bytes(Int(c.cookie), c.length) == arrived[0] } }
        }
    }

    /// An engine that stops answering (its registers read all ones) is a link fault: the queue pair
    /// goes down, counts it, and returns every in-flight send; nothing is lost silently.
    @Test func anEngineThatStopsIsALinkFault() throws {
        let pair = try Pair("edma-backend-fault", qps: 1)
        #expect(pair.linkUp())
        let from = pair.host.queuePairs[0], to = pair.endpoint.queuePairs[0]
        let rx = Buffers(count: 8, size: 4096)
        for s in 0..<8 { unsafe try to.postReceive(rx.buffer(s), cookie: UInt64(s)) }
        let deadline = ContinuousClock.now + .seconds(10)
        guard Self.awaitPostedBuffers(4, sender: from, receiver: to, until: deadline) else { Issue.record("the endpoint posted no buffers"); return }
        try pair.endpointDevice.startEDMAModel().stop()
        let payload = [UInt8](repeating: 0x5A, count: 512)
        for m in 0..<4 { unsafe try payload.withUnsafeBytes { unsafe try from.send($0, cookie: UInt64(m)) } }
        var returned: [UInt64: Completion.Status] = [:]
        var down = false
        while !down {
            guard ContinuousClock.now < deadline else { Issue.record("no link-down after the engine stopped; \(returned)"); return }
            from.poll { c in
                if c.kind == .send { returned[c.cookie] = c.status }
                if c.kind == .linkDown { down = true }
            }
        }
        #expect(returned.count == 4 && returned.values.allSatisfy { $0 == .linkDown })
        #expect(from.counters[.dmaFaults] >= 1)
    }

    /// Link down mid-transfer returns every in-flight send and posted receive (nothing lost silently).
    @Test func closingThePeerReturnsEveryBuffer() throws {
        let pair = try Pair("edma-backend-down", qps: 1)
        #expect(pair.linkUp())
        let to = pair.endpoint.queuePairs[0]
        let rx = Buffers(count: 8, size: 4096)
        for s in 0..<8 { unsafe try to.postReceive(rx.buffer(s), cookie: UInt64(s)) }
        to.poll { _ in }
        pair.host.close()
        var returned = 0, down = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !down {
            guard ContinuousClock.now < deadline else { Issue.record("no link-down event; \(returned) returned"); return }
            to.poll { c in
                if c.kind == .receive { #expect(c.status == .linkDown); returned += 1 }
                if c.kind == .linkDown { down = true }
            }
            TransportThread.sleep(.microseconds(100))
        }
        #expect(returned == 8)
    }

    @Test func theRegistryOffersEDMAOnlyWhereAnEDMAIsReachable() throws {
        #expect(TransportBackends.names.prefix(2) == ["host", "edma"])
        struct NameOf: TransportBackendVisitor {
            typealias Result = String
            func visit<B: TransportBackend>(_ backend: B.Type, options: B.Options) throws -> String { B.name }
        }
        #expect(try TransportBackends.visit("edma", device: MockNTBDevice.self, NameOf()) == "edma")
        #expect(try TransportBackends.visit("host", device: IVSHMEMDevice.self, NameOf()) == "host")
        #expect { try TransportBackends.visit("edma", device: IVSHMEMDevice.self, NameOf()) } throws: {
            "\($0)".contains("needs a DesignWare eDMA") && "\($0)".contains("use --backend host")
        }
    }

    @Test func moreQueuePairsThanDataChannelsIsRefusedClearly() throws {
        let link = try LinkFixture("edma-backend-qps", windowSize: 1 << 20)
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        let endpoint = try EDMATransport(device: ep, configuration: LinkFixture.configuration(qps: 5))
        let h = try EDMATransport(device: host, configuration: LinkFixture.configuration(qps: 5))
        defer { h.close(); endpoint.close() }
        #expect { try h.waitForLink(timeout: .seconds(3)) } throws: { "\($0)".contains("one queue pair per eDMA data channel") }
    }
}
