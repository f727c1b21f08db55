#if canImport(Glibc)
import Glibc
#endif
public import PCIKit
public import CNTBShim
import Synchronization

/// Who accesses the model's registers: each accessor has its own posted-write ring.
public enum EDMAAccessor: Int, Sendable, CaseIterable {
    /// The host, through a BAR (remote programming).
    case host = 0
    /// The endpoint itself (local programming).
    case endpoint = 1
}

/// The eDMA model's files in its directory (docs/mock-device.md, "DW eDMA engine model"):
/// `edma-regs` (the register file) and `edma-rings` (one posted-write ring per accessor).
public enum EDMAModelFiles {
    public static let registers = "edma-regs"
    public static let rings = "edma-rings"
    /// Size of the register file (the unrolled map with 8 channels ends at 0x1200).
    public static let registerFileSize = 0x2000
    static func ringsFileSize(capacity: Int) -> Int {
        MemoryLayout<ntb_edma_pw_file>.size
            + 2 * (MemoryLayout<ntb_edma_pw_ring>.size + capacity * MemoryLayout<ntb_edma_pw_entry>.size)
    }
}

/// A mapping of a model's register file and rings: made by the model itself, or attached from another
/// process with ``attach(directory:)``. Hands out ``PostedWriteRegisterSpace`` views, which must not
/// outlive it.
@safe
public final class EDMARegisterMapping: @unchecked Sendable {
    public let directory: String
    let regs: UnsafeMutableRawPointer
    let regsLength: Int
    let file: UnsafeMutablePointer<ntb_edma_pw_file>
    let filesLength: Int

    init(directory: String, create: Bool, capacity: Int) throws(MockFileError) {
        self.directory = directory
        regsLength = EDMAModelFiles.registerFileSize
        unsafe regs = try mapSharedFile(path: directory + "/" + EDMAModelFiles.registers, length: regsLength, create: create)
        var cap = capacity
        if !create {
            // Learn the capacity from the header.
            let probe = try unsafe mapSharedFile(path: directory + "/" + EDMAModelFiles.rings,
                                                 length: MemoryLayout<ntb_edma_pw_file>.size, create: false)
            let hdr = unsafe probe.assumingMemoryBound(to: ntb_edma_pw_file.self)
            let magic = unsafe hdr.pointee.magic
            cap = Int(unsafe hdr.pointee.capacity)
            unsafe _ = munmap(probe, MemoryLayout<ntb_edma_pw_file>.size)
            if magic != NTB_EDMA_PW_MAGIC || cap == 0 || cap & (cap - 1) != 0 {
                unsafe _ = munmap(regs, regsLength)
                throw MockFileError(call: "check magic of", path: directory + "/" + EDMAModelFiles.rings, errno: EINVAL)
            }
        }
        filesLength = EDMAModelFiles.ringsFileSize(capacity: cap)
        let raw: UnsafeMutableRawPointer
        do {
            unsafe raw = try mapSharedFile(path: directory + "/" + EDMAModelFiles.rings, length: filesLength, create: create)
        } catch {
            unsafe _ = munmap(regs, regsLength)
            throw error
        }
        unsafe file = raw.assumingMemoryBound(to: ntb_edma_pw_file.self)
        if create {
            unsafe memset(raw, 0, filesLength)
            unsafe memset(regs, 0, regsLength)
            unsafe file.pointee.version = 1
            unsafe file.pointee.ring_count = 2
            unsafe file.pointee.capacity = UInt32(cap)
            for a in EDMAAccessor.allCases { unsafe ring(a).pointee.capacity = UInt32(cap) }
            unsafe ntb_atomic_store_release_u64(&file.pointee.magic, NTB_EDMA_PW_MAGIC)
        }
    }

    /// Attaches to the model serving `directory` (possibly in another process).
    public static func attach(directory: String) throws(MockFileError) -> EDMARegisterMapping {
        try EDMARegisterMapping(directory: directory, create: false, capacity: 0)
    }

    deinit {
        unsafe _ = munmap(regs, regsLength)
        unsafe _ = munmap(UnsafeMutableRawPointer(file), filesLength)
    }

    var capacity: Int { Int(unsafe file.pointee.capacity) }

    func ring(_ a: EDMAAccessor) -> UnsafeMutablePointer<ntb_edma_pw_ring> {
        let stride = MemoryLayout<ntb_edma_pw_ring>.size + capacity * MemoryLayout<ntb_edma_pw_entry>.size
        let raw = unsafe UnsafeMutableRawPointer(file) + MemoryLayout<ntb_edma_pw_file>.size + a.rawValue * stride
        return unsafe raw.assumingMemoryBound(to: ntb_edma_pw_ring.self)
    }

    func entries(_ a: EDMAAccessor) -> UnsafeMutablePointer<ntb_edma_pw_entry> {
        unsafe (UnsafeMutableRawPointer(ring(a)) + MemoryLayout<ntb_edma_pw_ring>.size)
            .assumingMemoryBound(to: ntb_edma_pw_entry.self)
    }

    /// The register space of one accessor.
    public func space(_ a: EDMAAccessor) -> PostedWriteRegisterSpace {
        unsafe PostedWriteRegisterSpace(regs: regs, length: 0x2000, file: file, ring: ring(a), entries: entries(a),
                                        mask: UInt64(capacity - 1))
    }

    /// The register file as memory, for inspection (plain reads, no flush).
    public var registerFile: MMIORegion { unsafe MMIORegion(base: regs, length: regsLength) }
}

/// A model-backed register space: stores are queued as PCIe posted writes in the accessor's ring in
/// shared memory, which the engine model applies exactly once and in order; a load first waits
/// until the model applied every store reserved before it (a read completion flushes posted writes),
/// then reads the register file. Works between threads and between processes.
///
/// If no model serves the rings (it stopped or crashed), loads return all ones and stores are
/// dropped once the ring is full, as reads and writes to a vanished PCIe device do.
@safe
public struct PostedWriteRegisterSpace: RegisterSpace, @unchecked Sendable {
    @usableFromInline let regs: UnsafeMutableRawPointer
    public let length: Int
    @usableFromInline let file: UnsafeMutablePointer<ntb_edma_pw_file>
    @usableFromInline let ring: UnsafeMutablePointer<ntb_edma_pw_ring>
    @usableFromInline let entries: UnsafeMutablePointer<ntb_edma_pw_entry>
    @usableFromInline let mask: UInt64

    init(regs: UnsafeMutableRawPointer, length: Int, file: UnsafeMutablePointer<ntb_edma_pw_file>,
         ring: UnsafeMutablePointer<ntb_edma_pw_ring>, entries: UnsafeMutablePointer<ntb_edma_pw_entry>, mask: UInt64) {
        unsafe self.regs = regs
        self.length = length
        unsafe self.file = file
        unsafe self.ring = ring
        unsafe self.entries = entries
        self.mask = mask
    }

    @usableFromInline func check(_ offset: Int, _ width: Int) {
        precondition(offset >= 0 && offset <= length - width && offset & (width - 1) == 0,
                     "register access of \(width) bytes at offset \(offset) outside or misaligned in a \(length)-byte space")
    }

    var modelAlive: Bool { unsafe ntb_atomic_load_u32(&file.pointee.model_alive) != 0 }

    /// Whether the serving process still exists (a killed model cannot clear `model_alive`).
    var modelProcessExists: Bool {
        let pid = pid_t(bitPattern: unsafe ntb_atomic_load_u32(&file.pointee.model_pid))
        return pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH
    }

    /// Waits until the model applied tickets below `ticket`. Returns false if no model serves the ring.
    @usableFromInline func waitApplied(_ ticket: UInt64) -> Bool {
        var spins = 0
        while unsafe ntb_atomic_load_acquire_u64(&ring.pointee.applied) < ticket {
            if !modelAlive { return false }
            spins += 1
            // A PCIe read stalls the CPU until the completion returns: spin while the model (awake
            // after recent work, see EDMAEngineModel.idleSpin) applies the writes ahead of it.
            if spins < 4000 { continue }
            if spins % 512 == 0 && !modelProcessExists { return false }
            unsafe _ = ntb_atomic_fetch_add_u32(&ring.pointee.waiters, 1)
            let w = unsafe ntb_atomic_load_u32(&ring.pointee.applied_wake)
            if unsafe ntb_atomic_load_acquire_u64(&ring.pointee.applied) < ticket {
                unsafe _ = ntb_futex_wait(&ring.pointee.applied_wake, w, 2_000_000)
            }
            unsafe _ = ntb_atomic_fetch_add_u32(&ring.pointee.waiters, UInt32.max)  // -1
        }
        return true
    }

    @usableFromInline func post(_ value: UInt64, _ offset: Int, _ width: Int) {
        let t = unsafe ntb_atomic_fetch_add_u64(&ring.pointee.reserve, 1)
        // Ring full: wait for the model to make room (a stalled posted-write queue).
        if unsafe ntb_atomic_load_acquire_u64(&ring.pointee.applied) + mask < t {
            if !waitApplied(t - mask) { return }
        }
        let e = unsafe entries + Int(t & mask)
        unsafe e.pointee.value = value
        unsafe e.pointee.offset = UInt32(offset)
        unsafe e.pointee.width = UInt32(width)
        unsafe ntb_atomic_store_release_u64(&e.pointee.seq, t + 1)
        ntb_atomic_fence()
        if unsafe ntb_atomic_load_u32(&file.pointee.model_sleeping) != 0 {
            unsafe _ = ntb_atomic_fetch_add_u32(&file.pointee.model_wake, 1)
            unsafe ntb_futex_wake_all(&file.pointee.model_wake)
        }
    }

    /// Waits until every store reserved so far is applied (the flush a read completion gives).
    @usableFromInline func flush() -> Bool {
        if !modelAlive { return false }
        let t = unsafe ntb_atomic_load_acquire_u64(&ring.pointee.reserve)
        return waitApplied(t)
    }

    /// The register file holds 32-bit words the model writes atomically while we read (see
    /// `EDMAEngineModel.reg32`): a load reads its word with one acquiring atomic load, narrower loads
    /// take their bytes from it, a 64-bit load is two (the model writes the halves separately).
    func word(_ offset: Int) -> UInt32 {
        unsafe (regs + (offset & ~3)).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .acquiring)
    }
    public func load8(at offset: Int) -> UInt8 {
        check(offset, 1); return flush() ? UInt8(truncatingIfNeeded: word(offset) >> UInt32((offset & 3) * 8)) : 0xFF
    }
    public func load16(at offset: Int) -> UInt16 {
        check(offset, 2); return flush() ? UInt16(truncatingIfNeeded: word(offset) >> UInt32((offset & 3) * 8)) : 0xFFFF
    }
    public func load32(at offset: Int) -> UInt32 {
        check(offset, 4); return flush() ? word(offset) : 0xFFFF_FFFF
    }
    public func load64(at offset: Int) -> UInt64 {
        check(offset, 8); return flush() ? UInt64(word(offset)) | UInt64(word(offset + 4)) << 32 : UInt64.max
    }
    public func store8(_ value: UInt8, at offset: Int) { check(offset, 1); post(UInt64(value), offset, 1) }
    public func store16(_ value: UInt16, at offset: Int) { check(offset, 2); post(UInt64(value), offset, 2) }
    public func store32(_ value: UInt32, at offset: Int) { check(offset, 4); post(UInt64(value), offset, 4) }
    public func store64(_ value: UInt64, at offset: Int) { check(offset, 8); post(value, offset, 8) }
}
