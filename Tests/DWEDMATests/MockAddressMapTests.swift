import Testing
import NTBHardware
import NTBMock
import PCIKit
#if canImport(Glibc)
import Glibc
#endif

/// The mock link's memory segments are the address map the DW eDMA engine model works on: a write
/// through a segment pointer at a bus address must be what the other side sees at that address.
@Suite struct MockAddressMapTests {
    @Test func endpointSegments_coverBothRAMs_andAliasTheWindows() throws {
        let dir = "/dev/shm/ntb-edma-map-\(getpid())"
        var c = MockLinkConfiguration()
        c.hostRAMSize = 4 << 20
        c.endpointRAMSize = 8 << 20
        c.memoryWindowSize = 1 << 20
        c.heartbeatMilliseconds = 10
        try MockLink.create(at: dir, configuration: c)
        defer { try? MockLink.remove(at: dir, force: true) }
        let ep = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
        let host = try MockNTBDevice(directory: dir, role: .host, options: .fast)
        let segments = ep.memorySegments
        #expect(segments.map(\.busAddress) == [MockLinkConfiguration.endpointRAMBus, MockLinkConfiguration.hostRAMBus])
        #expect(segments.map(\.length) == [8 << 20, 4 << 20])
        #expect(host.memorySegments.map(\.busAddress) == [MockLinkConfiguration.hostRAMBus])

        // An engine writing host memory by bus address (the PCIe side of a WRITE channel).
        try host.enableLink()
        let hostBuffer = try host.allocateInboundBuffer(length: 4096, alignment: 4096)
        let hostSeg = segments[1]
        #expect(hostSeg.contains(hostBuffer.region.busAddress, length: 4096))
        hostSeg.region.slice(offset: Int(hostBuffer.region.busAddress - hostSeg.busAddress), length: 4096).mmio.store32(0xE0DA, at: 8)
        #expect(hostBuffer.region.mmio.load32(at: 8) == 0xE0DA)

        // An engine reading endpoint memory where the host wrote through its MW BAR.
        let epBuffer = try ep.allocateInboundBuffer(length: 1 << 20, alignment: 4096)
        try ep.setMemoryWindowTranslation(0, busAddress: epBuffer.region.busAddress, size: 1 << 20)
        try host.peerMemoryWindow(0).store64(0xABCD, at: 512)
        let epSeg = segments[0]
        #expect(epSeg.region.slice(offset: Int(epBuffer.region.busAddress - epSeg.busAddress), length: 1 << 20).mmio.load64(at: 512) == 0xABCD)
        #expect(!epSeg.contains(epSeg.busAddress + UInt64(epSeg.length), length: 1))
    }
}
