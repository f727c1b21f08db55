import CNTBShim
import SystemPackage

/// Finds PCI functions: enumeration and names through libpci (the same as lspci), driver, IOMMU group
/// and group members through sysfs.
///
/// ```swift
/// let discovery = PCIDiscovery()
/// for f in try discovery.functions() where f.ntb != nil { print(f.lspciLine) }
/// ```
public struct PCIDiscovery: Sendable {
    public let paths: SystemPaths

    public init(paths: SystemPaths = .live) { self.paths = paths }

    private func session() throws(PCIKitError) -> LibPCI {
        try LibPCI(busPCI: paths.isLive ? nil : paths.busPCI)
    }

    /// Every PCI function, in address order.
    public func functions() throws(PCIKitError) -> [PCIFunction] {
        let pci = try session()
        return try pci.scan().map { describe($0, pci) }.sorted { $0.address < $1.address }
    }

    /// The functions that match a known NTB ID (``KnownNTBDevices``).
    public func ntbFunctions() throws(PCIKitError) -> [PCIFunction] {
        try functions().filter { $0.ntb != nil }
    }

    /// The function at `address`.
    /// - Throws: ``PCIKitError/deviceNotFound(_:)`` when there is none.
    public func function(at address: PCIAddress) throws(PCIKitError) -> PCIFunction {
        let pci = try session()
        let m = ntb_pci_match(domain: Int32(bitPattern: address.domain), bus: Int32(address.bus), dev: Int32(address.device),
                              func: Int32(address.function), vendor: -1, device: -1, device_class: -1)
        guard let info = try pci.scan(m).first else { throw .deviceNotFound(address) }
        return describe(info, pci)
    }

    private func describe(_ i: ntb_pci_info, _ pci: LibPCI) -> PCIFunction {
        let a = PCIAddress(domain: UInt32(bitPattern: i.domain), bus: i.bus, device: i.dev, function: i.func)
        let v = UInt32(i.vendor_id), d = UInt32(i.device_id)
        return PCIFunction(
            address: a, vendorID: i.vendor_id, deviceID: i.device_id,
            subsystemVendorID: i.subsys_vendor_id, subsystemID: i.subsys_id,
            deviceClass: i.device_class, programmingInterface: i.prog_if, revision: i.rev_id,
            vendorName: pci.name(Int32(NTB_PCI_NAME_VENDOR), v),
            deviceName: pci.name(Int32(NTB_PCI_NAME_DEVICE), v, d),
            className: pci.name(Int32(NTB_PCI_NAME_CLASS), UInt32(i.device_class)),
            driver: driver(of: a), iommuGroup: iommuGroup(of: a),
            ntb: KnownNTBDevices.match(vendor: i.vendor_id, device: i.device_id, deviceClass: i.device_class))
    }

    /// Whether sysfs has the function.
    public func exists(_ address: PCIAddress) -> Bool { Syscalls.exists(paths.device(address)) }

    /// The kernel driver bound to `address` (the last component of its `driver` link), or nil.
    public func driver(of address: PCIAddress) -> String? {
        guard let target = try? Syscalls.readlink(paths.device(address) + "/driver") else { return nil }
        return target.split(separator: "/").last.map(String.init)
    }

    /// The IOMMU group of `address` (its `iommu_group` link), or nil when it has none.
    public func iommuGroup(of address: PCIAddress) -> Int? {
        guard let target = try? Syscalls.readlink(paths.device(address) + "/iommu_group") else { return nil }
        return target.split(separator: "/").last.flatMap { Int($0) }
    }

    /// The functions in IOMMU group `group` with their drivers.
    public func groupMembers(_ group: Int) throws(PCIKitError) -> [PCIKitError.GroupMember] {
        let dir = paths.iommuGroupDevices(group)
        let names: [String]
        do { names = try Syscalls.listDirectory(dir) } catch {
            throw .system(call: "reading \(dir)", errno: error.rawValue, remedy: "check that IOMMU group \(group) exists (ls /sys/kernel/iommu_groups)")
        }
        return names.compactMap { try? PCIAddress(parsing: $0) }.sorted().map { .init(address: $0, driver: driver(of: $0)) }
    }

    /// The members of `group` that keep it from being viable for VFIO: functions bound to a driver
    /// other than vfio-pci. Unbound functions and PCIe port bridges (pcieport) are fine, as in the
    /// kernel's `vfio_dev_driver_allowed` / `vfio_group_viable` (drivers/vfio/group.c).
    public func nonViableMembers(ofGroup group: Int) throws(PCIKitError) -> [PCIKitError.GroupMember] {
        try groupMembers(group).filter { m in
            guard let d = m.driver else { return false }
            return !["vfio-pci", "pci-stub", "pcieport"].contains(d)
        }
    }

    /// The function's BARs (sysfs `resource` and `resourceN_wc`).
    public func bars(of address: PCIAddress) throws(PCIKitError) -> [BARInfo] {
        let dir = paths.device(address)
        let text: String
        do { text = String(decoding: try Syscalls.readFile(dir + "/resource"), as: UTF8.self) } catch {
            if error == .noSuchFileOrDirectory { throw .deviceNotFound(address) }
            throw .system(call: "reading \(dir)/resource", errno: error.rawValue, remedy: "check that sysfs is mounted")
        }
        let wc = Set((0..<6).filter { Syscalls.exists(dir + "/resource\($0)_wc") })
        return try BARInfo.parse(resource: text, wcFiles: wc)
    }

    /// Configuration space through libpci: 256 bytes (4096 with `extended`), fewer when this user may
    /// not read more (unprivileged users see 64 bytes).
    public func configSpace(of address: PCIAddress, extended: Bool = false) throws(PCIKitError) -> [UInt8] {
        try session().readConfig(address, length: extended ? 4096 : 256)
    }

    /// MSI / MSI-X vector counts and the INTx pin, from configuration space. Nil when configuration space
    /// beyond the first 64 bytes cannot be read (run as root).
    public func interrupts(of address: PCIAddress) throws(PCIKitError) -> InterruptCapabilities? {
        let config = try configSpace(of: address)
        guard config.count >= 256 else { return nil }
        return try InterruptCapabilities.parse(config: config)
    }
}
