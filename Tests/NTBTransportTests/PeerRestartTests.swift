import Testing
import Foundation
import NTBHardware
import NTBMock
import PCIKit
@testable import NTBTransport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14 F3/F4: a peer that restarts, or publishes a bad value, never takes our side down, and a
/// new session never trusts what an old one left in the scratchpads. The test plays the peer with a
/// bare endpoint device, writing the v4 scratchpads and frames itself (docs/hardware-reference.md §2.2–2.3).
@Suite(.serialized) struct PeerRestartTests {
    /// A mock link whose endpoint is played by the test; `spads` 8 leaves no spare scratchpad with two
    /// memory windows (4 + 2·2), so the session id is off and the fallback is tested.
    final class Rig {
        let dir: String
        let peer: MockNTBDevice
        init(_ name: String, spads: Int) throws {
            dir = "/dev/shm/ntb-transport-test-\(name)-\(getpid())"
            var c = MockLinkConfiguration()
            c.memoryWindowSize = 1 << 20
            c.hostRAMSize = 16 << 20
            c.endpointRAMSize = 16 << 20
            c.heartbeatMilliseconds = 5
            c.scratchpadCount = spads
            try MockLink.create(at: dir, configuration: c)
            peer = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            try peer.enableLink()
        }
        deinit {
            peer.close()
            try? MockLink.remove(at: dir, force: true)
            try? FileManager.default.removeItem(atPath: dir)
        }
        func host() throws -> HostTransport {
            try HostTransport(device: try MockNTBDevice(directory: dir, role: .host, options: .fast), configuration: LinkFixture.configuration())
        }

        /// The peer's side of ntb_transport_link_work and ntb_qp_link_work for queue pair 0, as one step:
        /// sizes, NUM_MWS, NUM_QPS, the session id (if any), VERSION, QP_LINKS into the host's scratchpads.
        func handshake(_ host: HostTransport, session: UInt32) throws {
            for i in 0..<host.memoryWindowCount {
                let size = UInt64(try peer.peerMemoryWindow(i).length)
                peer.writePeerScratchpad(HostWire.Scratchpad.sizeHigh(i), UInt32(size >> 32))
                peer.writePeerScratchpad(HostWire.Scratchpad.sizeLow(i), UInt32(truncatingIfNeeded: size))
            }
            peer.writePeerScratchpad(HostWire.Scratchpad.memoryWindowCount, UInt32(host.memoryWindowCount))
            peer.writePeerScratchpad(HostWire.Scratchpad.queuePairCount, 1)
            if let s = host.sessionScratchpad { peer.writePeerScratchpad(s, session) }
            peer.writePeerScratchpad(HostWire.Scratchpad.version, HostWire.version)
            peer.writePeerScratchpad(HostWire.Scratchpad.queuePairLinks, 1)
        }

        /// Writes frame `index` (frame size 4096, the fixture's MTU) of queue pair 0 into the host's memory.
        func writeFrame(index: Int, ver: UInt32, _ payload: [UInt8]) throws {
            let w = try peer.peerMemoryWindow(0)
            let header = (index + 1) * 4096 - 12
            w.store32(UInt32(payload.count), at: header + 4)
            w.store32(ver, at: header)
            payload.withUnsafeBytes { w.copy(from: $0, toOffset: index * 4096) }
            Barrier.full()
            w.store32(1, at: header + 8)
        }

        /// Runs the peer's handshake until the host's queue pair is up (the host writes its own
        /// scratchpads first, then needs ours), at most `timeout`.
        func link(_ host: HostTransport, session: UInt32, timeout: Duration = .seconds(2)) throws -> Bool {
            let qp = host.queuePairs[0]
            let deadline = ContinuousClock.now + timeout
            while !qp.isLinkUp {
                guard ContinuousClock.now < deadline else { return false }
                if peer.isLinkUp { try handshake(host, session: session) }
                _ = qp.poll { _ in }
                TransportThread.sleep(.milliseconds(1))
            }
            return true
        }
    }

    /// Receives one message on queue pair 0 of `host` into a fresh buffer (posting it), or nil.
    static func receive(_ host: HostTransport, timeout: Duration = .seconds(2)) throws -> [UInt8]? {
        let qp = host.queuePairs[0]
        let rx = Buffers(count: 1, size: 4096)
        try unsafe qp.postReceive(rx.buffer(0), cookie: 1)
        var got: Completion?
        _ = drive([qp], timeout: timeout, sink: { _, c in if c.kind == .receive, c.status == .ok { got = c } }) { got != nil }
        return got.map { rx.bytes(0, $0.length) }
    }

    /// F4: what a killed session of ours left in our scratchpads (the peer's VERSION, counts, sizes and
    /// QP_LINKS) is not a handshake: a new transport waits until the peer writes them again.
    @Test(arguments: [64, 8])
    func aNewSessionDoesNotTrustStaleScratchpads(spads: Int) throws {
        let rig = try Rig("stale-\(spads)", spads: spads)
        // The stale values, as the peer wrote them for the previous host process.
        for (i, v) in [(0, HostWire.version), (1, UInt32(1)), (2, UInt32(1)), (3, UInt32(2)), (4, UInt32(0)), (5, UInt32(1 << 20)), (6, UInt32(0)), (7, UInt32(1 << 20))] {
            rig.peer.writePeerScratchpad(i, v)
        }
        rig.peer.writeScratchpad(HostWire.Scratchpad.version, HostWire.version)   // what the old host wrote into the peer
        rig.peer.writeScratchpad(HostWire.Scratchpad.queuePairLinks, 1)
        let host = try rig.host()
        defer { host.close() }
        #expect(host.sessionScratchpad == (spads == 64 ? 63 : nil))
        let qp = host.queuePairs[0]
        _ = drive([qp], timeout: .milliseconds(300)) { false }
        #expect(!qp.isLinkUp, "the new session trusted the previous session's scratchpads")
        #expect(host.linkState == .negotiating)
        // It told the peer: QP_LINKS cleared (and VERSION rewritten only by its own handshake).
        #expect(rig.peer.readScratchpad(HostWire.Scratchpad.queuePairLinks) == 0)
        if let s = host.sessionScratchpad { #expect(rig.peer.readScratchpad(s) == host.sessionID) }
        // Once the peer writes again, it links.
        #expect(try rig.link(host, session: 0x5E55_0001))
    }

    /// F4, the survivor's side: the peer starts a new session while our link stays up (no link event).
    /// We must see it (session id changed, or VERSION cleared without one), reset our rings, relink,
    /// and then take the new session's frame 0 with packet number 0.
    @Test(arguments: [64, 8])
    func aPeerRestartWithoutALinkEventIsDetectedAndRelinks(spads: Int) throws {
        let rig = try Rig("restart-\(spads)", spads: spads)
        let host = try rig.host()
        defer { host.close() }
        #expect(try rig.link(host, session: 0xA))
        try rig.writeFrame(index: 0, ver: 0, [1, 2, 3])
        #expect(try Self.receive(host) == [1, 2, 3])
        try rig.writeFrame(index: 1, ver: 1, [4])
        #expect(try Self.receive(host) == [4])
        // The peer restarts: a new process clears what it wrote before (fallback) and has a new id.
        rig.peer.writePeerScratchpad(HostWire.Scratchpad.queuePairLinks, 0)
        if host.sessionScratchpad != nil {
            rig.peer.writePeerScratchpad(host.sessionScratchpad!, 0xB)
        } else {
            rig.peer.writePeerScratchpad(HostWire.Scratchpad.version, 0)
        }
        let clock = ContinuousClock()
        let start = clock.now
        var events: [Completion] = []
        #expect(drive(host.queuePairs, timeout: .seconds(2), sink: { _, c in events.append(c) }) { host.peerRestarts == 1 && !host.queuePairs[0].isLinkUp }, "the restart was not seen")
        #expect(events.contains { $0.kind == .linkDown })
        #expect(try rig.link(host, session: 0xB))
        #expect(clock.now - start < .seconds(2))
        // The new session starts at frame 0, packet 0.
        try rig.writeFrame(index: 0, ver: 0, [9, 9])
        #expect(try Self.receive(host) == [9, 9])
        // At least this restart was counted. The fixture's peer rewrites its whole handshake every
        // millisecond until the link is up, which can race the host's reset and be counted as a second
        // restart (seen once in CI under load); what a user relies on is checked above: detection,
        // relink within 2 s, and the new session's frame 0 at packet 0.
        #expect(host.peerRestarts >= 1)
    }

    /// F3: a peer that publishes a bad VERSION, NUM_QPS or NUM_MWS is refused, counted and retried; once
    /// it publishes good values the link comes up (nothing is fatal), and waitForLink fails only at its
    /// timeout, saying what the peer sent.
    @Test func badHandshakeValuesAreRetriedNotFatal() throws {
        let rig = try Rig("badvalues", spads: 64)
        let host = try rig.host()
        defer { host.close() }
        for (spad, bad, field) in [(HostWire.Scratchpad.version, UInt32(7), "VERSION"), (HostWire.Scratchpad.queuePairCount, 3, "NUM_QPS"), (HostWire.Scratchpad.memoryWindowCount, 9, "NUM_MWS")] {
            let before = host.handshakeRejections
            let deadline = ContinuousClock.now + .seconds(2)
            var thrown: TransportError?
            while thrown == nil, ContinuousClock.now < deadline {
                if rig.peer.isLinkUp {
                    try rig.handshake(host, session: 1)
                    rig.peer.writePeerScratchpad(spad, bad)
                }
                do throws(TransportError) { try host.waitForLink(timeout: .milliseconds(40)) } catch { thrown = error }
            }
            guard case let .handshakeMismatch(f, _, peers) = thrown else { Issue.record("\(field): \(String(describing: thrown))"); continue }
            #expect(f == field && peers == UInt64(bad))
            #expect(host.handshakeRejections > before)
            #expect(host.linkStateReason?.contains("\(bad)") == true)
        }
        #expect(try rig.link(host, session: 1))
        #expect(host.linkStateReason == nil)
    }
}

/// QP_LINKS without Linux's echo: we tell the peer only the queue pairs whose rings we reset.
@Suite(.serialized) struct QueuePairLinkBitsTests {
    /// Linux writes (own QP_LINKS | its bit) into the peer, echoing the peer's own bits back; the peer
    /// then takes its queue pair q for linked while our rings of q are not reset yet. Our QP_LINKS write
    /// carries only our prepared queue pairs: here queue pair 1's data path never acknowledged its
    /// generation (nobody polls it), so its rings are not reset and bit 1 must not reach the peer.
    @Test func weNeverClaimAQueuePairWhoseRingsAreNotReset() throws {
        let rig = try PeerRestartTests.Rig("qplinks", spads: 64)
        var c = LinkFixture.configuration(qps: 2)
        c.queuePairs = 2
        let host = try HostTransport(device: try MockNTBDevice(directory: rig.dir, role: .host, options: .fast), configuration: c)
        defer { host.close() }
        let qp0 = host.queuePairs[0]
        let deadline = ContinuousClock.now + .seconds(2)
        while !qp0.isLinkUp && ContinuousClock.now < deadline {
            if rig.peer.isLinkUp {
                for i in 0..<host.memoryWindowCount {
                    let size = UInt64(try rig.peer.peerMemoryWindow(i).length)
                    rig.peer.writePeerScratchpad(HostWire.Scratchpad.sizeHigh(i), UInt32(size >> 32))
                    rig.peer.writePeerScratchpad(HostWire.Scratchpad.sizeLow(i), UInt32(truncatingIfNeeded: size))
                }
                rig.peer.writePeerScratchpad(HostWire.Scratchpad.memoryWindowCount, UInt32(host.memoryWindowCount))
                rig.peer.writePeerScratchpad(HostWire.Scratchpad.queuePairCount, 2)
                rig.peer.writePeerScratchpad(HostWire.Scratchpad.version, HostWire.version)
                // A Linux-style peer: both bits, its own and (echoed) ours.
                rig.peer.writePeerScratchpad(HostWire.Scratchpad.queuePairLinks, 0b11)
            }
            _ = qp0.poll { _ in }
            TransportThread.sleep(.milliseconds(1))
        }
        #expect(qp0.isLinkUp)
        TransportThread.sleep(.milliseconds(30))   // more QP_LINKS rounds
        let written = rig.peer.readScratchpad(HostWire.Scratchpad.queuePairLinks)
        #expect(written & 0b01 != 0, "queue pair 0 is reset and linked: its bit goes to the peer")
        #expect(written & 0b10 == 0, "queue pair 1's rings were never reset, yet its bit went to the peer (\(written))")
        #expect(!host.queuePairs[1].isLinkUp)
    }
}
