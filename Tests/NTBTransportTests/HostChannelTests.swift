import Testing
import PCIKit
import CNTBShim
@testable import NTBTransport

/// The host channel against hand-built peer images: the test plays the Linux kernel peer, writing
/// and reading bytes at the offsets of docs/hardware-reference.md §2.3 (spelled out here, not taken from the code).
///
/// `mine` is our inbound buffer (the kernel peer writes frames into it, and reads its tx tail from
/// it); `peers` is the kernel's inbound buffer (we write frames into it, and our rx tail).
@Suite struct HostChannelTests {
    static let area = 1 << 16          // S = 64 KiB
    static let mtu = 4096              // F = 4096, N = (65536 - 4) / 4096 = 15
    static let frame = 4096
    static let entries = 15

    struct Pair {
        let mine = TestMemory(HostChannelTests.area)
        let peers = TestMemory(HostChannelTests.area)
        var channel: HostChannel

        init() {
            let layout = HostQueueLayout(areaSize: HostChannelTests.area, mtu: HostChannelTests.mtu)!
            channel = HostChannel(transmit: peers.region, transmitLayout: layout, receive: mine.region, receiveLayout: layout)
            channel.prepareSharedMemory()
        }

        /// The kernel sender (ntb_async_tx): len, ver, payload, flags|DONE into frame `index` of `mine`.
        func kernelWrites(index: Int, ver: UInt32, payload: [UInt8], flags: UInt32 = 1, len: UInt32? = nil) {
            let f = HostChannelTests.frame
            mine.setU32((index + 1) * f - 12 + 4, len ?? UInt32(payload.count))
            mine.setU32((index + 1) * f - 12 + 0, ver)
            mine.setBytes(index * f, payload)
            mine.setU32((index + 1) * f - 12 + 8, flags)
        }
    }

    @Test func readsAFrameTheKernelWrote() throws {
        var p = Pair()
        #expect(p.channel.peekReceive() == .empty)
        p.kernelWrites(index: 0, ver: 0, payload: Array("hello".utf8))
        #expect(p.channel.receivePending())
        #expect(p.channel.peekReceive() == .frame(length: 5))
        #expect(unsafe Array(p.channel.receivedBytes(length: 5)) == Array("hello".utf8))
        p.channel.consumeReceived()
        p.channel.publishReceiveTail()
        // ntb_complete_rxc: hdr->flags = 0 in our memory, rx_info->entry = 0 in the kernel's memory (S − 4).
        #expect(p.mine.u32(Self.frame - 12 + 8) == 0)
        #expect(p.peers.u32(Self.area - 4) == 0)
        // The next frame must carry ver 1 at index 1.
        p.kernelWrites(index: 1, ver: 1, payload: [9, 8, 7])
        #expect(p.channel.peekReceive() == .frame(length: 3))
        p.channel.consumeReceived()
        p.channel.publishReceiveTail()
        #expect(p.peers.u32(Self.area - 4) == 1)
    }

    @Test func writesWhatTheKernelReads() {
        var p = Pair()
        // ntb_transport_setup_qp_mw: remote_rx_info->entry = rx_max_entry − 1 in our own memory.
        #expect(p.mine.u32(Self.area - 4) == UInt32(Self.entries - 1))
        #expect(p.channel.transmitFree == Self.entries - 1)
        let msg: [UInt8] = Array("abc".utf8)
        unsafe msg.withUnsafeBytes { unsafe p.channel.transmit($0, flags: 0) }
        unsafe msg.withUnsafeBytes { unsafe p.channel.transmit($0, flags: 0) }
        p.channel.flushTransmit()
        // ntb_process_rxc on the kernel side reads frame i's header at (i+1)·F − 12.
        for i in 0..<2 {
            let h = (i + 1) * Self.frame - 12
            #expect(p.peers.u32(h + 0) == UInt32(i), "ver = packet number")
            #expect(p.peers.u32(h + 4) == 3, "len")
            #expect(p.peers.u32(h + 8) == 1, "flags = DESC_DONE")
            #expect(p.peers.bytes(i * Self.frame, 3) == msg)
        }
        #expect(p.peers.u32(3 * Self.frame - 12 + 8) == 0, "frame 2 not written")
        #expect(p.channel.transmitFree == Self.entries - 3)
    }

    @Test func aStagedBatchShowsNoFlagUntilPublished() {
        var p = Pair()
        let msg: [UInt8] = [1, 2, 3, 4]
        for _ in 0..<3 { unsafe msg.withUnsafeBytes { unsafe p.channel.stageTransmit($0) } }
        for i in 0..<3 {
            #expect(p.peers.u32((i + 1) * Self.frame - 12 + 8) == 0, "no DONE before publish")
            #expect(p.peers.u32((i + 1) * Self.frame - 12 + 4) == 4)
            #expect(p.peers.u32((i + 1) * Self.frame - 12) == UInt32(i))
        }
        p.channel.publishStaged()
        for i in 0..<3 { #expect(p.peers.u32((i + 1) * Self.frame - 12 + 8) == 1) }
        #expect(p.peers.u32(4 * Self.frame - 12 + 8) == 0)
        #expect(p.channel.transmitFree == Self.entries - 4)
    }

    @Test(arguments: [1, 255, 256, 257, 1000, 4084])
    func largePayloadsCopyExactlyAtEveryAlignment(length: Int) {
        let source = TestMemory(8192)
        source.setBytes(0, (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })
        for offset in [0, 1, 7, 8, 15] {
            let destination = TestMemory(8192)
            unsafe ntb_transport_copy_nocache(destination.raw + 100 + offset, source.raw + offset, UInt(length))
            #expect(destination.bytes(100 + offset, length) == source.bytes(offset, length))
            #expect(destination.bytes(100 + offset + length, 4) == [0, 0, 0, 0], "nothing written past the end")
            #expect(destination.bytes(96 + offset, 4) == [0, 0, 0, 0], "nothing written before the start")
        }
    }

    @Test func ringFillsAndDrainsAsTheKernelPublishesItsTail() {
        var p = Pair()
        let one: [UInt8] = [1]
        for _ in 0..<(Self.entries - 1) { unsafe one.withUnsafeBytes { unsafe p.channel.transmit($0, flags: 0) } }
        #expect(p.channel.transmitFree == 0)
        #expect(p.channel.reapTransmitted() == 0)
        // The kernel consumed frames 0...4 and wrote entry = 4 into our memory.
        p.mine.setU32(Self.area - 4, 4)
        #expect(p.channel.reapTransmitted() == 5)
        #expect(p.channel.transmitFree == 5)
        // The ring wraps: frame 14 then frame 0 (ver 14, 15).
        unsafe one.withUnsafeBytes { unsafe p.channel.transmit($0, flags: 0) }
        unsafe one.withUnsafeBytes { unsafe p.channel.transmit($0, flags: 0) }
        #expect(p.peers.u32(15 * Self.frame - 12) == 14)
        #expect(p.peers.u32(1 * Self.frame - 12) == 15)
    }

    @Test func peerWritingAnOutOfRangeOrAheadTailIsNotTrusted() {
        var p = Pair()
        let one: [UInt8] = [1]
        unsafe one.withUnsafeBytes { unsafe p.channel.transmit($0, flags: 0) }
        let free = p.channel.transmitFree
        p.mine.setU32(Self.area - 4, 1000)             // out of range
        #expect(p.channel.reapTransmitted() == -1)
        #expect(p.channel.transmitFree == free)
        p.mine.setU32(Self.area - 4, 5)                 // claims 6 consumed, only 1 in flight
        #expect(p.channel.reapTransmitted() == -1)
        #expect(p.channel.transmitFree == free)
        p.mine.setU32(Self.area - 4, 0)                 // the honest value
        #expect(p.channel.reapTransmitted() == 1)
    }

    @Test func oversizeLengthStaleVersionAndLinkDownAreDetected() {
        var p = Pair()
        // Length beyond the frame's payload (F − 12): never trusted.
        p.kernelWrites(index: 0, ver: 0, payload: [1], len: UInt32(Self.frame))
        #expect(p.channel.peekReceive() == .badLength(UInt32(Self.frame)))
        p.kernelWrites(index: 0, ver: 0, payload: [1], len: 0xFFFF_FFFF)
        #expect(p.channel.peekReceive() == .badLength(0xFFFF_FFFF))
        // A stale frame (DONE, but the packet number of an older session).
        p.kernelWrites(index: 0, ver: 7, payload: [1])
        #expect(p.channel.peekReceive() == .badVersion(found: 7, expected: 0))
        // LINK_DOWN | DONE.
        p.kernelWrites(index: 0, ver: 0, payload: [], flags: 3)
        #expect(p.channel.peekReceive() == .linkDown)
        p.channel.clearLinkDownFrame()
        #expect(p.channel.peekReceive() == .empty)
    }

    @Test func linkDownFrameIsWhatTheKernelExpects() {
        var p = Pair()
        // ntb_send_link_down: len 0, flags LINK_DOWN (| DONE from the copy callback).
        unsafe p.channel.transmit(UnsafeRawBufferPointer(start: nil, count: 0), flags: HostWire.linkDownFlag)
        #expect(p.peers.u32(Self.frame - 12 + 4) == 0)
        #expect(p.peers.u32(Self.frame - 12 + 8) == 3)
    }

    @Test func prepareSharedMemoryClearsStaleHeaders() {
        var p = Pair()
        p.kernelWrites(index: 3, ver: 42, payload: [1, 2])
        p.mine.setU32(Self.area - 4, 2)
        p.channel.prepareSharedMemory()
        p.channel.resetIndices()
        #expect(p.mine.u32(4 * Self.frame - 12 + 8) == 0)
        #expect(p.mine.u32(4 * Self.frame - 12) == 0)
        #expect(p.mine.u32(Self.area - 4) == UInt32(Self.entries - 1))
    }
}
