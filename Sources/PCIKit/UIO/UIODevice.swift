#if canImport(Glibc)
import Glibc
#endif
import Logging
import SystemPackage

/// One memory map a UIO driver exports (`/sys/class/uio/uioN/maps/mapK`).
public struct UIOMap: Sendable, Equatable {
    public var index: Int
    public var name: String
    /// Physical (bus) address.
    public var address: UInt64
    public var size: UInt64
    /// Offset of the mapping's start within its page.
    public var offset: UInt64
}

/// A PCI function bound to a UIO driver (uio_pci_generic): BARs through UIO maps or sysfs
/// `resourceN(_wc)`, configuration space through sysfs `config`, the interrupt through `/dev/uioN`, and
/// DMA memory by physical address.
///
/// - Warning: UIO gives no DMA isolation. The device can reach all of memory; DMA buffers are addressed
///   physically (from `/proc/self/pagemap`). Use VFIO where an IOMMU exists.
///
/// ```swift
/// let uio = try UIODevice.open(try PCIAddress(parsing: "01:00.0"))
/// let bar0 = try uio.mapBAR(0)
/// try uio.enableInterrupt()
/// if try uio.waitForInterrupt(timeout: .seconds(1)) { /* handle, then enableInterrupt() again */ }
/// ```
public final class UIODevice: @unchecked Sendable {
    public let address: PCIAddress
    /// N of /dev/uioN.
    public let number: Int
    public let paths: SystemPaths
    /// `/dev/uioN` as a notifier: readable when the interrupt fired.
    public let interrupt: EventNotifier
    private let logger = Logger(label: "pcikit.uio")

    /// Opens the UIO device of `address` (which must be bound to a UIO driver).
    public static func open(_ address: PCIAddress, paths: SystemPaths = .live) throws(PCIKitError) -> UIODevice {
        let discovery = PCIDiscovery(paths: paths)
        guard discovery.exists(address) else { throw .deviceNotFound(address) }
        guard let n = PCIBinder(paths: paths).uioNumber(address) else {
            throw .wrongDriver(address, bound: discovery.driver(of: address), needed: "uio_pci_generic")
        }
        let node = paths.uioDevice(n)
        let fd: Int32
        do { fd = try Syscalls.open(node, O_RDWR | O_NONBLOCK) } catch {
            if error == .permissionDenied || error == .notPermitted { throw .vfioPermissionDenied(path: node) }
            throw .system(call: "open \(node)", errno: error.rawValue, remedy: "check that uio_pci_generic created it (ls \(paths.dev)/uio*)")
        }
        return UIODevice(address: address, number: n, paths: paths, interrupt: EventNotifier(fd: fd, kind: .uio))
    }

    private init(address: PCIAddress, number: Int, paths: SystemPaths, interrupt: EventNotifier) {
        self.address = address
        self.number = number
        self.paths = paths
        self.interrupt = interrupt
    }

    /// The maps the UIO driver exports (none for uio_pci_generic, which exports only the interrupt).
    public func maps() throws(PCIKitError) -> [UIOMap] {
        let dir = paths.uio(number) + "/maps"
        let names = (try? Syscalls.listDirectory(dir)) ?? []
        var out: [UIOMap] = []
        for name in names where name.hasPrefix("map") {
            guard let k = Int(name.dropFirst(3)) else { continue }
            func value(_ f: String) throws(PCIKitError) -> UInt64 {
                let text: String
                do { text = try Syscalls.readText("\(dir)/\(name)/\(f)") } catch {
                    throw .malformed(what: "UIO map \(dir)/\(name)", detail: "no \(f)")
                }
                guard let v = UInt64(text.hasPrefix("0x") ? String(text.dropFirst(2)) : text, radix: 16) else {
                    throw .malformed(what: "UIO map \(dir)/\(name)/\(f)", detail: "'\(text)'")
                }
                return v
            }
            let mapName = (try? Syscalls.readText("\(dir)/\(name)/name")) ?? ""
            out.append(UIOMap(index: k, name: mapName, address: try value("addr"), size: try value("size"), offset: (try? value("offset")) ?? 0))
        }
        return out.sorted { $0.index < $1.index }
    }

    /// Maps UIO map `k` (mmap of /dev/uioN at offset k * page size, as the UIO ABI defines).
    public func mapUIOMap(_ k: Int) throws(PCIKitError) -> MappedRegion {
        guard let m = try maps().first(where: { $0.index == k }) else {
            throw .notMappable(address, region: k, reason: "uio\(number) has no map\(k)")
        }
        let length = Int(m.size)
        do {
            let p = try unsafe Syscalls.mmap(length: length, protection: PROT_READ | PROT_WRITE, flags: MAP_SHARED,
                                             fd: interrupt.fd, offset: Int64(k * Syscalls.pageSize))
            return unsafe MappedRegion(index: k, mapping: OwnedMapping(base: p, length: length), length: length,
                                       writeCombining: false, areas: [(0, length)], owner: self)
        } catch {
            throw .system(call: "mmap of uio\(number) map\(k)", errno: error.rawValue, remedy: "check dmesg for the UIO driver's messages")
        }
    }

    /// Maps BAR `bar`: through the UIO map at the BAR's address when the driver exports one, else
    /// through sysfs `resourceN` (`resourceN_wc` with `writeCombining`).
    public func mapBAR(_ bar: Int, writeCombining: Bool = false) throws(PCIKitError) -> MappedRegion {
        if !writeCombining, let start = try PCIDiscovery(paths: paths).bars(of: address).first(where: { $0.index == bar })?.start,
           let m = try maps().first(where: { $0.address == start }) {
            return try mapUIOMap(m.index)
        }
        return try SysfsResource.map(address, bar: bar, writeCombining: writeCombining, paths: paths)
    }

    /// Reads configuration space through sysfs `config`.
    public func readConfig(offset: Int, count: Int) throws(PCIKitError) -> [UInt8] {
        let path = paths.device(address) + "/config"
        do {
            let fd = try Syscalls.open(path, O_RDONLY)
            defer { Syscalls.close(fd) }
            var out = [UInt8](repeating: 0, count: count)
            let n = try unsafe withMutableBytes(&out) { b throws(Errno) in try unsafe Syscalls.pread(fd, b.baseAddress!, count, Int64(offset)) }
            return Array(out.prefix(n))
        } catch {
            throw .system(call: "reading \(path)", errno: error.rawValue, remedy: "run as root")
        }
    }

    /// Writes configuration space through sysfs `config` (root only).
    public func writeConfig(offset: Int, bytes: [UInt8]) throws(PCIKitError) {
        let path = paths.device(address) + "/config"
        do {
            let fd = try Syscalls.open(path, O_WRONLY)
            defer { Syscalls.close(fd) }
            _ = try unsafe withBytes(bytes) { b throws(Errno) in try unsafe Syscalls.pwrite(fd, b.baseAddress!, b.count, Int64(offset)) }
        } catch {
            if error == .permissionDenied { throw .notPermitted(path: path) }
            throw .system(call: "writing \(path)", errno: error.rawValue, remedy: "run as root")
        }
    }

    /// Sets Memory Space and Bus Master Enable (command register, config 0x04).
    public func enableBusMaster() throws(PCIKitError) {
        let cmd = try readConfig(offset: 4, count: 2)
        guard cmd.count == 2 else { throw .malformed(what: "command register of \(address)", detail: "short read") }
        let value = (UInt16(cmd[0]) | UInt16(cmd[1]) << 8) | 0x0006
        try writeConfig(offset: 4, bytes: [UInt8(value & 0xff), UInt8(value >> 8)])
    }

    /// Re-enables the interrupt (writes 1 to /dev/uioN; uio_pci_generic clears INTx Disable). Call it
    /// before the first wait and after handling each interrupt.
    public func enableInterrupt() throws(PCIKitError) {
        var one: UInt32 = 1
        do { _ = try unsafe Syscalls.write(interrupt.fd, &one, 4) } catch {
            throw .system(call: "enabling the interrupt of uio\(number)", errno: error.rawValue,
                          remedy: "the device may have no INTx line (interrupt pin 0)")
        }
    }

    /// Waits for the interrupt; returns true (and consumes the event count) if it fired within `timeout`.
    public func waitForInterrupt(timeout: Duration?) throws(PCIKitError) -> Bool {
        guard interrupt.wait(timeout: timeout) else { return false }
        return interrupt.consume() > 0
    }

    /// DMA memory addressed physically: hugepage-backed if possible (so it is contiguous), locked, its
    /// physical address from `/proc/self/pagemap` (root only).
    /// - Warning: no IOMMU isolates this device; a wrong address from the device corrupts any memory.
    public func allocateDMA(length: Int) throws(PCIKitError) -> DMABuffer {
        logger.warning("UIO DMA uses physical addresses without an IOMMU: the device can reach all memory", metadata: ["pci.bdf": "\(address)"])
        let memory = try PinnedMemory.allocate(length: length, preferHugepages: true)
        let physical: UInt64
        do { physical = try PhysicalAddress.contiguous(memory, paths: paths) } catch {
            memory.release()
            throw error
        }
        return unsafe DMABuffer(region: DMARegion(address: memory.address, busAddress: physical, length: memory.length)) { _ in memory.release() }
    }
}

/// Virtual-to-physical translation through `/proc/self/pagemap` (Documentation/admin-guide/mm/pagemap.rst:
/// one 64-bit entry per page; bit 63 present, bits 0–54 the page frame number, zeroed for readers
/// without CAP_SYS_ADMIN).
enum PhysicalAddress {
    static func entry(fd: Int32, page: UInt64) throws(Errno) -> UInt64 {
        var e: UInt64 = 0
        let n = try unsafe Syscalls.pread(fd, &e, 8, Int64(page * 8))
        if n != 8 { throw .ioError }
        return e
    }

    /// The physical address of `memory`, which must be physically contiguous.
    static func contiguous(_ memory: PinnedMemory, paths: SystemPaths) throws(PCIKitError) -> UInt64 {
        let path = paths.proc + "/self/pagemap"
        let page = UInt64(Syscalls.pageSize)
        let fd: Int32
        do { fd = try Syscalls.open(path, O_RDONLY) } catch {
            throw .system(call: "open \(path)", errno: error.rawValue, remedy: "physical addresses need /proc mounted and root")
        }
        defer { Syscalls.close(fd) }
        let base = UInt64(UInt(bitPattern: unsafe memory.address))
        var first: UInt64 = 0
        for i in 0..<(UInt64(memory.length) / page) {
            let e: UInt64
            do { e = try entry(fd: fd, page: base / page + i) } catch {
                throw .system(call: "reading \(path)", errno: error.rawValue, remedy: "run as root")
            }
            let pfn = e & ((1 << 55) - 1)
            guard e >> 63 == 1, pfn != 0 else {
                throw .system(call: "translating DMA memory through \(path)", errno: EPERM,
                              remedy: "physical addresses need CAP_SYS_ADMIN: run as root, or use VFIO")
            }
            if i == 0 { first = pfn } else if pfn != first + i { throw .notPhysicallyContiguous(length: memory.length) }
        }
        return first * page
    }
}
