/// The PCI IDs of NTB-capable functions this project drives: the one table of them. The udev rules in
/// `udev/` list the same IDs (a test keeps them identical), and `ntb-transport list` shows what matches.
///
/// Sources (docs/hardware-reference.md §3.4): `drivers/ntb/hw/epf/ntb_hw_epf.c` (`ntb_epf_pci_tbl`:
/// TI J721E, NXP i.MX8, Renesas R-Car S4, class 0x0500 "RAM"), `drivers/ntb/hw/intel/ntb_hw_intel.h`
/// (Skylake 201c, Icelake 347e, gen5/6 0db4 as DPDK's ntb rawdev lists it), `drivers/ntb/hw/amd/`
/// (14c0 primary, 14c3 secondary, as the DPDK AMD series lists them).
public enum KnownNTBDevices {
    /// What kind of NTB the function is, which decides the hardware adapter that drives it.
    public enum Family: String, Sendable, Codable, CaseIterable {
        /// An endpoint SoC running pci-epf-ntb / pci-epf-vntb; the host side is `ntb_hw_epf`.
        case endpointFunction = "epf"
        /// Intel Xeon NTB (`ntb_hw_intel`).
        case intel
        /// AMD NTB (`ntb_hw_amd`).
        case amd
    }

    /// Which endpoint SoC an endpoint-function entry is: it decides the BAR layout (`barno_map` of
    /// ntb_hw_epf.c; NTBHardware's `EPFBARMap.forBoard`), so the IDs are listed only here.
    public enum EPFBoard: String, Sendable, Codable, CaseIterable {
        case tiJ721E = "ti-j721e"
        case imx8 = "nxp-imx8"
        case rcarS4 = "renesas-rcar-s4"
    }

    /// One known ID.
    public struct Entry: Sendable, Equatable, Hashable, Codable {
        public var vendor: UInt16
        public var device: UInt16
        /// The class (base << 8 | sub) the function must also have, or nil for any class.
        public var deviceClass: UInt16?
        public var family: Family
        /// What the function is, in a few words.
        public var summary: String
        /// The Linux driver that would bind it (for messages).
        public var linuxDriver: String
        /// For endpoint-function entries: the SoC (its BAR layout); nil for other families.
        public var board: EPFBoard? = nil

        /// `vvvv:dddd`.
        public var id: PCIID { PCIID(vendor: vendor, device: device) }
    }

    /// Every known NTB function ID.
    public static let all: [Entry] = [
        Entry(vendor: 0x104c, device: 0xb00d, deviceClass: 0x0500, family: .endpointFunction,
              summary: "TI J721E endpoint NTB function", linuxDriver: "ntb_hw_epf", board: .tiJ721E),
        Entry(vendor: 0x1957, device: 0x0809, deviceClass: 0x0500, family: .endpointFunction,
              summary: "NXP i.MX8 endpoint NTB function", linuxDriver: "ntb_hw_epf", board: .imx8),
        Entry(vendor: 0x1912, device: 0x0030, deviceClass: 0x0500, family: .endpointFunction,
              summary: "Renesas R-Car S4 endpoint NTB function", linuxDriver: "ntb_hw_epf", board: .rcarS4),
        Entry(vendor: 0x8086, device: 0x201c, deviceClass: nil, family: .intel,
              summary: "Intel Xeon Skylake NTB (gen2)", linuxDriver: "ntb_hw_intel"),
        Entry(vendor: 0x8086, device: 0x347e, deviceClass: nil, family: .intel,
              summary: "Intel Xeon Icelake/Sapphire Rapids NTB (gen3-5)", linuxDriver: "ntb_hw_intel"),
        Entry(vendor: 0x8086, device: 0x0db4, deviceClass: nil, family: .intel,
              summary: "Intel Xeon NTB gen6", linuxDriver: "ntb_hw_intel"),
        Entry(vendor: 0x1022, device: 0x14c0, deviceClass: nil, family: .amd,
              summary: "AMD EPYC Embedded NTB (primary)", linuxDriver: "ntb_hw_amd"),
        Entry(vendor: 0x1022, device: 0x14c3, deviceClass: nil, family: .amd,
              summary: "AMD EPYC Embedded NTB (secondary)", linuxDriver: "ntb_hw_amd"),
    ]

    /// The endpoint-function entry of `board`.
    public static func entry(for board: EPFBoard) -> Entry {
        guard let entry = all.first(where: { $0.board == board }) else { preconditionFailure("KnownNTBDevices lists no \(board)") }
        return entry
    }

    /// The entries with this vendor and device ID (any class).
    public static func entries(for id: PCIID) -> [Entry] {
        all.filter { $0.vendor == id.vendor && $0.device == id.device }
    }

    /// The entry matching a function's IDs and class, if any.
    public static func match(vendor: UInt16, device: UInt16, deviceClass: UInt16) -> Entry? {
        all.first { $0.vendor == vendor && $0.device == device && ($0.deviceClass == nil || $0.deviceClass == deviceClass) }
    }
}
