import Testing
@testable import NTBTransport

private func parsePort(_ text: String) -> PolicyPort {
    guard case let .success(p) = PolicyPort.parse(text) else { preconditionFailure("bad test port \(text)") }
    return p
}

struct DecisionCase: CustomTestStringConvertible, Sendable {
    let name: String
    let policy: String
    let port: String
    let probe: EDMAProbe
    let outcome: BackendDecision.Outcome
    /// Substrings the reasons must contain, in order.
    let because: [String]
    var testDescription: String { name }
}

@Suite struct PolicyDecisionTests {
    static let valid = EDMAProbe.usable("the peer published ntb_edma_info (5 read channels, regs 64K)")
    static let invalid = EDMAProbe.unusable("bad magic 0x00000000 at offset 0 of window 3 (expected 0x45444d41)")

    static let cases: [DecisionCase] = [
        DecisionCase(name: "auto with a valid published info picks edma",
                     policy: "auto@0000:01:00.0", port: "01:00.0", probe: valid, outcome: .use(.edma),
                     because: ["policy.conf:1:1 says auto@0000:01:00.0", "auto tries edma, then host",
                               "edma is usable: the peer published ntb_edma_info"]),
        DecisionCase(name: "auto without a valid info picks host and says why",
                     policy: "auto@0000:01:00.0", port: "01:00.0", probe: invalid, outcome: .use(.host),
                     because: ["auto tries edma, then host",
                               "edma is not usable: bad magic 0x00000000 at offset 0 of window 3 (expected 0x45444d41); trying host as the order allows",
                               "host needs nothing from the peer"]),
        DecisionCase(name: "auto not probed yet is undecided between edma and host",
                     policy: "auto@0000:01:00.0", port: "01:00.0", probe: .notProbed, outcome: .undecided([.edma, .host]),
                     because: ["edma needs a valid ntb_edma_info from the peer in window last (checked at link-up)"]),
        DecisionCase(name: "auto with order=host never uses edma",
                     policy: "auto@0000:01:00.0 order=host", port: "01:00.0", probe: valid, outcome: .use(.host),
                     because: ["auto tries host", "host needs nothing from the peer"]),
        DecisionCase(name: "auto with order=edma refuses like edma",
                     policy: "auto@0000:01:00.0 order=edma", port: "01:00.0", probe: invalid, outcome: .refuse,
                     because: ["the policy allows no fallback"]),
        DecisionCase(name: "edma with a valid info",
                     policy: "edma@0000:01:00.0", port: "0000:01:00.0", probe: valid, outcome: .use(.edma),
                     because: ["edma is usable"]),
        DecisionCase(name: "edma without a valid info refuses: no silent fallback",
                     policy: "edma@0000:01:00.0", port: "0000:01:00.0", probe: invalid, outcome: .refuse,
                     because: ["edma is not usable: bad magic",
                               "the policy allows no fallback (write auto@0000:01:00.0 or order=edma,host to allow host)"]),
        DecisionCase(name: "host ignores the probe",
                     policy: "host@0000:5f:00.0", port: "5f:00.0", probe: valid, outcome: .use(.host),
                     because: ["policy.conf:1:1 says host@0000:5f:00.0", "host needs nothing from the peer"]),
        DecisionCase(name: "kernel leaves the port alone",
                     policy: "kernel@0000:02:00.0", port: "02:00.0", probe: valid, outcome: .kernel,
                     because: ["left to the kernel's NTB driver"]),
        DecisionCase(name: "default entry applies to unnamed ports",
                     policy: "host@0000:5f:00.0\ndefault=auto", port: "0000:03:00.0", probe: valid, outcome: .use(.edma),
                     because: ["no entry for 0000:03:00.0; the default entry at policy.conf:2:1 says default=auto"]),
        DecisionCase(name: "built-in default is host",
                     policy: "# nothing", port: "mock:/tmp/m", probe: valid, outcome: .use(.host),
                     because: ["no entry for mock:/tmp/m and no default entry in policy.conf; the built-in default is host"]),
        DecisionCase(name: "mock port entry",
                     policy: "edma@mock:/tmp/m,host@01:00.0", port: "mock:/tmp/m", probe: valid, outcome: .use(.edma),
                     because: ["policy.conf:1:1 says edma@mock:/tmp/m"]),
    ]

    @Test(arguments: cases)
    func decides(_ c: DecisionCase) throws {
        let policy = try #require(Policy.parse(c.policy, file: "policy.conf").policy)
        let decision = policy.decide(for: parsePort(c.port), edma: c.probe)
        #expect(decision.outcome == c.outcome)
        let text = decision.reasons.joined(separator: "; ")
        var rest = Substring(text)
        for piece in c.because {
            guard let range = rest.firstRange(of: piece) else {
                Issue.record("reasons \"\(text)\" lack \"\(piece)\" (in order)")
                break
            }
            rest = rest[range.upperBound...]
        }
    }

    @Test func decisionCarriesTheEntrysLocator() throws {
        let policy = try #require(Policy.parse("auto@01:00.0 window=2 channels=1", file: "p").policy)
        let d = policy.decide(for: parsePort("01:00.0"), edma: Self.valid)
        #expect(d.locator.window == .index(2))
        #expect(d.locator.dataChannels == 1)
        #expect(d.outcomeName == "edma")
        #expect(d.description.hasPrefix("0000:01:00.0: edma: p:1:1 says auto@01:00.0 window=2 channels=1"))
    }

    @Test func windowSelectorResolves() {
        #expect(EDMAWindowSelector.last.resolve(windowCount: 2) == 1)
        #expect(EDMAWindowSelector.last.resolve(windowCount: 0) == nil)
        #expect(EDMAWindowSelector.index(1).resolve(windowCount: 2) == 1)
        #expect(EDMAWindowSelector.index(2).resolve(windowCount: 2) == nil)
    }
}

@Suite struct PolicyLoaderTests {
    @Test func optionBeatsEnvironmentBeatsDefaultPath() {
        let env = [PolicySource.environmentVariable: "/env/policy.conf"]
        #expect(PolicySource.locate(option: "/opt/p.conf", environment: env) == PolicySource(path: "/opt/p.conf", origin: .option))
        #expect(PolicySource.locate(option: nil, environment: env) == PolicySource(path: "/env/policy.conf", origin: .environment))
        #expect(PolicySource.locate(option: "", environment: [:]) == PolicySource(path: "/etc/ntb-transport/policy.conf", origin: .defaultPath))
        #expect(PolicySource.locate(option: nil, environment: [PolicySource.environmentVariable: ""]).origin == .defaultPath)
    }

    @Test func missingDefaultFileMeansBuiltInPolicy() throws {
        let loaded = try Policy.load(from: PolicySource(path: "/nonexistent/ntb/policy.conf", origin: .defaultPath))
        #expect(loaded.policy.entries.isEmpty && loaded.policy.defaultEntry == nil)
        #expect(loaded.note == "no policy file at /nonexistent/ntb/policy.conf; every port gets the built-in default host")
    }

    @Test func missingNamedFileIsAnError() {
        let source = PolicySource(path: "/nonexistent/ntb/policy.conf", origin: .option)
        #expect(throws: PolicyError.unreadable(source, reason: "No such file or directory")) {
            try Policy.load(from: source)
        }
        #expect(PolicyError.unreadable(source, reason: "No such file or directory").description
            == "cannot read the policy /nonexistent/ntb/policy.conf (from --policy): No such file or directory; check the path given by --policy")
    }

    @Test func invalidFileReportsTheFirstErrorAndTheCount() throws {
        let path = "/tmp/ntb-policy-test-\(UInt32.random(in: 0...UInt32.max)).conf"
        try writeTestFile(path, "edmaa@01:00.0\nhost@01:00.9\n")
        defer { removeTestFile(path) }
        let source = PolicySource(path: path, origin: .environment)
        do {
            _ = try Policy.load(from: source)
            Issue.record("loaded an invalid policy")
        } catch {
            guard case let .invalid(_, diagnostics) = error else { Issue.record("\(error)"); return }
            #expect(diagnostics.count == 2)
            #expect(error.description == "\(path):1:1: error: unknown backend 'edmaa'; expected one of host, edma, auto, kernel (and 1 more error); run `ntb-transport policy check \(path)` to see every error")
        }
    }

    @Test func validFileLoads() throws {
        let path = "/tmp/ntb-policy-test-\(UInt32.random(in: 0...UInt32.max)).conf"
        try writeTestFile(path, "default=auto\nkernel@02:00.0\n")
        defer { removeTestFile(path) }
        let loaded = try Policy.load(from: PolicySource(path: path, origin: .option))
        #expect(loaded.note == nil)
        #expect(loaded.policy.entries.map(\.backend) == [.kernel])
        #expect(loaded.policy.defaultEntry?.backend == .auto)
    }
}

@Suite struct PolicyRegistryTests {
    @Test func everyRegisteredBackendCanBeNamedInAPolicy() {
        #expect(!TransportBackends.names.isEmpty)
        for name in TransportBackends.names { #expect(TransportBackendKind(rawValue: name) != nil, "\(name)") }
    }

    @Test func entriesNamingAnUnregisteredBackendAreWarnedAbout() throws {
        let policy = try #require(Policy.parse("default=auto\nedma@01:00.0\nhost@02:00.0\nauto@03:00.0 order=host", file: "p").policy)
        #expect(policy.unregisteredBackends(registered: ["host"]).map(\.description) == [
            "p:1:1: warning: backend 'edma' is not registered in this build (registered: host); this entry cannot use it",
            "p:2:1: warning: backend 'edma' is not registered in this build (registered: host); this entry cannot use it",
        ])
        #expect(policy.unregisteredBackends(registered: ["host", "edma"]).isEmpty)
    }
}

@Suite struct PortOpeningTests {
    @Test func decidedPortsOpenWithTheirBackendOthersSayWhy() throws {
        let policy = try #require(Policy.parse("kernel@02:00.0\nedma@03:00.0\nauto@04:00.0", file: "p").policy)
        func port(_ s: String) -> PolicyPort { guard case let .success(p) = PolicyPort.parse(s) else { preconditionFailure() }; return p }
        #expect(try policy.decide(for: port("05:00.0")).backendToOpen().get() == .host)
        #expect(try policy.decide(for: port("04:00.0"), edma: .unusable("bad magic")).backendToOpen().get() == .host)
        #expect(throws: PortNotOpened.self) { try policy.decide(for: port("04:00.0")).backendToOpen().get() }
        guard case let .failure(kernel) = policy.decide(for: port("02:00.0")).backendToOpen() else { Issue.record("kernel port opened"); return }
        #expect(kernel.description == "port 0000:02:00.0 is left to the kernel's NTB driver by the policy: p:1:1 says kernel@02:00.0; the port is left to the kernel's NTB driver; ntb-transport does not open it")
        guard case let .failure(refused) = policy.decide(for: port("03:00.0"), edma: .unusable("bad magic 0x00000000")).backendToOpen() else { Issue.record("edma port opened"); return }
        #expect(refused.description.hasPrefix("port 0000:03:00.0 is not opened: the policy requires edma and edma is not usable: p:2:1 says edma@03:00.0; edma is not usable: bad magic 0x00000000"))
    }
}
