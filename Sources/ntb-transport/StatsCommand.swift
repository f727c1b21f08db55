import ArgumentParser
import NTBTools

/// `ntb-transport stats`: the per-queue-pair counters of a running transport on this port and role,
/// named as Linux shows them in debugfs.
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show the per-queue-pair counters of a running transport (as Linux debugfs ntb_transport/*/qpN/stats)."
    )

    @OptionGroup var port: PortOptions

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() throws {
        guard let path = port.statisticsPath else { throw ValidationError("--port \(port.port) has no statistics location") }
        let report = try runTool { try StatsReport(path: path) }
        if json { printJSON(report.records) } else { for line in report.lines { print(line) } }
    }
}
