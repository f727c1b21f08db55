#if canImport(Glibc)
import Glibc
#endif
import DWEDMA
import NTBMock
import PCIKit

/// One register or LL memory access, as the tracing space saw it.
enum Access: Equatable, CustomStringConvertible {
    case load(String, Int, width: Int)
    case store(String, Int, UInt64, width: Int)
    var description: String {
        switch self {
        case .load(let n, let o, let w): return "\(n).load\(w * 8)(0x\(String(o, radix: 16)))"
        case .store(let n, let o, let v, let w): return "\(n).store\(w * 8)(0x\(String(v, radix: 16)) @0x\(String(o, radix: 16)))"
        }
    }
}

final class TraceLog: @unchecked Sendable {
    var accesses: [Access] = []
    func only(_ name: String) -> [Access] {
        accesses.filter { if case .load(let n, _, _) = $0 { return n == name }; if case .store(let n, _, _, _) = $0 { return n == name }; return false }
    }
}

/// A RegisterSpace over plain memory that records every access into a shared log (tests only).
struct TracingSpace: RegisterSpace, @unchecked Sendable {
    let name: String
    let log: TraceLog
    let memory: MMIORegion
    var length: Int { memory.length }
    func load8(at o: Int) -> UInt8 { log.accesses.append(.load(name, o, width: 1)); return memory.load8(at: o) }
    func load16(at o: Int) -> UInt16 { log.accesses.append(.load(name, o, width: 2)); return memory.load16(at: o) }
    func load32(at o: Int) -> UInt32 { log.accesses.append(.load(name, o, width: 4)); return memory.load32(at: o) }
    func load64(at o: Int) -> UInt64 { log.accesses.append(.load(name, o, width: 8)); return memory.load64(at: o) }
    func store8(_ v: UInt8, at o: Int) { log.accesses.append(.store(name, o, UInt64(v), width: 1)); memory.store8(v, at: o) }
    func store16(_ v: UInt16, at o: Int) { log.accesses.append(.store(name, o, UInt64(v), width: 2)); memory.store16(v, at: o) }
    func store32(_ v: UInt32, at o: Int) { log.accesses.append(.store(name, o, UInt64(v), width: 4)); memory.store32(v, at: o) }
    func store64(_ v: UInt64, at o: Int) { log.accesses.append(.store(name, o, v, width: 8)); memory.store64(v, at: o) }
}

/// Zeroed, 64-byte aligned heap memory that lives as long as the object.
@safe final class Memory: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int
    init(_ length: Int) {
        self.length = length
        unsafe base = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 64)
        unsafe base.initializeMemory(as: UInt8.self, repeating: 0, count: length)
    }
    deinit { unsafe base.deallocate() }
    var region: MMIORegion { unsafe MMIORegion(base: base, length: length) }
}

/// Deterministic random numbers (SplitMix64) so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A temporary directory removed (with its files) at deinit.
final class TempDir: @unchecked Sendable {
    let path: String
    init() {
        var template = Array("/tmp/edma-test-XXXXXX".utf8CString)
        let p = unsafe template.withUnsafeMutableBufferPointer { unsafe mkdtemp($0.baseAddress!) }
        precondition(unsafe p != nil)
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    deinit {
        if let d = unsafe opendir(path) {
            while let e = unsafe readdir(d) {
                let name = unsafe withUnsafeBytes(of: e.pointee.d_name) { b in
                    unsafe String(decoding: b.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name != "." && name != ".." { _ = unsafe unlink(path + "/" + name) }
            }
            unsafe closedir(d)
        }
        _ = unsafe rmdir(path)
    }
}

/// An in-process engine model with endpoint RAM and host RAM arenas, and a driver attached to it.
final class ModelFixture: @unchecked Sendable {
    static let epBus: UInt64 = 0x1000_0000
    static let hostBus: UInt64 = 0x8_0000_0000
    let dir = TempDir()
    let ep: SharedMemoryArena
    let host: SharedMemoryArena
    let model: EDMAEngineModel
    let llBytes: Int
    /// LL regions live at the start of EP RAM, one per channel (write ch n at n, read at 8 + n).
    init(size: Int = 1 << 20, llBytes: Int = 4096, format: EDMAMapFormat = .unroll, channels: Int = 4,
         localInterrupt: EventNotifier? = nil, copyHook: (@Sendable (EDMADirection, Int) -> Void)? = nil) throws {
        self.llBytes = llBytes
        ep = try SharedMemoryArena(path: dir.path + "/ep-mem", busBase: Self.epBus, length: size)
        host = try SharedMemoryArena(path: dir.path + "/host-mem", busBase: Self.hostBus, length: size)
        model = try EDMAEngineModel(EDMAModelConfiguration(
            directory: dir.path, writeChannels: channels, readChannels: channels, format: format,
            localSpace: BusAddressSpace([ep.segment]), pcieSpace: BusAddressSpace([host.segment]),
            localInterrupt: localInterrupt, copyHook: copyHook))
    }
    deinit { model.stop() }

    func llOffset(_ d: EDMADirection, _ ch: Int) -> Int { (d == .write ? ch : 8 + ch) * llBytes }
    func ll(_ d: EDMADirection, _ ch: Int) -> (MMIORegion, UInt64) {
        let off = llOffset(d, ch)
        return (ep.region.mmio.subregion(offset: off, length: llBytes), Self.epBus + UInt64(off))
    }
    /// Data area: after the 16 LL regions.
    var dataStart: Int { 16 * llBytes }
}
