public import PCIKit
import NTBHardware

/// What kind of function a port is: the key of the adapter table.
public enum PortFamily: Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// An endpoint SoC's NTB function (TI J721E, NXP i.MX8, Renesas R-Car S4: the board picks the BAR map).
    case endpointFunction
    /// Intel Xeon NTB.
    case intel
    /// AMD NTB.
    case amd
    /// QEMU's ivshmem-plain (1af4:1110), VM to VM.
    case ivshmem
    /// A mock link (NTBMock).
    case mock

    /// The family of a known NTB function.
    public init(_ family: KnownNTBDevices.Family) {
        switch family {
        case .endpointFunction: self = .endpointFunction
        case .intel: self = .intel
        case .amd: self = .amd
        }
    }

    public var description: String {
        switch self {
        case .endpointFunction: return "endpoint-function NTB"
        case .intel: return "Intel NTB"
        case .amd: return "AMD NTB"
        case .ivshmem: return "ivshmem"
        case .mock: return "mock link"
        }
    }
}

/// The hardware adapter (NTBHardware or NTBMock device type) that opens a port.
public enum PortAdapter: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `EPFHostDevice`: the host side of an endpoint-function NTB (ntb_hw_epf), through VFIO.
    case epfHost = "EPFHostDevice"
    /// `IVSHMEMDevice`: ivshmem-plain through VFIO, or a shared file.
    case ivshmem = "IVSHMEMDevice"
    /// `MockNTBDevice`: one side of a mock link.
    case mock = "MockNTBDevice"
    public var description: String { rawValue }

    /// Whether the adapter can be either side (else host only).
    public var playsBothSides: Bool { self != .epfHost }
}

/// The one table from a port's family to the adapter that opens it (``Port`` switches on the result).
public enum PortAdapters {
    /// Every family and its adapter, or nil where none exists yet.
    public static let table: [(family: PortFamily, adapter: PortAdapter?)] = [
        (.endpointFunction, .epfHost),
        (.ivshmem, .ivshmem),
        (.mock, .mock),
        (.intel, nil),
        (.amd, nil),
    ]

    /// The adapter of `family`, or nil when none exists yet (``noAdapterText(_:)`` says so).
    public static func adapter(for family: PortFamily) -> PortAdapter? {
        table.first { $0.family == family }?.adapter ?? nil
    }

    /// What a family without an adapter gets told.
    public static func noAdapterText(_ family: KnownNTBDevices.Family) -> String {
        switch family {
        case .intel: return "Intel NTB: no adapter yet (ntb-transport drives endpoint-function NTBs, ivshmem and mock links)"
        case .amd: return "AMD NTB: no adapter yet (ntb-transport drives endpoint-function NTBs, ivshmem and mock links)"
        case .endpointFunction: return "no adapter"
        }
    }

    /// The family of a PCI function from its IDs and class: a known NTB function, or ivshmem-plain.
    public static func family(of id: PCIID, deviceClass: UInt16) -> (PortFamily, KnownNTBDevices.Entry?)? {
        if let entry = KnownNTBDevices.match(vendor: id.vendor, device: id.device, deviceClass: deviceClass) {
            return (PortFamily(entry.family), entry)
        }
        if id == IVSHMEMDevice.pciID { return (.ivshmem, nil) }
        return nil
    }
}
