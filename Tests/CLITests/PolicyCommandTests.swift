import ArgumentParser
import FoundationEssentials
import NTBTransport
import Testing
@testable import ntb_transport

private func scratch(_ text: String) throws -> String {
    let path = "/tmp/ntb-cli-policy-\(UInt32.random(in: 0...UInt32.max)).conf"
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return path
}

private func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

@Suite struct PolicyCommandTests {
    @Test func checkReportsEveryErrorWithCaretAndFails() throws {
        let path = try scratch("default = auto\nhost@0000:5f:00.0,edmaa@0000:01:00.0\n\thost@03:00.8\n")
        defer { remove(path) }
        let report = PolicyReport.check(file: path)
        #expect(report.failed)
        #expect(report.out.isEmpty)
        #expect(report.err == [
            "\(path):2:19: error: unknown backend 'edmaa'; expected one of host, edma, auto, kernel\nhost@0000:5f:00.0,edmaa@0000:01:00.0\n                  ^",
            "\(path):3:13: error: PCI function 8 is out of range (0-7) in '03:00.8'\n\thost@03:00.8\n\t           ^",
            "\(path): 2 errors",
        ])
    }

    @Test func checkAcceptsAGoodFileAndShowsWarnings() throws {
        let path = try scratch("edma@0000:01:00.0,host@0000:5f:00.0\nauto@02:00.0 order=host,edma\n")
        defer { remove(path) }
        let report = PolicyReport.check(file: path)
        #expect(!report.failed)
        // Warnings: the unreachable fallback, and (while the edma backend is not registered) every
        // entry that names edma.
        let edmaRegistered = TransportBackends.names.contains("edma")
        #expect(report.out == ["\(path): ok: 3 port entries, no default entry (built-in host), \(edmaRegistered ? "1 warning" : "3 warnings")"])
        #expect(report.err.last?.hasPrefix("\(path):2:25: warning: 'edma' after 'host'") == true)
        if !edmaRegistered {
            #expect(report.err.first?.hasPrefix("\(path):1:1: warning: backend 'edma' is not registered in this build (registered: host)") == true)
        }
    }

    @Test func checkOfAMissingFileFails() {
        let report = PolicyReport.check(file: "/nonexistent/policy.conf")
        #expect(report.failed)
        #expect(report.err == ["Error: cannot read /nonexistent/policy.conf: No such file or directory; check the path"])
    }

    @Test func showExplainsEachPort() throws {
        let path = try scratch("default=auto\nedma@0000:01:00.0\nkernel@02:00.0\n")
        defer { remove(path) }
        let report = PolicyReport.show(source: PolicySource(path: path, origin: .option), port: nil)
        #expect(!report.failed)
        #expect(report.out == [
            "policy: \(path) (from --policy)",
            "0000:01:00.0: edma",
            "  \(path):2:1 says edma@0000:01:00.0",
            "  edma needs a valid ntb_edma_info from the peer in window last (checked at link-up); without it the port fails, nothing falls back",
            "0000:02:00.0: kernel",
            "  \(path):3:1 says kernel@02:00.0",
            "  the port is left to the kernel's NTB driver; ntb-transport does not open it",
            "other ports: auto (the default entry at \(path):1:1 says default=auto)",
        ])
    }

    @Test func showOfOnePortUsesTheDefaultEntry() throws {
        let path = try scratch("default=host\n")
        defer { remove(path) }
        guard case let .success(port) = PolicyPort.parse("05:00.1") else { Issue.record("port"); return }
        let report = PolicyReport.show(source: PolicySource(path: path, origin: .environment), port: port)
        #expect(report.out == [
            "policy: \(path) (from NTB_TRANSPORT_POLICY)",
            "0000:05:00.1: host",
            "  no entry for 0000:05:00.1; the default entry at \(path):1:1 says default=host",
            "  host needs nothing from the peer",
        ])
    }

    @Test func showOfAnInvalidPolicyFailsWithTheFirstError() throws {
        let path = try scratch("hots@01:00.0\n")
        defer { remove(path) }
        let report = PolicyReport.show(source: PolicySource(path: path, origin: .option), port: nil)
        #expect(report.failed)
        #expect(report.err == ["\(path):1:1: error: unknown backend 'hots'; expected one of host, edma, auto, kernel; run `ntb-transport policy check \(path)` to see every error"])
    }

    @Test func policyIsASubcommandAndBadPortsAreUsageErrors() throws {
        let command = try NTBTransportCommand.parseAsRoot(["policy", "check", "x.conf"])
        #expect((command as? PolicyCommand.Check)?.file == "x.conf")
        let show = try NTBTransportCommand.parseAsRoot(["policy", "show", "01:00.0", "--policy", "p.conf"])
        #expect((show as? PolicyCommand.Show)?.policy == "p.conf")
        #expect(throws: (any Error).self) { try NTBTransportCommand.parseAsRoot(["policy", "show", "01:00.9"]) }
        do {
            _ = try NTBTransportCommand.parseAsRoot(["policy", "show", "01:00.9"])
        } catch {
            #expect(NTBTransportCommand.exitCode(for: error) == ExitCode(64))
            #expect(NTBTransportCommand.message(for: error) == "PCI function 9 is out of range (0-7) in '01:00.9'")
        }
    }
}

@Suite struct PolicyShowProbeTests {
    @Test func showWithAProbeDecidesAuto() throws {
        let path = try scratch("auto@mock:/tmp/x\n")
        defer { remove(path) }
        guard case let .success(port) = PolicyPort.parse("mock:/tmp/x") else { Issue.record("port"); return }
        let source = PolicySource(path: path, origin: .option)
        let withInfo = PolicyReport.show(source: source, port: port, edma: .usable("the peer published ntb_edma_info in window 1"))
        #expect(withInfo.out[1] == "mock:/tmp/x: edma")
        let without = PolicyReport.show(source: source, port: port, edma: .unusable("bad magic 0x00000000 at offset 0 of window 1"))
        #expect(without.out[1] == "mock:/tmp/x: host")
        #expect(without.out.contains("  edma is not usable: bad magic 0x00000000 at offset 0 of window 1; trying host as the order allows"))
    }

    @Test func probeNeedsAPort() {
        #expect(throws: (any Error).self) { try NTBTransportCommand.parseAsRoot(["policy", "show", "--probe"]) }
        let parsed = try? NTBTransportCommand.parseAsRoot(["policy", "show", "mock:/tmp/x", "--probe"])
        #expect((parsed as? PolicyCommand.Show)?.probe == true)
    }
}
