import Testing
import NTBHardware
import PCIKit
@testable import NTBTransport
#if canImport(Glibc)
import Glibc
#endif

typealias IVSHMEMTransport = Transport<IVSHMEMDevice, HostBackend>

/// The host backend (Linux ntb_transport v4) over the ivshmem adapter: two sides of one shared file in
/// this process, as two VMs share one ivshmem-plain BAR2.
@Suite(.serialized) struct IVSHMEMTransportTests {
    func drive(_ qps: [QueuePair<IVSHMEMDevice, HostBackend>], timeout: Duration = .seconds(10),
               sink: (Int, Completion) -> Void = { _, _ in }, until done: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !done() {
            if ContinuousClock.now >= deadline { return false }
            var n = 0
            for (i, qp) in qps.enumerated() { n += qp.poll { sink(i, $0) } }
            if n == 0 { TransportThread.sleep(.microseconds(50)) }
        }
        return true
    }

    @Test func messagesCrossBothWaysAndThePeersCloseIsLinkDown() throws {
        let path = "/dev/shm/ntb-ivshmem-transport-test-\(getpid())"
        unsafe unlink(path)
        defer { unsafe unlink(path) }
        var o = IVSHMEMDevice.Options()
        o.beatInterval = .milliseconds(5)
        o.peerTimeout = .milliseconds(200)
        let devA = try IVSHMEMDevice.open(file: path, side: .a, createSize: 2 << 20, options: o)
        let devB = try IVSHMEMDevice.open(file: path, side: .b, options: o)
        let configuration = LinkFixture.configuration(qps: 2, mtu: 4096)
        let a = try IVSHMEMTransport(device: devA, configuration: configuration)
        let b = try IVSHMEMTransport(device: devB, configuration: configuration)
        defer { a.close() }
        let all = a.queuePairs + b.queuePairs
        #expect(drive(all) { all.allSatisfy(\.isLinkUp) }, "queue pairs did not link")

        let rx = Buffers(count: 64, size: 4096)
        for i in 0..<32 { try unsafe b.queuePairs[1].postReceive(rx.buffer(i), cookie: UInt64(i)) }
        for i in 32..<64 { try unsafe a.queuePairs[0].postReceive(rx.buffer(i), cookie: UInt64(i)) }
        func payload(_ n: Int) -> [UInt8] { (0..<(100 + n * 37)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ n) } }
        func sendBytes(_ qp: QueuePair<IVSHMEMDevice, HostBackend>, _ bytes: [UInt8], cookie: UInt64) throws {
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
            defer { unsafe buf.deallocate() }
            unsafe buf.copyBytes(from: bytes)
            try unsafe qp.send(UnsafeRawBufferPointer(buf), cookie: cookie)
        }
        var got: [Int: [UInt64]] = [:]
        var lengths: [UInt64: Int] = [:]
        for n in 0..<20 {
            try sendBytes(a.queuePairs[1], payload(n), cookie: UInt64(n))
            try sendBytes(b.queuePairs[0], payload(n + 50), cookie: UInt64(n))
            // Keep the rings from filling: let every message land before the next pair.
            #expect(drive(all, sink: { q, c in
                if c.kind == .receive { got[q, default: []].append(c.cookie); lengths[c.cookie] = c.length }
            }) { got[3, default: []].count == n + 1 && got[0, default: []].count == n + 1 })
        }
        #expect(got[3] == (0..<20).map(UInt64.init))
        #expect(got[0] == (32..<52).map(UInt64.init))
        for n in 0..<20 {
            #expect(rx.bytes(n, payload(n).count) == payload(n))
            #expect(rx.bytes(32 + n, payload(n + 50).count) == payload(n + 50))
            #expect(lengths[UInt64(n)] == payload(n).count)
        }

        // The peer goes away cleanly: the survivor's queue pairs go down.
        b.close()
        devB.close()
        #expect(drive(a.queuePairs, timeout: .seconds(5)) { a.queuePairs.allSatisfy { !$0.isLinkUp } })
    }
}
