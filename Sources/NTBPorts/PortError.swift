public import NTBHardware
public import NTBTransport
public import PCIKit

/// Why a port or a transport on it could not be opened. Lower-layer errors are kept whole (a caller
/// can still tell `EACCES` from `ENODEV` in ``pci(_:)`` and ``device(_:)``); each description names the fix.
public enum PortError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The port string does not parse; the text says which form was expected.
    case badPort(String, String)
    /// The port needs `--role host|endpoint` (mock and ivshmem links have two symmetric ends).
    case roleNeeded(PortAddress)
    /// The adapter of this port drives only the host side.
    case hostSideOnly(PortAddress, adapter: PortAdapter)
    /// The PCI function's IDs are not an NTB (or ivshmem) function this project knows.
    case unknownFunction(PCIAddress, PCIID, deviceClass: UInt16)
    /// The function is a known NTB, but no adapter drives its family yet.
    case noAdapter(PCIAddress, KnownNTBDevices.Entry)
    /// A PCI look-up failed (device missing, sysfs unreadable, ...).
    case pci(PCIKitError)
    /// Opening or driving the device failed.
    case device(NTBError)
    /// The policy file could not be read or parsed.
    case policy(PolicyError)
    /// The policy does not let the transport open this port (kernel, or edma required and unusable).
    case notOpened(PortNotOpened)
    /// Setting the transport up failed.
    case transport(TransportError)

    public var description: String {
        switch self {
        case let .badPort(text, expected):
            return "port '\(text)': \(expected)"
        case let .roleNeeded(address):
            return "port \(address) has two ends; say which this process is with --role host or --role endpoint"
        case let .hostSideOnly(address, adapter):
            return "port \(address) is driven by \(adapter), which runs the host side only; drop --role endpoint (run the endpoint side on the endpoint SoC, or use a mock or ivshmem port)"
        case let .unknownFunction(address, id, deviceClass):
            let cls = String(deviceClass, radix: 16)
            return "\(address) is \(id) (class \(String(repeating: "0", count: max(0, 4 - cls.count)) + cls)), not an NTB function ntb-transport knows; `ntb-transport list` shows the NTB functions of this machine"
        case let .noAdapter(address, entry):
            return "\(address) is a \(entry.summary) (\(entry.id)): \(PortAdapters.noAdapterText(entry.family)); use the kernel's \(entry.linuxDriver) with Linux ntb_transport"
        case let .pci(error):
            return error.description
        case let .device(error):
            return error.description
        case let .policy(error):
            return error.description
        case let .notOpened(why):
            return why.description
        case let .transport(error):
            return error.description
        }
    }
}
