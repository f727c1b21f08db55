import ArgumentParser
import Foundation
import NTBHardware
import NTBTransport

/// `ntb-transport policy check FILE` and `ntb-transport policy show [PORT]` (docs/policy.md).
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check a backend policy file, or show which backend each port gets and why.",
        discussion: """
            The policy names a backend per port (host, edma, auto, kernel). It is read from --policy FILE, \
            else from $\(PolicySource.environmentVariable), else from \(PolicySource.defaultPath). \
            Grammar: docs/policy.md.
            """,
        subcommands: [Check.self, Show.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report every error and warning of a policy file, with line and column; exit 1 if there are errors.",
            discussion: "Example: ntb-transport policy check /etc/ntb-transport/policy.conf"
        )

        @Argument(help: "The policy file to check.")
        var file: String

        func run() throws {
            let report = PolicyReport.check(file: file)
            report.emit()
            if report.failed { throw ExitCode.failure }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show which backend each port gets and why.",
            discussion: """
                Without PORT, shows every port the policy names and what other ports get. auto is decided \
                at link-up from what the peer publishes; show says what it depends on.
                Examples: ntb-transport policy show; ntb-transport policy show 01:00.0 --policy ./policy.conf
                """
        )

        @Argument(help: "A port: a PCI address (0000:01:00.0 or 01:00.0) or mock:DIR.")
        var port: String?

        @Option(name: .long, help: ArgumentHelp("The policy file (default: $\(PolicySource.environmentVariable), else \(PolicySource.defaultPath)).", valueName: "file"))
        var policy: String?

        @Flag(name: .long, help: "Open PORT as the host side and read the peer's eDMA window, so that auto and edma are decided now.")
        var probe = false

        func validate() throws {
            if let port, case let .failure(failure) = PolicyPort.parse(port) {
                throw ValidationError(failure.message)
            }
            if probe && port == nil { throw ValidationError("--probe needs a PORT, e.g. policy show mock:/dev/shm/ntb0 --probe") }
        }

        func run() throws {
            var selected: PolicyPort?
            if let port, case let .success(p) = PolicyPort.parse(port) { selected = p }
            let source = PolicySource.locate(option: policy, environment: ProcessInfo.processInfo.environment)
            var edma = EDMAProbe.notProbed
            if probe, let selected, let port {
                // The locator of the entry that governs the port (loading errors are reported by show).
                let locator = (try? Policy.load(from: source))?.policy.decide(for: selected).locator ?? EDMALocator()
                var options = try PortOptions.parse(["--port", port, "--role", "host"])
                try options.validate()
                edma = try options.withDevice(EDMAProbeJob(locator: locator))
            }
            let report = PolicyReport.show(source: source, port: selected, edma: edma)
            report.emit()
            if report.failed { throw ExitCode.failure }
        }
    }
}

/// What a `policy` subcommand prints, kept apart from printing so tests can check it.
struct PolicyReport: Equatable {
    var out: [String] = []
    var err: [String] = []
    var failed = false

    func emit() {
        for line in out { print(line) }
        if !err.isEmpty {
            FileHandle.standardError.write(Data((err.joined(separator: "\n") + "\n").utf8))
        }
    }

    /// `policy check FILE`: every diagnostic with its source line and a caret, then a summary line.
    static func check(file: String) -> PolicyReport {
        var report = PolicyReport()
        let text: String
        switch readPolicyFile(file) {
        case let .success(contents): text = contents
        case let .failure(failure):
            report.err.append("Error: cannot read \(file): \(failure.reason); check the path")
            report.failed = true
            return report
        }
        let result = Policy.parse(text, file: file)
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        let registry = result.policy?.unregisteredBackends(registered: TransportBackends.names) ?? []
        let all = (result.diagnostics + registry).sorted { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }
        for diagnostic in all {
            let index = diagnostic.location.line - 1
            let source = index < lines.count ? String(lines[index]) : ""
            report.err.append(diagnostic.rendered(sourceLine: source))
        }
        let errors = result.errors.count, warnings = result.warnings.count + registry.count
        if let policy = result.policy {
            let defaultText = policy.defaultEntry.map { ", default \($0.backend)" } ?? ", no default entry (built-in \(Policy.builtInDefault))"
            let warningText = warnings > 0 ? ", \(plural(warnings, "warning"))" : ""
            report.out.append("\(file): ok: \(plural(policy.entries.count, "port entry", "port entries"))\(defaultText)\(warningText)")
        } else {
            report.err.append("\(file): \(plural(errors, "error"))\(warnings > 0 ? ", \(plural(warnings, "warning"))" : "")")
            report.failed = true
        }
        return report
    }

    /// `policy show [PORT]`: the policy's source, then each port's backend with every reason.
    static func show(source: PolicySource, port: PolicyPort?, edma: EDMAProbe = .notProbed) -> PolicyReport {
        var report = PolicyReport()
        let loaded: LoadedPolicy
        do {
            loaded = try Policy.load(from: source)
        } catch {
            // An invalid policy's message already starts with `file:line:column: error:`.
            if case .invalid = error { report.err.append("\(error)") } else { report.err.append("Error: \(error)") }
            report.failed = true
            return report
        }
        report.out.append("policy: \(source)")
        if let note = loaded.note { report.out.append("note: \(note)") }
        report.err += loaded.warnings.map(\.description)
        report.err += loaded.policy.unregisteredBackends(registered: TransportBackends.names).map(\.description)
        let policy = loaded.policy
        let ports = port.map { [$0] } ?? policy.entries.compactMap(\.port)
        for p in ports {
            let decision = policy.decide(for: p, edma: edma)
            report.out.append("\(p): \(decision.outcomeName)")
            report.out += decision.reasons.map { "  " + $0 }
        }
        if port == nil {
            if let entry = policy.defaultEntry {
                report.out.append("other ports: \(entry.backend) (the default entry at \(entry.location) says \(entry.text))")
            } else {
                report.out.append("other ports: \(Policy.builtInDefault) (no default entry; built-in default)")
            }
        }
        return report
    }
}

private func plural(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
    "\(n) \(n == 1 ? singular : (plural ?? singular + "s"))"
}

/// Reads the peer's eDMA window on an opened port (host side) for `policy show --probe`.
struct EDMAProbeJob: DeviceJob {
    let locator: EDMALocator
    func run<Device: NTBDevice>(_ device: Device) throws -> EDMAProbe {
        EDMAProbe(EDMAPeerWindow.probe(device, locator: locator))
    }
}
