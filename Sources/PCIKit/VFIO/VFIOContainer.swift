#if canImport(Glibc)
import Glibc
#endif
import CNTBShim
import Synchronization
import SystemPackage

/// A VFIO container (`/dev/vfio/vfio`): one IOMMU address space that groups join. It maps DMA memory
/// into that space with an IOVA allocator.
///
/// The container outlives everything opened through it: groups, devices and DMA buffers hold it, so
/// its descriptor is closed last (after every BAR is unmapped and every DMA mapping is removed).
/// Follows Documentation/driver-api/vfio.rst, "VFIO Usage Example".
public final class VFIOContainer: @unchecked Sendable {
    let descriptor: OwnedDescriptor
    public let paths: SystemPaths
    /// The IOMMU model set on the container (VFIO_TYPE1v2_IOMMU or VFIO_TYPE1_IOMMU), once a group joined.
    public private(set) var iommuType: Int32?
    private let preferredType: Int32
    private let iova: Mutex<IOVAAllocator>
    private let state = Mutex<[Int: Weak<VFIOGroup>]>([:])

    /// The container's file descriptor.
    public var fd: Int32 { descriptor.fd }

    /// Opens `/dev/vfio/vfio`, checks the API version and that a type-1 IOMMU is available.
    /// - Parameter iovaRange: the IOVA window DMA buffers are placed in.
    public init(paths: SystemPaths = .live, iovaRange: Range<UInt64> = IOVAAllocator.defaultRange) throws(PCIKitError) {
        self.paths = paths
        self.iova = Mutex(IOVAAllocator(range: iovaRange))
        let path = paths.vfioContainer
        let fd: Int32
        do { fd = try Syscalls.open(path, O_RDWR) } catch {
            throw Self.openError(path, error)
        }
        descriptor = OwnedDescriptor(fd)
        let version: Int32
        do { version = try Syscalls.ioctl(fd, .getAPIVersion, value: 0) } catch {
            throw .ioctl(name: "VFIO_GET_API_VERSION", errno: error.rawValue, remedy: "check that \(path) is the VFIO container node")
        }
        guard version == NTB_VFIO_API_VERSION else {
            throw .ioctl(name: "VFIO_GET_API_VERSION", errno: EINVAL, remedy: "the kernel reports VFIO API \(version), expected \(NTB_VFIO_API_VERSION); update ntb-transport")
        }
        if (try? Syscalls.ioctl(fd, .checkExtension, value: UInt(NTB_VFIO_TYPE1v2_IOMMU))) ?? 0 > 0 {
            preferredType = NTB_VFIO_TYPE1v2_IOMMU
        } else if (try? Syscalls.ioctl(fd, .checkExtension, value: UInt(NTB_VFIO_TYPE1_IOMMU))) ?? 0 > 0 {
            preferredType = NTB_VFIO_TYPE1_IOMMU
        } else {
            throw .ioctl(name: "VFIO_CHECK_EXTENSION", errno: ENODEV,
                         remedy: "no type-1 IOMMU: enable the IOMMU (intel_iommu=on / amd_iommu=on) and load vfio_iommu_type1")
        }
    }

    static func openError(_ path: String, _ error: Errno) -> PCIKitError {
        switch error {
        case .noSuchFileOrDirectory, .noSuchAddressOrDevice: return .vfioUnavailable(path: path)
        case .permissionDenied, .notPermitted: return .vfioPermissionDenied(path: path)
        default: return .system(call: "open \(path)", errno: error.rawValue, remedy: "check that VFIO is loaded (lsmod | grep vfio)")
        }
    }

    /// The group `number`, opened and attached to this container (once; later calls return the same group).
    func group(_ number: Int, for address: PCIAddress) throws(PCIKitError) -> VFIOGroup {
        if let g = state.withLock({ $0[number]?.value }) { return g }
        let g = try VFIOGroup(number: number, container: self, for: address)
        if iommuType == nil {
            // VFIO_SET_IOMMU only after the first group joined (vfio.rst).
            do { _ = try Syscalls.ioctl(fd, .setIOMMU, value: UInt(preferredType)) } catch {
                throw .ioctl(name: "VFIO_SET_IOMMU", errno: error.rawValue, remedy: "check dmesg for the IOMMU driver's reason")
            }
            iommuType = preferredType
        }
        state.withLock { $0[number] = Weak(g) }
        return g
    }

    /// Maps `length` bytes at `address` for device DMA at `iova`. The corresponding ioctl is
    /// `VFIO_IOMMU_MAP_DMA` (readable and writable by the device).
    public func mapDMA(address: UnsafeMutableRawPointer, length: Int, iova: UInt64) throws(PCIKitError) {
        var map = ntb_vfio_iommu_type1_dma_map(
            argsz: UInt32(MemoryLayout<ntb_vfio_iommu_type1_dma_map>.size),
            flags: NTB_VFIO_DMA_MAP_FLAG_READ | NTB_VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: UInt64(UInt(bitPattern: address)), iova: iova, size: UInt64(length))
        do { _ = try unsafe Syscalls.ioctl(fd, .iommuMapDMA, &map) } catch {
            throw .ioctl(name: "VFIO_IOMMU_MAP_DMA", errno: error.rawValue,
                         remedy: error == .resourceTemporarilyUnavailable || error == .noMemory
                            ? "raise the locked-memory limit (ulimit -l): VFIO pins DMA memory against it"
                            : "check that the IOVA range is free and the device's group is attached")
        }
    }

    /// Removes a DMA mapping. The corresponding ioctl is `VFIO_IOMMU_UNMAP_DMA`.
    public func unmapDMA(iova: UInt64, length: Int) throws(PCIKitError) {
        var unmap = ntb_vfio_iommu_type1_dma_unmap(
            argsz: UInt32(MemoryLayout<ntb_vfio_iommu_type1_dma_unmap>.size), flags: 0, iova: iova, size: UInt64(length))
        do { _ = try unsafe Syscalls.ioctl(fd, .iommuUnmapDMA, &unmap) } catch {
            throw .ioctl(name: "VFIO_IOMMU_UNMAP_DMA", errno: error.rawValue, remedy: "the mapping was not in place")
        }
    }

    /// Allocates DMA memory (hugepages if available, else pages; locked), places it at a free IOVA and
    /// maps it through the IOMMU. The buffer's ``DMARegion/busAddress`` is the IOVA to program into the
    /// device. Closing the buffer unmaps it from the IOMMU, then unlocks and unmaps the memory.
    public func allocateDMA(length: Int, preferHugepages: Bool = false) throws(PCIKitError) -> DMABuffer {
        let memory = try PinnedMemory.allocate(length: length, preferHugepages: preferHugepages)
        let alignment = UInt64(memory.hugepage ? PinnedMemory.hugepageSize : Syscalls.pageSize)
        guard let iova = iova.withLock({ $0.allocate(length: UInt64(memory.length), alignment: alignment) }) else {
            memory.release()
            throw .iovaExhausted(length: memory.length)
        }
        do { try unsafe mapDMA(address: memory.address, length: memory.length, iova: iova) } catch {
            self.iova.withLock { $0.release(start: iova, length: UInt64(memory.length)) }
            memory.release()
            throw error
        }
        let region = unsafe DMARegion(address: memory.address, busAddress: iova, length: memory.length)
        return DMABuffer(region: region) { [self] r in
            // Release order: IOMMU mapping first (the device can no longer reach the pages), then the IOVA,
            // then the memory itself.
            try? self.unmapDMA(iova: r.busAddress, length: r.length)
            self.iova.withLock { $0.release(start: r.busAddress, length: UInt64(r.length)) }
            memory.release()
        }
    }
}

/// A weak reference (for the container's table of open groups).
final class Weak<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
    init(_ value: T) { self.value = value }
}

/// An IOMMU group opened through VFIO (`/dev/vfio/N`), attached to a container. Its descriptor is
/// closed before the container is released.
public final class VFIOGroup: @unchecked Sendable {
    public let number: Int
    public let container: VFIOContainer
    /// The group file descriptor.
    public let fd: Int32

    init(number: Int, container: VFIOContainer, for address: PCIAddress) throws(PCIKitError) {
        let path = container.paths.vfioGroup(number)
        let fd: Int32
        do { fd = try Syscalls.open(path, O_RDWR) } catch {
            if error == .resourceBusy { throw .deviceBusy(address) }
            throw VFIOContainer.openError(path, error)
        }
        do throws(PCIKitError) {
            var status = ntb_vfio_group_status(argsz: UInt32(MemoryLayout<ntb_vfio_group_status>.size), flags: 0)
            do { _ = try unsafe Syscalls.ioctl(fd, .groupGetStatus, &status) } catch {
                throw .ioctl(name: "VFIO_GROUP_GET_STATUS", errno: error.rawValue, remedy: "check that \(path) is a VFIO group node")
            }
            guard status.flags & NTB_VFIO_GROUP_FLAGS_VIABLE != 0 else {
                let offenders = (try? PCIDiscovery(paths: container.paths).nonViableMembers(ofGroup: number)) ?? []
                throw .groupNotViable(group: number, offenders: offenders)
            }
            var cfd = container.fd
            do { _ = try unsafe Syscalls.ioctl(fd, .groupSetContainer, &cfd) } catch {
                if error == .resourceBusy { throw .deviceBusy(address) }
                throw .ioctl(name: "VFIO_GROUP_SET_CONTAINER", errno: error.rawValue, remedy: "the group may already be in another container")
            }
        } catch {
            Syscalls.close(fd)
            throw error
        }
        self.number = number
        self.container = container
        self.fd = fd
    }

    deinit { Syscalls.close(fd) }
}
