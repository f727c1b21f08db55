/// What a policy entry asks for on a port (docs/policy.md).
///
/// `host` and `edma` are transport backends (the names the backend registry uses); `auto` chooses
/// between them at link-up; `kernel` leaves the port to the kernel's NTB driver (the udev rules do not
/// bind it to vfio-pci, and `ntb-transport` does not open it).
public enum PolicyBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case host, edma, auto, kernel
    public var description: String { rawValue }

    /// The transport backend this names, if it names exactly one.
    public var transport: TransportBackendKind? { TransportBackendKind(rawValue: rawValue) }

    /// Whether entries with this backend take eDMA locator options.
    public var takesEDMAOptions: Bool { self == .edma || self == .auto }
}

/// A transport backend that moves queue-pair data. The raw values are the backend registry's names;
/// the policy validates backend names against ``allCases`` (wire this list to the registry when it
/// exists, so a policy can only name registered backends).
public enum TransportBackendKind: String, CaseIterable, Sendable, CustomStringConvertible {
    /// CPU copy into memory-window rings; Linux `ntb_transport` v4 wire format (hardware-reference §2).
    case host
    /// The endpoint's DW eDMA moves the payload; RFC v3 protocol (hardware-reference §4).
    case edma
    public var description: String { rawValue }
}

/// Which peer memory window holds the eDMA window (hardware-reference §4.2: the RFC reserves the last one).
public enum EDMAWindowSelector: Equatable, Sendable, CustomStringConvertible {
    case last
    case index(Int)
    public var description: String {
        switch self {
        case .last: return "last"
        case let .index(n): return String(n)
        }
    }
    /// The window index for a device with `count` peer memory windows, or nil if there is no such window.
    public func resolve(windowCount count: Int) -> Int? {
        switch self {
        case .last: return count > 0 ? count - 1 : nil
        case let .index(n): return n < count ? n : nil
        }
    }
}

/// Where and how the endpoint exposes its DW eDMA: per port, because upstream's way of exposing it is
/// still moving (hardware-reference §4.1 and §4.7; the RFC review asks for a pluggable, per-port choice). The defaults are the RFC v3 layout
/// (hardware-reference §4.2/§4.3): the last memory window, 4 KiB pages, 4 data channels + 1 notify channel.
public struct EDMALocator: Equatable, Sendable {
    /// The peer memory window holding info, notification page, registers and LL regions.
    public var window: EDMAWindowSelector = .last
    /// P of the window layout (the RFC uses PAGE_SIZE and assumes both sides share it; §4.5).
    public var pageSize: Int = 4096
    /// R, the eDMA register window size (a power of two). Host: the published `reg_size` must equal it;
    /// nil accepts what the endpoint publishes. Endpoint: the size it maps and publishes (nil: the
    /// eDMA driver's register block size rounded up to a power of two).
    public var registerWindowSize: Int?
    /// Data channels per side (QP → channel = qp % dataChannels); the endpoint publishes one LL region
    /// per read channel, data channels plus the notify channel (`ch_cnt`).
    public var dataChannels: Int = 4
    /// An eDMA that completes nothing for this long while transfers are pending is a link fault.
    public var stallTimeout: Duration = .seconds(1)

    public init() {}

    /// The read-channel count the endpoint publishes as `ch_cnt`: data channels + the notify channel.
    public var publishedChannelCount: Int { dataChannels + 1 }

    /// Limits of each option (checked by the parser; documented in docs/policy.md).
    public static let pageSizes = 4096...(1 << 20)
    public static let registerWindowSizes = 256...(1 << 26)
    /// `ntb_edma_info` has 5 LL address slots: at most 4 data channels plus the notify channel.
    public static let dataChannelRange = 1...4
    public static let stallTimeoutRange = Duration.milliseconds(1)...Duration.seconds(60)
    /// Window indices the grammar accepts (NTB devices have a handful).
    public static let windowIndices = 0...63
}

/// Where a piece of a policy was written: `file:line:column` (1-based).
public struct SourceLocation: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }
    public var description: String { "\(file):\(line):\(column)" }
}

/// One entry of a policy: a backend for one port (or for every other port, the default entry).
public struct PolicyEntry: Equatable, Sendable {
    /// The port, or nil for the `default` entry.
    public let port: PolicyPort?
    public let backend: PolicyBackend
    /// For `auto`: the transport backends to try, in order (default `edma,host`).
    public let order: [TransportBackendKind]
    /// For `edma` and `auto`: where the eDMA is.
    public let locator: EDMALocator
    /// Where the entry starts.
    public let location: SourceLocation
    /// The entry as written (for messages).
    public let text: String

    public init(port: PolicyPort?, backend: PolicyBackend, order: [TransportBackendKind] = [.edma, .host],
                locator: EDMALocator = EDMALocator(), location: SourceLocation, text: String) {
        self.port = port
        self.backend = backend
        self.order = order
        self.locator = locator
        self.location = location
        self.text = text
    }
}

/// A parsed, valid policy: at most one entry per port and at most one default entry.
public struct Policy: Equatable, Sendable {
    /// Where the policy came from (a path, or a name such as `<built-in>`).
    public let source: String
    /// Port entries in the order written.
    public let entries: [PolicyEntry]
    /// The `default` entry, if any.
    public let defaultEntry: PolicyEntry?

    /// Backend for ports no entry names when there is no default entry: `host`, the Linux-compatible
    /// behaviour (modprobe ntb_transport keeps the memcpy transport, hardware-reference §4.7).
    public static let builtInDefault: PolicyBackend = .host

    /// A policy with no entries (no policy file): every port gets ``builtInDefault``.
    public static func empty(source: String) -> Policy {
        Policy(source: source, entries: [], defaultEntry: nil)
    }

    public init(source: String, entries: [PolicyEntry], defaultEntry: PolicyEntry?) {
        precondition(defaultEntry?.port == nil && entries.allSatisfy { $0.port != nil })
        precondition(Set(entries.map(\.port)).count == entries.count, "duplicate port entries")
        self.source = source
        self.entries = entries
        self.defaultEntry = defaultEntry
    }

    /// The entry that governs `port`: its own entry, else the default entry, else nil (built-in default).
    public func entry(for port: PolicyPort) -> PolicyEntry? {
        entries.first { $0.port == port } ?? defaultEntry
    }
}
