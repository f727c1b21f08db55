/// A piece of memory a device can reach by DMA: its CPU address and the address the device uses
/// (an IOVA behind an IOMMU, a physical address on UIO, or a modelled bus address on the mock).
@safe
public struct DMARegion: @unchecked Sendable, Equatable {
    /// Where the CPU sees the memory.
    public let address: UnsafeMutableRawPointer
    /// Where the device sees the memory (the IOVA given to `VFIO_IOMMU_MAP_DMA`, or a physical address).
    public let busAddress: UInt64
    /// Length in bytes.
    public let length: Int

    public init(address: UnsafeMutableRawPointer, busAddress: UInt64, length: Int) {
        unsafe self.address = address
        self.busAddress = busAddress
        self.length = length
    }

    public static func == (a: DMARegion, b: DMARegion) -> Bool {
        unsafe a.address == b.address && a.busAddress == b.busAddress && a.length == b.length
    }

    /// The region as register/memory view for volatile access by the CPU.
    public var mmio: MMIORegion { unsafe MMIORegion(base: address, length: length) }

    /// A part of this region.
    public func slice(offset: Int, length: Int) -> DMARegion {
        precondition(offset >= 0 && length >= 0 && offset <= self.length && length <= self.length - offset)
        return unsafe DMARegion(address: address + offset, busAddress: busAddress + UInt64(offset), length: length)
    }
}

/// Owns a ``DMARegion`` and releases it (IOMMU unmap, munmap, arena free) exactly once, when the
/// buffer is closed or goes away.
public final class DMABuffer: @unchecked Sendable {
    public let region: DMARegion
    private var release: ((DMARegion) -> Void)?

    public init(region: DMARegion, release: @escaping (DMARegion) -> Void) {
        self.region = region
        self.release = release
    }

    /// Releases the memory now. Later calls do nothing.
    public func close() {
        if let release { self.release = nil; release(region) }
    }

    deinit { close() }
}
