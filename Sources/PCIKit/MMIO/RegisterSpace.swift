public import CNTBShim

/// A space of device registers addressed by byte offset from its base.
///
/// Drivers are generic over `RegisterSpace`, so the real path (``MMIORegion``) specialises to plain
/// volatile loads and stores, while a device model can observe and act on every access (see
/// `NTBMock`). Register writes with side effects (doorbells, write-1-to-clear, commands) must reach a
/// model exactly once and in order; a model-backed space therefore queues writes as PCIe posted writes
/// and makes every read wait until earlier writes were applied, as a PCIe read completion does.
///
/// Offsets are the byte offsets of the reference (`docs/hardware-reference.md`); an offset outside the space or
/// not aligned to the access width is a programmer error and traps.
public protocol RegisterSpace {
    /// Size of the space in bytes.
    var length: Int { get }
    func load8(at offset: Int) -> UInt8
    func load16(at offset: Int) -> UInt16
    func load32(at offset: Int) -> UInt32
    func load64(at offset: Int) -> UInt64
    func store8(_ value: UInt8, at offset: Int)
    func store16(_ value: UInt16, at offset: Int)
    func store32(_ value: UInt32, at offset: Int)
    func store64(_ value: UInt64, at offset: Int)
}

/// A mapped window of device memory or registers (a BAR, part of a BAR, a memory window, or shared
/// memory standing in for one), accessed with single volatile loads and stores.
///
/// `MMIORegion` is a view: it does not own the mapping. The owner (a BAR mapping, a shared-memory
/// file) must outlive every view made from it.
@safe
public struct MMIORegion: RegisterSpace, @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    public let length: Int

    /// Makes a view of `length` bytes at `base`.
    /// - Precondition: the memory stays mapped while the view is used.
    @inlinable
    public init(base: UnsafeMutableRawPointer, length: Int) {
        precondition(length >= 0)
        unsafe self.base = base
        self.length = length
    }

    /// The CPU address of the first byte (for bulk copies and diagnostics).
    public var baseAddress: UnsafeMutableRawPointer { unsafe base }

    /// A view of `length` bytes starting `offset` bytes into this one.
    @inlinable
    public func subregion(offset: Int, length: Int) -> MMIORegion {
        precondition(offset >= 0 && length >= 0 && offset <= self.length && length <= self.length - offset,
                     "subregion \(offset)+\(length) outside a region of \(self.length) bytes")
        return unsafe MMIORegion(base: base + offset, length: length)
    }

    @inlinable @inline(__always)
    func check(_ offset: Int, _ width: Int) {
        precondition(offset >= 0 && offset <= length - width && offset & (width - 1) == 0,
                     "register access of \(width) bytes at offset \(offset) outside or misaligned in a \(length)-byte region")
    }

    @inlinable @inline(__always)
    public func load8(at offset: Int) -> UInt8 { check(offset, 1); return unsafe ntb_mmio_read8(base, UInt(offset)) }
    @inlinable @inline(__always)
    public func load16(at offset: Int) -> UInt16 { check(offset, 2); return unsafe ntb_mmio_read16(base, UInt(offset)) }
    @inlinable @inline(__always)
    public func load32(at offset: Int) -> UInt32 { check(offset, 4); return unsafe ntb_mmio_read32(base, UInt(offset)) }
    @inlinable @inline(__always)
    public func load64(at offset: Int) -> UInt64 { check(offset, 8); return unsafe ntb_mmio_read64(base, UInt(offset)) }
    @inlinable @inline(__always)
    public func store8(_ value: UInt8, at offset: Int) { check(offset, 1); unsafe ntb_mmio_write8(base, UInt(offset), value) }
    @inlinable @inline(__always)
    public func store16(_ value: UInt16, at offset: Int) { check(offset, 2); unsafe ntb_mmio_write16(base, UInt(offset), value) }
    @inlinable @inline(__always)
    public func store32(_ value: UInt32, at offset: Int) { check(offset, 4); unsafe ntb_mmio_write32(base, UInt(offset), value) }
    @inlinable @inline(__always)
    public func store64(_ value: UInt64, at offset: Int) { check(offset, 8); unsafe ntb_mmio_write64(base, UInt(offset), value) }

    /// Copies `source` into the region at `offset` (Linux `memcpy_toio`).
    @inlinable
    public func copy(from source: UnsafeRawBufferPointer, toOffset offset: Int) {
        guard let src = source.baseAddress, source.count > 0 else { return }
        precondition(offset >= 0 && offset <= length - source.count, "copy of \(source.count) bytes at \(offset) outside a \(length)-byte region")
        unsafe ntb_memcpy_toio(base + offset, src, UInt(source.count))
    }

    /// Copies bytes at `offset` of the region into `destination` (Linux `memcpy_fromio`).
    @inlinable
    public func copy(fromOffset offset: Int, into destination: UnsafeMutableRawBufferPointer) {
        guard let dst = destination.baseAddress, destination.count > 0 else { return }
        precondition(offset >= 0 && offset <= length - destination.count, "copy of \(destination.count) bytes at \(offset) outside a \(length)-byte region")
        unsafe ntb_memcpy_fromio(dst, base + offset, UInt(destination.count))
    }
}

/// Named memory barriers (see `ntb_mmio.h` for what each compiles to).
public enum Barrier {
    /// Orders all earlier loads and stores, MMIO included, before all later ones (Linux `mb`).
    @inlinable @inline(__always) public static func full() { ntb_mb() }
    /// Orders earlier loads before later loads (Linux `rmb`).
    @inlinable @inline(__always) public static func read() { ntb_rmb() }
    /// Orders earlier stores, write-combining ones included, before later stores (Linux `wmb`).
    @inlinable @inline(__always) public static func write() { ntb_wmb() }
    /// Orders CPU stores to coherent DMA memory before later stores as seen by a device (`dma_wmb`).
    @inlinable @inline(__always) public static func dmaWrite() { ntb_dma_wmb() }
    /// Orders CPU loads from coherent DMA memory (`dma_rmb`).
    @inlinable @inline(__always) public static func dmaRead() { ntb_dma_rmb() }
}
