#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Binds PCI functions to userspace drivers (vfio-pci, uio_pci_generic) and back, through
/// `driver_override` and `drivers_probe`, the way DPDK's `dpdk-devbind.py` and SPDK's `scripts/setup.sh`
/// do: refuse a function the host is using unless forced, roll back to the previous driver when the bind
/// does not take, check the IOMMU group's viability, and hand the device node to a Unix group so the
/// tool runs without root afterwards.
public struct PCIBinder {
    public let paths: SystemPaths
    /// Drivers `bind` accepts.
    public static let userspaceDrivers = ["vfio-pci", "uio_pci_generic"]

    /// Test hook: runs after every write to a sysfs control file, so a fake tree can act as the kernel.
    var kernel: ((_ path: String, _ value: String) -> Void)?

    public init(paths: SystemPaths = .live) { self.paths = paths }

    /// What a bind or unbind did.
    public struct Outcome: Sendable, Equatable {
        public var address: PCIAddress
        public var previousDriver: String?
        public var driver: String?
        /// Things the user should know (a group that is not viable yet, a node that did not appear).
        public var warnings: [String]
        /// The device node handed to the Unix group, if any.
        public var deviceNode: String?
    }

    private var discovery: PCIDiscovery { PCIDiscovery(paths: paths) }

    /// Binds `address` to `driver` (vfio-pci or uio_pci_generic).
    /// - Parameters:
    ///   - force: take the function even if the host uses it (an interface that is up, a block device).
    ///   - unixGroup: give the device node (`/dev/vfio/N` or `/dev/uioN`) to this group, mode 0660.
    public func bind(_ address: PCIAddress, to driver: String, force: Bool = false, unixGroup: String? = nil) throws(PCIKitError) -> Outcome {
        precondition(Self.userspaceDrivers.contains(driver), "bind to \(driver) is not supported")
        guard discovery.exists(address) else { throw .deviceNotFound(address) }
        var gid: UInt32? = nil
        if let unixGroup {
            guard let g = Syscalls.groupID(named: unixGroup) else { throw .unknownGroup(unixGroup) }
            gid = g
        }
        let previous = discovery.driver(of: address)
        var outcome = Outcome(address: address, previousDriver: previous, driver: previous, warnings: [], deviceNode: nil)
        if previous != driver {
            if let previous, !force, !Self.userspaceDrivers.contains(previous), let reason = inUseReason(address) {
                throw .deviceInUse(address, reason: "\(reason), driver \(previous)")
            }
            guard Syscalls.exists(paths.driver(driver)) else { throw .driverNotLoaded(driver) }
            let device = paths.device(address)
            try write(device + "/driver_override", driver)
            do throws(PCIKitError) {
                if previous != nil { try write(device + "/driver/unbind", address.description) }
                try write(paths.busPCI + "/drivers_probe", address.description)
            } catch {
                rollBack(address, to: previous)
                throw error
            }
            guard discovery.driver(of: address) == driver else {
                rollBack(address, to: previous)
                throw .bindFailed(address, driver: driver, restored: previous)
            }
            outcome.driver = driver
        }
        if driver == "vfio-pci", let group = discovery.iommuGroup(of: address) {
            let offenders = (try? discovery.nonViableMembers(ofGroup: group)) ?? []
            if !offenders.isEmpty { outcome.warnings.append(PCIKitError.groupNotViable(group: group, offenders: offenders).description) }
            outcome.deviceNode = paths.vfioGroup(group)
        } else if driver == "uio_pci_generic", let n = uioNumber(address) {
            outcome.deviceNode = paths.uioDevice(n)
        }
        if let gid, let node = outcome.deviceNode {
            if Syscalls.exists(node) {
                do {
                    try Syscalls.chown(node, gid: gid)
                    try Syscalls.chmod(node, mode: 0o660)
                } catch {
                    throw .system(call: "chgrp \(unixGroup!) \(node)", errno: error.rawValue, remedy: "run the command as root (sudo)")
                }
            } else {
                outcome.warnings.append("\(node) did not appear; check that the driver created it (ls \(paths.dev)/vfio), then run bind again")
            }
        }
        return outcome
    }

    /// Unbinds `address` from its driver and clears `driver_override`; with `restore`, asks the kernel to
    /// probe it again so its default driver takes it back.
    public func unbind(_ address: PCIAddress, restore: Bool = false, force: Bool = false) throws(PCIKitError) -> Outcome {
        guard discovery.exists(address) else { throw .deviceNotFound(address) }
        let previous = discovery.driver(of: address)
        let device = paths.device(address)
        if let previous {
            if !force, !Self.userspaceDrivers.contains(previous), let reason = inUseReason(address) {
                throw .deviceInUse(address, reason: "\(reason), driver \(previous)")
            }
            try write(device + "/driver/unbind", address.description)
        }
        // An empty line clears the override (drivers/pci/pci-sysfs.c driver_override_store).
        try write(device + "/driver_override", "\n")
        if restore { try write(paths.busPCI + "/drivers_probe", address.description) }
        return Outcome(address: address, previousDriver: previous, driver: discovery.driver(of: address), warnings: [], deviceNode: nil)
    }

    /// Why the host is using the function, or nil: a network interface that is up, or a block device
    /// (looked for under the function and under its virtio child, e.g. virtio2/net/eth0).
    public func inUseReason(_ address: PCIAddress) -> String? {
        let device = paths.device(address)
        var dirs = [device]
        for child in (try? Syscalls.listDirectory(device)) ?? [] where child.hasPrefix("virtio") { dirs.append(device + "/" + child) }
        for dir in dirs {
            for ifname in (try? Syscalls.listDirectory(dir + "/net")) ?? [] {
                let state = (try? Syscalls.readText(dir + "/net/\(ifname)/operstate")) ?? "unknown"
                if state == "up" || state == "unknown" { return "network interface \(ifname) is \(state)" }
            }
            if let disk = ((try? Syscalls.listDirectory(dir + "/block")) ?? []).first {
                return "block device \(disk) is present"
            }
        }
        return nil
    }

    /// The UIO device number of a function bound to a UIO driver (`<device>/uio/uioN`).
    public func uioNumber(_ address: PCIAddress) -> Int? {
        ((try? Syscalls.listDirectory(paths.device(address) + "/uio")) ?? []).compactMap { Int($0.dropFirst(3)) }.first
    }

    private func write(_ path: String, _ value: String) throws(PCIKitError) {
        do { try Syscalls.writeText(path, value) } catch {
            switch error {
            case .permissionDenied, .notPermitted: throw .notPermitted(path: path)
            case .noSuchAddressOrDevice, .noSuchFileOrDirectory, Errno(rawValue: ENODEV):
                throw .system(call: "writing '\(value.trimmingWhitespace())' to \(path)", errno: error.rawValue, remedy: "the driver rejected the device; check dmesg | tail")
            default:
                throw .system(call: "writing '\(value.trimmingWhitespace())' to \(path)", errno: error.rawValue, remedy: "check dmesg | tail")
            }
        }
        kernel?(path, value)
    }

    /// Undoes a failed bind: clears the override and gives the function back to `previous`.
    private func rollBack(_ address: PCIAddress, to previous: String?) {
        let device = paths.device(address)
        try? write(device + "/driver_override", "\n")
        if let current = discovery.driver(of: address), current != previous {
            try? write(device + "/driver/unbind", address.description)
        }
        if let previous, discovery.driver(of: address) == nil {
            try? write(paths.driver(previous) + "/bind", address.description)
        }
    }
}
