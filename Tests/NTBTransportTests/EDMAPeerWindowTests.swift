#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBMock
import PCIKit
import Testing
@testable import NTBTransport

/// The eDMA window over the mock NTB link: the endpoint publishes into its last inbound window, the
/// host probes its last outbound window, and the policy's `auto` decides from what it read.
@Suite(.serialized) struct EDMAPeerWindowTests {
    static func linkUp(_ host: MockNTBDevice, _ ep: MockNTBDevice) throws -> Bool {
        try ep.enableLink()
        try host.enableLink()
        let deadline = ContinuousClock.now + .seconds(10)
        while !(host.isLinkUp && ep.isLinkUp) {
            if ContinuousClock.now > deadline { return false }
            _ = host.pollEvents(); _ = ep.pollEvents()
            usleep(1000)
        }
        return true
    }

    @Test func hostValidatesWhatTheEndpointPublishedAndAutoPicksEDMA() throws {
        let link = try LinkFixture("edma-window", windowSize: 1 << 20)
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        let policy = try #require(Policy.parse("auto@mock:\(link.dir)", file: "policy.conf").policy)
        let port = PolicyPort(.mock(directory: link.dir))
        let locator = policy.decide(for: port).locator

        let published = try EDMAPeerWindow.publish(ep, locator: locator, registerSize: 0x2000)
        #expect(published.window == ep.memoryWindowCount - 1)
        #expect(published.layout.requiredSize == 7 * 4096 + 0x2000)
        #expect(try Self.linkUp(host, ep))

        let probed = EDMAPeerWindow.probe(host, locator: locator, peerWindowBase: published.buffer.region.busAddress)
        let window = try probed.get()
        #expect(window.info == published.info)
        #expect(window.window == host.peerMemoryWindowCount - 1)
        let decision = policy.decide(for: port, edma: EDMAProbe(probed))
        #expect(decision.outcome == .use(.edma))

        // The host flags a queue pair through the window; the endpoint finds it in its own page.
        let page = try host.peerMemoryWindow(window.window).subregion(offset: window.layout.notifyOffset, length: 4096)
        EDMANotifyPage.raise(page, queuePair: 2)
        #expect(EDMANotifyPage.collect(published.notifyPage, queuePairs: 4) == 0b100)

        // Withdrawn: auto falls back to host and says why.
        EDMAInfo.retract(from: published.buffer.region.mmio)
        let after = policy.decide(for: port, edma: EDMAProbe(EDMAPeerWindow.probe(host, locator: locator)))
        #expect(after.outcome == .use(.host))
        #expect(after.reasons.contains { $0.hasPrefix("edma is not usable: bad magic 0x00000000 at offset 0 of window 1") })
    }

    @Test func aWindowTheDeviceDoesNotHaveIsRefusedOnBothSides() throws {
        let link = try LinkFixture("edma-nowindow")
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        var locator = EDMALocator()
        locator.window = .index(7)
        #expect(throws: NTBError.self) { try EDMAPeerWindow.publish(ep, locator: locator, registerSize: 0x2000) }
        guard case let .failure(error) = EDMAPeerWindow.probe(host, locator: locator) else {
            Issue.record("window 7 probed"); return
        }
        #expect(error.problem == .noSuchWindow(selector: .index(7), count: host.peerMemoryWindowCount))
    }
}
