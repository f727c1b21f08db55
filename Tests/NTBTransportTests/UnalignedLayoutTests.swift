import Testing
import PCIKit
import CNTBShim
import NTBMock
@testable import NTBTransport

/// Issue 14 F1: the peer picks the size of our receive area (its MW size scratchpad) and either side
/// picks the MTU, so frame headers and `rx_info` land wherever Linux's arithmetic puts them, word-aligned
/// or not (a 64 KiB window gives Linux frames of 32766 bytes). Every such layout must move data, never trap.
@Suite struct UnalignedLayoutTests {
    /// Two channels facing each other over two buffers (`a` is A's inbound memory, `b` B's), the areas
    /// starting `shift` bytes into each buffer (as a queue pair's area does in a window of odd size).
    struct Loop {
        let a: TestMemory, b: TestMemory
        var ab: HostChannel, ba: HostChannel
        let layout: HostQueueLayout

        init?(area: Int, mtu: Int, shift: Int = 0) {
            guard let l = HostQueueLayout(areaSize: area, mtu: mtu) else { return nil }
            layout = l
            a = TestMemory(area + shift)
            b = TestMemory(area + shift)
            let ra = a.region.subregion(offset: shift, length: area), rb = b.region.subregion(offset: shift, length: area)
            ab = HostChannel(transmit: rb, transmitLayout: l, receive: ra, receiveLayout: l)
            ba = HostChannel(transmit: ra, transmitLayout: l, receive: rb, receiveLayout: l)
            ab.prepareSharedMemory()
            ba.prepareSharedMemory()
        }
    }

    static func pattern(_ n: Int, _ seed: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }

    /// Sends `rounds` messages A → B (more than the ring holds, so the tail wraps) and checks each.
    static func exercise(_ l: inout Loop, rounds: Int) {
        for r in 0..<rounds {
            _ = l.ab.reapTransmitted()
            #expect(l.ab.transmitFree > 0, "no free frame at round \(r)")
            let size = 1 + (r &* 7919) % l.ab.maxPayload
            let msg = pattern(size, r)
            msg.withUnsafeBytes { l.ab.transmit($0, flags: 0) }
            #expect(l.ba.peekReceive() == .frame(length: size))
            #expect(unsafe Array(l.ba.receivedBytes(length: size)) == msg)
            l.ba.consumeReceived()
            l.ba.publishReceiveTail()
            #expect(l.ba.peekReceive() == .empty)
        }
        #expect(l.ab.reapTransmitted() == 1)
    }

    /// The window sizes of the report and the Linux 64 KiB / 128 KiB windows, whole area per queue pair.
    @Test(arguments: [64, 66, 1000, 4098, 131078, 1 << 16, 1 << 17])
    func windowSizesOfTheReportMoveData(size: Int) throws {
        var l = try #require(Loop(area: size, mtu: HostWire.defaultMTU))
        #expect(l.layout.frameSize == min(HostWire.defaultMTU, (size - 4) / 2))   // Linux's F, unchanged
        Self.exercise(&l, rounds: 3 * l.layout.entryCount + 1)
    }

    @Test func linuxFrameSizesForItsWindows() throws {
        // Linux: 64 KiB → F = 32766, 128 KiB → F = 65534 (both with headers at offsets ≡ 2 mod 4).
        #expect(HostQueueLayout(areaSize: 1 << 16, mtu: HostWire.defaultMTU)?.frameSize == 32766)
        #expect(HostQueueLayout(areaSize: 1 << 17, mtu: HostWire.defaultMTU)?.frameSize == 65534)
        #expect(HostQueueLayout(areaSize: 1 << 16, mtu: HostWire.defaultMTU)?.headerOffset(0) == 32754)
    }

    @Test func mtu65MovesData() throws {
        var l = try #require(Loop(area: 1 << 20, mtu: 65))
        #expect(l.layout.frameSize == 65 && l.layout.headerOffset(0) == 53)
        Self.exercise(&l, rounds: 200)
    }

    /// Every area size from the smallest that holds two frames up to a few KiB, several MTUs and area
    /// start offsets (an odd window split between queue pairs), plus random large ones.
    @Test func fuzzAreaSizesMTUsAndShifts() throws {
        var rng = SystemRandomNumberGenerator()
        var cases: [(Int, Int, Int)] = []
        for area in 29...1200 { cases.append((area, [13, 65, 4096, 0x10000][area % 4], area % 3)) }
        for _ in 0..<60 { cases.append((Int.random(in: 1200...300_000, using: &rng), Int.random(in: 13...70_000, using: &rng), Int.random(in: 0...3, using: &rng))) }
        var tested = 0
        for (area, mtu, shift) in cases {
            guard var l = Loop(area: area, mtu: mtu, shift: shift) else { continue }
            let n = l.layout.entryCount
            #expect(l.layout.frameSize == min(mtu, (area - 4) / 2) && n == (area - 4) / l.layout.frameSize)
            Self.exercise(&l, rounds: min(2 * n + 1, 40))
            tested += 1
        }
        #expect(tested > 1000)
    }

    /// A peer that writes garbage at unaligned offsets is still validated (not trusted, not trapped on).
    @Test func garbageAtUnalignedOffsetsIsRefused() throws {
        var l = try #require(Loop(area: 4098, mtu: 0x10000))
        let f = l.layout.frameSize   // 2047: header at 2035
        l.b.setU32(f - 12 + 4, 0xFFFF_FFF0)   // len
        l.b.setU32(f - 12, 0)                 // ver
        l.b.setU32(f - 12 + 8, 1)             // DONE
        #expect(l.ba.peekReceive() == .badLength(0xFFFF_FFF0))
        l.b.setU32(f - 12 + 4, 3)
        l.b.setU32(f - 12, 5)
        #expect(l.ba.peekReceive() == .badVersion(found: 5, expected: 0))
        // An out-of-range tail in A's memory (rx_info at S − 4 = 4094).
        [UInt8(1)].withUnsafeBytes { l.ab.transmit($0, flags: 0) }
        l.a.setU32(4094, 0xDEAD)
        #expect(l.ab.reapTransmitted() == -1)
    }
}

/// F1 end to end: two transports over the mock link with layouts whose headers are not word-aligned
/// (`--mtu 65` on both sides; Linux's 64 KiB window with frames of 32766 bytes), messages both ways.
@Suite(.serialized) struct UnalignedTransportTests {
    @Test(arguments: [(1 << 20, 65), (1 << 16, 0x10000), (1 << 17, 0x10000)])
    func transportsLinkAndMoveDataIntact(window: Int, mtu: Int) throws {
        let f = try LinkFixture("unaligned-\(window)-\(mtu)", windowSize: window)
        let ep = try HostTransport(device: try f.open(.endpoint), configuration: LinkFixture.configuration(qps: 1, mtu: mtu))
        let host = try HostTransport(device: try f.open(.host), configuration: LinkFixture.configuration(qps: 1, mtu: mtu))
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        #expect(drive([h, e]) { h.isLinkUp && e.isLinkUp }, "no link")
        #expect(h.maxPayload == min(mtu, (window - 4) / 2) - 12)   // one queue pair: the whole of window 0
        let rx = Buffers(count: 64, size: max(4096, h.maxPayload))
        var got: [[UInt8]] = []
        let sizes = (0..<40).map { 1 + ($0 &* 7919) % h.maxPayload }
        var sent = 0
        for (i, n) in sizes.enumerated() {
            try unsafe e.postReceive(rx.buffer(i), cookie: UInt64(i))
            try send(h, UnalignedLayoutTests.pattern(n, i), cookie: UInt64(i))
            sent += 1
            #expect(drive([h, e], sink: { q, c in if q == 1, c.kind == .receive, c.status == .ok { got.append(rx.bytes(Int(c.cookie), c.length)) } }) { got.count == sent })
        }
        #expect(got == sizes.enumerated().map { UnalignedLayoutTests.pattern($0.element, $0.offset) })
    }
}
