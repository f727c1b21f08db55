public import PCIKit
import CNTBShim

/// Which half of an ivshmem region a process plays. Both sides must agree: one `a` (`--role host`),
/// one `b` (`--role endpoint`).
public enum IVSHMEMSide: Int, Sendable, CaseIterable, CustomStringConvertible {
    case a = 0
    case b = 1
    public var peer: IVSHMEMSide { self == .a ? .b : .a }
    public var description: String { self == .a ? "A" : "B" }
}

/// The header layout of `ntb_ivshmem.h`, declared once there (with `_Static_assert`) and read here.
public enum IVSHMEMLayout {
    public static let magic: UInt64 = NTB_IVSHMEM_MAGIC
    public static let initialising: UInt64 = NTB_IVSHMEM_INITIALISING
    public static let version = UInt32(NTB_IVSHMEM_VERSION)
    public static let headerSize = Int(NTB_IVSHMEM_HEADER_SIZE)
    public static let sideSize = Int(NTB_IVSHMEM_SIDE_SIZE)
    public static let scratchpads = Int(NTB_IVSHMEM_SPADS)
    public static let maxMemoryWindows = Int(NTB_IVSHMEM_MAX_MWS)
    public static let windowAlignment = Int(NTB_IVSHMEM_MW_ALIGN)

    public static let magicOffset = Int(NTB_IVSHMEM_MAGIC_OFF)
    public static let versionOffset = Int(NTB_IVSHMEM_VERSION_OFF)
    public static let headerSizeOffset = Int(NTB_IVSHMEM_HEADER_SIZE_OFF)
    public static let sharedSizeOffset = Int(NTB_IVSHMEM_SHM_SIZE_OFF)
    public static let scratchpadCountOffset = Int(NTB_IVSHMEM_SPAD_COUNT_OFF)
    public static let windowCountOffset = Int(NTB_IVSHMEM_MW_COUNT_OFF)
    public static let windowSizeOffset = Int(NTB_IVSHMEM_MW_SIZE_OFF)
    public static let windowOffsetOffset = Int(NTB_IVSHMEM_MW_OFFSET_OFF)
    public static let doorbellMaskOffset = Int(NTB_IVSHMEM_DB_MASK_OFF)

    /// Start of a side's block.
    public static func side(_ s: IVSHMEMSide) -> Int { Int(NTB_IVSHMEM_SIDE_OFFSET) + s.rawValue * sideSize }
    public static let heartbeat = Int(NTB_IVSHMEM_SIDE_HEARTBEAT)
    public static let session = Int(NTB_IVSHMEM_SIDE_SESSION)
    public static let state = Int(NTB_IVSHMEM_SIDE_STATE)
    public static let pid = Int(NTB_IVSHMEM_SIDE_PID)
    public static let doorbell = Int(NTB_IVSHMEM_SIDE_DOORBELL)
    public static let bootID = Int(NTB_IVSHMEM_SIDE_BOOT_ID)
    public static let scratchpad0 = Int(NTB_IVSHMEM_SIDE_SPAD0)

    /// Side states (`NTB_IVSHMEM_STATE_*`).
    public enum State: UInt32, Sendable {
        case absent = 0, open = 1, enabled = 2, closed = 3
    }

    /// The largest region the header accepts (a sanity bound on `shm_size`, 64 GiB).
    public static let maxSharedSize = 1 << 36
}

/// Where everything lives in one shared region: written into the header by the side that finds the
/// memory zeroed, validated by every side that opens it.
public struct IVSHMEMGeometry: Sendable, Equatable {
    public var sharedSize: Int
    public var scratchpadCount: Int
    public var memoryWindowCount: Int
    public var memoryWindowSize: Int
    public var memoryWindowOffset: Int
    public var doorbellValidMask: UInt64

    /// 32 doorbell bits: ntb_transport takes one per queue pair.
    public static let defaultDoorbellMask: UInt64 = 0xFFFF_FFFF

    /// The geometry for `sharedSize` bytes: after the header page, `windows` windows per side of equal
    /// page-multiple size.
    public static func make(sharedSize: Int, windows: Int = 1) throws(NTBError) -> IVSHMEMGeometry {
        guard windows >= 1 && windows <= IVSHMEMLayout.maxMemoryWindows else {
            throw .unsupported("ivshmem: \(windows) memory windows per side asked for; 1...\(IVSHMEMLayout.maxMemoryWindows) are possible")
        }
        let page = IVSHMEMLayout.windowAlignment
        let usable = sharedSize - IVSHMEMLayout.headerSize
        let size = usable > 0 ? usable / (2 * windows) / page * page : 0
        guard sharedSize <= IVSHMEMLayout.maxSharedSize, size >= page else {
            throw .unsupported("ivshmem: \(sharedSize) bytes of shared memory cannot hold the \(IVSHMEMLayout.headerSize)-byte header and \(2 * windows) windows of at least \(page) bytes; give the device more memory (e.g. size=4M)")
        }
        return IVSHMEMGeometry(
            sharedSize: sharedSize, scratchpadCount: IVSHMEMLayout.scratchpads, memoryWindowCount: windows,
            memoryWindowSize: size, memoryWindowOffset: IVSHMEMLayout.headerSize, doorbellValidMask: defaultDoorbellMask)
    }

    /// Offset of inbound window `window` of `side` (the peer's outbound window `window`).
    public func windowOffset(_ side: IVSHMEMSide, _ window: Int) -> Int {
        precondition(window >= 0 && window < memoryWindowCount, "ivshmem window \(window) out of range")
        return memoryWindowOffset + (side.rawValue * memoryWindowCount + window) * memoryWindowSize
    }

    /// Writes the geometry fields (not the magic) into a header.
    func write(to memory: MMIORegion) {
        typealias L = IVSHMEMLayout
        memory.store32(L.version, at: L.versionOffset)
        memory.store32(UInt32(L.headerSize), at: L.headerSizeOffset)
        memory.store64(UInt64(sharedSize), at: L.sharedSizeOffset)
        memory.store32(UInt32(scratchpadCount), at: L.scratchpadCountOffset)
        memory.store32(UInt32(memoryWindowCount), at: L.windowCountOffset)
        memory.store64(UInt64(memoryWindowSize), at: L.windowSizeOffset)
        memory.store64(UInt64(memoryWindowOffset), at: L.windowOffsetOffset)
        memory.store64(doorbellValidMask, at: L.doorbellMaskOffset)
    }

    /// Reads and validates the geometry of a header whose magic was checked. Every field is the peer's
    /// word (or a stale one): each is bounded before use.
    public static func read(from memory: MMIORegion, name: String) throws(NTBError) -> IVSHMEMGeometry {
        typealias L = IVSHMEMLayout
        func bad(_ field: String, _ value: UInt64, _ expected: String) -> NTBError {
            .unsupported("\(name): the ivshmem header says \(field) = \(value), expected \(expected); the header was written by incompatible software or is damaged: stop both sides and zero the shared memory")
        }
        let version = memory.load32(at: L.versionOffset)
        guard version == L.version else { throw bad("version", UInt64(version), "\(L.version)") }
        let header = memory.load32(at: L.headerSizeOffset)
        guard header == UInt32(L.headerSize) else { throw bad("header_size", UInt64(header), "\(L.headerSize)") }
        let shm = memory.load64(at: L.sharedSizeOffset)
        guard shm == UInt64(memory.length) else {
            throw bad("shm_size", shm, "\(memory.length) (the size of this mapping; both sides must map the same memory)")
        }
        let spads = memory.load32(at: L.scratchpadCountOffset)
        guard spads >= 1 && spads <= UInt32(L.scratchpads) else { throw bad("spad_count", UInt64(spads), "1...\(L.scratchpads)") }
        let count = memory.load32(at: L.windowCountOffset)
        guard count >= 1 && count <= UInt32(L.maxMemoryWindows) else { throw bad("mw_count", UInt64(count), "1...\(L.maxMemoryWindows)") }
        let page = UInt64(L.windowAlignment)
        let size = memory.load64(at: L.windowSizeOffset)
        guard size >= page, size % page == 0, size <= shm else { throw bad("mw_size", size, "a multiple of \(page) within the region") }
        let offset = memory.load64(at: L.windowOffsetOffset)
        guard offset >= UInt64(L.headerSize), offset % page == 0, offset <= shm else {
            throw bad("mw_offset", offset, "a multiple of \(page) from \(L.headerSize) on")
        }
        // All 2 * count windows inside the region (no overflow: every term is below 2^36 and count <= 4).
        guard offset + 2 * UInt64(count) * size <= shm else {
            throw bad("mw_offset + 2 * mw_count * mw_size", offset + 2 * UInt64(count) * size, "at most shm_size = \(shm)")
        }
        let mask = memory.load64(at: L.doorbellMaskOffset)
        guard mask != 0 else { throw bad("db_valid_mask", mask, "non-zero") }
        return IVSHMEMGeometry(
            sharedSize: Int(shm), scratchpadCount: Int(spads), memoryWindowCount: Int(count),
            memoryWindowSize: Int(size), memoryWindowOffset: Int(offset), doorbellValidMask: mask)
    }
}
