import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import PCIKit

@Suite struct MMIORegionTests {
    @Test func loadsAndStoresEveryWidthLittleEndian() {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        defer { unsafe raw.deallocate() }
        unsafe raw.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        let r = unsafe MMIORegion(base: raw, length: 64)
        r.store32(0x1122_3344, at: 8)
        #expect(r.load8(at: 8) == 0x44)
        #expect(r.load16(at: 10) == 0x1122)
        r.store64(0x0102_0304_0506_0708, at: 16)
        #expect(r.load32(at: 16) == 0x0506_0708)
        #expect(r.load32(at: 20) == 0x0102_0304)
        r.store8(0xAB, at: 63)
        #expect(r.load8(at: 63) == 0xAB)
    }

    @Test func subregionAndCopiesStayInside() {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        defer { unsafe raw.deallocate() }
        unsafe raw.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        let r = unsafe MMIORegion(base: raw, length: 32)
        let sub = r.subregion(offset: 16, length: 16)
        sub.store32(0xDEAD_BEEF, at: 4)
        #expect(r.load32(at: 20) == 0xDEAD_BEEF)
        let bytes: [UInt8] = [1, 2, 3, 4]
        unsafe bytes.withUnsafeBytes { unsafe r.copy(from: $0, toOffset: 28) }
        var out = [UInt8](repeating: 0, count: 4)
        unsafe out.withUnsafeMutableBytes { unsafe r.copy(fromOffset: 28, into: $0) }
        #expect(out == bytes)
    }

    @Test func eventNotifierSignalsAndConsumes() throws {
        let n = try EventNotifier()
        #expect(n.wait(timeout: .milliseconds(1)) == false)
        n.signal(); n.signal()
        #expect(n.wait(timeout: .milliseconds(100)))
        #expect(n.consume() == 2)
        #expect(n.consume() == 0)
    }

    /// A FIFO with a pending word (the mock link's MSI FIFOs): a raise while pending writes nothing, a
    /// consume re-arms it, and two notifiers on the same FIFO and word (raiser and consumer processes)
    /// never lose a wake-up.
    @Test func fifoNotifierCoalescesWhilePending() throws {
        @safe final class Owner { let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1); deinit { unsafe word.deallocate() } }
        let owner = Owner()
        unsafe owner.word.pointee = 0
        let path = "/tmp/pcikit-test-\(getpid())-coalesce.fifo"
        defer { unsafe unlink(path) }
        let raiser = unsafe try EventNotifier(fifoAt: path, pendingWord: owner.word, retaining: owner)
        let consumer = unsafe try EventNotifier(fifoAt: path, pendingWord: owner.word, retaining: owner)
        #expect(consumer.wait(timeout: .milliseconds(1)) == false)
        raiser.signal(); raiser.signal(); raiser.signal()
        unsafe #expect(owner.word.pointee == 1)
        #expect(consumer.wait(timeout: .milliseconds(100)))
        #expect(consumer.consume() == 1)          // one byte for three raises: coalesced
        unsafe #expect(owner.word.pointee == 0)
        #expect(consumer.wait(timeout: .milliseconds(1)) == false)
        raiser.signal()                           // re-armed: writes again
        #expect(consumer.wait(timeout: .milliseconds(100)))
        #expect(consumer.consume() == 1)
        // A plain FIFO notifier (no word) writes on every raise.
        let plain = try EventNotifier(fifoAt: path)
        plain.signal(); plain.signal()
        #expect(consumer.consume() == 2)
    }
}
