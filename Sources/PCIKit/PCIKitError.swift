#if canImport(Glibc)
import Glibc
#endif

/// Errors of the PCI layer. Each message names what failed and what to do about it.
public enum PCIKitError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A system call failed; `remedy` says what the user can do.
    case system(call: String, errno: Int32, remedy: String)

    public var description: String {
        switch self {
        case let .system(call, err, remedy):
            return unsafe "\(call) failed: \(String(cString: strerror(err))) (errno \(err)); \(remedy)"
        }
    }
}
