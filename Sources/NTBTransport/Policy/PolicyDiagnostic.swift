/// An error or warning found in a policy, located like a compiler's:
/// `policy.conf:3:7: error: unknown backend 'edmaa'; expected one of host, edma, auto, kernel`.
public struct PolicyDiagnostic: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable {
        /// The policy is not used while it has errors.
        case error
        /// Legal but probably not what was meant (e.g. a fallback that can never be reached).
        case warning
    }

    public let severity: Severity
    public let location: SourceLocation
    public let message: String

    public init(_ severity: Severity, at location: SourceLocation, _ message: String) {
        self.severity = severity
        self.location = location
        self.message = message
    }

    /// One line: `file:line:column: severity: message`.
    public var description: String { "\(location): \(severity.rawValue): \(message)" }

    /// The longest source excerpt ``rendered(sourceLine:)`` prints: a longer line is cut to a window
    /// around the column, so a diagnostic costs the same whatever the line's length.
    public static let excerptLimit = 120

    /// The one-line form followed by the source line (at most ``excerptLimit`` characters around the
    /// column, `...` where it was cut) and a caret under the column, as compilers print.
    public func rendered(sourceLine: String) -> String {
        let column = max(0, location.column - 1)
        var excerpt = Substring(sourceLine)
        var caretAt = column
        var head = "", tail = ""
        if sourceLine.count > Self.excerptLimit {
            let half = Self.excerptLimit / 2
            let start = max(0, min(column - half, sourceLine.count - Self.excerptLimit))
            let from = sourceLine.index(sourceLine.startIndex, offsetBy: start)
            let to = sourceLine.index(from, offsetBy: Self.excerptLimit)
            excerpt = sourceLine[from..<to]
            caretAt = column - start
            if start > 0 { head = "..." }
            if to < sourceLine.endIndex { tail = "..." }
        }
        // Keep tabs so the caret lines up under the same characters in a terminal.
        let pad = String(repeating: " ", count: head.count) + excerpt.prefix(caretAt).map { $0 == "\t" ? "\t" : " " }.joined()
        return description + "\n" + head + excerpt + tail + "\n" + pad + "^"
    }
}
