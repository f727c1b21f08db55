import CNTBShim

/// One PCI function as discovery sees it: IDs and names (from pci.ids, as lspci prints them), the
/// kernel driver bound to it and its IOMMU group (from sysfs).
public struct PCIFunction: Sendable, Equatable, Codable {
    public var address: PCIAddress
    public var vendorID: UInt16
    public var deviceID: UInt16
    public var subsystemVendorID: UInt16
    public var subsystemID: UInt16
    /// Base class << 8 | subclass (e.g. 0x0500 for "RAM memory").
    public var deviceClass: UInt16
    public var programmingInterface: UInt8
    public var revision: UInt8
    /// Vendor name, e.g. "Red Hat, Inc.".
    public var vendorName: String
    /// Device name, e.g. "Virtio 1.0 network device" ("Device 0d57" when pci.ids does not know it).
    public var deviceName: String
    /// Class name, e.g. "Ethernet controller".
    public var className: String
    /// The kernel driver bound now, or nil.
    public var driver: String?
    /// The IOMMU group, or nil when the function has none.
    public var iommuGroup: Int?
    /// The known NTB entry this function matches, or nil.
    public var ntb: KnownNTBDevices.Entry?

    /// `1af4:1041`.
    public var idText: String { hex(vendorID, 4) + ":" + hex(deviceID, 4) }

    /// One line in lspci's `-D -nn` style plus driver and IOMMU group, e.g.
    /// `0000:00:03.0 Ethernet controller [0200]: Red Hat, Inc. Virtio 1.0 network device [1af4:1041] (rev 01) driver=virtio-pci iommu_group=-`.
    public var lspciLine: String {
        // lspci -nn appends the class number unless the name already ends with it ("Unassigned class [ffff]").
        let classNumber = "[\(hex(deviceClass, 4))]"
        let classText = className.hasSuffix(classNumber) ? className : "\(className) \(classNumber)"
        var s = "\(address) \(classText): \(vendorName) \(deviceName) [\(idText)]"
        if revision != 0 { s += " (rev \(hex(revision, 2)))" }
        s += " driver=\(driver ?? "-") iommu_group=\(iommuGroup.map(String.init) ?? "-")"
        return s
    }
}

/// A base address register as sysfs `resource` describes it.
public struct BARInfo: Sendable, Equatable, Codable {
    public var index: Int
    /// Bus address of the BAR.
    public var start: UInt64
    public var size: UInt64
    /// An I/O-port BAR (not memory).
    public var isIO: Bool
    public var is64Bit: Bool
    public var isPrefetchable: Bool
    /// sysfs offers `resourceN_wc` (a write-combining mapping is possible outside VFIO).
    public var writeCombiningPossible: Bool

    /// Linux IORESOURCE_* flags (include/linux/ioport.h).
    static let ioresourceIO: UInt64 = 0x100
    static let ioresourceMem: UInt64 = 0x200
    static let ioresourcePrefetch: UInt64 = 0x2000
    static let ioresourceMem64: UInt64 = 0x10_0000

    /// Parses sysfs `resource` (one "start end flags" line per resource; lines 0–5 are the BARs) and
    /// keeps the BARs that are implemented. `wcFiles` says which `resourceN_wc` exist.
    static func parse(resource text: String, wcFiles: Set<Int>) throws(PCIKitError) -> [BARInfo] {
        var bars: [BARInfo] = []
        for (i, line) in text.split(separator: "\n").prefix(6).enumerated() {
            let f = line.split(separator: " ")
            guard f.count >= 3, let start = UInt64(f[0].dropFirst(2), radix: 16),
                  let end = UInt64(f[1].dropFirst(2), radix: 16), let flags = UInt64(f[2].dropFirst(2), radix: 16)
            else { throw .malformed(what: "sysfs resource", detail: "line \(i + 1): '\(line)'") }
            guard end != 0 || start != 0, end >= start else { continue }
            let prefetch = flags & ioresourcePrefetch != 0
            bars.append(BARInfo(index: i, start: start, size: end - start + 1, isIO: flags & ioresourceIO != 0,
                                is64Bit: flags & ioresourceMem64 != 0, isPrefetchable: prefetch,
                                writeCombiningPossible: prefetch && wcFiles.contains(i)))
        }
        return bars
    }
}

/// Interrupt capabilities found in configuration space.
public struct InterruptCapabilities: Sendable, Equatable, Codable {
    /// Vectors MSI offers (1...32), or nil without an MSI capability.
    public var msiVectors: Int?
    /// Vectors MSI-X offers (1...2048), or nil without an MSI-X capability.
    public var msixVectors: Int?
    /// The interrupt pin (1 = INTA ... 4 = INTD), 0 for none.
    public var intxPin: UInt8

    /// Walks the standard capability list of a configuration-space dump (PCI Local Bus 3.0 §6.7;
    /// MSI: §6.8.1.3 Multiple Message Capable in Message Control bits 3:1; MSI-X: §6.8.2.3 Table Size
    /// in Message Control bits 10:0, N-1 encoded). Needs at least 64 bytes; capabilities beyond the
    /// dump's end are reported as missing.
    public static func parse(config: [UInt8]) throws(PCIKitError) -> InterruptCapabilities {
        guard config.count >= 64 else { throw .malformed(what: "configuration space", detail: "only \(config.count) bytes") }
        var caps = InterruptCapabilities(msiVectors: nil, msixVectors: nil, intxPin: config[0x3d])
        let status = UInt16(config[6]) | UInt16(config[7]) << 8
        guard status & 0x10 != 0 else { return caps }           // Capabilities List bit
        var ptr = Int(config[0x34] & 0xfc)
        var hops = 0
        while ptr >= 0x40, ptr + 4 <= config.count, hops < 48 {
            let id = config[ptr]
            let control = UInt16(config[ptr + 2]) | UInt16(config[ptr + 3]) << 8
            switch id {
            case 0x05: caps.msiVectors = 1 << Int((control >> 1) & 0x7)
            case 0x11: caps.msixVectors = Int(control & 0x7ff) + 1
            default: break
            }
            ptr = Int(config[ptr + 1] & 0xfc)
            hops += 1
        }
        return caps
    }
}
