import NTBTransport

/// The per-queue-pair counters a running transport publishes (its statistics file), read and laid out
/// as Linux shows them in debugfs (`ntb_transport/*/qpN/stats`).
public struct StatsReport: Equatable, Sendable {
    public let queuePairs: [QueuePairStatistics]

    public init(_ queuePairs: [QueuePairStatistics]) { self.queuePairs = queuePairs }

    /// Reads the statistics file at `path` (validated: a file that is not one throws).
    public init(path: String) throws(TransportError) {
        queuePairs = try StatisticsStorage.read(path: path)
    }

    /// One block per queue pair: `NTB QP n stats:`, then one `  name -   value` line per counter.
    public var lines: [String] {
        var lines: [String] = []
        for (q, s) in queuePairs.enumerated() {
            lines.append("NTB QP \(q) stats:")
            for c in QueuePairCounter.allCases {
                let label = c.name + " -"
                lines.append("  \(label.count >= 20 ? label : label + String(repeating: " ", count: 20 - label.count)) \(s[c])")
            }
        }
        return lines
    }

    /// One record per queue pair: `qp` and each counter by its Linux name (values past `Int.max` wrap).
    public var records: [[String: Int]] {
        queuePairs.enumerated().map { q, s in
            var record = ["qp": q]
            for c in QueuePairCounter.allCases { record[c.name] = Int(truncatingIfNeeded: s[c]) }
            return record
        }
    }
}
