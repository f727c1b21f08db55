/// A PCI function's vendor and device ID: the one place config-space bytes 0-3 are decoded.
public struct PCIID: Hashable, Sendable, CustomStringConvertible {
    public var vendor: UInt16
    public var device: UInt16

    public init(vendor: UInt16, device: UInt16) {
        self.vendor = vendor
        self.device = device
    }

    /// Decodes the first four bytes of config space (little-endian vendor, then device).
    /// - Throws: ``PCIKitError/malformed(what:detail:)`` when fewer than four bytes were read.
    public init(configHeader bytes: [UInt8]) throws(PCIKitError) {
        guard bytes.count >= 4 else {
            throw .malformed(what: "PCI config header", detail: "\(bytes.count) bytes where the vendor and device IDs need 4; check that the device is present and readable")
        }
        vendor = UInt16(bytes[0]) | UInt16(bytes[1]) << 8
        device = UInt16(bytes[2]) | UInt16(bytes[3]) << 8
    }

    /// `vvvv:dddd`, as lspci -n prints it.
    public var description: String { hex4(vendor) + ":" + hex4(device) }
}

extension VFIODevice {
    /// The function's vendor and device ID, read from its config space.
    public func readID() throws(PCIKitError) -> PCIID {
        try PCIID(configHeader: try readConfig(offset: 0, count: 4))
    }
}

private func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 4 - s.count) + s
}
