import ArgumentParser
import Foundation
import NTBTransport

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
        let stats = try runTool { try StatisticsStorage.read(path: path) }
        if json {
            let objects = stats.enumerated().map { q, s in
                ["qp": q] .merging(Dictionary(uniqueKeysWithValues: QueuePairCounter.allCases.map { ($0.name, Int(truncatingIfNeeded: s[$0])) })) { a, _ in a }
            }
            printJSON(objects)
            return
        }
        for (q, s) in stats.enumerated() {
            print("NTB QP \(q) stats:")
            for c in QueuePairCounter.allCases { print("  \(pad(c.name + " -", 20)) \(s[c])") }
        }
    }
}
