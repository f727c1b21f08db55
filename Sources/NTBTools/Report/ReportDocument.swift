import Foundation

/// The one JSON shape of every command that takes `--json` (docs/json.md): what ran, where, when, and
/// its results in fixed units (bytes, seconds, nanoseconds; CRCs as hex strings).
///
/// ```json
/// {"version":1,"command":"perf","port":"mock:/dev/shm/ntb0","backend":"host","role":"host",
///  "timestamp":"2026-12-04T17:00:00Z","results":{...}}
/// ```
public struct ReportDocument<Results: Encodable>: Encodable {
    /// The document format's version; bumped when a field changes meaning or goes away.
    public static var formatVersion: Int { 1 }
    public var version: Int = Self.formatVersion
    /// The subcommand (`perf`, `pingpong`, `send`, `recv`, `stats`, `demo`, ...).
    public var command: String
    /// The port as the user named it (nil for commands without a port).
    public var port: String?
    /// The backend that moved the bytes (nil where none ran).
    public var backend: String?
    /// `host` or `endpoint` (nil where the command plays no role).
    public var role: String?
    /// When the command started, UTC, ISO 8601 with seconds.
    public var timestamp: String
    public var results: Results

    public init(command: String, port: String? = nil, backend: String? = nil, role: String? = nil,
                started: Date = Date(), results: Results) {
        self.command = command
        self.port = port
        self.backend = backend
        self.role = role
        self.timestamp = ReportJSON.timestamp(started)
        self.results = results
    }

    private enum CodingKeys: String, CodingKey { case version, command, port, backend, role, timestamp, results }

    /// Every key is present (null where absent), so a reader can rely on the shape.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version)
        try c.encode(command, forKey: .command)
        try c.encode(port, forKey: .port)
        try c.encode(backend, forKey: .backend)
        try c.encode(role, forKey: .role)
        try c.encode(timestamp, forKey: .timestamp)
        try c.encode(results, forKey: .results)
    }
}

/// JSON text for reports: pretty for a document, one line for NDJSON interval records; keys sorted so
/// the output is stable.
public enum ReportJSON {
    /// A whole document, pretty-printed.
    public static func document<T: Encodable>(_ value: T) -> String { encode(value, pretty: true) }
    /// One NDJSON line (no newline inside).
    public static func line<T: Encodable>(_ value: T) -> String { encode(value, pretty: false) }

    static func encode<T: Encodable>(_ value: T, pretty: Bool) -> String {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard let data = try? e.encode(value), let text = String(data: data, encoding: .utf8) else {
            return #"{"error":"the report could not be encoded"}"#
        }
        return text
    }

    /// `2026-12-04T17:00:00Z`.
    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: date)
    }

    /// A CRC as JSON and text print it: `0x` and eight hex digits.
    public static func crc(_ value: UInt32) -> String {
        var s = String(value, radix: 16)
        while s.count < 8 { s = "0" + s }
        return "0x" + s
    }
}
