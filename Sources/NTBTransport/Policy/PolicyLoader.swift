import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Where the policy comes from: `--policy FILE`, else `$NTB_TRANSPORT_POLICY`, else the default path.
public struct PolicySource: Equatable, Sendable, CustomStringConvertible {
    public enum Origin: String, Sendable {
        case option = "--policy"
        case environment = "NTB_TRANSPORT_POLICY"
        case defaultPath = "default path"
    }

    /// The default policy file.
    public static let defaultPath = "/etc/ntb-transport/policy.conf"
    /// The environment variable naming a policy file.
    public static let environmentVariable = "NTB_TRANSPORT_POLICY"

    public let path: String
    public let origin: Origin

    public init(path: String, origin: Origin) {
        self.path = path
        self.origin = origin
    }

    /// Picks the policy file: the command-line option wins over the environment, which wins over
    /// the default path. An empty value counts as not given.
    public static func locate(option: String?, environment: [String: String]) -> PolicySource {
        if let option, !option.isEmpty { return PolicySource(path: option, origin: .option) }
        if let path = environment[environmentVariable], !path.isEmpty { return PolicySource(path: path, origin: .environment) }
        return PolicySource(path: defaultPath, origin: .defaultPath)
    }

    public var description: String {
        switch origin {
        case .option: return "\(path) (from --policy)"
        case .environment: return "\(path) (from \(Self.environmentVariable))"
        case .defaultPath: return "\(path) (default path)"
        }
    }
}

/// Errors loading a policy. Each message says what to do.
public enum PolicyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file named by `--policy` or the environment (or an existing default file) cannot be read.
    case unreadable(PolicySource, reason: String)
    /// The policy has errors; `diagnostics` holds all of them.
    case invalid(PolicySource, diagnostics: [PolicyDiagnostic])

    public var description: String {
        switch self {
        case let .unreadable(source, reason):
            let fix = source.origin == .defaultPath
                ? "fix its permissions or remove it"
                : "check the path given by \(source.origin.rawValue)"
            return "cannot read the policy \(source): \(reason); \(fix)"
        case let .invalid(source, diagnostics):
            let errors = diagnostics.filter { $0.severity == .error }
            let first = errors.first.map(\.description) ?? "invalid policy"
            let more = errors.count > 1 ? " (and \(errors.count - 1) more error\(errors.count > 2 ? "s" : ""))" : ""
            return "\(first)\(more); run `ntb-transport policy check \(source.path)` to see every error"
        }
    }
}

/// What ``Policy/load(from:)`` found, with a note when no file was read.
public struct LoadedPolicy: Sendable {
    public let policy: Policy
    public let source: PolicySource
    /// Warnings from the parser (the policy is still used).
    public let warnings: [PolicyDiagnostic]
    /// Set when the default path does not exist and the built-in policy is used.
    public let note: String?
}

extension Policy {
    /// Reads and parses the policy file at `source`.
    ///
    /// A missing file at the default path is not an error: every port then gets the built-in default
    /// (and ``LoadedPolicy/note`` says so). A missing file named by `--policy` or the environment is an
    /// error, as is any syntax error.
    public static func load(from source: PolicySource) throws(PolicyError) -> LoadedPolicy {
        let text: String
        switch readPolicyFile(source.path) {
        case let .success(contents):
            text = contents
        case let .failure(failure):
            if failure.code == ENOENT, source.origin == .defaultPath {
                return LoadedPolicy(policy: .empty(source: source.path), source: source, warnings: [],
                                    note: "no policy file at \(source.path); every port gets the built-in default \(builtInDefault)")
            }
            throw .unreadable(source, reason: failure.reason)
        }
        let result = parse(text, file: source.path)
        guard let policy = result.policy else { throw .invalid(source, diagnostics: result.diagnostics) }
        return LoadedPolicy(policy: policy, source: source, warnings: result.warnings, note: nil)
    }
}

/// Why a policy file could not be read: errno and its text.
public struct PolicyReadFailure: Error, Equatable, Sendable {
    public let code: Int32
    public let reason: String
}

/// Reads a whole text file (control plane only). The text must be UTF-8.
public func readPolicyFile(_ path: String) -> Result<String, PolicyReadFailure> {
    // A FIFO, a device or a directory is not a policy (reading one may block, or fail with a
    // misleading errno): say what the path is.
    var info = stat()
    if unsafe stat(path, &info) != 0 {
        let code = errno
        return .failure(PolicyReadFailure(code: code, reason: unsafe String(cString: strerror(code))))
    }
    let kind = info.st_mode & S_IFMT
    if kind != S_IFREG {
        let what: String
        switch kind {
        case S_IFDIR: what = "a directory"
        case S_IFIFO: what = "a FIFO"
        case S_IFCHR: what = "a character device"
        case S_IFBLK: what = "a block device"
        case S_IFSOCK: what = "a socket"
        default: what = "not a regular file"
        }
        return .failure(PolicyReadFailure(code: EINVAL, reason: "it is \(what), not a regular file; give the path of a policy file"))
    }
    do {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let text = String(validating: data, as: UTF8.self) else {
            return .failure(PolicyReadFailure(code: EILSEQ, reason: "the file is not UTF-8 text"))
        }
        return .success(text)
    } catch let error as CocoaError {
        if let posix = error.underlying as? POSIXError {
            let code = posix.code.rawValue
            return .failure(PolicyReadFailure(code: code, reason: unsafe String(cString: strerror(code))))
        }
        return .failure(PolicyReadFailure(code: EIO, reason: "\(error)"))
    } catch {
        return .failure(PolicyReadFailure(code: EIO, reason: "\(error)"))
    }
}
