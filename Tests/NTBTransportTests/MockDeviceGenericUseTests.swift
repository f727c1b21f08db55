import Testing
import NTBHardware
import NTBMock
import PCIKit
#if canImport(Glibc)
import Glibc
#endif

/// What the transport does with any `NTBDevice`, generic (statically dispatched) over the mock device:
/// the ntb_transport scratchpad handshake (hardware-reference §2.2: sizes, NUM_MWS, NUM_QPS, VERSION into the
/// peer's scratchpads; read own) and a doorbell round trip.
func handshake<D: NTBDevice>(_ device: D, qps: UInt32) -> Bool {
    for mw in 0..<device.memoryWindowCount {
        let size = (try? device.memoryWindowAlignment(mw).maxSize) ?? 0
        device.writePeerScratchpad(4 + 2 * mw, UInt32(truncatingIfNeeded: size >> 32))
        device.writePeerScratchpad(5 + 2 * mw, UInt32(truncatingIfNeeded: size))
    }
    device.writePeerScratchpad(3, UInt32(device.memoryWindowCount))
    device.writePeerScratchpad(2, qps)
    device.writePeerScratchpad(0, 4)
    return device.readScratchpad(0) == 4 && device.readScratchpad(2) == qps && device.readScratchpad(3) == UInt32(device.memoryWindowCount)
}

@Suite struct MockDeviceGenericUseTests {
    @Test func transportHandshake_overBothMockSides() throws {
        let dir = "/dev/shm/ntb-generic-\(getpid())"
        var c = MockLinkConfiguration()
        c.hostRAMSize = 4 << 20
        c.endpointRAMSize = 8 << 20
        c.memoryWindowSize = 1 << 20
        c.heartbeatMilliseconds = 10
        try MockLink.create(at: dir, configuration: c)
        defer { try? MockLink.remove(at: dir, force: true) }
        let ep = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
        let host = try MockNTBDevice(directory: dir, role: .host, options: .fast)
        try host.enableLink()
        #expect(ep.waitForEvents(timeout: .seconds(2)).contains(.link))
        #expect(ep.isLinkUp)
        _ = handshake(host, qps: 2)
        #expect(handshake(ep, qps: 2))
        #expect(handshake(host, qps: 2))
        #expect(host.readScratchpad(4) == 0 && host.readScratchpad(5) == 1 << 20)

        host.ringPeerDoorbell(1)
        #expect(ep.waitForEvents(timeout: .seconds(2)).contains(.doorbell))
        ep.clearDoorbell(1)
        ep.ringPeerDoorbell(1)
        #expect(host.waitForEvents(timeout: .seconds(2)).contains(.doorbell))
    }
}
