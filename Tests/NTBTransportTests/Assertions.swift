import PCIKit

/// Zeroed, page-aligned memory standing in for one side's inbound buffer (what the peer writes
/// through its outbound window). Plain memory: no model, the tests play the kernel peer by hand.
@safe
final class TestMemory {
    let raw: UnsafeMutableRawPointer
    let count: Int
    init(_ count: Int) {
        unsafe raw = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 4096)
        self.count = count
        unsafe raw.initializeMemory(as: UInt8.self, repeating: 0, count: count)
    }
    deinit { unsafe raw.deallocate() }

    var region: MMIORegion { unsafe MMIORegion(base: raw, length: count) }

    /// Little-endian u32 at a byte offset, as the kernel's iowrite32/ioread32 see it.
    func u32(_ offset: Int) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(unsafe raw.load(fromByteOffset: offset + i, as: UInt8.self)) << (8 * i) }
        return v
    }
    func setU32(_ offset: Int, _ value: UInt32) {
        for i in 0..<4 { unsafe raw.storeBytes(of: UInt8(truncatingIfNeeded: value >> (8 * i)), toByteOffset: offset + i, as: UInt8.self) }
    }
    func bytes(_ offset: Int, _ n: Int) -> [UInt8] {
        (0..<n).map { unsafe raw.load(fromByteOffset: offset + $0, as: UInt8.self) }
    }
    func setBytes(_ offset: Int, _ b: [UInt8]) {
        for (i, x) in b.enumerated() { unsafe raw.storeBytes(of: x, toByteOffset: offset + i, as: UInt8.self) }
    }
}
