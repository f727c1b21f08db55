public import PCIKit
import Synchronization

/// Atomic access to a word of shared memory that two threads or processes write or read while the
/// other writes (a link status, a side's state word, a model's register file): a plain (volatile)
/// access there is a data race, and the compiler may tear or reorder it.
///
/// Ordering, stated once for every user: stores are releasing (everything written before the store
/// is visible to whoever reads the new value), loads are acquiring, read-modify-writes are both. On
/// x86 these compile to the same single `mov` as a volatile access (a `lock cmpxchg` for the RMW).
/// Offsets must be aligned to the width (they are constants of a layout, not peer input).
@safe
public enum SharedWord {
    @inlinable @inline(__always)
    static func pointer(_ region: MMIORegion, _ offset: Int, _ width: Int) -> UnsafeMutableRawPointer {
        precondition(offset >= 0 && offset <= region.length - width && offset & (width - 1) == 0,
                     "shared word of \(width) bytes at \(offset) outside or misaligned in a \(region.length)-byte region")
        return unsafe region.baseAddress + offset
    }

    @inlinable public static func load16(_ region: MMIORegion, at offset: Int) -> UInt16 {
        unsafe pointer(region, offset, 2).assumingMemoryBound(to: Atomic<UInt16>.self).pointee.load(ordering: .acquiring)
    }
    @inlinable public static func store16(_ value: UInt16, _ region: MMIORegion, at offset: Int) {
        unsafe pointer(region, offset, 2).assumingMemoryBound(to: Atomic<UInt16>.self).pointee.store(value, ordering: .releasing)
    }
    @inlinable public static func load32(_ region: MMIORegion, at offset: Int) -> UInt32 {
        unsafe pointer(region, offset, 4).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .acquiring)
    }
    @inlinable public static func store32(_ value: UInt32, _ region: MMIORegion, at offset: Int) {
        unsafe pointer(region, offset, 4).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(value, ordering: .releasing)
    }
    @inlinable public static func load64(_ region: MMIORegion, at offset: Int) -> UInt64 {
        unsafe pointer(region, offset, 8).assumingMemoryBound(to: Atomic<UInt64>.self).pointee.load(ordering: .acquiring)
    }
    @inlinable public static func store64(_ value: UInt64, _ region: MMIORegion, at offset: Int) {
        unsafe pointer(region, offset, 8).assumingMemoryBound(to: Atomic<UInt64>.self).pointee.store(value, ordering: .releasing)
    }
    /// Sets (`on`) or clears the bits of `mask` in the 16-bit word; returns the previous value.
    @inlinable @discardableResult
    public static func update16(_ region: MMIORegion, at offset: Int, mask: UInt16, on: Bool) -> UInt16 {
        let a = unsafe pointer(region, offset, 2).assumingMemoryBound(to: Atomic<UInt16>.self)
        return on ? unsafe a.pointee.bitwiseOr(mask, ordering: .acquiringAndReleasing).oldValue
                  : unsafe a.pointee.bitwiseAnd(~mask, ordering: .acquiringAndReleasing).oldValue
    }
}
