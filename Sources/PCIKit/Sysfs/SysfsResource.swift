#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// BAR mappings through sysfs `resourceN` / `resourceN_wc` (outside VFIO).
///
/// This is how to get a **write-combining** mapping of a prefetchable BAR (a memory window): VFIO maps
/// BARs uncached, and DPDK measured more than 10x between the two for NTB windows (DPDK ntb driver, write-combining BARs). The kernel
/// offers `resourceN_wc` only for prefetchable memory BARs (`pci_create_attr`, drivers/pci/pci-sysfs.c).
/// With write-combining, stores may be merged and reordered: call ``Barrier/write()`` before a doorbell
/// or flag store, and read back from the window when the peer must see the data first.
public enum SysfsResource {
    /// Maps BAR `bar` of `address`; with `writeCombining`, through `resourceN_wc`.
    /// - Throws: ``PCIKitError/writeCombiningUnavailable(_:bar:)`` when there is no `resourceN_wc`.
    public static func map(_ address: PCIAddress, bar: Int, writeCombining: Bool = false,
                           paths: SystemPaths = .live) throws(PCIKitError) -> MappedRegion {
        precondition((0...5).contains(bar), "BAR \(bar) out of range 0...5")
        let discovery = PCIDiscovery(paths: paths)
        guard discovery.exists(address) else { throw .deviceNotFound(address) }
        guard let info = try discovery.bars(of: address).first(where: { $0.index == bar }) else {
            throw .notMappable(address, region: bar, reason: "the BAR is not implemented")
        }
        guard !info.isIO else { throw .notMappable(address, region: bar, reason: "it is an I/O-port BAR") }
        let path = paths.device(address) + "/resource\(bar)" + (writeCombining ? "_wc" : "")
        if writeCombining && !Syscalls.exists(path) { throw .writeCombiningUnavailable(address, bar: bar) }
        let fd: Int32
        do { fd = try Syscalls.open(path, O_RDWR | O_SYNC) } catch {
            if error == .permissionDenied || error == .notPermitted { throw .notPermitted(path: path) }
            throw .system(call: "open \(path)", errno: error.rawValue, remedy: "check that the function is still present")
        }
        defer { Syscalls.close(fd) }   // the mapping stays valid after close
        let length = Int(info.size)
        do {
            let p = try unsafe Syscalls.mmap(length: length, protection: PROT_READ | PROT_WRITE, flags: MAP_SHARED, fd: fd, offset: 0)
            return unsafe MappedRegion(index: bar, mapping: OwnedMapping(base: p, length: length), length: length,
                                       writeCombining: writeCombining, areas: [(0, length)], owner: nil)
        } catch {
            throw .system(call: "mmap of \(path)", errno: error.rawValue,
                          remedy: "the BAR may be disabled: enable memory decoding (bind the function to vfio-pci or uio_pci_generic first)")
        }
    }
}
