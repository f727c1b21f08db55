import Testing
import DWEDMA
import NTBHardware
import PCIKit
@testable import NTBMock
#if canImport(Glibc)
import Glibc
#endif

/// The DW eDMA engine model hosted by the endpoint side of the mock link.
@Suite struct MockLinkEDMATests {
    @Test func theEndpointHostsTheModel_andTheHostReachesItsRegistersAndBothRAMs() throws {
        try withLink { dir in
            let ep = try MockNTBDevice(directory: dir, role: .endpoint, options: .fast)
            let host = try MockNTBDevice(directory: dir, role: .host, options: .fast)
            defer { host.close(); ep.close() }

            // Only the endpoint hosts it; before it does, the host has nothing to attach to.
            #expect(throws: NTBError.self) { try host.startEDMAModel() }
            #expect(throws: NTBError.self) { try ep.peerEDMARegisters() }
            #expect { try host.peerEDMARegisters() } throws: { "\($0)".contains("no DW eDMA engine model serves this link") }

            let model = try ep.startEDMAModel(writeChannels: 2, readChannels: 3)
            #expect(try ep.startEDMAModel() === model, "one model per endpoint")
            let controller = try DWEDMAController(registers: try host.peerEDMARegisters(), mode: .remote, ownership: .channels)
            #expect(controller.writeChannels == 2 && controller.readChannels == 3)

            // A write channel driven by the endpoint copies endpoint RAM into host RAM.
            let source = try ep.allocateInboundBuffer(length: 4096, alignment: 4096)
            let ll = try ep.allocateInboundBuffer(length: 4096, alignment: 4096)
            let sink = try host.allocateInboundBuffer(length: 4096, alignment: 4096)
            for i in 0..<300 { source.region.mmio.store8(UInt8(truncatingIfNeeded: i * 7 + 1), at: i) }
            let local = try DWEDMAController(registers: model.registerSpace(.endpoint), mode: .local, ownership: .channels)
            var channel = try local.channel(.write, 1, ll: ll.region.mmio, llBusAddress: ll.region.busAddress)
            _ = try channel.submit(EDMATransfer(source: source.region.busAddress, destination: sink.region.busAddress + 100, length: 300))
            guard case .done = try channel.wait(timeout: .seconds(2)) else { Issue.record("the DMA did not complete"); return }
            #expect((0..<300).allSatisfy { sink.region.mmio.load8(at: 100 + $0) == UInt8(truncatingIfNeeded: $0 * 7 + 1) })

            // Closing the endpoint stops the model: the host reads all ones, as from a vanished device.
            ep.close()
            #expect(try host.peerEDMARegisters().load32(at: EDMARegisters.ctrl) == 0xFFFF_FFFF)
        }
    }
}
