#if canImport(Glibc)
import Glibc
#endif

/// Errors of the PCI layer. Each message names what failed and what to do about it, on one line, so the
/// CLI can print it as it is.
public enum PCIKitError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A system call failed; `remedy` says what the user can do.
    case system(call: String, errno: Int32, remedy: String)
    /// A PCI address that does not parse.
    case invalidAddress(String, reason: String)
    /// No PCI function at this address.
    case deviceNotFound(PCIAddress)
    /// The function has no IOMMU group (no IOMMU, or it is off).
    case noIOMMUGroup(PCIAddress)
    /// The IOMMU group holds functions bound to drivers other than vfio-pci.
    case groupNotViable(group: Int, offenders: [GroupMember])
    /// `/dev/vfio/N` (or `/dev/vfio/vfio`) exists but cannot be opened by this user.
    case vfioPermissionDenied(path: String)
    /// The VFIO device nodes are missing.
    case vfioUnavailable(path: String)
    /// The function is not bound to the driver an operation needs.
    case wrongDriver(PCIAddress, bound: String?, needed: String)
    /// An ioctl failed.
    case ioctl(name: String, errno: Int32, remedy: String)
    /// The device (or its group) is already open in another process or container.
    case deviceBusy(PCIAddress)
    /// A region or BAR cannot be mapped.
    case notMappable(PCIAddress, region: Int, reason: String)
    /// Write-combining was asked for where sysfs offers no `resourceN_wc`.
    case writeCombiningUnavailable(PCIAddress, bar: Int)
    /// libpci could not enumerate the bus.
    case libpci(String)
    /// A kernel driver is not loaded (its sysfs directory is missing).
    case driverNotLoaded(String)
    /// Binding to a driver did not take effect (the previous driver, if any, was restored).
    case bindFailed(PCIAddress, driver: String, restored: String?)
    /// The device is in use by the host (a network interface that is up, a block device).
    case deviceInUse(PCIAddress, reason: String)
    /// A Unix group named on the command line does not exist.
    case unknownGroup(String)
    /// Writing a sysfs control file failed for lack of privilege.
    case notPermitted(path: String)
    /// The IOVA space of the allocator is exhausted.
    case iovaExhausted(length: Int)
    /// UIO DMA memory is not physically contiguous.
    case notPhysicallyContiguous(length: Int)
    /// A parse of kernel-provided data (sysfs, capability chain) failed.
    case malformed(what: String, detail: String)
    /// An interrupt index or vector that the device does not offer.
    case noSuchInterrupt(PCIAddress, index: String, count: Int, available: Int)

    /// A function in an IOMMU group and the driver it is bound to.
    public struct GroupMember: Equatable, Sendable, CustomStringConvertible {
        public var address: PCIAddress
        public var driver: String?
        public init(address: PCIAddress, driver: String?) { self.address = address; self.driver = driver }
        public var description: String { "\(address) (\(driver ?? "no driver"))" }
    }

    public var description: String {
        switch self {
        case let .system(call, err, remedy):
            return "\(call) failed: \(errnoText(err)); \(remedy)"
        case let .invalidAddress(text, reason):
            return "'\(text)' is not a PCI address: \(reason); write it as 0000:01:00.0 or 01:00.0 (see `ntb-transport list --all`)"
        case let .deviceNotFound(a):
            return "no PCI function \(a) on this machine; run `ntb-transport list --all` to see the functions present"
        case let .noIOMMUGroup(a):
            return "\(a) has no IOMMU group; enable the IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line, VT-d/AMD-Vi in firmware) or bind it to uio_pci_generic instead"
        case let .groupNotViable(group, offenders):
            let list = offenders.map { m in "\(m.address) is still bound to \(m.driver ?? "a driver")" }.joined(separator: ", ")
            return "IOMMU group \(group) is not viable: \(list); unbind \(offenders.count == 1 ? "it" : "them") or bind \(offenders.count == 1 ? "it" : "them") to vfio-pci too (`ntb-transport bind \(offenders.first.map { "\($0.address)" } ?? "BDF")`)"
        case let .vfioPermissionDenied(path):
            return "no permission to open \(path); run `sudo ntb-transport bind <BDF> --group $(id -gn)` to give it to your group, or run as root"
        case let .vfioUnavailable(path):
            return "\(path) does not exist; load VFIO with `sudo modprobe vfio-pci` and bind the device with `ntb-transport bind <BDF>`"
        case let .wrongDriver(a, bound, needed):
            return "\(a) is bound to \(bound ?? "no driver"), not \(needed); run `sudo ntb-transport bind \(a) --driver \(needed)`"
        case let .ioctl(name, err, remedy):
            return "\(name) failed: \(errnoText(err)); \(remedy)"
        case let .deviceBusy(a):
            return "\(a) is busy: another process (or container) has it open; stop that process and try again"
        case let .notMappable(a, region, reason):
            return "region \(region) of \(a) cannot be mapped: \(reason)"
        case let .writeCombiningUnavailable(a, bar):
            return "BAR \(bar) of \(a) offers no write-combining mapping (no resource\(bar)_wc: the BAR is not prefetchable memory); map it without write-combining"
        case let .libpci(message):
            return "libpci cannot scan the PCI bus: \(message); check that /sys/bus/pci is mounted (or run as root)"
        case let .driverNotLoaded(driver):
            return "the \(driver) driver is not loaded; run `sudo modprobe \(driver)`"
        case let .bindFailed(a, driver, restored):
            return "binding \(a) to \(driver) did not take effect" + (restored.map { "; restored \($0)" } ?? "")
                + "; check `dmesg | tail` for the driver's reason (for vfio-pci: an IOMMU must be on)"
        case let .deviceInUse(a, reason):
            return "\(a) is in use (\(reason)); stop using it first, or pass --force to take it anyway"
        case let .unknownGroup(name):
            return "there is no group '\(name)'; create it with `sudo groupadd \(name)` or name an existing group"
        case let .notPermitted(path):
            return "no permission to write \(path); run the command as root (sudo)"
        case let .iovaExhausted(length):
            return "no free IOVA range of \(length) bytes left; free DMA buffers or give the container a larger IOVA range"
        case let .notPhysicallyContiguous(length):
            return "\(length) bytes of DMA memory are not physically contiguous; reserve hugepages (echo 64 | sudo tee /proc/sys/vm/nr_hugepages) or use VFIO"
        case let .malformed(what, detail):
            return "malformed \(what): \(detail); report this with the kernel version (uname -r)"
        case let .noSuchInterrupt(a, index, count, available):
            return "\(a) offers \(available) \(index) vector(s), \(count) requested; ask for at most \(available)"
        }
    }
}

func errnoText(_ err: Int32) -> String {
    unsafe "\(String(cString: strerror(err))) (errno \(err))"
}
