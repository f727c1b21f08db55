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

    /// The one-line form followed by the source line and a caret under the column, as compilers print.
    public func rendered(sourceLine: String) -> String {
        // Keep tabs so the caret lines up under the same characters in a terminal.
        let pad = sourceLine.prefix(max(0, location.column - 1)).map { $0 == "\t" ? "\t" : " " }.joined()
        return description + "\n" + sourceLine + "\n" + pad + "^"
    }
}
