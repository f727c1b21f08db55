/// One line of a run's progress (iperf3's interval report): what moved between `start` and `end`
/// seconds after the run began. JSON fields are in fixed units.
public struct IntervalRecord: Codable, Equatable, Sendable {
    /// `interval` for a periodic line, `summary` for the whole run.
    public var event: String
    public var start: Double
    public var end: Double
    public var bytes: UInt64
    public var messages: UInt64
    public var bytesPerSecond: Double
    public var messagesPerSecond: Double
    /// The run ended early (Ctrl-C, SIGTERM, link lost): only on a summary.
    public var interrupted: Bool?

    public init(event: String, start: Double, end: Double, bytes: UInt64, messages: UInt64, interrupted: Bool? = nil) {
        self.event = event
        self.start = start
        self.end = end
        self.bytes = bytes
        self.messages = messages
        let seconds = end - start
        bytesPerSecond = seconds > 0 ? Double(bytes) / seconds : 0
        messagesPerSecond = seconds > 0 ? Double(messages) / seconds : 0
        self.interrupted = interrupted
    }

    /// `[  1.00-  2.00 s]  12.3 GB  12.3 GB/s  188 k msg/s`, plus a tag on a summary.
    public var text: String {
        let span = "[\(Units.padLeft(fixed(start, 2), 7))-\(Units.padLeft(fixed(end, 2), 7)) s]"
        var line = "\(span)  \(Units.padLeft(Units.bytes(Double(bytes)), 9))  \(Units.padLeft(Units.rate(bytesPerSecond: bytesPerSecond), 11))  \(Units.padLeft(Units.messageRate(messagesPerSecond), 13))"
        if event == "summary" { line += interrupted == true ? "  total (interrupted)" : "  total" }
        return line
    }
}

/// Turns cumulative progress into interval lines every `interval` seconds and a summary at the end.
/// The run's loop calls ``observe(elapsed:bytes:messages:)`` as often as it likes (a comparison per
/// call, no allocation until a line is due); lines go to `emit` as text or NDJSON.
public struct IntervalReporter {
    public enum Format: Sendable { case text, ndjson }
    public let interval: Double?
    public let format: Format
    private let emit: (String) -> Void
    private var lastTime = 0.0
    private var lastBytes: UInt64 = 0
    private var lastMessages: UInt64 = 0
    private var nextDue: Double
    /// Every interval line so far (also what ``summary`` covers).
    public private(set) var emitted: [IntervalRecord] = []

    /// - Parameters:
    ///   - interval: seconds between lines; nil or 0 = no interval lines (only the summary).
    public init(interval: Double?, format: Format, emit: @escaping (String) -> Void) {
        self.interval = interval.flatMap { $0 > 0 ? $0 : nil }
        self.format = format
        self.emit = emit
        nextDue = self.interval ?? .infinity
    }

    /// Records progress; emits an interval line when one is due.
    public mutating func observe(elapsed: Double, bytes: UInt64, messages: UInt64) {
        guard elapsed >= nextDue, let interval else { return }
        let record = IntervalRecord(event: "interval", start: lastTime, end: elapsed,
                                    bytes: bytes &- lastBytes, messages: messages &- lastMessages)
        emitted.append(record)
        output(record)
        lastTime = elapsed
        lastBytes = bytes
        lastMessages = messages
        // The next line is due a whole interval after this one (a late line does not bunch the next).
        nextDue = elapsed + interval
    }

    /// The whole run's line (also on Ctrl-C, with `interrupted`), emitted and returned.
    @discardableResult
    public mutating func summary(elapsed: Double, bytes: UInt64, messages: UInt64, interrupted: Bool = false) -> IntervalRecord {
        let record = IntervalRecord(event: "summary", start: 0, end: elapsed, bytes: bytes, messages: messages,
                                    interrupted: interrupted ? true : nil)
        output(record)
        return record
    }

    private func output(_ record: IntervalRecord) {
        switch format {
        case .text: emit(record.text)
        case .ndjson: emit(ReportJSON.line(record))
        }
    }
}
