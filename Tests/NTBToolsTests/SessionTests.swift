import Foundation
import NTBMock
@testable import NTBTools
import NTBTransport
import Synchronization
import Testing

/// The session protocol as a library: a responder on one side, perf, pingpong and bye from the other,
/// both in this process over the host backend.
@Suite(.serialized) struct SessionTests {
    @Test func perfAndPingpongAgainstAResponder_thenByeEndsIt() throws {
        let link = try ToolsLink()
        defer { link.close() }
        nonisolated(unsafe) let responderPorts = PortSet(link.endpoint)   // used by the responder thread alone
        let served = Mutex<Result<Void, ToolError>?>(nil)
        let responder = Thread {
            let r: Result<Void, ToolError>
            do { unsafe try Responder(sessionTimeout: .seconds(20), log: { _ in }).run(responderPorts); r = .success(()) }
            catch { r = .failure(ToolError("\(error)")) }
            served.withLock { $0 = r }
        }
        responder.start()
        let ports = PortSet(link.host)
        let perf = try PerfSeries(runs: [
            PerfInitiator(messageSize: 1000, totalBytes: 2_000_000, duration: nil, queuePairs: 1, showProgress: false),
            PerfInitiator(messageSize: 64, totalBytes: 64_000, duration: nil, queuePairs: 1, batch: 7, showProgress: false),
        ]).run(ports)
        #expect(perf.map(\.messages) == [2000, 1000])
        #expect(perf.map(\.bytes) == [2_000_000, 64_000])
        #expect(perf[1].batch == 7 && perf[0].batch == 32 && perf.allSatisfy { $0.backend == "host" })
        let latency = try PingpongInitiator(messageSize: 64, roundTrips: 300, warmup: 10, waitMode: "polling").run(ports)
        #expect(latency.roundTrips == 300 && latency.p50 > 0 && latency.p50 <= latency.max)
        try ByeInitiator().run(ports)
        while served.withLock({ $0 == nil }) { usleep(1000) }
        #expect(throws: Never.self) { try served.withLock { $0! }.get() }
    }

    /// Bad requests are errors that say what to do, not traps.
    @Test func perfRefusesWhatTheTransportCannotDo() throws {
        let link = try ToolsLink()
        defer { link.close() }
        let ports = PortSet(link.host)
        let tooMany = #expect(throws: ToolError.self) {
            try PerfInitiator(messageSize: 64, totalBytes: 64, duration: nil, queuePairs: 2, showProgress: false).run(ports)
        }
        #expect(tooMany?.description == "perf wants 2 queue pairs but the transport has 1; give both sides --qps 2")
        let uneven = #expect(throws: ToolError.self) {
            try PerfInitiator(messageSize: 64, totalBytes: 64, duration: nil, queuePairs: 3, showProgress: false, perThread: 2).run(ports)
        }
        #expect(uneven?.description == "perf: 3 queue pairs are not a multiple of 2 queue pairs per thread")
        let tooBig = #expect(throws: ToolError.self) {
            try PerfInitiator(messageSize: 1 << 20, totalBytes: 64, duration: nil, queuePairs: 1, showProgress: false).run(ports)
        }
        #expect(tooBig?.description.hasPrefix("--size 1048576 does not fit a frame (1...") == true)
    }

    /// A sender whose peer stops consuming does not spin forever: the queue pair that took nothing
    /// for the stall limit ends the run with an error naming it and its counters.
    @Test func perfSendLoopEndsWhenThePeerStopsConsuming() throws {
        let link = try ToolsLink()
        defer { link.close() }
        let port = try PortSet(link.host).port(0)   // the endpoint never polls: its ring fills
        let start = ContinuousClock.now
        let error = #expect(throws: ToolError.self) {
            try PerfInitiator.sendLoop([port], size: 256, count: 1_000_000, deadline: nil, batch: 8, progress: false, stallLimit: .milliseconds(250))
        }
        #expect(ContinuousClock.now - start < .seconds(20))
        let text = error?.description ?? ""
        #expect(text.hasPrefix("perf: queue pair 0 took no message for 0.25 s (sent "))
        #expect(text.contains(" of 1000000, free_tx 0, tx_ring_full ") && text.contains(", tx_pkts "))
        #expect(text.hasSuffix("the peer stopped consuming it; see `ntb-transport stats` on both sides"))
        #expect(port.qp.counters[.txRingFull] > 0)
    }

    /// `serve` keeps serving: a client whose first message is data, then one that asks for more queue
    /// pairs than we run, each end their session with one log line; the good client after them is
    /// served as usual.
    @Test func theResponderOutlivesABadAndAMismatchedClient() throws {
        let link = try ToolsLink()
        defer { link.close() }
        nonisolated(unsafe) let responderPorts = PortSet(link.endpoint)   // used by the responder thread alone
        let lines = Mutex<[String]>([])
        let served = Mutex<Result<Void, ToolError>?>(nil)
        let responder = Thread {
            let r: Result<Void, ToolError>
            do { unsafe try Responder(sessionTimeout: .seconds(20), log: { line in lines.withLock { $0.append(line) } }).run(responderPorts); r = .success(()) }
            catch { r = .failure(ToolError("\(error)")) }
            served.withLock { $0 = r }
        }
        responder.start()
        let clients = PortSet(link.host)
        let port = try clients.port(0)
        // A bad client: data where a session starts, several messages of it.
        let junk = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 64)
        defer { unsafe junk.deallocate() }
        unsafe junk.initializeMemory(as: UInt8.self, repeating: 0xA5)
        for _ in 0..<5 { unsafe try port.send(UnsafeRawBufferPointer(junk)) }
        // The responder drops the rest of that session before it logs it; the next client comes after.
        let logged = ContinuousClock.now + .seconds(20)
        while lines.withLock({ !$0.contains { $0.hasPrefix("session refused") } }) && ContinuousClock.now < logged { usleep(1000) }
        // A mismatched client: perf on 4 queue pairs (we run 1); the responder answers with a failure.
        try port.send(ControlMessage(.startPerf, 64, 10, 4, 8))
        let refusal = try port.receiveControl(timeout: .seconds(20))
        #expect(refusal.kind == .result && refusal.status != 0)
        // A good client.
        let perf = try PerfInitiator(messageSize: 256, totalBytes: 256_000, duration: nil, queuePairs: 1, showProgress: false).run(clients)
        #expect(perf.messages == 1000 && perf.bytes == 256_000)
        try ByeInitiator().run(clients)
        let deadline = ContinuousClock.now + .seconds(30)
        while served.withLock({ $0 == nil }) && ContinuousClock.now < deadline { usleep(1000) }
        let outcome = served.withLock { $0 }
        #expect(outcome != nil)
        #expect(throws: Never.self) { try outcome?.get() }
        let log = lines.withLock { $0 }.filter { !$0.hasPrefix("serving ") }
        #expect(log == ["session refused: expected a control message from the peer, got 100 bytes of data; restart both sides",
                        "session ended: perf: the peer asked for 4 queue pairs; we run 1 (give both sides the same --qps)"])
    }

    /// A port set hands every session the same port of a queue pair (its buffers posted once), with
    /// every receive buffer posted again after the queue pair's link went down in between.
    @Test func aPortSetKeepsOnePortPerQueuePair() throws {
        let link = try ToolsLink()
        defer { link.close() }
        let set = PortSet(link.host)
        let first = try set.port(0)
        #expect(try set.port(0) === first)
        #expect(first.qp.postedReceives == first.bufferCount)
        first.qp.removeReceives()
        first.linkLost = true
        let again = try set.port(0)
        #expect(again === first && !again.linkLost)
        #expect(again.qp.postedReceives == again.bufferCount)
    }
}
