/// Where PCIKit finds the kernel's interfaces: the sysfs, /dev and /proc roots. Tests point these at a
/// fake tree in a temporary directory; everything else uses ``live``.
public struct SystemPaths: Sendable, Equatable {
    /// The sysfs mount (`/sys`).
    public var sysfs: String
    /// The device directory (`/dev`).
    public var dev: String
    /// The proc mount (`/proc`).
    public var proc: String

    public init(sysfs: String = "/sys", dev: String = "/dev", proc: String = "/proc") {
        self.sysfs = sysfs
        self.dev = dev
        self.proc = proc
    }

    /// The running system's paths.
    public static let live = SystemPaths()

    /// Whether these are the running system's paths.
    public var isLive: Bool { self == .live }

    /// `/sys/bus/pci`.
    public var busPCI: String { sysfs + "/bus/pci" }
    /// `/sys/bus/pci/devices/<address>`.
    public func device(_ a: PCIAddress) -> String { busPCI + "/devices/" + a.description }
    /// `/sys/bus/pci/drivers/<driver>`.
    public func driver(_ name: String) -> String { busPCI + "/drivers/" + name }
    /// `/sys/kernel/iommu_groups/<group>/devices`.
    public func iommuGroupDevices(_ group: Int) -> String { sysfs + "/kernel/iommu_groups/\(group)/devices" }
    /// `/dev/vfio/vfio`, the container node.
    public var vfioContainer: String { dev + "/vfio/vfio" }
    /// `/dev/vfio/<group>`.
    public func vfioGroup(_ group: Int) -> String { dev + "/vfio/\(group)" }
    /// `/sys/class/uio/uioN`.
    public func uio(_ n: Int) -> String { sysfs + "/class/uio/uio\(n)" }
    /// `/dev/uioN`.
    public func uioDevice(_ n: Int) -> String { dev + "/uio\(n)" }
}
