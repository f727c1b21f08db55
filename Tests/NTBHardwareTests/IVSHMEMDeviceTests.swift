import Testing
import CNTBShim
import PCIKit
@testable import NTBHardware
#if canImport(Glibc)
import Glibc
#endif

/// A shared file for one test (both sides in this process, as two VMs map one ivshmem BAR2).
final class SharedFile {
    let path: String
    init(_ name: String, size: Int = 1 << 20) {
        path = "/dev/shm/ntb-ivshmem-test-\(name)-\(getpid())"
        unsafe unlink(path)
        let fd = unsafe open(path, O_RDWR | O_CREAT, 0o600)
        precondition(fd >= 0)
        precondition(ftruncate(fd, off_t(size)) == 0)
        close(fd)
    }
    deinit { unsafe unlink(path) }

    /// A third mapping of the same memory, for the test to read and forge the header.
    func map() throws -> (SharedFileMapping, MMIORegion) {
        let m = try SharedFileMapping(path: path, createSize: nil)
        return (m, unsafe MMIORegion(base: m.base, length: m.length))
    }
}

func fastOptions() -> IVSHMEMDevice.Options {
    var o = IVSHMEMDevice.Options()
    o.beatInterval = .milliseconds(5)
    o.peerTimeout = .milliseconds(200)
    return o
}

/// Waits up to `timeout` for `condition`.
func eventually(_ timeout: Duration = .seconds(5), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        usleep(1000)
    }
    return true
}

@Suite(.serialized) struct IVSHMEMDeviceTests {
    /// The header layout as documented in ntb_ivshmem.h (the project's own layout; both sides use it).
    @Test func headerLayoutIsTheDeclaredOne() {
        typealias L = IVSHMEMLayout
        #expect(L.headerSize == 0x1000 && MemoryLayout<ntb_ivshmem_header>.size == 0x1000)
        #expect(MemoryLayout<ntb_ivshmem_side>.size == 0x100)
        #expect(L.magicOffset == 0 && L.versionOffset == 8 && L.headerSizeOffset == 0xC && L.sharedSizeOffset == 0x10)
        #expect(L.scratchpadCountOffset == 0x18 && L.windowCountOffset == 0x1C && L.windowSizeOffset == 0x20)
        #expect(L.windowOffsetOffset == 0x28 && L.doorbellMaskOffset == 0x30)
        #expect(L.side(.a) == 0x100 && L.side(.b) == 0x200)
        #expect(L.heartbeat == 0 && L.session == 8 && L.state == 0x10 && L.pid == 0x14 && L.doorbell == 0x18)
        #expect(L.bootID == 0x20 && L.scratchpad0 == 0x30 && L.scratchpad0 + 4 * L.scratchpads <= L.sideSize)
        #expect(MemoryLayout<ntb_ivshmem_header>.offset(of: \.side) == 0x100)
        // "NTBIVSH1" in memory order.
        let bytes = unsafe withUnsafeBytes(of: L.magic.littleEndian) { unsafe Array($0) }
        #expect(bytes == Array("NTBIVSH1".utf8))
    }

    @Test func geometrySplitsTheRestIntoWindows() throws {
        let g = try IVSHMEMGeometry.make(sharedSize: 1 << 20)
        #expect(g.memoryWindowCount == 1 && g.memoryWindowOffset == 0x1000)
        #expect(g.memoryWindowSize == ((1 << 20) - 0x1000) / 2 / 0x1000 * 0x1000)
        #expect(g.windowOffset(.a, 0) == 0x1000 && g.windowOffset(.b, 0) == 0x1000 + g.memoryWindowSize)
        #expect(g.windowOffset(.b, 0) + g.memoryWindowSize <= 1 << 20)
        let four = try IVSHMEMGeometry.make(sharedSize: 4 << 20, windows: 4)
        #expect(four.windowOffset(.b, 3) + four.memoryWindowSize <= 4 << 20)
        #expect(throws: NTBError.self) { try IVSHMEMGeometry.make(sharedSize: 0x2000) }
        #expect(throws: NTBError.self) { try IVSHMEMGeometry.make(sharedSize: 1 << 20, windows: 5) }
    }

    @Test func linkComesUpAndSpadsAndDoorbellsWorkBothWays() throws {
        let f = SharedFile("link")
        let a = try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions())
        let b = try IVSHMEMDevice.open(file: f.path, side: .b, options: fastOptions())
        defer { a.close(); b.close() }
        // Beating but not enabled: down.
        usleep(30_000)
        #expect(!a.isLinkUp && !b.isLinkUp)
        try a.enableLink()
        usleep(30_000)
        #expect(!a.isLinkUp, "up before the peer enabled the link")
        try b.enableLink()
        #expect(eventually { a.isLinkUp && b.isLinkUp })
        #expect(a.pollEvents().contains(.link) && b.pollEvents().contains(.link))
        #expect(a.scratchpadCount == 16 && a.memoryWindowCount == 1 && a.doorbellValidMask == 0xFFFF_FFFF)

        // Scratchpads: A writes B's, B reads its own; and back.
        a.writePeerScratchpad(3, 0xDEAD_BEEF)
        #expect(b.readScratchpad(3) == 0xDEAD_BEEF && a.readPeerScratchpad(3) == 0xDEAD_BEEF)
        b.writePeerScratchpad(15, 42)
        #expect(a.readScratchpad(15) == 42)
        b.writeScratchpad(0, 7)
        #expect(a.readPeerScratchpad(0) == 7)

        // Doorbells: set bits accumulate, masks hide events but not pending bits, clear clears.
        #expect(b.readDoorbell() == 0 && b.pollEvents().isEmpty)
        a.ringPeerDoorbell(0b101)
        a.ringPeerDoorbell(0b010)
        #expect(b.readDoorbell() == 0b111 && a.readDoorbell() == 0)
        #expect(b.waitForEvents(timeout: .milliseconds(10)) == .doorbell)
        b.setDoorbellMask(0b111)
        #expect(b.pollEvents().isEmpty && b.readDoorbell() == 0b111)
        b.clearDoorbellMask(0b111)
        b.clearDoorbell(0b011)
        #expect(b.readDoorbell() == 0b100)
        b.clearDoorbell(0b100)
        b.ringPeerDoorbell(1 << 31 | 1 << 40)   // bit 40 is not valid
        #expect(a.readDoorbell() == 1 << 31)

        // Windows: A's outbound window 0 is B's inbound window 0, the same bytes.
        let out = try a.peerMemoryWindow(0)
        let inbound = try b.allocateInboundBuffer(length: out.length, alignment: 4096)
        try b.setMemoryWindowTranslation(0, busAddress: inbound.region.busAddress, size: out.length)
        out.store64(0x0123_4567_89AB_CDEF, at: 128)
        #expect(inbound.region.mmio.load64(at: 128) == 0x0123_4567_89AB_CDEF)
        #expect(throws: NTBError.self) { try b.allocateInboundBuffer(length: 4096, alignment: 4096) }   // one window only
        #expect(throws: NTBError.self) { try b.setMemoryWindowTranslation(0, busAddress: inbound.region.busAddress + 4096, size: 4096) }
        inbound.close()
        _ = try b.allocateInboundBuffer(length: 4096, alignment: 4096)   // free again

        // Clean shutdown: the survivor sees the link go down at once (well within the timeout).
        let t0 = ContinuousClock.now
        b.close()
        #expect(eventually { !a.isLinkUp })
        #expect(ContinuousClock.now - t0 < .milliseconds(150))
    }

    /// A peer that stops beating (a VM powered off, a process killed) without writing the shutdown
    /// state: the link goes down after the timeout, not before. The peer here is forged by the test.
    @Test func aSilentPeerIsLinkDownWithinTheBound() throws {
        let f = SharedFile("silent")
        let a = try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions())
        defer { a.close() }
        try a.enableLink()
        let (mapping, m) = try f.map()
        _ = mapping
        let b = IVSHMEMLayout.side(.b)
        m.store64(99, at: b + IVSHMEMLayout.session)
        m.store32(IVSHMEMLayout.State.enabled.rawValue, at: b + IVSHMEMLayout.state)
        var beat: UInt64 = 0
        #expect(eventually { beat += 1; m.store64(beat, at: b + IVSHMEMLayout.heartbeat); return a.isLinkUp })
        // Keep beating for a while: stays up.
        for _ in 0..<50 { beat += 1; m.store64(beat, at: b + IVSHMEMLayout.heartbeat); usleep(2000) }
        #expect(a.isLinkUp)
        let stopped = ContinuousClock.now
        #expect(eventually { !a.isLinkUp })
        let took = ContinuousClock.now - stopped
        // 200 ms timeout + one 5 ms beat; the upper limit leaves room for a loaded CI machine's scheduling.
        #expect(took >= .milliseconds(150) && took < .milliseconds(500), "link down after \(took); the bound is 200 ms")
    }

    /// A peer that restarts faster than the timeout (a new session, still beating) is still a link
    /// down then up, so the transport resets. The peer is forged by the test.
    @Test func aRestartedPeerIsSeenAsLinkDownThenUp() throws {
        let f = SharedFile("restart")
        let a = try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions())
        defer { a.close() }
        try a.enableLink()
        let (mapping, m) = try f.map()
        _ = mapping
        let b = IVSHMEMLayout.side(.b)
        m.store64(1, at: b + IVSHMEMLayout.session)
        m.store32(IVSHMEMLayout.State.enabled.rawValue, at: b + IVSHMEMLayout.state)
        var beat: UInt64 = 0
        func beating(_ condition: () -> Bool) -> Bool {
            eventually { beat += 1; m.store64(beat, at: b + IVSHMEMLayout.heartbeat); return condition() }
        }
        #expect(beating { a.isLinkUp })
        _ = a.pollEvents()
        for _ in 0..<20 { beat += 1; m.store64(beat, at: b + IVSHMEMLayout.heartbeat); usleep(1000) }
        #expect(a.pollEvents().isEmpty, "a steady peer raised a link event")
        m.store64(2, at: b + IVSHMEMLayout.session)   // restarted: new session, heartbeat never stops
        var sawDown = false
        #expect(beating { sawDown = sawDown || !a.isLinkUp; return sawDown })
        #expect(a.pollEvents().contains(.link))
        #expect(beating { a.isLinkUp })
    }

    @Test func garbageHeadersAreClearErrors() throws {
        let f = SharedFile("garbage")
        let (mapping, m) = try f.map()
        _ = mapping
        // Not our header at all.
        m.store64(0x1122_3344_5566_7788, at: 0)
        #expect { try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions()) } throws: { error in
            "\(error)".contains("does not start with an ntb-transport ivshmem header")
        }
        // Our magic, damaged geometry: each field is checked.
        let a = try { () throws -> IVSHMEMDevice in
            m.store64(0, at: 0)
            return try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions())
        }()
        a.close()
        typealias L = IVSHMEMLayout
        let good = (0..<8).map { m.load64(at: $0 * 8) }
        func damaged(_ offset: Int, _ value: UInt64, bits: Int = 64, mentions field: String) {
            for (i, v) in good.enumerated() { m.store64(v, at: i * 8) }
            if bits == 32 { m.store32(UInt32(value), at: offset) } else { m.store64(value, at: offset) }
            #expect { try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions()) } throws: { error in
                "\(error)".contains(field) && "\(error)".contains("zero the shared memory")
            }
        }
        damaged(L.versionOffset, 2, bits: 32, mentions: "version")
        damaged(L.headerSizeOffset, 0x2000, bits: 32, mentions: "header_size")
        damaged(L.sharedSizeOffset, 2 << 20, mentions: "shm_size")
        damaged(L.scratchpadCountOffset, 1000, bits: 32, mentions: "spad_count")
        damaged(L.windowCountOffset, 0, bits: 32, mentions: "mw_count")
        damaged(L.windowCountOffset, 4, bits: 32, mentions: "mw_offset + 2 * mw_count * mw_size")
        damaged(L.windowSizeOffset, 100, mentions: "mw_size")
        damaged(L.windowOffsetOffset, 0x800, mentions: "mw_offset")
        damaged(L.windowOffsetOffset, UInt64(1) << 62, mentions: "mw_offset")
        damaged(L.doorbellMaskOffset, 0, mentions: "db_valid_mask")
        // A header left half-written by a dead side.
        m.store64(L.initialising, at: 0)
        var o = fastOptions(); o.initialisationWait = .milliseconds(50)
        #expect { try IVSHMEMDevice.open(file: f.path, side: .a, options: o) } throws: { error in "\(error)".contains("half-written") }
        // Too small to hold anything.
        let tiny = SharedFile("tiny", size: 8192)
        #expect(throws: NTBError.self) { try IVSHMEMDevice.open(file: tiny.path, side: .a, options: fastOptions()) }
    }

    @Test func aSideInUseByALiveProcessIsRefused() throws {
        let f = SharedFile("inuse")
        let a = try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions())
        defer { a.close() }
        #expect { try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions()) } throws: { error in "\(error)".contains("is in use by process") }
        // Closed cleanly: reusable at once.
        a.close()
        let again = try IVSHMEMDevice.open(file: f.path, side: .a, options: fastOptions())
        again.close()
    }
}
