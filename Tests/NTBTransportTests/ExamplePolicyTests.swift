import Foundation
import Testing
@testable import NTBTransport

/// The files that make ntb-transport a service (udev/policy.conf.example, udev/ntb-transport@.service,
/// tools/install.sh): the example policy is one the parser accepts as it ships, the unit has the keys
/// the README promises, and the installer puts everything in place without overwriting a policy.
@Suite struct ExamplePolicyTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)
    }

    static func port(_ text: String) throws -> PolicyPort {
        guard case let .success(p) = PolicyPort.parse(text) else { throw TestFailure("bad port \(text)") }
        return p
    }

    struct TestFailure: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

    @Test func examplePolicyParsesWithoutErrorsOrWarnings() throws {
        let result = Policy.parse(try Self.text("udev/policy.conf.example"), file: "policy.conf.example")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics.map(\.description))")
        let policy = try #require(result.policy)
        #expect(policy.unregisteredBackends(registered: TransportBackends.names).isEmpty)

        // The three kinds of entry it is meant to show: the default, an EPF port with edma, a mock port.
        #expect(policy.defaultEntry?.backend == .host)
        let epf = try #require(policy.entries.first { $0.port == (try? Self.port("0000:01:00.0")) })
        #expect(epf.backend == .edma)
        #expect(epf.locator.window == .last && epf.locator.pageSize == 4096 && epf.locator.dataChannels == 4)
        #expect(epf.locator.stallTimeout == .seconds(1))
        let mock = try #require(policy.entries.first { $0.port == (try? Self.port("mock:/dev/shm/ntb0")) })
        #expect(mock.backend == .auto && mock.order == [.edma, .host])
        #expect(policy.entries.count == 2)
    }

    /// `[Section]` → key → values, in order (a key may repeat, as systemd allows).
    static func unitKeys(_ text: String) -> [String: [String: [String]]] {
        var sections: [String: [String: [String]]] = [:]
        var current = ""
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") { current = String(line.dropFirst().dropLast()); continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            sections[current, default: [:]][String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
        }
        return sections
    }

    @Test func unitHasTheRequiredKeys() throws {
        let unit = Self.unitKeys(try Self.text("udev/ntb-transport@.service"))
        let service = try #require(unit["Service"])
        #expect(service["Restart"] == ["on-failure"])
        #expect(service["LimitMEMLOCK"] == ["infinity"])
        // A usage error (exit 64) is not retried: it needs the arguments fixed.
        #expect(service["RestartPreventExitStatus"] == ["64"])
        // The instance name is the port, unescaped (%I), and the per-port options come from its file.
        let exec = try #require(service["ExecStart"]?.first)
        #expect(exec == "/usr/local/bin/ntb-transport serve --port %I $NTB_TRANSPORT_ARGS")
        #expect(service["EnvironmentFile"] == ["-/etc/ntb-transport/ports/%i.conf"])
        // After the bind: a PCI port is bound to vfio-pci (as root) before serve starts.
        let pre = try #require(service["ExecStartPre"]?.first)
        #expect(pre.hasPrefix("+") && pre.contains("bind") && pre.hasSuffix("/usr/local/bin/ntb-transport %I"))
        let after = unit["Unit"]?["After"]?.joined(separator: " ") ?? ""
        #expect(after.contains("systemd-udev-trigger.service"))
        #expect(unit["Install"]?["WantedBy"] == ["multi-user.target"])
    }

    /// The bind step's shell, run for each kind of port with echo in place of modprobe and the binary.
    @Test(arguments: [
        ("0000:01:00.0", "bind 0000:01:00.0"), ("ivshmem:0000:00:06.0", "bind 0000:00:06.0"),
        ("mock:/dev/shm/ntb0", ""), ("mock", ""), ("ivshmem-file:/srv/ntb", ""),
    ])
    func bindStepBindsOnlyPCIPorts(port: String, expected: String) throws {
        let unit = Self.unitKeys(try Self.text("udev/ntb-transport@.service"))
        let pre = try #require(unit["Service"]?["ExecStartPre"]?.first)
        // "+/bin/sh -c '<script>' BINARY %I": systemd turns "$$" into "$".
        let script = try #require(pre.split(separator: "'").dropFirst().first).replacingOccurrences(of: "$$", with: "$")
        let output = try Self.run("/bin/sh", ["-c", "modprobe() { :; }; " + script, "echo", port])
        #expect(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == expected)
        #expect(output.status == 0)
    }

    static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test func installerStagesEverythingAndKeepsAnExistingPolicy() throws {
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("ntb-install-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: stage) }
        let script = Self.root.appendingPathComponent("tools/install.sh").path
        let args = [script, "--destdir", stage.path, "--prefix", "/opt/ntb", "--binary", "/bin/true"]

        let first = try Self.run("/bin/bash", args)
        #expect(first.status == 0, "\(first.stderr)")
        let etc = stage.appendingPathComponent("etc")
        let unit = try String(contentsOf: etc.appendingPathComponent("systemd/system/ntb-transport@.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/opt/ntb/bin/ntb-transport serve --port %I"))
        #expect(!unit.contains("/usr/local/bin"))
        #expect(FileManager.default.isExecutableFile(atPath: stage.appendingPathComponent("opt/ntb/bin/ntb-transport").path))
        #expect(try String(contentsOf: etc.appendingPathComponent("udev/rules.d/70-ntb-transport.rules"), encoding: .utf8)
            == Self.text("udev/70-ntb-transport.rules"))
        let policyPath = etc.appendingPathComponent("ntb-transport/policy.conf")
        #expect(try String(contentsOf: policyPath, encoding: .utf8) == Self.text("udev/policy.conf.example"))

        // Again, with the policy edited: nothing changes, the edit stays.
        try Data("default=kernel\n".utf8).write(to: policyPath)
        let second = try Self.run("/bin/bash", args)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(!second.stdout.contains("installed"), "\(second.stdout)")
        #expect(second.stdout.contains("kept"))
        #expect(try String(contentsOf: policyPath, encoding: .utf8) == "default=kernel\n")

        // A missing binary is refused with the fix.
        let missing = try Self.run("/bin/bash", [script, "--destdir", stage.path, "--binary", stage.appendingPathComponent("nope").path])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("swift build -c release"))
    }
}
