#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NTBHardware
import NTBMock
import NTBPorts
import NTBTransport
import PCIKit
import Synchronization
import Testing

/// A mock link directory for one test, removed with it.
final class MockPortLink {
    let dir: String
    init(_ name: String) throws {
        dir = "/dev/shm/ntb-ports-test-\(name)-\(getpid())"
        var c = MockLinkConfiguration()
        c.memoryWindowSize = 1 << 20
        c.hostRAMSize = 16 << 20
        c.endpointRAMSize = 16 << 20
        c.heartbeatMilliseconds = 5
        try MockLink.create(at: dir, configuration: c)
    }
    deinit { try? MockLink.remove(at: dir, force: true) }

    var address: PortAddress { .mock(directory: dir) }
    func open(_ role: MockRole) throws -> MockNTBDevice { try MockNTBDevice(directory: dir, role: role, options: .fast) }

    /// A policy file saying `entry` (with `PORT` replaced by this link's port), as --policy names it.
    func policy(_ entry: String) throws -> PolicySource {
        let path = dir + ".policy"
        try Data(entry.replacingOccurrences(of: "PORT", with: "mock:\(dir)").utf8).write(to: URL(fileURLWithPath: path))
        return PolicySource(path: path, origin: .option)
    }

    static func linkUp(_ host: MockNTBDevice, _ ep: MockNTBDevice) throws {
        try ep.enableLink()
        try host.enableLink()
        let deadline = ContinuousClock.now + .seconds(10)
        while !(host.isLinkUp && ep.isLinkUp) {
            guard ContinuousClock.now < deadline else { throw PortError.device(.linkDown) }
            _ = host.pollEvents(); _ = ep.pollEvents()
            usleep(1000)
        }
    }
}

/// Counts how often the peer's eDMA window is read.
final class ProbeCounter: Sendable {
    let count = Mutex(0)
    func probe(_ device: MockNTBDevice, _ locator: EDMALocator) -> Result<ValidatedEDMAWindow, EDMAWindowError> {
        count.withLock { $0 += 1 }
        return EDMAPeerWindow.probe(device, locator: locator)
    }
    var calls: Int { count.withLock { $0 } }
}

@Suite(.serialized) struct BackendSelectionTests {
    func select(_ link: MockPortLink, _ host: MockNTBDevice, policy: String, backend: TransportBackendKind? = nil,
                _ counter: ProbeCounter) throws -> BackendSelection {
        var settings = TransportSettings()
        settings.policy = try link.policy(policy)
        settings.backend = backend
        return try BackendSelector.select(for: host, port: link.address, settings: settings, probe: counter.probe)
    }

    @Test func hostNeedsNoProbe() throws {
        let link = try MockPortLink("sel-host")
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        let counter = ProbeCounter()
        let s = try select(link, host, policy: "host@PORT\n", counter)
        #expect(s.kind == .host && s.probes == 0 && counter.calls == 0)
        #expect(s.decision?.reasons.first?.contains("says host@mock:") == true)
    }

    @Test func backendOptionSkipsThePolicyAndTheProbe() throws {
        let link = try MockPortLink("sel-option")
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        let counter = ProbeCounter()
        var settings = TransportSettings()
        settings.policy = PolicySource(path: "/nonexistent/ntb/policy.conf", origin: .option)   // never read
        settings.backend = .edma
        let s = try BackendSelector.select(for: host, port: link.address, settings: settings, probe: counter.probe)
        #expect(s.kind == .edma && s.decision == nil && counter.calls == 0)
    }

    @Test func autoFallsBackToHostAfterOneProbeWhenNothingIsPublished() throws {
        let link = try MockPortLink("sel-auto-host")
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        try MockPortLink.linkUp(host, ep)
        let counter = ProbeCounter()
        let s = try select(link, host, policy: "auto@PORT\n", counter)
        #expect(s.kind == .host && s.probes == 1 && counter.calls == 1)
        #expect(s.edma.validatedWindow == nil)
        #expect(s.decision?.reasons.contains { $0.contains("edma is not usable") && $0.contains("trying host") } == true)
    }

    @Test func edmaIsRefusedAfterOneProbeWhenNothingIsPublished() throws {
        let link = try MockPortLink("sel-edma-refused")
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        try MockPortLink.linkUp(host, ep)
        let counter = ProbeCounter()
        #expect { _ = try select(link, host, policy: "edma@PORT\n", counter) } throws: { error in
            guard case let .notOpened(why)? = error as? PortError else { return false }
            return why.decision.outcome == .refuse && "\(error)".contains("the policy requires edma")
        }
        #expect(counter.calls == 1)
    }

    @Test(arguments: ["auto@PORT\n", "edma@PORT\n"])
    func edmaIsChosenAfterOneProbeAndTheWindowIsHandedOn(_ policy: String) throws {
        let link = try MockPortLink("sel-edma")
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        try MockPortLink.linkUp(host, ep)
        let (published, _) = try EDMAEngineAccess.publish(ep, locator: EDMALocator(), registerSize: 0x2000)
        _ = published
        let counter = ProbeCounter()
        let s = try select(link, host, policy: policy, counter)
        #expect(s.kind == .edma && s.probes == 1 && counter.calls == 1)
        let window = try #require(s.edma.validatedWindow)
        #expect(window.info == published.info)
        #expect(s.edma.locator == EDMALocator())
    }

    @Test func theEndpointSideDoesNotProbe() throws {
        let link = try MockPortLink("sel-endpoint")
        let ep = try link.open(.endpoint)
        defer { ep.close() }
        let counter = ProbeCounter()
        var settings = TransportSettings()
        settings.policy = try link.policy("auto@PORT\n")
        let s = try BackendSelector.select(for: ep, port: link.address, settings: settings, probe: counter.probe)
        #expect(s.kind == .edma && s.probes == 0 && counter.calls == 0)
    }

    @Test func aMalformedPolicyIsAPolicyErrorNamingTheCheckCommand() throws {
        let link = try MockPortLink("sel-bad-policy")
        let ep = try link.open(.endpoint), host = try link.open(.host)
        defer { host.close(); ep.close() }
        #expect { _ = try select(link, host, policy: "hots@PORT\n", ProbeCounter()) } throws: { error in
            guard case .policy(.invalid)? = error as? PortError else { return false }
            return "\(error)".contains("ntb-transport policy check")
        }
    }
}
