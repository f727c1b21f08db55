import Testing
import NTBHardware
import PCIKit
@testable import NTBMock
#if canImport(Glibc)
import Glibc
#endif

/// A fresh link directory under /dev/shm, removed at the end.
func withLink<T>(_ configure: (inout MockLinkConfiguration) -> Void = { _ in }, _ body: (String) throws -> T) throws -> T {
    let dir = "/dev/shm/ntb-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    var c = MockLinkConfiguration()
    c.heartbeatMilliseconds = 10
    c.hostRAMSize = 8 << 20
    c.endpointRAMSize = 8 << 20
    c.memoryWindowSize = 1 << 20
    configure(&c)
    try MockLink.create(at: dir, configuration: c)
    defer { try? MockLink.remove(at: dir, force: true) }
    return try body(dir)
}

/// Waits up to `timeout` for `condition`.
func eventually(_ timeout: Duration = .seconds(2), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

@Suite struct MockLinkTests {
    @Test(arguments: MockLinkProfile.allCases)
    func linkUp_doorbellsAndScratchpadsBothWays_inOneProcess(profile: MockLinkProfile) throws {
        try withLink({ $0.profile = profile }) { dir in
            let ep = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            let host = try MockNTBDevice(directory: dir, role: .host, options: .fast)
            #expect(eventually { host.link.isPeerPresent && ep.link.isPeerPresent })
            #expect(!host.isLinkUp)
            try host.enableLink()
            #expect(host.isLinkUp)
            #expect(eventually { ep.isLinkUp })
            #expect(ep.pollEvents().contains(.link))

            // Scratchpads: host's peer spads are the endpoint's own, and back.
            host.writePeerScratchpad(3, 0xDEAD_BEEF)
            #expect(ep.readScratchpad(3) == 0xDEAD_BEEF)
            ep.writePeerScratchpad(5, 0x1234_5678)
            #expect(host.readScratchpad(5) == 0x1234_5678)
            #expect(host.readPeerScratchpad(3) == 0xDEAD_BEEF)

            // Doorbells host -> endpoint (polled slot b + 2), endpoint -> host (MSI vector b + 2).
            #expect(host.doorbellValidMask == ep.doorbellValidMask)
            host.ringPeerDoorbell(1 << 4)
            #expect(ep.waitForEvents(timeout: .seconds(2)).contains(.doorbell))
            #expect(ep.readDoorbell() == 1 << 4)
            ep.clearDoorbell(1 << 4)
            #expect(ep.readDoorbell() == 0)
            ep.ringPeerDoorbell(1 << 2 | 1 << 0)
            #expect(eventually { host.pollEvents().contains(.doorbell) && host.readDoorbell() == 0b101 })
            #expect(host.doorbellVectorMask(2) == 1)
            host.clearDoorbell(0b101)

            // Masked bits stay pending but raise no event.
            host.setDoorbellMask(1 << 1)
            ep.ringPeerDoorbell(1 << 1)
            usleep(20_000)
            #expect(!host.pollEvents().contains(.doorbell))
            #expect(host.readDoorbell() == 1 << 1)
            host.clearDoorbellMask(1 << 1)
            #expect(host.pollEvents().contains(.doorbell))
        }
    }

    @Test func memoryWindows_landInPeerMemoryAtTheTranslation() throws {
        try withLink { dir in
            let ep = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            let host = try MockNTBDevice(directory: dir, role: .host, options: .fast)
            try host.enableLink()

            // Endpoint inbound: its buffer, then the host writes through its MW BAR.
            let epBuffer = try ep.allocateInboundBuffer(length: 64 << 10, alignment: 4096)
            #expect(epBuffer.region.busAddress >= MockLinkConfiguration.endpointRAMBus)
            try ep.setMemoryWindowTranslation(1, busAddress: epBuffer.region.busAddress, size: 64 << 10)
            let hostView = try host.peerMemoryWindow(1)
            hostView.store64(0x0102_0304_0506_0708, at: 4096)
            #expect(epBuffer.region.mmio.load64(at: 4096) == 0x0102_0304_0506_0708)

            // Host inbound: CONFIGURE_MW maps the endpoint's outbound window onto host memory.
            let hostBuffer = try host.allocateInboundBuffer(length: 32 << 10, alignment: 4096)
            #expect(hostBuffer.region.busAddress >= MockLinkConfiguration.hostRAMBus)
            try host.setMemoryWindowTranslation(0, busAddress: hostBuffer.region.busAddress, size: 32 << 10)
            let epView = try ep.peerMemoryWindow(0)
            epView.store32(0xCAFE_F00D, at: 128)
            #expect(hostBuffer.region.mmio.load32(at: 128) == 0xCAFE_F00D)

            // Moving the translation keeps what was written at the old place.
            let second = try ep.allocateInboundBuffer(length: 64 << 10, alignment: 4096)
            try ep.setMemoryWindowTranslation(1, busAddress: second.region.busAddress, size: 64 << 10)
            hostView.store32(7, at: 0)
            #expect(second.region.mmio.load32(at: 0) == 7)
            #expect(epBuffer.region.mmio.load64(at: 4096) == 0x0102_0304_0506_0708)

            // A translation outside host RAM is refused by the endpoint: the command fails.
            #expect(throws: NTBError.commandFailed(command: "CONFIGURE_MW", status: 2)) {
                try host.setMemoryWindowTranslation(0, busAddress: 0x10_0000_0000, size: 4096)
            }
        }
    }

    @Test func secondOpenerOfASide_isRefused_andADeadSideIsTakenOver() throws {
        try withLink { dir in
            var ep: MockNTBDevice? = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            #expect(throws: NTBError.self) { _ = try MockNTBDevice(directory: dir, role: .endpoint) }
            #expect(MockLink.liveSides(at: dir) == [.endpoint])
            #expect(throws: NTBError.self) { try MockLink.create(at: dir, configuration: MockLinkConfiguration()) }
            ep?.close()
            ep = nil
            #expect(MockLink.liveSides(at: dir).isEmpty)
            let again = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            #expect(again.link.epoch == 2)
        }
    }

    @Test func openingAnUnknownDirectory_namesTheFix() {
        do {
            _ = try MockNTBDevice(directory: "/dev/shm/does-not-exist-\(getpid())", role: .host)
            Issue.record("opened a missing link")
        } catch {
            #expect(error.description.contains("mock up"))
        }
    }

    @Test func hostDeath_isLinkDownAtTheEndpoint_andANewHostLinksUp() throws {
        try withLink { dir in
            let ep = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            var host: MockNTBDevice? = try MockNTBDevice(directory: dir, role: .host, options: .fast)
            try host!.enableLink()
            #expect(eventually { ep.isLinkUp })
            host!.close()
            host = nil
            #expect(eventually(.seconds(1)) { !ep.isLinkUp })
            let second = try MockNTBDevice(directory: dir, role: .host, options: .fast)
            #expect(eventually { second.link.isPeerPresent })
            try second.enableLink()
            #expect(eventually { ep.isLinkUp && second.isLinkUp })
        }
    }

    @Test func arena_allocatesAlignedZeroedBuffers_andReusesFreedSpace() throws {
        try withLink { dir in
            let ep = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            let arena = ep.endpoint!.controller.endpointRAM
            let before = arena.freeBytes
            var a: DMABuffer? = try arena.allocate(length: 5000, alignment: 1 << 16)
            #expect(a!.region.busAddress % (1 << 16) == 0)
            #expect(a!.region.length == 8192)
            a!.region.mmio.store32(0xFFFF_FFFF, at: 0)
            let bus = a!.region.busAddress
            a = nil
            #expect(arena.freeBytes == before)
            let b = try arena.allocate(length: 4096, alignment: 1 << 16)
            #expect(b.region.busAddress == bus)
            #expect(b.region.mmio.load32(at: 0) == 0)
            #expect(throws: NTBError.self) { _ = try arena.allocate(length: 1 << 30, alignment: 4096) }
        }
    }
}
