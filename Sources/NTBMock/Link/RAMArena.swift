public import PCIKit
public import NTBHardware
import Synchronization

/// One side's RAM on the mock link: a shared-memory file with a bus address, from which DMA buffers
/// are handed out first-fit in pages. Buffers are zeroed, as `dma_alloc_coherent` returns them.
public final class RAMArena: @unchecked Sendable {
    public let segment: MockMemorySegment
    private let free = Mutex<[(offset: Int, length: Int)]>([])
    private let granule = 4096

    init(segment: MockMemorySegment, reserved: Int = 0) {
        self.segment = segment
        let start = (reserved + 4095) / 4096 * 4096
        free.withLock { $0 = start < segment.length ? [(start, segment.length - start)] : [] }
    }

    /// Allocates `length` bytes aligned to `alignment` (a power of two, at least a page).
    public func allocate(length: Int, alignment: Int) throws(NTBError) -> DMABuffer {
        precondition(length > 0, "allocation of \(length) bytes")
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment \(alignment) is not a power of two")
        let align = max(alignment, granule)
        let size = (length + granule - 1) / granule * granule
        let base = segment.busAddress
        let found: Int? = free.withLock { list in
            for (i, hole) in list.enumerated() {
                let bus = base + UInt64(hole.offset)
                let pad = Int((UInt64(align) - bus % UInt64(align)) % UInt64(align))
                guard hole.length >= pad + size else { continue }
                let at = hole.offset + pad
                var replacement: [(offset: Int, length: Int)] = []
                if pad > 0 { replacement.append((hole.offset, pad)) }
                let tail = hole.length - pad - size
                if tail > 0 { replacement.append((at + size, tail)) }
                list.replaceSubrange(i...i, with: replacement)
                return at
            }
            return nil
        }
        guard let at = found else {
            throw .unsupported("\(segment.name): no \(size) bytes free (aligned to \(align)) in the \(segment.length)-byte mock RAM; create the link with more RAM (`mock up --host-ram/--ep-ram`)")
        }
        let region = unsafe DMARegion(address: segment.pointer + at, busAddress: base + UInt64(at), length: size)
        unsafe region.address.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        return DMABuffer(region: region) { [weak self] r in self?.release(offset: Int(r.busAddress - base), length: r.length) }
    }

    private func release(offset: Int, length: Int) {
        free.withLock { list in
            list.append((offset, length))
            list.sort { $0.offset < $1.offset }
            var merged: [(offset: Int, length: Int)] = []
            for hole in list {
                if let last = merged.last, last.offset + last.length == hole.offset {
                    merged[merged.count - 1].length += hole.length
                } else {
                    merged.append(hole)
                }
            }
            list = merged
        }
    }

    /// Bytes not handed out.
    public var freeBytes: Int { free.withLock { $0.reduce(0) { $0 + $1.length } } }
}
