import Testing
import PCIKit
import Synchronization
@testable import NTBHardware
#if canImport(Glibc)
import Glibc
#endif

/// The vNTB service thread's idle back-off in fast mode: it must not change what the host or a client
/// of the endpoint sees (commands served, doorbells delivered to readers, pollers and sleepers).
@Suite struct VNTBServiceTests {
    @Test func anIdleFastEndpoint_backsOff_towardsLinuxsPeriod() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .microseconds(100))
        defer { ep.stop() }
        let before = ep.servicePasses
        usleep(300_000)
        let passes = ep.servicePasses - before
        // At a fixed 100 µs period 300 ms would be ~3000 passes; backing off to 5 ms leaves about 60 + 6.
        // (A slow machine only lowers the count, so this cannot fail for lack of time.)
        #expect(passes < 600, "an idle fast-mode endpoint woke \(passes) times in 300 ms")
        #expect(passes > 0)
    }

    @Test func afterBackingOff_commandsAreStillServed() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .microseconds(100))
        defer { ep.stop() }
        usleep(100_000)   // idle: the service thread is at its longest sleep now
        let host = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: TestMemory(1 << 17)), map: .rcarS4, vectors: try vectors(16), msix: true, allocator: noMemory)
        try host.enableLink()   // CONFIGURE_DOORBELL, LINK_UP: each polled by the backed-off thread, within the 1 s command timeout
        #expect(host.isLinkUp && ep.isLinkUp)
        #expect(ep.commandsServed == 2)
    }

    @Test func aDoorbell_reachesAReader_withoutTheServiceThread() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .microseconds(100))
        let host = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: TestMemory(1 << 17)), map: .rcarS4, vectors: try vectors(16), msix: true, allocator: noMemory)
        try host.enableLink()
        ep.stop()   // no service pass from now on
        host.ringPeerDoorbell(1 << 2)
        #expect(ep.readDoorbell() == 1 << 2, "readDoorbell scans the doorbell array itself")
        #expect(c.doorbells.region.load32(at: 4 * 4) == 0, "the slot was taken")
        ep.clearDoorbell(1 << 2)
        host.ringPeerDoorbell(1 << 5)
        #expect(ep.pollEvents().contains(.doorbell))
        #expect(ep.readDoorbell() == 1 << 5)
    }

    @Test func aSleeper_getsADoorbell_fromABackedOffEndpoint() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .microseconds(100))
        defer { ep.stop() }
        let host = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: TestMemory(1 << 17)), map: .rcarS4, vectors: try vectors(16), msix: true, allocator: noMemory)
        try host.enableLink()
        usleep(100_000)   // backed off
        let got = SendableBox(Mutex<UInt64>(0))
        let box = SendableBox(ep)
        let waiter = spawnThread {
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                if box.value.waitForEvents(timeout: .seconds(1)).contains(.doorbell) {
                    let bits = box.value.readDoorbell()
                    got.value.withLock { $0 = bits }
                    return
                }
            }
        }
        usleep(20_000)    // let it fall asleep
        host.ringPeerDoorbell(1 << 7)
        pthread_join(waiter, nil)
        #expect(got.value.withLock { $0 } == 1 << 7)
    }
}

/// Hands a value to a test thread.
final class SendableBox<T: ~Copyable>: @unchecked Sendable {
    let value: T
    init(_ value: consuming T) { self.value = value }
}

/// Fuzz finding 4: a hostile host overwrites fields the endpoint function owns; later hosts must still link.
@Suite struct VNTBOwnedFieldsTests {
    static func poison(_ ctrl: MMIORegion) {
        ctrl.store32(0x8000_0000, at: EPFControl.topology)
        ctrl.store32(0xFFFF_FFFF, at: EPFControl.memoryWindowCount)
        ctrl.store32(7, at: EPFControl.spadCount)
        ctrl.store32(0, at: EPFControl.doorbellData(2))
        ctrl.store32(0x1_0001, at: EPFControl.mwSize(1))
    }

    @Test func aNewHost_afterAHostileOne_findsTheControlRegionAsBound() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .milliseconds(1))
        defer { ep.stop() }
        let pristine = (0..<EPFControl.sizeVersion1 / 4).map { c.configSpace.load32(at: $0 * 4) }
        Self.poison(c.configSpace)
        ep.hostLost()   // the hostile host's session ended
        let now = (0..<EPFControl.sizeVersion1 / 4).map { c.configSpace.load32(at: $0 * 4) }
        #expect(now == pristine)
        #expect(ep.ownedFieldsRepaired >= 5)
        let host = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: TestMemory(1 << 17)), map: .rcarS4, vectors: try vectors(16), msix: true, allocator: noMemory)
        try host.enableLink()
        #expect(host.isLinkUp && ep.isLinkUp)
    }

    @Test func theServicePass_repairsOwnedFields_whileAHostIsAttached() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .milliseconds(1))
        ep.stop()   // passes by hand
        let host = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: TestMemory(1 << 17)), map: .rcarS4, vectors: try vectors(16), msix: true, allocator: noMemory)
        _ = host
        Self.poison(c.configSpace)
        ep.serviceOnce()
        #expect(c.configSpace.load32(at: EPFControl.topology) == 1)
        #expect(c.configSpace.load32(at: EPFControl.memoryWindowCount) == 2)
        #expect(c.configSpace.load32(at: EPFControl.spadCount) == 16)
        #expect(c.configSpace.load32(at: EPFControl.doorbellData(2)) == 3)
        #expect(c.configSpace.load32(at: EPFControl.mwSize(1)) == 1 << 16)
        // Host-written fields are left alone.
        c.configSpace.store64(0x1234_5000, at: EPFControl.lowerAddress)
        ep.serviceOnce()
        #expect(c.configSpace.load64(at: EPFControl.lowerAddress) == 0x1234_5000)
    }
}
