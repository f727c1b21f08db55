import Testing
import Foundation
import NTBHardware
import NTBMock
import PCIKit
@testable import NTBTransport
#if canImport(Glibc)
import Glibc
#endif

typealias HostTransport = Transport<MockNTBDevice, HostBackend>

/// A mock link in /dev/shm for one test, both sides opened in this process.
final class LinkFixture {
    let dir: String
    init(_ name: String, windowSize: Int = 1 << 20) throws {
        dir = "/dev/shm/ntb-transport-test-\(name)-\(getpid())"
        var c = MockLinkConfiguration()
        c.memoryWindowSize = windowSize
        c.hostRAMSize = 16 << 20
        c.endpointRAMSize = 16 << 20
        c.heartbeatMilliseconds = 5
        try MockLink.create(at: dir, configuration: c)
    }
    deinit { try? MockLink.remove(at: dir, force: true); try? FileManager.default.removeItem(atPath: dir) }

    func open(_ role: MockRole) throws -> MockNTBDevice {
        try MockNTBDevice(directory: dir, role: role, options: .fast)
    }

    static func configuration(qps: Int? = 1, mtu: Int = 4096) -> TransportConfiguration {
        var c = TransportConfiguration()
        c.queuePairs = qps
        c.mtu = mtu
        c.linkMonitorInterval = .microseconds(200)
        return c
    }
}

/// Polls queue pairs until `done` or a timeout; every completion goes to `sink`.
@discardableResult
func drive(_ qps: [QueuePair<MockNTBDevice, HostBackend>], timeout: Duration = .seconds(10),
           sink: (Int, Completion) -> Void = { _, _ in }, until done: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while !done() {
        if clock.now >= deadline { return false }
        var n = 0
        for (i, qp) in qps.enumerated() { n += qp.poll { sink(i, $0) } }
        if n == 0 { TransportThread.sleep(.microseconds(50)) }
    }
    return true
}

/// Receive buffers owned by a test.
@safe
final class Buffers {
    let raw: UnsafeMutableRawPointer
    let size: Int, count: Int
    init(count: Int, size: Int) {
        self.count = count; self.size = size
        unsafe raw = .allocate(byteCount: count * size, alignment: 64)
    }
    deinit { unsafe raw.deallocate() }
    func buffer(_ i: Int) -> UnsafeMutableRawBufferPointer { unsafe UnsafeMutableRawBufferPointer(start: raw + i * size, count: size) }
    func bytes(_ i: Int, _ n: Int) -> [UInt8] { unsafe Array(UnsafeRawBufferPointer(start: raw + i * size, count: n)) }
}

func send(_ qp: QueuePair<MockNTBDevice, HostBackend>, _ bytes: [UInt8], cookie: UInt64) throws(TransportError) {
    let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
    defer { unsafe b.deallocate() }
    unsafe b.copyBytes(from: bytes)
    try unsafe qp.send(UnsafeRawBufferPointer(rebasing: b[0..<bytes.count]), cookie: cookie)
}

@Suite(.serialized) struct TransportLinkTests {
    func linkedPair(_ f: LinkFixture, qps: Int? = 1) throws -> (HostTransport, HostTransport) {
        let ep = try HostTransport(device: try f.open(.endpoint), configuration: LinkFixture.configuration(qps: qps))
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration(qps: qps))
        let all = host.queuePairs + ep.queuePairs
        #expect(drive(all) { all.allSatisfy(\.isLinkUp) }, "queue pairs did not link")
        return (host, ep)
    }

    @Test func messagesFlowBothWaysAndSendsCompleteWhenConsumed() throws {
        let f = try LinkFixture("flow")
        let (host, ep) = try linkedPair(f)
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        #expect(h.maxPayload == 4096 - 12)
        let rx = Buffers(count: 8, size: 4096)
        for i in 0..<8 { try unsafe e.postReceive(rx.buffer(i), cookie: UInt64(100 + i)) }
        for i in 0..<5 { try send(h, Array(repeating: UInt8(i), count: 10 + i), cookie: UInt64(i)) }
        #expect(h.sendsInFlight == 5)
        var got: [Completion] = [], sent: [Completion] = []
        #expect(drive([h, e], sink: { q, c in if q == 1, c.kind == .receive { got.append(c) }; if q == 0, c.kind == .send { sent.append(c) } }) { got.count == 5 && sent.count == 5 })
        #expect(got.map(\.cookie) == [100, 101, 102, 103, 104])
        #expect(got.map(\.length) == [10, 11, 12, 13, 14])
        #expect(got.allSatisfy { $0.status == .ok })
        for i in 0..<5 { #expect(rx.bytes(i, 10 + i) == Array(repeating: UInt8(i), count: 10 + i)) }
        #expect(sent.map(\.cookie) == [0, 1, 2, 3, 4])
        #expect(h.counters[.txPackets] == 5 && e.counters[.rxPackets] == 5)
        #expect(e.counters[.rxBytes] == 60)
        // Errors a client sees.
        #expect(throws: TransportError.emptyMessage) { try send(h, [], cookie: 9) }
        #expect(throws: TransportError.messageTooLarge(length: 5000, maxPayload: 4084)) { try send(h, Array(repeating: 0, count: 5000), cookie: 9) }
        // And back the other way, with a buffer too small: rx_err_oflow, the buffer returns with .overflow.
        let small = Buffers(count: 1, size: 4)
        try unsafe h.postReceive(small.buffer(0), cookie: 7)
        try send(e, [1, 2, 3, 4, 5, 6], cookie: 1)
        var back: Completion?
        #expect(drive([h, e], sink: { q, c in if q == 0, c.kind == .receive { back = c } }) { back != nil })
        #expect(back?.status == .overflow && back?.cookie == 7)
        #expect(h.counters[.rxErrOverflow] == 1)
    }

    /// Zero-copy receive: frames go to posted buffers first; the rest are handed over where they lie
    /// in the receive ring, in order, and the ring space comes back to the sender.
    @Test func framesWithoutAPostedBufferAreHandedOverInPlace() throws {
        let f = try LinkFixture("in-place")
        let (host, ep) = try linkedPair(f)
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        let rx = Buffers(count: 1, size: 4096)
        try unsafe e.postReceive(rx.buffer(0), cookie: 42)
        // More messages than the ring holds, so the sender needs the frames released in place.
        let total = Int(h.counters[.txMaxEntry]) * 2
        var sent = 0, inPlace: [[UInt8]] = [], posted: [Completion] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while inPlace.count + posted.count < total {
            guard ContinuousClock.now < deadline else { Issue.record("received \(inPlace.count) in place, \(posted.count) posted of \(total)"); return }
            while sent < total {
                var full = false
                do throws(TransportError) {
                    try send(h, Array(repeating: UInt8(truncatingIfNeeded: sent), count: 1 + sent % 50), cookie: UInt64(sent))
                } catch {
                    guard case .ringFull = error else { throw error }
                    full = true
                }
                if full { break }
                sent += 1
            }
            h.poll { _ in }
            unsafe e.poll(inPlace: { unsafe inPlace.append(Array($0)) }) { c in if c.kind == .receive { posted.append(c) } }
        }
        #expect(posted.map(\.cookie) == [42] && posted.first?.length == 1)
        #expect(rx.bytes(0, 1) == [0])
        #expect(inPlace == (1..<total).map { Array(repeating: UInt8(truncatingIfNeeded: $0), count: 1 + $0 % 50) })
        #expect(e.counters[.rxPackets] == UInt64(total) && e.counters[.rxMemcpy] == 1)
    }

    @Test func ringFullIsReportedAndClears() throws {
        let f = try LinkFixture("full")
        let (host, ep) = try linkedPair(f)
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        var sent = 0
        while true {
            do { try send(h, [1], cookie: UInt64(sent)); sent += 1 } catch .ringFull { break }
        }
        // N − 1 frames in flight (one frame always stays free in the v4 ring).
        #expect(sent == Int(h.counters[.txMaxEntry]) - 1)
        #expect(h.counters[.txRingFull] == 1)
        let rx = Buffers(count: sent, size: 64)
        for i in 0..<sent { try unsafe e.postReceive(rx.buffer(i), cookie: UInt64(i)) }
        var received = 0
        #expect(drive([h, e], sink: { q, c in if q == 1, c.kind == .receive { received += 1 } }) { received == sent && h.sendsInFlight == 0 })
        try send(h, [2], cookie: 99)
    }

    @Test func handshakeRefusesADifferentQueuePairCount() throws {
        let f = try LinkFixture("qps")
        let ep = try HostTransport(device: try f.open(.endpoint), configuration: LinkFixture.configuration(qps: 2))
        defer { ep.close() }
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration(qps: 1))
        defer { host.close() }
        // A refused value is a peer condition: negotiation goes on until the timeout, which then names it.
        let clock = ContinuousClock()
        let start = clock.now
        #expect(throws: TransportError.handshakeMismatch(field: "NUM_QPS", ours: 1, peers: 2)) {
            try host.waitForLink(timeout: .milliseconds(300))
        }
        #expect(clock.now - start >= .milliseconds(300))
        #expect(host.handshakeRejections >= 2)
        #expect(host.linkState == .negotiating)
        #expect(host.linkStateReason?.contains("queue pair count") == true)
        let message = TransportError.handshakeMismatch(field: "NUM_QPS", ours: 1, peers: 2).description
        #expect(message.contains("queue pair count"))
    }

    @Test func handshakeRefusesVersion3() throws {
        let f = try LinkFixture("v3")
        let peer = try f.open(.endpoint)
        try peer.enableLink()
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration())
        defer { host.close() }
        // A version-3 peer: sizes, NUM_MWS, NUM_QPS, then VERSION = 3 into our scratchpads.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(10))
        var thrown: TransportError?
        while thrown == nil && clock.now < deadline {
            if peer.isLinkUp {
                peer.writePeerScratchpad(4, 0); peer.writePeerScratchpad(5, 1 << 20)
                peer.writePeerScratchpad(3, UInt32(host.memoryWindowCount)); peer.writePeerScratchpad(2, 1)
                peer.writePeerScratchpad(0, 3)
            }
            do { try host.waitForLink(timeout: .milliseconds(50)) } catch let e { if case .handshakeMismatch = e { thrown = e } }
        }
        #expect(thrown == .handshakeMismatch(field: "VERSION", ours: 4, peers: 3))
        #expect(thrown?.description.contains("version 3") == true)
        #expect(host.linkState == .negotiating)
    }

    @Test func peerWritingGarbageIsCountedNotTrusted() throws {
        let f = try LinkFixture("garbage")
        let (host, ep) = try linkedPair(f)
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0]
        let rx = Buffers(count: 2, size: 4096)
        for i in 0..<2 { try unsafe h.postReceive(rx.buffer(i), cookie: UInt64(i)) }
        // The endpoint forges frame 0 in the host's memory through its outbound window 0 (QP 0 area at
        // offset 0, frame size 4096): len far beyond the frame, ver 0, DONE.
        let window = try ep.device.peerMemoryWindow(0)
        window.store32(0xFFFF_0000, at: 4096 - 12 + 4)
        window.store32(0, at: 4096 - 12)
        window.store32(1, at: 4096 - 12 + 8)
        var c: Completion?
        #expect(drive([h], sink: { _, x in if x.kind == .receive { c = x } }) { c != nil })
        #expect(c?.status == .invalidFrame && c?.cookie == 0)
        #expect(h.counters[.rxErrLength] == 1)
        // A stale version at the next frame: counted once, not consumed, nothing delivered.
        window.store32(8, at: 8192 - 12 + 4)
        window.store32(77, at: 8192 - 12)
        window.store32(1, at: 8192 - 12 + 8)
        for _ in 0..<10 { h.poll { x in Issue.record("unexpected \(x)") } }
        #expect(h.counters[.rxErrVersion] == 1)
        #expect(h.postedReceives == 1)
        // An out-of-range tail (rx_info.entry) written into the host's inbound area: ignored and counted.
        try send(h, [1], cookie: 5)
        let area = (1 << 20) - 4   // one queue pair per window: rx_info at the end of the 1 MiB window
        window.store32(0xDEAD, at: area)
        _ = window
        _ = h.poll { _ in }
        // The host reads its tail in its own memory, which the endpoint writes through the window.
        #expect(h.counters[.txErrIndex] >= 1)
        #expect(h.sendsInFlight == 1)
    }

    @Test func linkDownMidTransferReturnsEveryBuffer() throws {
        let f = try LinkFixture("down")
        var (host, ep): (HostTransport?, HostTransport?) = try linkedPair(f)
        defer { host?.close() }
        let h = host!.queuePairs[0]
        let rx = Buffers(count: 6, size: 4096)
        for i in 0..<6 { try unsafe h.postReceive(rx.buffer(i), cookie: UInt64(100 + i)) }
        for i in 0..<4 { try send(h, [UInt8(i)], cookie: UInt64(i)) }   // the endpoint never consumes them
        // The peer goes away without a word (its side stops, as a hung or killed process: no LINK_DOWN frame).
        ep!.device.close()
        var completions: [Completion] = []
        #expect(drive([h], sink: { _, c in completions.append(c) }) { completions.contains { $0.kind == .linkDown } })
        let sends = completions.filter { $0.kind == .send }
        let receives = completions.filter { $0.kind == .receive }
        #expect(sends.map(\.cookie).sorted() == [0, 1, 2, 3])
        #expect(sends.allSatisfy { $0.status == .linkDown })
        #expect(receives.map(\.cookie).sorted() == [100, 101, 102, 103, 104, 105])
        #expect(receives.allSatisfy { $0.status == .linkDown })
        #expect(completions.last?.kind == .linkDown)
        #expect(throws: TransportError.linkDown(queuePair: 0)) { try send(h, [1], cookie: 9) }
        ep?.close()
        ep = nil
    }

    @Test func peerShutdownSendsLinkDownAndARestartedPeerRelinks() throws {
        let f = try LinkFixture("restart")
        var (host, ep): (HostTransport?, HostTransport?) = try linkedPair(f)
        defer { host?.close() }
        let h = host!.queuePairs[0]
        let rx = Buffers(count: 3, size: 4096)
        for i in 0..<3 { try unsafe h.postReceive(rx.buffer(i), cookie: UInt64(i)) }
        // Clean close: the peer's queue pair sends LINK_DOWN, then its link goes down.
        ep!.close()
        ep!.device.close()
        ep = nil
        var completions: [Completion] = []
        #expect(drive([h], sink: { _, c in completions.append(c) }) { completions.contains { $0.kind == .linkDown } })
        #expect(completions.filter { $0.kind == .receive && $0.status == .linkDown }.count == 3)
        // A new endpoint process (same directory and role) sets up again; traffic resumes.
        let ep2 = try HostTransport(device: try f.open(.endpoint), configuration: LinkFixture.configuration())
        defer { ep2.close() }
        let e = ep2.queuePairs[0]
        #expect(drive([h, e], timeout: .seconds(20)) { h.isLinkUp && e.isLinkUp }, "no relink after the peer restarted")
        for i in 0..<3 { try unsafe h.postReceive(rx.buffer(i), cookie: UInt64(10 + i)) }
        try send(e, Array("again".utf8), cookie: 1)
        var got: Completion?
        #expect(drive([h, e], sink: { q, c in if q == 0, c.kind == .receive { got = c } }) { got != nil })
        #expect(got?.status == .ok && got?.length == 5)
        #expect(rx.bytes(0, 5) == Array("again".utf8))
        #expect(h.counters[.linkUps] == 2 && h.counters[.linkDowns] == 1)
    }

    @Test(arguments: [TransportConfiguration.WaitMode.polling, .interrupt, .adaptive])
    func waitReturnsWhenAMessageArrivesAndTimesOutOtherwise(mode: TransportConfiguration.WaitMode) throws {
        let f = try LinkFixture("wait-\(mode)")
        var c = LinkFixture.configuration()
        c.waitMode = mode
        let ep = try HostTransport(device: try f.open(.endpoint), configuration: c)
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration())
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        #expect(drive([h, e]) { h.isLinkUp && e.isLinkUp })
        let rx = Buffers(count: 1, size: 4096)
        try unsafe e.postReceive(rx.buffer(0), cookie: 1)
        let clock = ContinuousClock()
        var start = clock.now
        #expect(e.wait(timeout: .milliseconds(30)) == false)
        #expect(clock.now - start >= .milliseconds(30))
        let sender = UncheckedSendableBox(h)
        let t = try TransportThread(name: "late-sender") {
            TransportThread.sleep(.milliseconds(20))
            try? send(sender.value, [42], cookie: 1)
        }
        start = clock.now
        #expect(e.wait(timeout: .seconds(5)))
        #expect(clock.now - start < .seconds(2))
        t.join()
        var got: Completion?
        #expect(drive([e]) { e.poll { if $0.kind == .receive { got = $0 } } > 0 || got != nil })
        #expect(got?.length == 1)
        if mode == .interrupt { #expect(e.counters[.interruptWaits] >= 1) }
        if mode == .polling { #expect(e.counters[.pollWaits] >= 1) }
    }

    /// One thread driving several queue pairs sleeps once for all of them: a message on any one of
    /// them ends the wait (and only a message: the others stay quiet).
    @Test(arguments: [TransportConfiguration.WaitMode.polling, .interrupt, .adaptive])
    func waitOnSeveralQueuePairsReturnsWhenAnyOfThemHasAMessage(mode: TransportConfiguration.WaitMode) throws {
        let f = try LinkFixture("waitany-\(mode)")
        var c = LinkFixture.configuration(qps: 4)
        c.waitMode = mode
        let ep = try HostTransport(device: try f.open(.endpoint), configuration: c)
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration(qps: 4))
        defer { host.close(); ep.close() }
        let all = host.queuePairs + ep.queuePairs
        #expect(drive(all) { all.allSatisfy(\.isLinkUp) })
        let rx = Buffers(count: 4, size: 4096)
        for q in 0..<4 { try unsafe ep.queuePairs[q].postReceive(rx.buffer(q), cookie: UInt64(q)) }
        let clock = ContinuousClock()
        var start = clock.now
        #expect(QueuePair.wait(anyOf: ep.queuePairs, timeout: .milliseconds(30)) == false)
        #expect(clock.now - start >= .milliseconds(30))
        let sender = UncheckedSendableBox(host.queuePairs[2])
        let t = try TransportThread(name: "late-sender") {
            TransportThread.sleep(.milliseconds(20))
            try? send(sender.value, [7, 7], cookie: 1)
        }
        start = clock.now
        #expect(QueuePair.wait(anyOf: ep.queuePairs, timeout: .seconds(5)))
        #expect(clock.now - start < .seconds(2))
        t.join()
        var got: [Int] = []
        #expect(drive(ep.queuePairs, sink: { q, c in if c.kind == .receive { got.append(q) } }) { !got.isEmpty })
        #expect(got == [2])
        if mode == .interrupt { #expect(ep.queuePairs[0].counters[.interruptWaits] >= 1) }
    }

    @Test func severalQueuePairsSpreadOverWindows() throws {
        let f = try LinkFixture("multi")
        let (host, ep) = try linkedPair(f, qps: 4)
        defer { host.close(); ep.close() }
        #expect(host.queuePairCount == 4 && host.memoryWindowCount == 2)
        let rx = Buffers(count: 4, size: 4096)
        for q in 0..<4 { try unsafe ep.queuePairs[q].postReceive(rx.buffer(q), cookie: UInt64(q)) }
        for q in 0..<4 { try send(host.queuePairs[q], [UInt8(q), 42], cookie: UInt64(q)) }
        var got = Set<Int>()
        #expect(drive(ep.queuePairs, sink: { q, c in if c.kind == .receive, c.status == .ok, Int(c.cookie) == q { got.insert(q) } }) { got.count == 4 })
        for q in 0..<4 { #expect(rx.bytes(q, 2) == [UInt8(q), 42]) }
    }
}

struct UncheckedSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
