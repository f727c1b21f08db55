/// Hands out I/O virtual addresses for DMA mappings: first fit in a sorted free list, each range
/// aligned to its requested alignment, freed ranges merged with their neighbours.
///
/// The default window starts at 1 MiB and ends below the x86 MSI doorbell window at 0xfee00000, so
/// that devices limited to 32-bit (or narrower) DMA addresses can reach every buffer, and the IOVA
/// never collides with the interrupt-remapping range the IOMMU reserves
/// (`IOAPIC_RANGE_START` in drivers/iommu/intel/iommu.h).
public struct IOVAAllocator: Sendable, Equatable {
    /// Free ranges as (start, end exclusive), sorted and disjoint.
    public private(set) var free: [(start: UInt64, end: UInt64)]

    public static let defaultRange: Range<UInt64> = 0x10_0000..<0xfee0_0000

    public init(range: Range<UInt64> = IOVAAllocator.defaultRange) {
        precondition(!range.isEmpty, "empty IOVA range")
        free = [(range.lowerBound, range.upperBound)]
    }

    public static func == (a: IOVAAllocator, b: IOVAAllocator) -> Bool {
        a.free.count == b.free.count && zip(a.free, b.free).allSatisfy { $0.start == $1.start && $0.end == $1.end }
    }

    /// Reserves `length` bytes aligned to `alignment` (a power of two); nil when no range fits.
    public mutating func allocate(length: UInt64, alignment: UInt64) -> UInt64? {
        precondition(length > 0 && alignment > 0 && alignment & (alignment - 1) == 0, "bad IOVA request \(length)/\(alignment)")
        for (i, r) in free.enumerated() {
            let start = (r.start + alignment - 1) & ~(alignment - 1)
            guard start >= r.start, start <= r.end, r.end - start >= length else { continue }
            var replacement: [(start: UInt64, end: UInt64)] = []
            if start > r.start { replacement.append((r.start, start)) }
            if start + length < r.end { replacement.append((start + length, r.end)) }
            free.replaceSubrange(i...i, with: replacement)
            return start
        }
        return nil
    }

    /// Returns a range obtained from ``allocate(length:alignment:)``.
    /// - Precondition: the range is allocated (not free, not overlapping a free range).
    public mutating func release(start: UInt64, length: UInt64) {
        let end = start + length
        let i = free.firstIndex { $0.start >= end } ?? free.count
        precondition(i == 0 || free[i - 1].end <= start, "IOVA range \(start)+\(length) released twice")
        free.insert((start, end), at: i)
        if i + 1 < free.count, free[i].end == free[i + 1].start {
            free[i].end = free[i + 1].end
            free.remove(at: i + 1)
        }
        if i > 0, free[i - 1].end == free[i].start {
            free[i - 1].end = free[i].end
            free.remove(at: i)
        }
    }
}
