import Foundation
import NTBMock
import NTBTools
import Synchronization
import Testing

@Suite(.serialized) struct DoorbellLatencyTests {
    /// Both sides in this process: the endpoint answers every doorbell, the host records each round
    /// trip (and in poll mode the scratchpad baseline), then tells the endpoint it is done.
    @Test(arguments: [DoorbellLatency.Mode.poll, .interrupt])
    func theHostRecordsEveryRoundTripAndTheEndpointAnswersEach(mode: DoorbellLatency.Mode) throws {
        let dir = "/dev/shm/ntb-tools-latency-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var c = MockLinkConfiguration()
        c.msiDoorbell = true
        try MockLink.create(at: dir, configuration: c)
        defer { try? MockLink.remove(at: dir, force: true) }
        let endpoint = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
        let host = try MockNTBDevice(directory: dir, role: .host, options: .fast)
        defer { host.close(); endpoint.close() }
        let latency = DoorbellLatency(mode: mode, count: 200, warmup: 20)
        let answered = Mutex<Int?>(nil)
        let responder = Thread { let n = latency.respond(endpoint); answered.withLock { $0 = n } }
        responder.start()
        let report = try latency.measure(host, peerPresent: { host.link.isPeerPresent })
        while answered.withLock({ $0 == nil }) { usleep(1000) }
        #expect(report.doorbell.totalCount == 200)
        #expect(report.doorbell.min > 0)
        #expect(answered.withLock { $0 } == 220)
        #expect((report.baseline?.totalCount ?? 0) == (mode == .poll ? 200 : 0))
    }

    /// An endpoint that does not answer (no `mock latency` on its side): the host fails, naming the fix.
    @Test func aHostWhoseEndpointDoesNotAnswerGetsAnErrorNamingTheFix() throws {
        let dir = "/dev/shm/ntb-tools-latency-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try MockLink.create(at: dir, configuration: MockLinkConfiguration())
        defer { try? MockLink.remove(at: dir, force: true) }
        let endpoint = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
        let host = try MockNTBDevice(directory: dir, role: .host, options: .fast)
        defer { host.close(); endpoint.close() }
        let error = #expect(throws: ToolError.self) {
            try DoorbellLatency(mode: .poll, count: 1, warmup: 0).measure(host, peerPresent: { true })
        }
        #expect(error?.description == "no answer to doorbell 0 within 2 s; is `mock latency --role endpoint` running on this link?")
    }
}
