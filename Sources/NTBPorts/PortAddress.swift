public import NTBTransport
public import PCIKit
import NTBMock

/// Which side of a link a process plays: the host (root complex side) or the endpoint.
public enum PortRole: String, CaseIterable, Sendable, CustomStringConvertible {
    case host, endpoint
    public var description: String { rawValue }
}

/// Where an NTB port is, parsed once from the string a user gives (`--port`, a config file):
///
/// - `mock` or `mock:DIR`: a mock link in a directory (NTBMock; default ``defaultMockDirectory``)
/// - `0000:01:00.0` or `01:00.0`: a PCI function bound to vfio-pci; its IDs pick the adapter
///   (``PortAdapters``)
/// - `ivshmem:0000:00:06.0`: an ivshmem-plain device bound to vfio-pci (VM to VM)
/// - `ivshmem-file:PATH`: the ivshmem adapter over a shared file
public enum PortAddress: Hashable, Sendable, CustomStringConvertible {
    case mock(directory: String)
    case pci(PCIAddress)
    case ivshmem(PCIAddress)
    case ivshmemFile(path: String)

    /// The mock link directory `mock` alone names.
    public static var defaultMockDirectory: String { MockLink.defaultDirectory }

    /// What ``parse(_:)`` accepts, for messages and help texts.
    public static let forms = "mock, mock:DIR, a PCI address such as 0000:01:00.0, ivshmem:PCI-ADDRESS or ivshmem-file:PATH"

    /// Parses a port string. Every failure names the form expected.
    public static func parse(_ text: String) throws(PortError) -> PortAddress {
        if text == "mock" { return .mock(directory: defaultMockDirectory) }
        if text.hasPrefix("mock:") {
            let directory = String(text.dropFirst(5))
            guard !directory.isEmpty else { throw .badPort(text, "a mock port needs a directory, e.g. mock:/dev/shm/ntb0") }
            return .mock(directory: directory)
        }
        if text.hasPrefix("ivshmem-file:") {
            let path = String(text.dropFirst(13))
            guard !path.isEmpty else { throw .badPort(text, "ivshmem-file: needs a path, e.g. ivshmem-file:/dev/shm/ntb-ivshmem") }
            return .ivshmemFile(path: path)
        }
        if text.hasPrefix("ivshmem:") {
            do throws(PCIKitError) {
                return .ivshmem(try PCIAddress(parsing: String(text.dropFirst(8))))
            } catch {
                throw .badPort(text, "expected ivshmem:PCI-ADDRESS, e.g. ivshmem:0000:00:06.0")
            }
        }
        do throws(PCIKitError) {
            return .pci(try PCIAddress(parsing: text))
        } catch {
            throw .badPort(text, "expected \(forms)")
        }
    }

    public var description: String {
        switch self {
        case let .mock(directory): return "mock:\(directory)"
        case let .pci(address): return address.description
        case let .ivshmem(address): return "ivshmem:\(address)"
        case let .ivshmemFile(path): return "ivshmem-file:\(path)"
        }
    }

    /// The port as a policy names it (a PCI function or a mock link), built from the typed address;
    /// nil for ivshmem ports, which a policy cannot name (they get the built-in default, host).
    public var policyPort: PolicyPort? {
        switch self {
        case let .pci(a):
            return PolicyPort(.pci(domain: a.domain, bus: a.bus, device: a.device, function: a.function))
        case let .mock(directory):
            return PolicyPort(.mock(directory: directory))
        case .ivshmem, .ivshmemFile:
            return nil
        }
    }

    /// Whether the address alone does not say which side this process plays (mock and ivshmem links
    /// have two symmetric ends; a PCI NTB function is the host side).
    public var needsRole: Bool {
        if case .pci = self { return false }
        return true
    }

    /// Where a transport on this port publishes its counters (read by `ntb-transport stats`).
    public func statisticsPath(role: PortRole?) -> String {
        let side = (role ?? .host).rawValue
        switch self {
        case let .pci(address): return "/dev/shm/ntb-transport-\(address).stats"
        case let .mock(directory): return "\(directory)/stats.\(side)"
        case let .ivshmem(address): return "/dev/shm/ntb-transport-ivshmem-\(address).stats.\(side)"
        case let .ivshmemFile(path): return "\(path).stats.\(side)"
        }
    }
}
