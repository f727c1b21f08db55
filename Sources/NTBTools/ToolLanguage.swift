import DWEDMA

/// One command of the `ntb_tool` command language (``ToolSession``), parsed from its text line without
/// a device: the syntax, the numbers and their device-independent ranges are checked here; what
/// depends on the device (a scratchpad or window index, a window's size) when it runs.
public enum ToolOperation: Equatable, Sendable {
    case help
    case linkUp, linkDown, linkStatus
    case linkWait(up: Bool, milliseconds: UInt64)
    case spadCount
    case spadRead(index: UInt64, peer: Bool)
    case spadWrite(index: UInt64, value: UInt32, peer: Bool)
    case doorbellValid, doorbellRead
    case doorbellClear(UInt64)
    case doorbellMask(UInt64), doorbellUnmask(UInt64)
    case doorbellRing(UInt64)
    case doorbellWait(milliseconds: UInt64)
    case windowInfo
    case windowTranslate(window: UInt64, size: UInt64)
    case windowClear(window: UInt64)
    case windowRead(window: UInt64, offset: UInt64, length: UInt64, peer: Bool)
    case windowWrite(window: UInt64, offset: UInt64, bytes: [UInt8], peer: Bool)
    case edmaPublish, edmaRetract, edmaProbe
    case edmaInjectAbort(direction: EDMADirection, channel: UInt64, element: Int)
    case edmaDMA(source: UInt64, destination: UInt64, length: UInt32, count: Int)
    case events
    case sleep(milliseconds: UInt64)

    /// The longest wait a command takes (`link wait`, `db wait`), in milliseconds: one hour.
    public static let maxWaitMilliseconds: UInt64 = 3_600_000
    /// The most bytes one `mw read` shows.
    public static let maxReadBytes: UInt64 = 4096

    /// The command language, one line per command (`help`).
    public static var helpText: String {
        """
        link up|down|status              enable, disable or show the link (ntb_tool: link)
        link wait up|down [ms]           wait for the link state (default 5000 ms, at most 3600000)
        spad count | spad read N | spad write N V              own scratchpads
        peer-spad read N | peer-spad write N V                 the peer's scratchpads
        db valid|read | db clear|mask|unmask BITS    own doorbells (ntb_tool: db, db_mask)
        db ring BITS                     ring the peer's doorbells (ntb_tool: peer_db)
        db wait [ms]                     wait for a doorbell event, print the pending bits
        mw info                          inbound and outbound window sizes and alignment
        mw trans N SIZE | mw clear N     allocate an inbound buffer and translate window N to it (mw_transN)
        mw read N OFF LEN | mw write N OFF HEX      own inbound buffer of window N (ntb_tool: mwN)
        peer-mw read N OFF LEN | peer-mw write N OFF HEX   the peer's memory through outbound window N
        edma publish | edma retract      endpoint (mock link): start the DW eDMA engine model, publish the eDMA window
        edma probe                       host: read and validate the eDMA window the peer published
        edma dma SRC DST LEN [COUNT]     a chain of COUNT DMAs of LEN bytes (consecutive addresses): endpoint with
                                         local write channel 0, host with remote read channel 0 through the window
        edma inject-abort read|write CH ELEMENT   endpoint: the model aborts that channel at that element once
        events | sleep MS | help
        Numbers are decimal or 0x-prefixed hex; HEX data is a string of hex digit pairs.
        """
    }

    /// Parses one command line; nil for an empty one or a comment (`# …`).
    public static func parse(_ line: String) throws(ToolFailure) -> ToolOperation? {
        let w = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let verb = w.first, !verb.hasPrefix("#") else { return nil }
        func arg(_ i: Int, _ name: String) throws(ToolFailure) -> String {
            guard i < w.count else { throw ToolFailure("`\(w.prefix(2).joined(separator: " "))` needs \(name); try `help`") }
            return w[i]
        }
        func num(_ i: Int, _ name: String) throws(ToolFailure) -> UInt64 {
            let s = try arg(i, name)
            let v = s.hasPrefix("0x") || s.hasPrefix("0X") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
            guard let v else { throw ToolFailure("\(name) `\(s)` is not a number (decimal or 0x hex)") }
            return v
        }
        func num(_ i: Int, _ name: String, in range: ClosedRange<UInt64>) throws(ToolFailure) -> UInt64 {
            let v = try num(i, name)
            guard range.contains(v) else { throw ToolFailure("\(name) \(v) is out of range (\(range.lowerBound)...\(range.upperBound))") }
            return v
        }
        func milliseconds(_ i: Int, default value: UInt64) throws(ToolFailure) -> UInt64 {
            w.count > i ? try num(i, "milliseconds", in: 0...maxWaitMilliseconds) : value
        }
        func value32(_ i: Int) throws(ToolFailure) -> UInt32 {
            let v = try num(i, "value")
            guard v <= UInt64(UInt32.max) else { throw ToolFailure("scratchpads hold 32 bits; 0x\(String(v, radix: 16)) is too big") }
            return UInt32(v)
        }

        switch (verb, w.count > 1 ? w[1] : "") {
        case ("help", _): return .help
        case ("link", "up"): return .linkUp
        case ("link", "down"): return .linkDown
        case ("link", "status"): return .linkStatus
        case ("link", "wait"):
            let want = try arg(2, "up or down")
            guard want == "up" || want == "down" else { throw ToolFailure("link wait: expected up or down") }
            return .linkWait(up: want == "up", milliseconds: try milliseconds(3, default: 5000))
        case ("spad", "count"): return .spadCount
        case ("spad", "read"), ("peer-spad", "read"): return .spadRead(index: try num(2, "scratchpad"), peer: verb == "peer-spad")
        case ("spad", "write"), ("peer-spad", "write"):
            return .spadWrite(index: try num(2, "scratchpad"), value: try value32(3), peer: verb == "peer-spad")
        case ("db", "valid"): return .doorbellValid
        case ("db", "read"): return .doorbellRead
        case ("db", "clear"): return .doorbellClear(try num(2, "bits"))
        case ("db", "mask"): return .doorbellMask(try num(2, "bits"))
        case ("db", "unmask"): return .doorbellUnmask(try num(2, "bits"))
        case ("db", "ring"): return .doorbellRing(try num(2, "bits"))
        case ("db", "wait"): return .doorbellWait(milliseconds: try milliseconds(2, default: 5000))
        case ("mw", "info"): return .windowInfo
        case ("mw", "trans"): return .windowTranslate(window: try num(2, "window"), size: try num(3, "size"))
        case ("mw", "clear"): return .windowClear(window: try num(2, "window"))
        case ("mw", "read"), ("peer-mw", "read"):
            let n = try num(2, "window"), off = try num(3, "offset"), len = try num(4, "length")
            guard len <= maxReadBytes else { throw ToolFailure("\(verb) read: at most \(maxReadBytes) bytes per read, not \(len)") }
            return .windowRead(window: n, offset: off, length: len, peer: verb == "peer-mw")
        case ("mw", "write"), ("peer-mw", "write"):
            let n = try num(2, "window"), off = try num(3, "offset")
            let text = try arg(4, "hex data")
            var bytes: [UInt8] = []
            var i = text.startIndex
            while i < text.endIndex {
                let j = text.index(i, offsetBy: 2, limitedBy: text.endIndex) ?? text.endIndex
                guard let b = UInt8(text[i..<j], radix: 16), text.distance(from: i, to: j) == 2 else { throw ToolFailure("hex data must be pairs of hex digits") }
                bytes.append(b)
                i = j
            }
            return .windowWrite(window: n, offset: off, bytes: bytes, peer: verb == "peer-mw")
        case ("edma", "publish"): return .edmaPublish
        case ("edma", "retract"): return .edmaRetract
        case ("edma", "probe"): return .edmaProbe
        case ("edma", "inject-abort"):
            let name = try arg(2, "read or write")
            guard let direction = EDMADirection.allCases.first(where: { "\($0)" == name }) else { throw ToolFailure("edma inject-abort: expected read or write, not `\(name)`") }
            return .edmaInjectAbort(direction: direction, channel: try num(3, "channel"), element: Int(try num(4, "element", in: 0...65535)))
        case ("edma", "dma"):
            let source = try num(2, "source bus address"), destination = try num(3, "destination bus address")
            let length = try num(4, "length"), count = w.count > 5 ? try num(5, "count") : 1
            guard length > 0 && length <= UInt64(UInt32.max) else { throw ToolFailure("edma dma: the length must be 1...\(UInt32.max)") }
            guard count > 0 && count <= 64 else { throw ToolFailure("edma dma: the count must be 1...64 (one LL page)") }
            // The chain covers count × length bytes from each address: it must not run past 2^64.
            let span = count * length
            guard source <= UInt64.max - span, destination <= UInt64.max - span else {
                throw ToolFailure("edma dma: \(count) × \(length) bytes from 0x\(String(max(source, destination), radix: 16)) run past the end of the bus address space")
            }
            return .edmaDMA(source: source, destination: destination, length: UInt32(length), count: Int(count))
        case ("events", _): return .events
        case ("sleep", _): return .sleep(milliseconds: try num(1, "milliseconds"))
        default:
            throw ToolFailure("unknown tool command `\(line)`; try `help`")
        }
    }
}

/// A command of the tool language that failed: the description says why and what to do.
public struct ToolFailure: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ text: String) { description = text }
}
