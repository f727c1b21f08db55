/// The result of parsing a policy: the policy if there were no errors, and every diagnostic.
public struct PolicyParseResult: Sendable {
    /// The policy, or nil when any diagnostic is an error.
    public let policy: Policy?
    /// Errors and warnings in source order.
    public let diagnostics: [PolicyDiagnostic]
    public var errors: [PolicyDiagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [PolicyDiagnostic] { diagnostics.filter { $0.severity == .warning } }
}

extension Policy {
    /// Parses a policy (grammar: docs/policy.md). Every error is reported, each with its line and
    /// column; the policy is returned only if there are none.
    ///
    /// - Parameters:
    ///   - text: the policy text: one or more entries per line, `#` comments; the kernel-parameter
    ///     form `edma@0000:01:00.0,host@0000:5f:00.0` is one line of it.
    ///   - file: the name used in diagnostics (the path as the user gave it).
    public static func parse(_ text: String, file: String) -> PolicyParseResult {
        var diagnostics: [PolicyDiagnostic] = []
        var entries: [PolicyEntry] = []
        var defaultEntry: PolicyEntry?
        var seen: [PolicyPort: SourceLocation] = [:]

        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            var parser = LineParser(chars: Array(line), line: index + 1, file: file)
            parser.parseLine()
            diagnostics += parser.diagnostics
            for entry in parser.entries {
                if let port = entry.port {
                    if let first = seen[port] {
                        diagnostics.append(PolicyDiagnostic(.error, at: entry.location,
                            "port \(port) already has an entry at \(first); give each port one entry"))
                    } else {
                        seen[port] = entry.location
                        entries.append(entry)
                    }
                } else if let first = defaultEntry {
                    diagnostics.append(PolicyDiagnostic(.error, at: entry.location,
                        "a default entry was already given at \(first.location); give one default entry"))
                } else {
                    defaultEntry = entry
                }
            }
        }
        // Source order, as compilers report (stable: one position's messages keep their order).
        diagnostics = diagnostics.enumerated().sorted {
            ($0.element.location.line, $0.element.location.column, $0.offset)
                < ($1.element.location.line, $1.element.location.column, $1.offset)
        }.map(\.element)
        let hasErrors = diagnostics.contains { $0.severity == .error }
        return PolicyParseResult(
            policy: hasErrors ? nil : Policy(source: file, entries: entries, defaultEntry: defaultEntry),
            diagnostics: diagnostics)
    }
}

/// The option names entries accept (docs/policy.md, "Options").
enum PolicyOption: String, CaseIterable {
    case window, page, regs, channels, stall, order
    static var expected: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Parses one line: `item { "," item } [ "#" comment ]`, recovering at the next comma after an error
/// so that every error of the line is reported.
struct LineParser {
    let chars: [Character]
    let line: Int
    let file: String
    var pos = 0
    var diagnostics: [PolicyDiagnostic] = []
    var entries: [PolicyEntry] = []

    init(chars: [Character], line: Int, file: String) {
        self.chars = chars
        self.line = line
        self.file = file
    }

    // MARK: Scanning

    var atEnd: Bool { pos >= chars.count }
    var current: Character? { atEnd ? nil : chars[pos] }
    /// End of the items on this line: end of text or a comment.
    var atLineEnd: Bool { atEnd || chars[pos] == "#" }

    func location(_ offset: Int) -> SourceLocation { SourceLocation(file: file, line: line, column: offset + 1) }

    /// Diagnostics one line reports at most; past them one error says the rest are not shown, so a
    /// pathological line (thousands of bad items) costs time and memory in proportion to its length.
    static let diagnosticsPerLine = 20

    mutating func error(at offset: Int, _ message: String) {
        report(PolicyDiagnostic(.error, at: location(offset), message))
    }

    mutating func warning(at offset: Int, _ message: String) {
        report(PolicyDiagnostic(.warning, at: location(offset), message))
    }

    private mutating func report(_ diagnostic: PolicyDiagnostic) {
        if diagnostics.count < Self.diagnosticsPerLine {
            diagnostics.append(diagnostic)
            return
        }
        // The note is an error when any problem it hides is one (the policy must still fail).
        let hidden = PolicyDiagnostic(diagnostic.severity, at: diagnostic.location,
            "more problems on line \(line) are not shown; fix the ones above and check again")
        if diagnostics.count == Self.diagnosticsPerLine {
            diagnostics.append(hidden)
        } else if diagnostic.severity == .error, diagnostics[Self.diagnosticsPerLine].severity == .warning {
            diagnostics[Self.diagnosticsPerLine] = hidden
        }
    }

    mutating func skipSpaces() {
        while let c = current, c == " " || c == "\t" { pos += 1 }
    }

    static func isWordCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_")
    }

    /// Reads `[A-Za-z0-9_-]*`.
    mutating func readWord() -> String {
        let start = pos
        while let c = current, Self.isWordCharacter(c) { pos += 1 }
        return String(chars[start..<pos])
    }

    /// Reads up to whitespace, `,`, `#` or the end (ports and option values).
    mutating func readField() -> String {
        let start = pos
        while let c = current, c != " " && c != "\t" && c != "," && c != "#" { pos += 1 }
        return String(chars[start..<pos])
    }

    /// Skips the rest of a broken item: up to the next `,`, `#` or the end.
    mutating func recover() {
        while let c = current, c != "," && c != "#" { pos += 1 }
    }

    /// Whether the text at `offset` is `word` followed (after spaces) by `@` or `=`: the start of a
    /// new item rather than the next element of an `order=` list.
    func startsItem(at offset: Int) -> Bool {
        var i = offset
        while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
        let wordStart = i
        while i < chars.count, Self.isWordCharacter(chars[i]) { i += 1 }
        if i == wordStart { return true }
        while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
        return i < chars.count && (chars[i] == "@" || chars[i] == "=")
    }

    // MARK: Grammar

    mutating func parseLine() {
        skipSpaces()
        if atLineEnd { return }
        while true {
            parseItem()
            skipSpaces()
            if atLineEnd { return }
            if current == "," {
                pos += 1
                skipSpaces()
                if atLineEnd {
                    error(at: pos, "expected an entry after ','")
                    return
                }
                continue
            }
            // parseItem stops only at a separator unless it recovered; anything else is stray.
            error(at: pos, "unexpected '\(current!)'; separate entries with ',' and options with spaces")
            recover()
            if atLineEnd { return }
        }
    }

    /// `default "=" backend { option }` or `backend "@" port { option }`.
    mutating func parseItem() {
        let start = pos
        let word = readWord()
        if word.isEmpty {
            error(at: pos, "expected an entry such as edma@0000:01:00.0 or default=auto, found '\(current!)'")
            recover()
            return
        }
        var port: PolicyPort?
        var valid = true
        let backend: PolicyBackend?
        let afterWord = pos
        skipSpaces()
        if word == "default" {
            guard current == "=" else {
                error(at: pos, "expected '=' after 'default', as in default=auto")
                recover()
                return
            }
            pos += 1
            skipSpaces()
            let backendStart = pos
            let name = readWord()
            backend = checkBackend(name, at: backendStart)
            valid = backend != nil
        } else if current == "@" && pos == afterWord {
            backend = checkBackend(word, at: start)
            pos += 1
            let portStart = pos
            let text = readField()
            if text.isEmpty {
                error(at: portStart, "expected a port after '@', e.g. 0000:01:00.0, 01:00.0 or mock:/run/ntb-mock0")
                valid = false
            } else {
                switch PolicyPort.parse(text) {
                case let .success(p): port = p
                case let .failure(failure):
                    error(at: portStart + failure.offset, failure.message)
                    valid = false
                }
            }
            valid = valid && backend != nil
        } else if current == "@" {
            error(at: afterWord, "no space allowed before '@'; write \(word)@PORT")
            recover()
            return
        } else if current == "=" {
            error(at: start, "unknown setting '\(word)'; the only setting is default=BACKEND (entries are BACKEND@PORT)")
            recover()
            return
        } else if let known = PolicyBackend(rawValue: word) {
            error(at: pos, "expected '@' and a port after '\(known)', as in \(known)@0000:01:00.0")
            recover()
            return
        } else {
            _ = checkBackend(word, at: start)
            recover()
            return
        }

        let options = parseOptions(for: backend)
        guard valid, let backend, let options else { return }
        entries.append(PolicyEntry(
            port: port, backend: backend, order: options.order, locator: options.locator,
            location: location(start),
            text: String(chars[start..<pos]).trimmingTrailingSpaces()))
    }

    mutating func checkBackend(_ name: String, at offset: Int) -> PolicyBackend? {
        if let backend = PolicyBackend(rawValue: name) { return backend }
        let expected = PolicyBackend.allCases.map(\.rawValue).joined(separator: ", ")
        if name.isEmpty {
            error(at: offset, "expected a backend; expected one of \(expected)")
        } else {
            error(at: offset, "unknown backend '\(name)'; expected one of \(expected)")
        }
        return nil
    }

    /// `{ name "=" value }` up to the next item. Returns nil if any option was wrong.
    mutating func parseOptions(for backend: PolicyBackend?) -> (order: [TransportBackendKind], locator: EDMALocator)? {
        var locator = EDMALocator()
        var order: [TransportBackendKind] = [.edma, .host]
        var given: Set<PolicyOption> = []
        var ok = true
        while true {
            let before = pos
            skipSpaces()
            if atLineEnd || current == "," { return ok ? (order, locator) : nil }
            if pos == before {
                // Ports, values and order lists end at a separator; anything else is stray.
                error(at: pos, "unexpected '\(current!)'; expected an option NAME=VALUE, ',' or the end of the line")
                recover()
                return nil
            }
            let nameStart = pos
            let name = readWord()
            guard !name.isEmpty, current == "=" else {
                if name.isEmpty {
                    error(at: pos, "unexpected '\(current!)'; expected an option NAME=VALUE, ',' or the end of the line")
                } else {
                    error(at: nameStart, "expected an option NAME=VALUE, found '\(name)'; separate entries with ','")
                }
                recover()
                return nil
            }
            pos += 1
            let valueStart = pos
            guard let option = PolicyOption(rawValue: name) else {
                error(at: nameStart, "unknown option '\(name)'; expected one of \(PolicyOption.expected)")
                _ = readField()
                ok = false
                continue
            }
            if given.contains(option) {
                error(at: nameStart, "option '\(name)' is given twice")
                ok = false
            }
            given.insert(option)
            if let backend {
                if option == .order, backend != .auto {
                    error(at: nameStart, "option 'order' applies only to auto; write auto@PORT order=edma,host")
                    ok = false
                } else if option != .order, !backend.takesEDMAOptions {
                    error(at: nameStart, "option '\(name)' does not apply to backend '\(backend)'; only edma and auto take eDMA options")
                    ok = false
                }
            }
            if option == .order {
                guard let list = parseOrder(at: valueStart) else { ok = false; continue }
                order = list
                continue
            }
            let value = readField()
            if value.isEmpty {
                error(at: valueStart, "option '\(name)' needs a value")
                ok = false
                continue
            }
            if !apply(option, value, at: valueStart, to: &locator) { ok = false }
        }
    }

    /// `backend { "," backend }`: a comma continues the list unless it starts a new item
    /// (`NAME@...` or `NAME=...`).
    mutating func parseOrder(at start: Int) -> [TransportBackendKind]? {
        var list: [TransportBackendKind] = []
        var ok = true
        var hostAt: Int?
        // One diagnostic per repeated backend, however often it repeats (a long list stays linear).
        var repeated: Set<TransportBackendKind> = []
        while true {
            let elementStart = pos
            let name = readWord()
            if let kind = TransportBackendKind(rawValue: name) {
                if list.contains(kind) {
                    if repeated.insert(kind).inserted {
                        error(at: elementStart, "'\(name)' appears twice in order")
                    }
                    ok = false
                } else {
                    if let hostAt, kind != .host {
                        warning(at: elementStart, "'\(name)' after 'host' (column \(hostAt + 1)) is never tried: host needs nothing from the peer and always succeeds")
                    }
                    if kind == .host { hostAt = elementStart }
                    list.append(kind)
                }
            } else {
                let expected = TransportBackendKind.allCases.map(\.rawValue).joined(separator: " or ")
                if name.isEmpty {
                    error(at: elementStart, "expected a backend in order; expected \(expected)")
                } else {
                    error(at: elementStart, "unknown backend '\(name)' in order; expected \(expected)")
                }
                ok = false
                _ = readField()
            }
            if current == ",", !startsItem(at: pos + 1) {
                pos += 1
                skipSpaces()
                continue
            }
            break
        }
        return ok && !list.isEmpty ? list : nil
    }

    /// Parses one eDMA locator option value into `locator`; false (after a diagnostic) if it is wrong.
    mutating func apply(_ option: PolicyOption, _ value: String, at offset: Int, to locator: inout EDMALocator) -> Bool {
        switch option {
        case .window:
            if value == "last" { locator.window = .last; return true }
            guard let n = Int(value), EDMALocator.windowIndices.contains(n) else {
                error(at: offset, "invalid window '\(value)'; expected a memory-window index 0-\(EDMALocator.windowIndices.upperBound) or 'last'")
                return false
            }
            locator.window = .index(n)
        case .page:
            guard let size = parseSize(value, at: offset, name: "page"),
                  checkPowerOfTwo(size, in: EDMALocator.pageSizes, value: value, at: offset, name: "page") else { return false }
            locator.pageSize = size
        case .regs:
            guard let size = parseSize(value, at: offset, name: "regs"),
                  checkPowerOfTwo(size, in: EDMALocator.registerWindowSizes, value: value, at: offset, name: "regs") else { return false }
            locator.registerWindowSize = size
        case .channels:
            guard let n = Int(value), EDMALocator.dataChannelRange.contains(n) else {
                let r = EDMALocator.dataChannelRange
                error(at: offset, "invalid channels '\(value)'; expected \(r.lowerBound)-\(r.upperBound) data channels (ntb_edma_info has LL slots for \(r.upperBound) data channels and the notify channel)")
                return false
            }
            locator.dataChannels = n
        case .stall:
            guard let duration = parseDuration(value) else {
                error(at: offset, "invalid stall '\(value)'; expected a duration such as 500ms, 2s or 250us")
                return false
            }
            let r = EDMALocator.stallTimeoutRange
            guard r.contains(duration) else {
                error(at: offset, "stall \(value) is out of range; expected 1ms to 60s")
                return false
            }
            locator.stallTimeout = duration
        case .order:
            preconditionFailure("order is parsed by parseOrder")
        }
        return true
    }

    mutating func parseSize(_ value: String, at offset: Int, name: String) -> Int? {
        if let size = parsePolicySize(value) { return size }
        error(at: offset, "invalid \(name) '\(value)'; expected a size such as 4096, 0x1000, 4K or 1M")
        return nil
    }

    mutating func checkPowerOfTwo(_ size: Int, in range: ClosedRange<Int>, value: String, at offset: Int, name: String) -> Bool {
        guard size > 0, size & (size - 1) == 0 else {
            error(at: offset, "\(name) \(value) is not a power of two")
            return false
        }
        guard range.contains(size) else {
            error(at: offset, "\(name) \(value) is out of range; expected \(formatSize(range.lowerBound)) to \(formatSize(range.upperBound))")
            return false
        }
        return true
    }
}

/// Parses `4096`, `0x1000`, `4K`, `4KiB`, `1M`, `1MiB`, `1G` (binary multiples).
func parsePolicySize(_ text: String) -> Int? {
    var digits = Substring(text)
    var multiplier = 1
    let suffixes: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
                                     ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30),
                                     ("k", 1 << 10)]
    for (suffix, m) in suffixes where digits.hasSuffix(suffix) {
        digits = digits.dropLast(suffix.count)
        multiplier = m
        break
    }
    let value: Int?
    if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
        value = Int(digits.dropFirst(2), radix: 16)
    } else {
        value = Int(digits)
    }
    guard let value, value >= 0 else { return nil }
    let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
    return overflow ? nil : product
}

/// Parses `250us`, `500ms`, `2s`.
func parseDuration(_ text: String) -> Duration? {
    for (suffix, make) in [("us", Duration.microseconds), ("ms", Duration.milliseconds), ("s", Duration.seconds)] as [(String, (Int) -> Duration)] {
        if text.hasSuffix(suffix), let n = Int(text.dropLast(suffix.count)), n >= 0 { return make(n) }
    }
    return nil
}

/// `4096` → `4K`, `1048576` → `1M`, otherwise decimal.
func formatSize(_ size: Int) -> String {
    if size >= 1 << 20, size % (1 << 20) == 0 { return "\(size >> 20)M" }
    if size >= 1 << 10, size % (1 << 10) == 0 { return "\(size >> 10)K" }
    return String(size)
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
