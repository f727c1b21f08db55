import Testing
@testable import ntb_transport

/// Number options are range-checked before use: a usage error (exit 64) naming the range, never a trap.
@Suite struct NumberOptionTests {
    @Test(arguments: ["inf", "-inf", "nan", "1e17", "0", "-1", "86401"])
    func linkTimeoutOutOfRangeIsAUsageError(_ value: String) {
        #expect { _ = try TransportOptions.parse(["--link-timeout=\(value)"]) } throws: {
            TransportOptions.message(for: $0).contains("--link-timeout must be 0.001...86400 seconds")
        }
    }

    @Test func linkTimeoutInRangeParses() throws {
        #expect(try TransportOptions.parse(["--link-timeout", "0.5"]).linkTimeout == 0.5)
        #expect(try TransportOptions.parse(["--link-timeout", "86400"]).linkTimeout == 86_400)
    }

    @Test(arguments: [9999, -1])
    func cpuOutOfRangeIsAUsageError(_ cpu: Int) {
        #expect { _ = try TransportOptions.parse(["--cpu=\(cpu)"]) } throws: {
            TransportOptions.message(for: $0).contains("--cpu must be 0...\(TransportOptions.onlineCPUs - 1)")
        }
    }

    @Test func cpuZeroParses() throws {
        #expect(try TransportOptions.parse(["--cpu", "0"]).cpu == 0)
    }

    @Test func cpuOutOfRangeExitsWithUsage() throws {
        let r = try CLI.run(["perf", "--port", "mock:/nonexistent/ntb-h2", "--role", "host", "--cpu", "9999"])
        #expect(r.status == 64)
        #expect(r.err.contains("--cpu must be 0..."))
        let t = try CLI.run(["perf", "--port", "mock:/nonexistent/ntb-h2", "--role", "host", "--link-timeout", "1e17"])
        #expect(t.status == 64)
        #expect(t.err.contains("--link-timeout must be"))
    }
}
