import Testing
import Foundation
import NTBHardware
import NTBMock
import PCIKit
import Synchronization
@testable import NTBTransport

/// Something a channel holds, to see when the last copy of the channel goes.
final class ChannelProbe: Sendable {}

/// The host channel with a probe: wire-compatible with `host`, and its copies keep `probe` alive.
struct ProbeChannel: FrameChannel, @unchecked Sendable {
    typealias DataPath = FrameDataPath<Self>
    var inner: HostChannel
    let probe: ChannelProbe
    var maxPayload: Int { inner.maxPayload }
    var transmitEntries: Int { inner.transmitEntries }
    var transmitFree: Int { inner.transmitFree }
    func prepareSharedMemory() { inner.prepareSharedMemory() }
    mutating func resetIndices() { inner.resetIndices() }
    func receivePending() -> Bool { inner.receivePending() }
    var transmitIndex: UInt32 { inner.transmitIndex }
    var transmitTail: UInt32 { inner.transmitTail }
    var receiveIndex: UInt32 { inner.receiveIndex }
    var receiveEntries: Int { inner.receiveEntries }
    mutating func reapTransmitted() -> Int { inner.reapTransmitted() }
    mutating func transmit(_ payload: UnsafeRawBufferPointer, flags: UInt32) { unsafe inner.transmit(payload, flags: flags) }
    mutating func stageTransmit(_ payload: UnsafeRawBufferPointer) { unsafe inner.stageTransmit(payload) }
    mutating func publishStaged() { inner.publishStaged() }
    func flushTransmit() { inner.flushTransmit() }
    mutating func peekReceive() -> ReceivePeek { inner.peekReceive() }
    func receivedBytes(length: Int) -> UnsafeRawBufferPointer { unsafe inner.receivedBytes(length: length) }
    mutating func consumeReceived() { inner.consumeReceived() }
    mutating func clearLinkDownFrame() { inner.clearLinkDownFrame() }
    mutating func publishReceiveTail() { inner.publishReceiveTail() }
}

/// `host` with probed channels; every channel it makes holds the backend's probe.
struct ProbeBackend: TransportBackend {
    static let name = "probe"
    static let summary = "host, with a probe in each channel (tests)"
    static let probe = Mutex<ChannelProbe?>(nil)
    let host: HostBackend
    init<Device: NTBDevice>(device: Device, configuration: TransportConfiguration, options: Void) throws(TransportError) {
        host = try HostBackend(device: device, configuration: configuration)
    }
    func makeChannel(_ memory: QueuePairMemory) throws(TransportError) -> ProbeChannel {
        ProbeChannel(inner: try host.makeChannel(memory), probe: Self.probe.withLock { $0! })
    }
}

/// The queue pair's own buffers (``QueuePair/makeBuffers(count:length:)``) on both data paths, and
/// what a queue pair lets go of when it goes.
@Suite(.serialized) struct QueuePairBufferTests {
    /// F2: a queue pair that adopted a channel deinitialises it when it goes (its deinit used to free
    /// the state and then read `hasChannel` from it; the order is now channel first, state last).
    @Test func aQueuePairThatAdoptedAChannelReleasesItWhenItGoes() throws {
        weak var probe: ChannelProbe?
        do {
            let p = ChannelProbe()
            probe = p
            ProbeBackend.probe.withLock { $0 = p }
            let f = try LinkFixture("qp-deinit")
            let ep = try Transport<MockNTBDevice, ProbeBackend>(device: try f.open(.endpoint), configuration: LinkFixture.configuration())
            let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration())
            let e = ep.queuePairs[0], h = host.queuePairs[0]
            let deadline = ContinuousClock.now + .seconds(10)
            while !(e.isLinkUp && h.isLinkUp) && ContinuousClock.now < deadline {
                e.poll { _ in }; h.poll { _ in }
                TransportThread.sleep(.microseconds(50))
            }
            #expect(e.isLinkUp && h.isLinkUp, "queue pairs did not link")
            // The adopted channel works: a message through it.
            let rx = Buffers(count: 1, size: 64)
            try unsafe e.postReceive(rx.buffer(0), cookie: 5)
            try send(h, [1, 2, 3], cookie: 1)
            var got: Completion?
            while got == nil && ContinuousClock.now < deadline {
                e.poll { c in if c.kind == .receive { got = c } }; h.poll { _ in }
            }
            #expect(got?.cookie == 5 && got?.length == 3 && rx.bytes(0, 3) == [1, 2, 3])
            ProbeBackend.probe.withLock { $0 = nil }
            ep.close(); host.close()
        }
        #expect(probe == nil, "the queue pair kept its channel (and what the channel holds) after it went")
    }

    /// Whether `body` throws ``TransportError/invalidConfiguration(_:)``.
    static func refusedAsInvalid(_ body: () throws(TransportError) -> Void) -> Bool {
        do throws(TransportError) { try body() } catch {
            if case .invalidConfiguration = error { return true }
        }
        return false
    }

    @Test func hostBuffersAreOrdinaryMemoryAndCarryMessages() throws {
        let f = try LinkFixture("qp-buffers-host")
        let ep = try HostTransport(device: try f.open(.endpoint), configuration: LinkFixture.configuration())
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration())
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        #expect(drive([h, e]) { h.isLinkUp && e.isLinkUp }, "queue pairs did not link")
        #expect(!h.prefersDMABuffers && !e.prefersDMABuffers)
        let rx = try e.makeBuffers(count: 8, length: 100)
        #expect(rx.count == 8 && rx.length == 100 && rx.stride == 128)
        #expect(rx.allSatisfy { $0.busAddress == nil && $0.bytes.count == 100 })
        #expect(unsafe rx.index(of: rx[3].bytes.baseAddress!) == 3)
        for (i, b) in rx.enumerated() { try e.postReceive(b, cookie: UInt64(i)) }
        let tx = try h.makeBuffers(count: 4, length: 100)
        for i in 0..<4 { unsafe tx[i].bytes.initializeMemory(as: UInt8.self, repeating: UInt8(0xA0 + i)) }
        try h.send(tx[0], length: 100, cookie: 10)
        #expect(try h.sendBatch(count: 3, buffers: { i in (tx[i + 1], 50 + i, UInt64(11 + i)) }) == 3)
        var received: [Completion] = [], sent: [UInt64] = []
        #expect(drive([h, e], sink: { q, c in
            if q == 1, c.kind == .receive { received.append(c) }
            if q == 0, c.kind == .send { sent.append(c.cookie) }
        }) { received.count == 4 && sent.count == 4 })
        #expect(received.map(\.cookie) == [0, 1, 2, 3] && received.map(\.length) == [100, 50, 51, 52])
        #expect(sent == [10, 11, 12, 13])
        for c in received {
            #expect(unsafe Array(UnsafeRawBufferPointer(rebasing: rx[Int(c.cookie)].bytes[0..<c.length])) == Array(repeating: UInt8(0xA0 + c.cookie), count: c.length))
        }
        // Bad input: a clear error, nothing read past a buffer.
        #expect(Self.refusedAsInvalid { () throws(TransportError) in try h.send(tx[0], length: 101, cookie: 1) })
        let before = h.counters[.txPackets]
        #expect(Self.refusedAsInvalid { () throws(TransportError) in _ = try h.sendBatch(count: 2, buffers: { i in (tx[i], i == 0 ? 10 : 200, 0) }) })
        #expect(h.counters[.txPackets] == before + 1, "the message before the bad one was sent")
        #expect(Self.refusedAsInvalid { () throws(TransportError) in _ = try h.makeBuffers(count: 0, length: 64) })
        #expect(Self.refusedAsInvalid { () throws(TransportError) in _ = try h.makeBuffers(count: 4, length: 0) })
        #expect(Self.refusedAsInvalid { () throws(TransportError) in _ = try h.makeBuffers(count: Int.max / 2, length: 4096) })
    }

    @Test func edmaBuffersAreDMAMemoryAndMessagesMoveWithoutACopy() throws {
        let pair = try EDMABackendTests.Pair("qp-buffers-edma", qps: 1)
        #expect(pair.linkUp())
        let h = pair.host.queuePairs[0], e = pair.endpoint.queuePairs[0]
        #expect(h.prefersDMABuffers && e.prefersDMABuffers)
        let rx = try e.makeBuffers(count: 8, length: 4000)
        #expect(rx.allSatisfy { $0.busAddress != nil })
        #expect(rx[1].busAddress == rx[0].busAddress.map { $0 + UInt64(rx.stride) })
        for (i, b) in rx.enumerated() { try e.postReceive(b, cookie: UInt64(i)) }
        let tx = try h.makeBuffers(count: 4, length: 4000)
        for i in 0..<4 { unsafe tx[i].bytes.initializeMemory(as: UInt8.self, repeating: UInt8(0x50 + i)) }
        #expect(EDMABackendTests.awaitPostedBuffers(4, sender: h, receiver: e, until: .now + .seconds(10)))
        #expect(try h.sendBatch(count: 4, buffers: { i in (tx[i], 1000 + i, UInt64(i)) }) == 4)
        var received: [Completion] = [], sent = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while (received.count < 4 || sent < 4) && ContinuousClock.now < deadline {
            e.poll { c in if c.kind == .receive { received.append(c) } }
            h.poll { c in if c.kind == .send, c.status == .ok { sent += 1 } }
        }
        #expect(received.map(\.cookie) == [0, 1, 2, 3] && received.map(\.length) == [1000, 1001, 1002, 1003] && sent == 4)
        for c in received {
            #expect(unsafe Array(UnsafeRawBufferPointer(rebasing: rx[Int(c.cookie)].bytes[0..<c.length])) == Array(repeating: UInt8(0x50 + c.cookie), count: c.length))
        }
        #expect(e.counters[.rxMemcpy] == 0, "receives landed in the buffers themselves")
        #expect(h.counters[.txMemcpy] == 0 && h.counters[.txAsync] == 4)
    }
}
