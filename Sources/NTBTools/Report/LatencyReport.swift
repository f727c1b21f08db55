import Foundation
import Histogram

/// Round-trip latencies as people like to look at them: a compact terminal histogram and HdrHistogram's
/// percentile distribution (`.hgrm`, the format HdrHistogram's plotter reads).
public enum LatencyReport {
    /// Percentiles every latency report prints (fixed units in JSON: nanoseconds).
    public static let percentiles: [Double] = [50, 90, 99, 99.9, 99.99, 100]

    /// A histogram of `histogram` (values in nanoseconds) in at most `rows` log-spaced buckets between its
    /// minimum and maximum, one line each: `  1.02 µs ..   2.05 µs |#########          |  41.2 %`.
    public static func terminalHistogram(_ histogram: Histogram<UInt64>, rows: Int = 10, width: Int = 40) -> [String] {
        let total = histogram.totalCount
        guard total > 0, rows > 0, width > 0 else { return ["(no samples)"] }
        let lo = max(histogram.min, 1), hi = max(histogram.max, lo)
        // Bucket edges: lo·r^k with r chosen so that `rows` buckets reach hi (one bucket when lo == hi).
        let ratio = hi > lo ? pow(Double(hi) / Double(lo), 1 / Double(rows)) : 2
        var edges: [UInt64] = [lo]
        for k in 1...rows where hi > lo {
            let e = k == rows ? hi : UInt64((Double(lo) * pow(ratio, Double(k))).rounded(.up))
            if e > edges.last! { edges.append(e) }
        }
        if edges.count == 1 { edges.append(hi &+ 1) }
        var counts = [UInt64](repeating: 0, count: edges.count - 1)
        for v in histogram.recordedValues() {
            let value = v.value
            var i = 0
            while i < counts.count - 1 && value > edges[i + 1] { i += 1 }
            counts[i] &+= v.count
        }
        let peak = counts.max() ?? 1
        return counts.indices.map { i in
            let bar = Int((Double(counts[i]) / Double(max(peak, 1)) * Double(width)).rounded())
            let share = Double(counts[i]) / Double(total) * 100
            let range = "\(Units.padLeft(Units.duration(nanoseconds: Double(edges[i])), 10)) .. \(Units.padLeft(Units.duration(nanoseconds: Double(edges[i + 1])), 10))"
            return "\(range) |\(String(repeating: "#", count: bar))\(String(repeating: " ", count: width - bar))| \(Units.padLeft(fixed(share, 1), 5)) %"
        }
    }

    /// HdrHistogram's percentile distribution of `histogram` (values in nanoseconds), written in
    /// microseconds as HdrHistogram's plotter expects.
    public static func hgrm(_ histogram: Histogram<UInt64>) -> String {
        var text = ""
        histogram.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1000)
        return text
    }
}
