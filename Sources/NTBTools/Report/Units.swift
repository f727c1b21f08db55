/// Human units for reports: sizes and rates scale (B, KB … GB; B/s … GB/s, decimal as iperf3 and `perf`
/// print them), times scale (ns, µs, ms, s). JSON never uses these: it carries fixed units (bytes,
/// bytes per second, nanoseconds) so a script needs no parsing.
public enum Units {
    /// `1.50 GB`, `512 B`: decimal prefixes, three significant digits.
    public static func bytes(_ value: Double) -> String { scaled(value, unit: "B", step: 1000, prefixes: ["", "K", "M", "G", "T"]) }
    /// `12.3 GB/s`, `850 MB/s`.
    public static func rate(bytesPerSecond value: Double) -> String { bytes(value) + "/s" }
    /// `17.6 M msg/s`, `950 msg/s`.
    public static func messageRate(_ perSecond: Double) -> String {
        scaled(perSecond, unit: "msg/s", step: 1000, prefixes: ["", "k", "M", "G"], space: true)
    }
    /// `850 ns`, `1.52 µs`, `3.40 ms`, `2.00 s`.
    public static func duration(nanoseconds ns: Double) -> String {
        guard ns.isFinite else { return "-" }
        let magnitude = abs(ns)
        if magnitude < 1_000 { return "\(fixed(ns, magnitude < 10 ? 2 : magnitude < 100 ? 1 : 0)) ns" }
        if magnitude < 1_000_000 { return "\(significant(ns / 1_000)) µs" }
        if magnitude < 1_000_000_000 { return "\(significant(ns / 1_000_000)) ms" }
        return "\(significant(ns / 1_000_000_000)) s"
    }

    /// `value` in the largest prefix that keeps it at or above 1, three significant digits.
    static func scaled(_ value: Double, unit: String, step: Double, prefixes: [String], space: Bool = false) -> String {
        guard value.isFinite else { return "- \(unit)" }
        var v = value
        var i = 0
        while abs(v) >= step && i < prefixes.count - 1 { v /= step; i += 1 }
        // Integers below the first step print without decimals (512 B, not 512.000 B).
        let number = i == 0 && v == v.rounded() ? String(Int64(v)) : significant(v)
        let prefix = prefixes[i]
        return space && !prefix.isEmpty ? "\(number) \(prefix) \(unit)" : "\(number) \(prefix)\(unit)"
    }

    /// Three significant digits: 1.23, 12.3, 123.
    static func significant(_ v: Double) -> String {
        let a = abs(v)
        return fixed(v, a < 10 ? 2 : a < 100 ? 1 : 0)
    }

    /// `s` right-aligned in `width` columns (longer text is kept whole).
    static func padLeft(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}
