#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBTransport
import PCIKit
import NTBTransport

/// Single-thread copy bandwidth measured in the same run as the transport, the baseline it is compared with.
///
/// `memcpyGBps` is the honest "single-thread memcpy bandwidth" of the target: libc `memcpy` of
/// `size`-byte chunks from a source ring into a destination ring, EACH as large as the transport's ring
/// (the memory window), so neither side of the copy stays in L1/L2 — the footprint the transport's two
/// copies (sender into the window, receiver out of it) work over. `hotSourceGBps` is the copy the
/// host backend's sender is built on, alone: its non-temporal copy (``HostChannel/copyPayload(_:into:at:)``,
/// Linux `ntb_memcpy_tx`) from ONE hot `size`-byte source into a window-sized ring. Non-temporal
/// stores go to DRAM while the memcpy rings stay in the L3, so on a machine whose L3 holds the
/// rings this figure is the lower one; the transport's ratio to it is its overhead over its own copy.
public struct MemcpyBaseline: Codable, Sendable {
    public var chunkBytes: Int
    public var footprintBytes: Int
    public var memcpyGBps: Double
    public var hotSourceGBps: Double

    public static func measure(size: Int, window: Int = 4 << 20, total: Int = 2 << 30) -> MemcpyBaseline {
        let slots = max(1, window / size)
        let ringBytes = slots * size
        let src = UnsafeMutableRawPointer.allocate(byteCount: ringBytes, alignment: 4096)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: ringBytes, alignment: 4096)
        defer { unsafe src.deallocate(); unsafe dst.deallocate() }
        unsafe memset(src, 0x5A, ringBytes); unsafe memset(dst, 0, ringBytes)
        let count = max(slots, total / size)
        let clock = ContinuousClock()
        // Footprint-matched libc memcpy: chunk i of the source ring into chunk i of the destination ring.
        var start = clock.now
        for i in 0..<count {
            let off = (i % slots) * size
            unsafe memcpy(dst + off, src + off, size)
        }
        // Keep the copies observable (the destination is read after the loop).
        var check: UInt8 = 0
        for i in stride(from: 0, to: ringBytes, by: 4096) { unsafe check |= dst.load(fromByteOffset: i, as: UInt8.self) }
        let footprint = Double(count * size) / (clock.now - start).seconds / 1e9
        // Hot source, the host backend's non-temporal copy into a window-sized ring.
        let ring = unsafe MMIORegion(base: dst, length: ringBytes)
        let message = unsafe UnsafeRawBufferPointer(start: src, count: size)
        start = clock.now
        for i in 0..<count {
            unsafe HostChannel.copyPayload(message, into: ring, at: (i % slots) * size)
        }
        let hot = Double(count * size) / (clock.now - start).seconds / 1e9
        precondition(check == 0x5A, "memcpy baseline: the destination ring was not written")
        return MemcpyBaseline(chunkBytes: size, footprintBytes: ringBytes, memcpyGBps: footprint, hotSourceGBps: hot)
    }
}

