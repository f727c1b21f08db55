import Foundation
import NTBMock
import NTBTools
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

    /// A frame backend's port set hands out a new port per session (it takes its buffers back when it
    /// goes); a keeper keeps one set per transport.
    @Test func aKeeperHoldsOneSetPerTransport() throws {
        let link = try ToolsLink()
        defer { link.close() }
        let keeper = PortKeeper()
        let a = keeper.ports(for: link.host), b = keeper.ports(for: link.host), c = keeper.ports(for: link.endpoint)
        #expect(a === b && ObjectIdentifier(a) != ObjectIdentifier(c))
        let first = try a.port(0)
        let second = try a.port(0)
        #expect(first !== second)
        keeper.close()
    }
}
