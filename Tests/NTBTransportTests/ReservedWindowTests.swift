import Testing
import NTBHardware
import NTBMock
import PCIKit
@testable import NTBTransport

/// The host wire format with the last memory window kept back, as the edma backend keeps it for the
/// eDMA window (RFC v3 patch 25, `mw_count -= 1`): the transport's own windows are the ones before it.
struct LastWindowReservingBackend: TransportBackend {
    typealias Channel = HostChannel
    static let name = "test-reserving"
    static let summary = "host frames, last memory window reserved"
    static var reservedMemoryWindows: Int { 1 }
    let inner: HostBackend
    let windows: Int
    init<Device: NTBDevice>(device: Device, configuration: TransportConfiguration, options: Void) throws(TransportError) {
        inner = try HostBackend(device: device, configuration: configuration)
        windows = device.peerMemoryWindowCount
    }
    func makeChannel(_ memory: QueuePairMemory) throws(TransportError) -> HostChannel {
        precondition(memory.transmitWindow < windows - 1, "queue pair placed in the reserved window")
        return try inner.makeChannel(memory)
    }
}

@Suite(.serialized) struct ReservedWindowTests {
    typealias Reserving = Transport<MockNTBDevice, LastWindowReservingBackend>

    @Test func bothSidesLeaveTheLastWindowOutAndTheLinkComesUp() throws {
        let f = try LinkFixture("reserve")
        let epDevice = try f.open(.endpoint), hostDevice = try f.open(.host)
        let windows = hostDevice.peerMemoryWindowCount
        #expect(windows >= 2)
        let ep = try Reserving(device: epDevice, configuration: LinkFixture.configuration(qps: 2))
        let host = try Reserving(device: hostDevice, configuration: LinkFixture.configuration(qps: 2))
        defer { host.close(); ep.close() }
        #expect(host.memoryWindowCount == windows - 1 && ep.memoryWindowCount == windows - 1)
        // Both up; a message crosses each queue pair.
        let deadline = ContinuousClock.now + .seconds(10)
        while !(host.queuePairs + ep.queuePairs).allSatisfy(\.isLinkUp) {
            if ContinuousClock.now > deadline { Issue.record("queue pairs did not link"); return }
            for qp in host.queuePairs + ep.queuePairs { qp.poll { _ in } }
            TransportThread.sleep(.microseconds(100))
        }
        let rx = Buffers(count: 2, size: 4096)
        for q in 0..<2 {
            try unsafe ep.queuePairs[q].postReceive(rx.buffer(q), cookie: UInt64(q))
            let payload = (0..<100).map { UInt8(truncatingIfNeeded: $0 + q * 31) }
            try unsafe payload.withUnsafeBytes { b in try unsafe host.queuePairs[q].send(b, cookie: UInt64(q)) }
        }
        var got = 0
        while got < 2 {
            if ContinuousClock.now > deadline { Issue.record("messages did not arrive"); return }
            for qp in host.queuePairs { qp.poll { _ in } }
            for qp in ep.queuePairs { qp.poll { c in if c.kind == .receive, c.status == .ok { got += 1 } } }
        }
        for q in 0..<2 { #expect(rx.bytes(q, 100) == (0..<100).map { UInt8(truncatingIfNeeded: $0 + q * 31) }) }
    }

    @Test func aReservingSideAndAPlainSideDisagreeOnNumMWs() throws {
        let f = try LinkFixture("reserve-mismatch")
        let ep = try Reserving(device: try f.open(.endpoint), configuration: LinkFixture.configuration(qps: 1))
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration(qps: 1))
        defer { host.close(); ep.close() }
        #expect(throws: TransportError.handshakeMismatch(field: "NUM_MWS", ours: UInt64(host.memoryWindowCount), peers: UInt64(ep.memoryWindowCount))) {
            try host.waitForLink(timeout: .seconds(10))
        }
    }
}
