#if canImport(Glibc)
import Glibc
#endif
import CNTBShim
import SystemPackage

/// What a VFIO region is (`VFIO_DEVICE_GET_REGION_INFO`).
public struct VFIORegionInfo: Sendable, Equatable {
    public var index: Int
    public var flags: UInt32
    public var size: UInt64
    /// Offset of the region within the device file descriptor (for pread/pwrite/mmap).
    public var offset: UInt64
    /// The sparse-mmap areas (offset, size) when the region may be mapped only in parts, else nil.
    public var sparseAreas: [SparseArea]?

    public struct SparseArea: Sendable, Equatable {
        public var offset: UInt64
        public var size: UInt64
    }

    public var isReadable: Bool { flags & NTB_VFIO_REGION_INFO_FLAG_READ != 0 }
    public var isWritable: Bool { flags & NTB_VFIO_REGION_INFO_FLAG_WRITE != 0 }
    public var isMappable: Bool { flags & NTB_VFIO_REGION_INFO_FLAG_MMAP != 0 }
}

/// The kinds of interrupt a vfio-pci device offers (the VFIO IRQ indices).
public enum InterruptKind: Int, Sendable, CaseIterable, CustomStringConvertible {
    case intx = 0
    case msi = 1
    case msix = 2

    public var description: String { switch self { case .intx: "INTx"; case .msi: "MSI"; case .msix: "MSI-X" } }
}

/// A PCI function opened through VFIO: BARs mapped as VFIO regions (uncached), configuration space
/// through the config region, interrupts to eventfds, DMA through the container's IOMMU mapping.
///
/// ```swift
/// let device = try VFIODevice.open(try PCIAddress(parsing: "0000:01:00.0"))
/// try device.enableBusMaster()
/// let bar0 = try device.mapBAR(0)
/// let buffer = try device.container.allocateDMA(length: 1 << 20)
/// let vectors = try device.enableInterrupts(.msi, count: 1)
/// if vectors[0].wait(timeout: .seconds(1)) { vectors[0].consume() }
/// ```
///
/// Resources release in order because of who holds whom: a ``MappedRegion`` holds the device, the
/// device its group, the group and every DMA buffer the container. So BARs are unmapped before the
/// device is closed, and DMA mappings are removed before the container is closed.
public final class VFIODevice: @unchecked Sendable {
    public let address: PCIAddress
    public let group: VFIOGroup
    /// The device file descriptor.
    public let fd: Int32
    /// Device flags (`VFIO_DEVICE_FLAGS_*`), number of regions and IRQ indices.
    public let flags: UInt32
    public let regionCount: Int
    public let irqCount: Int

    public var container: VFIOContainer { group.container }
    /// Whether `VFIO_DEVICE_RESET` is supported.
    public var canReset: Bool { flags & NTB_VFIO_DEVICE_FLAGS_RESET != 0 }

    /// Opens the function at `address`: finds its IOMMU group in sysfs, opens the container (or joins
    /// `container`), opens and attaches the group, and gets the device descriptor.
    ///
    /// - Throws: ``PCIKitError/deviceNotFound(_:)``, ``PCIKitError/noIOMMUGroup(_:)``,
    ///   ``PCIKitError/wrongDriver(_:bound:needed:)``, ``PCIKitError/vfioPermissionDenied(path:)``,
    ///   ``PCIKitError/groupNotViable(group:offenders:)``, ``PCIKitError/deviceBusy(_:)``.
    public static func open(_ address: PCIAddress, container: VFIOContainer? = nil, paths: SystemPaths = .live) throws(PCIKitError) -> VFIODevice {
        let discovery = PCIDiscovery(paths: paths)
        guard discovery.exists(address) else { throw .deviceNotFound(address) }
        guard let groupNumber = discovery.iommuGroup(of: address) else { throw .noIOMMUGroup(address) }
        let driver = discovery.driver(of: address)
        guard driver == "vfio-pci" else { throw .wrongDriver(address, bound: driver, needed: "vfio-pci") }
        let owner: VFIOContainer
        if let container { owner = container } else { owner = try VFIOContainer(paths: paths) }
        let group = try owner.group(groupNumber, for: address)
        var name = Array(address.description.utf8CString)
        let fd: Int32
        do { fd = try unsafe withMutableBytes(&name) { b throws(Errno) in try unsafe Syscalls.ioctl(group.fd, .groupGetDeviceFD, b.baseAddress) } } catch {
            if error == .resourceBusy { throw .deviceBusy(address) }
            throw .ioctl(name: "VFIO_GROUP_GET_DEVICE_FD", errno: error.rawValue, remedy: "check that \(address) is in IOMMU group \(groupNumber)")
        }
        var info = ntb_vfio_device_info()
        info.argsz = UInt32(MemoryLayout<ntb_vfio_device_info>.size)
        do { _ = try unsafe Syscalls.ioctl(fd, .deviceGetInfo, &info) } catch {
            Syscalls.close(fd)
            throw .ioctl(name: "VFIO_DEVICE_GET_INFO", errno: error.rawValue, remedy: "check dmesg for vfio-pci messages")
        }
        return VFIODevice(address: address, group: group, fd: fd, info: info)
    }

    private init(address: PCIAddress, group: VFIOGroup, fd: Int32, info: ntb_vfio_device_info) {
        self.address = address
        self.group = group
        self.fd = fd
        flags = info.flags
        regionCount = Int(info.num_regions)
        irqCount = Int(info.num_irqs)
    }

    // Close the device before its group (and the group before the container) are released.
    deinit { Syscalls.close(fd) }

    // MARK: Regions

    /// Describes region `index` (BARs 0–5, ROM 6, config 7), including its sparse-mmap areas.
    /// The corresponding ioctl is `VFIO_DEVICE_GET_REGION_INFO` (asked twice when the capability
    /// chain does not fit the first buffer).
    public func regionInfo(_ index: Int) throws(PCIKitError) -> VFIORegionInfo {
        precondition(index >= 0, "negative region index")
        var size = MemoryLayout<ntb_vfio_region_info>.size
        for _ in 0..<2 {
            var buffer = [UInt8](repeating: 0, count: size)
            var header = ntb_vfio_region_info()
            header.argsz = UInt32(size)
            header.index = UInt32(index)
            unsafe withUnsafeBytes(of: &header) { h in unsafe buffer.withUnsafeMutableBytes { unsafe $0.copyMemory(from: h) } }
            do {
                _ = try unsafe withMutableBytes(&buffer) { b throws(Errno) in try unsafe Syscalls.ioctl(fd, .deviceGetRegionInfo, b.baseAddress) }
            } catch {
                throw .ioctl(name: "VFIO_DEVICE_GET_REGION_INFO", errno: error.rawValue,
                             remedy: "region \(index) does not exist on \(address) (it has \(regionCount))")
            }
            unsafe buffer.withUnsafeBytes { b in unsafe withUnsafeMutableBytes(of: &header) { unsafe $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[0..<MemoryLayout<ntb_vfio_region_info>.size])) } }
            if Int(header.argsz) > size { size = Int(header.argsz); continue }   // capabilities did not fit
            var info = VFIORegionInfo(index: index, flags: header.flags, size: header.size, offset: header.offset, sparseAreas: nil)
            if header.flags & NTB_VFIO_REGION_INFO_FLAG_CAPS != 0 {
                let n = unsafe buffer.withUnsafeBytes { unsafe ntb_vfio_region_sparse_areas($0.baseAddress!, $0.count, nil, 0) }
                if n < 0 { throw .malformed(what: "VFIO region \(index) capability chain", detail: "offsets outside the \(size)-byte answer") }
                if n > 0 {
                    var areas = [ntb_vfio_region_sparse_mmap_area](repeating: .init(), count: Int(n))
                    _ = unsafe buffer.withUnsafeBytes { b in unsafe areas.withUnsafeMutableBufferPointer { a in
                        unsafe ntb_vfio_region_sparse_areas(b.baseAddress!, b.count, a.baseAddress, n)
                    } }
                    info.sparseAreas = areas.map { .init(offset: $0.offset, size: $0.size) }
                }
            }
            return info
        }
        throw .malformed(what: "VFIO region \(index) info", detail: "the kernel asked for a larger buffer twice")
    }

    /// Maps BAR `bar` (0–5). VFIO mappings are uncached (UC): for write-combining on a prefetchable
    /// BAR, map it through ``SysfsResource`` instead.
    public func mapBAR(_ bar: Int) throws(PCIKitError) -> MappedRegion {
        precondition((0...5).contains(bar), "BAR \(bar) out of range 0...5")
        return try mapRegion(bar)
    }

    /// Maps region `index` with mmap on the device descriptor. With sparse areas, the whole region is
    /// reserved (PROT_NONE) and only the areas are mapped into it, as QEMU's `vfio_region_mmap` does.
    public func mapRegion(_ index: Int) throws(PCIKitError) -> MappedRegion {
        let info = try regionInfo(index)
        guard info.size > 0 else { throw .notMappable(address, region: index, reason: "it is not implemented (size 0)") }
        guard info.isMappable else {
            throw .notMappable(address, region: index, reason: "VFIO does not allow mmap of it (an I/O-port BAR, or a BAR VFIO emulates); use pread/pwrite on the region")
        }
        let length = Int(info.size)
        let prot = (info.isReadable ? PROT_READ : 0) | (info.isWritable ? PROT_WRITE : 0)
        guard let areas = info.sparseAreas else {
            do {
                let p = try unsafe Syscalls.mmap(length: length, protection: prot, flags: MAP_SHARED, fd: fd, offset: Int64(info.offset))
                return unsafe MappedRegion(index: index, mapping: OwnedMapping(base: p, length: length), length: length,
                                           writeCombining: false, areas: [(0, length)], owner: self)
            } catch {
                throw .system(call: "mmap of region \(index) of \(address)", errno: error.rawValue, remedy: "check dmesg for vfio-pci messages")
            }
        }
        let reserve: UnsafeMutableRawPointer
        do {
            unsafe reserve = try unsafe Syscalls.mmap(length: length, protection: PROT_NONE, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: -1, offset: 0)
        } catch {
            throw .system(call: "reserving \(length) bytes of address space", errno: error.rawValue, remedy: "free address space")
        }
        let mapping = unsafe OwnedMapping(base: reserve, length: length)   // unmaps everything on failure below
        for a in areas where a.size > 0 {
            guard a.offset + a.size <= info.size else {
                throw .malformed(what: "sparse mmap area of region \(index)", detail: "\(a.offset)+\(a.size) beyond \(info.size)")
            }
            do {
                _ = try unsafe Syscalls.mmap(length: Int(a.size), protection: prot, flags: MAP_SHARED | MAP_FIXED, fd: fd,
                                             offset: Int64(info.offset + a.offset), at: reserve + Int(a.offset))
            } catch {
                throw .system(call: "mmap of region \(index) area \(a.offset) of \(address)", errno: error.rawValue, remedy: "check dmesg for vfio-pci messages")
            }
        }
        return MappedRegion(index: index, mapping: mapping, length: length, writeCombining: false,
                            areas: areas.map { (Int($0.offset), Int($0.size)) }, owner: self)
    }

    // MARK: Configuration space

    /// Reads `count` bytes of configuration space at `offset` through the config region (index 7).
    public func readConfig(offset: Int, count: Int) throws(PCIKitError) -> [UInt8] {
        let config = try regionInfo(Int(NTB_VFIO_PCI_CONFIG_REGION_INDEX))
        precondition(offset >= 0 && count >= 0 && UInt64(offset + count) <= config.size, "config access outside the config space")
        var out = [UInt8](repeating: 0, count: count)
        let n: Int
        do { n = try unsafe withMutableBytes(&out) { b throws(Errno) in try unsafe Syscalls.pread(fd, b.baseAddress!, count, Int64(config.offset) + Int64(offset)) } } catch {
            throw .system(call: "reading config space of \(address)", errno: error.rawValue, remedy: "check dmesg for vfio-pci messages")
        }
        return Array(out.prefix(n))
    }

    /// Writes bytes to configuration space at `offset` through the config region (vfio-pci filters
    /// what may be written, as `vfio_config_do_rw` describes).
    public func writeConfig(offset: Int, bytes: [UInt8]) throws(PCIKitError) {
        let config = try regionInfo(Int(NTB_VFIO_PCI_CONFIG_REGION_INDEX))
        precondition(offset >= 0 && UInt64(offset + bytes.count) <= config.size, "config access outside the config space")
        do { _ = try unsafe withBytes(bytes) { b throws(Errno) in try unsafe Syscalls.pwrite(fd, b.baseAddress!, b.count, Int64(config.offset) + Int64(offset)) } } catch {
            throw .system(call: "writing config space of \(address)", errno: error.rawValue, remedy: "check dmesg for vfio-pci messages")
        }
    }

    /// Sets Memory Space and Bus Master Enable in the command register (config 0x04), so the device
    /// can decode its BARs and issue DMA.
    public func enableBusMaster() throws(PCIKitError) {
        let cmd = try readConfig(offset: 4, count: 2)
        guard cmd.count == 2 else { throw .malformed(what: "command register of \(address)", detail: "short read") }
        let value = (UInt16(cmd[0]) | UInt16(cmd[1]) << 8) | 0x0006
        try writeConfig(offset: 4, bytes: [UInt8(value & 0xff), UInt8(value >> 8)])
    }

    // MARK: Interrupts

    /// How many vectors of `kind` the device offers, and whether they are maskable.
    /// The corresponding ioctl is `VFIO_DEVICE_GET_IRQ_INFO`.
    public func interruptInfo(_ kind: InterruptKind) throws(PCIKitError) -> (count: Int, maskable: Bool) {
        var info = ntb_vfio_irq_info(argsz: UInt32(MemoryLayout<ntb_vfio_irq_info>.size), flags: 0, index: UInt32(kind.rawValue), count: 0)
        do { _ = try unsafe Syscalls.ioctl(fd, .deviceGetIRQInfo, &info) } catch {
            throw .ioctl(name: "VFIO_DEVICE_GET_IRQ_INFO", errno: error.rawValue, remedy: "\(address) has no \(kind) interrupts")
        }
        return (Int(info.count), info.flags & NTB_VFIO_IRQ_INFO_MASKABLE != 0)
    }

    /// Routes vectors 0..<count of `kind` to new eventfds and returns them (index i = vector i). For
    /// INTx (one vector), VFIO masks the line when it fires: call ``unmask(_:vector:)`` after handling.
    /// The corresponding ioctl is `VFIO_DEVICE_SET_IRQS` (DATA_EVENTFD | ACTION_TRIGGER).
    public func enableInterrupts(_ kind: InterruptKind, count: Int) throws(PCIKitError) -> [EventNotifier] {
        precondition(count > 0, "enable at least one vector")
        let available = try interruptInfo(kind).count
        guard count <= available else { throw .noSuchInterrupt(address, index: kind.description, count: count, available: available) }
        var notifiers: [EventNotifier] = []
        for _ in 0..<count { notifiers.append(try EventNotifier()) }
        let fds = notifiers.map(\.fd)
        var buffer = [UInt8](repeating: 0, count: ntb_vfio_irq_set_eventfd_size(UInt32(count)))
        do {
            _ = try unsafe withMutableBytes(&buffer) { b throws(Errno) in
                unsafe fds.withUnsafeBufferPointer { f in unsafe ntb_vfio_irq_set_eventfds(b.baseAddress!, UInt32(kind.rawValue), 0, UInt32(count), f.baseAddress) }
                return try unsafe Syscalls.ioctl(fd, .deviceSetIRQs, b.baseAddress)
            }
        } catch {
            throw .ioctl(name: "VFIO_DEVICE_SET_IRQS", errno: error.rawValue,
                         remedy: error == .invalidArgument ? "\(kind) may be unavailable while another interrupt kind is enabled; disable it first" : "check dmesg for vfio-pci messages")
        }
        return notifiers
    }

    /// Stops delivering `kind` interrupts (SET_IRQS with DATA_NONE | ACTION_TRIGGER and count 0).
    public func disableInterrupts(_ kind: InterruptKind) throws(PCIKitError) {
        try setIRQAction(kind, vector: 0, count: 0, action: NTB_VFIO_IRQ_SET_ACTION_TRIGGER)
    }

    /// Masks one vector (VFIO supports this for INTx; MSI/MSI-X masking depends on the kernel).
    public func mask(_ kind: InterruptKind, vector: Int = 0) throws(PCIKitError) {
        try setIRQAction(kind, vector: vector, count: 1, action: NTB_VFIO_IRQ_SET_ACTION_MASK)
    }

    /// Unmasks one vector (re-arms INTx after it fired).
    public func unmask(_ kind: InterruptKind, vector: Int = 0) throws(PCIKitError) {
        try setIRQAction(kind, vector: vector, count: 1, action: NTB_VFIO_IRQ_SET_ACTION_UNMASK)
    }

    private func setIRQAction(_ kind: InterruptKind, vector: Int, count: Int, action: UInt32) throws(PCIKitError) {
        var set = ntb_vfio_irq_set()
        unsafe ntb_vfio_irq_set_action(&set, UInt32(kind.rawValue), UInt32(vector), UInt32(count), action)
        do { _ = try unsafe Syscalls.ioctl(fd, .deviceSetIRQs, &set) } catch {
            throw .ioctl(name: "VFIO_DEVICE_SET_IRQS", errno: error.rawValue, remedy: "\(kind) vector \(vector) of \(address) does not support this action")
        }
    }

    /// Resets the function (FLR or another method vfio-pci found). The corresponding ioctl is
    /// `VFIO_DEVICE_RESET`.
    public func reset() throws(PCIKitError) {
        do { _ = try Syscalls.ioctl(fd, .deviceReset, value: 0) } catch {
            throw .ioctl(name: "VFIO_DEVICE_RESET", errno: error.rawValue,
                         remedy: canReset ? "check dmesg for the reset failure" : "\(address) offers no reset method")
        }
    }
}
