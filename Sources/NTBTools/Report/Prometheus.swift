import Foundation
import NTBTransport

/// The transport's counters in the Prometheus text exposition format, as node_exporter's textfile
/// collector reads them (`serve --metrics FILE`): one family per counter, `ntb_transport_<name>_total`
/// for counters and `ntb_transport_<name>` for gauges (ring positions, link state), labelled by port
/// and queue pair.
public enum PrometheusText {
    /// Counters that are positions or states, not totals.
    public static func isGauge(_ c: QueuePairCounter) -> Bool { c.rawValue >= QueuePairCounter.rxIndex.rawValue }

    /// The metric name of a counter: lower case, `[a-z0-9_]` only.
    public static func metricName(_ c: QueuePairCounter) -> String {
        let base = c.name.lowercased().map { ($0.isLetter || $0.isNumber) ? $0 : "_" }
        return "ntb_transport_" + String(base) + (isGauge(c) ? "" : "_total")
    }

    /// The exposition text for every queue pair's counters.
    public static func render(port: String, role: String, queuePairs: [QueuePairStatistics]) -> String {
        var out = ""
        let labels = "port=\"\(escape(port))\",role=\"\(escape(role))\""
        for c in QueuePairCounter.allCases {
            let name = metricName(c)
            out += "# HELP \(name) ntb_transport queue pair counter \(c.name)\n"
            out += "# TYPE \(name) \(isGauge(c) ? "gauge" : "counter")\n"
            for (qp, stats) in queuePairs.enumerated() {
                out += "\(name){\(labels),qp=\"\(qp)\"} \(stats.values[c.rawValue])\n"
            }
        }
        return out
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ s: String) -> String {
        var r = ""
        for ch in s {
            switch ch {
            case "\\": r += "\\\\"
            case "\"": r += "\\\""
            case "\n": r += "\\n"
            default: r.append(ch)
            }
        }
        return r
    }

    /// Writes `text` to `path` atomically (a temporary file in the same directory, then rename), so the
    /// collector never reads half a file.
    public static func write(_ text: String, to path: String) throws(ReportFileError) {
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ReportFileError(path: path, reason: (error as NSError).localizedFailureReason ?? "\(error)")
        }
    }
}

/// A report file could not be written.
public struct ReportFileError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String
    public var description: String {
        "cannot write \(path): \(reason); check that the directory exists and is writable"
    }
}
