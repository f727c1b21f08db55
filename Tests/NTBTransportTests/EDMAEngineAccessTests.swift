#if canImport(Glibc)
import Glibc
#endif
import DWEDMA
import NTBHardware
import NTBMock
import PCIKit
import Testing
@testable import NTBTransport

/// The eDMA reached generically through ``PeerEDMAAccess`` (the mock link adopts it): the endpoint
/// starts its engine and publishes the window before link-up, the host probes and opens the peer's
/// engine after, and a read channel the host drives moves host memory into endpoint memory.
@Suite(.serialized) struct EDMAEngineAccessTests {
    /// Generic over the capability: nothing here knows the mock type.
    static func connectAndRead<Device: PeerEDMAAccess>(host: Device, endpoint: Device, locator: EDMALocator,
                                                        length: Int) throws -> (sent: [UInt8], received: [UInt8]) {
        let (published, local) = try EDMAEngineAccess.publish(endpoint, locator: locator, registerSize: 0x2000)
        #expect(local.writeChannels >= locator.dataChannels)
        let (window, remote) = try EDMAEngineAccess.connect(host, locator: locator, peerWindowBase: published.buffer.region.busAddress)
        #expect(window.info == published.info)
        #expect(remote.readChannels >= locator.publishedChannelCount)

        let source = try host.allocateInboundBuffer(length: 4096, alignment: 4096)
        let sink = try endpoint.allocateInboundBuffer(length: 4096, alignment: 4096)
        defer { source.close(); sink.close() }
        let sent = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        unsafe sent.withUnsafeBytes { unsafe source.region.mmio.copy(from: $0, toOffset: 0) }
        let ll = try host.peerMemoryWindow(window.window).subregion(offset: window.layout.linkedListOffset(1), length: window.layout.pageSize)
        var channel = try remote.channel(.read, 1, ll: ll, llBusAddress: window.info.linkedListAddresses[1])
        _ = try channel.submit(EDMATransfer(source: source.region.busAddress, destination: sink.region.busAddress, length: UInt32(length)))
        guard case .done = try channel.wait(timeout: .seconds(5)) else {
            Issue.record("the read channel did not complete")
            return (sent, [])
        }
        return (sent, (0..<length).map { sink.region.mmio.load8(at: $0) })
    }

    @Test func theEndpointPublishesAndTheHostDrivesThePeersReadChannel() throws {
        let link = try LinkFixture("edma-access", windowSize: 1 << 20)
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        let locator = EDMALocator()
        #expect(try EDMAPeerWindowTests.linkUp(host, ep))
        // Nothing published yet: the host refuses the port and says why.
        #expect { try EDMAEngineAccess.connect(host, locator: locator) } throws: {
            // Said once (the probe's finding carries the prefix; the connect path must not add it again).
            "\($0)".components(separatedBy: "the peer's eDMA window is not usable").count == 2
        }
        let (sent, received) = try Self.connectAndRead(host: host, endpoint: ep, locator: locator, length: 3000)
        #expect(received == sent)
    }

    /// A window the policy's probe validated is used as is: connect does not read the peer's info again
    /// (here it is withdrawn after the probe, so a second read would refuse the port).
    @Test func connectUsesTheProbedWindowWithoutProbingAgain() throws {
        let link = try LinkFixture("edma-access-probed", windowSize: 1 << 20)
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        let locator = EDMALocator()
        #expect(try EDMAPeerWindowTests.linkUp(host, ep))
        let (published, _) = try EDMAEngineAccess.publish(ep, locator: locator, registerSize: 0x2000)
        let probed = try EDMAPeerWindow.probe(host, locator: locator).get()
        EDMAInfo.retract(from: published.buffer.region.mmio)
        #expect(throws: TransportError.self) { try EDMAEngineAccess.connect(host, locator: locator) }
        let (window, remote) = try EDMAEngineAccess.connect(host, locator: locator, validated: probed)
        #expect(window == probed)
        #expect(remote.readChannels >= locator.publishedChannelCount)
    }

    @Test func eachRoleRefusesTheOthersPart() throws {
        let link = try LinkFixture("edma-access-roles", windowSize: 1 << 20)
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        #expect { try EDMAEngineAccess.publish(host, locator: EDMALocator(), registerSize: 0x2000) } throws: {
            "\($0)".contains("runs on the endpoint side")
        }
        #expect(throws: NTBError.self) { try ep.peerEDMARegisters() }
    }
}
