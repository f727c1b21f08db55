#if canImport(Glibc)
import Glibc
#endif
public import PCIKit

/// A piece of the modelled bus: `length` bytes at bus address `base`, backed by CPU memory at `pointer`.
@safe
public struct BusSegment: @unchecked Sendable {
    public var base: UInt64
    public var length: Int
    public var pointer: UnsafeMutableRawPointer

    public init(base: UInt64, length: Int, pointer: UnsafeMutableRawPointer) {
        precondition(length >= 0)
        self.base = base
        self.length = length
        unsafe self.pointer = pointer
    }

    /// The segment of a DMA region: its bus address and CPU address.
    public init(_ region: DMARegion) {
        unsafe self.init(base: region.busAddress, length: region.length, pointer: region.address)
    }
}

/// One address space of the modelled bus: the endpoint's local space (its RAM, its LL regions) or the
/// PCIe space (host memory seen through the endpoint's outbound windows). Whoever hosts the engine
/// model supplies the segments (docs/hardware-reference.md §1.8: WRITE = local → PCIe, READ = PCIe → local).
@safe
public struct BusAddressSpace: @unchecked Sendable {
    public var segments: [BusSegment]

    public init(_ segments: [BusSegment] = []) { self.segments = segments }

    /// The CPU address of `[address, address + length)` if one segment holds all of it.
    public func resolve(_ address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        guard length >= 0 else { return nil }
        for s in segments {
            guard address >= s.base else { continue }
            let off = address - s.base
            if off <= UInt64(s.length) && UInt64(length) <= UInt64(s.length) - off {
                return unsafe s.pointer + Int(off)
            }
        }
        return nil
    }
}

/// A file-backed, shared memory arena standing in for RAM on the modelled bus (the self-test's
/// endpoint RAM and host RAM). The file can be inspected or mapped by another process.
@safe
public final class SharedMemoryArena: @unchecked Sendable {
    public let path: String
    public let busBase: UInt64
    public let length: Int
    public let base: UnsafeMutableRawPointer

    /// Creates (or reuses) `path` with `length` bytes, mapped shared, zero-filled when new.
    public init(path: String, busBase: UInt64, length: Int) throws(MockFileError) {
        self.path = path
        self.busBase = busBase
        self.length = length
        unsafe base = try mapSharedFile(path: path, length: length, create: true)
    }

    deinit { unsafe _ = munmap(base, length) }

    /// The whole arena as a DMA region.
    public var region: DMARegion { unsafe DMARegion(address: base, busAddress: busBase, length: length) }
    /// The whole arena as a bus segment.
    public var segment: BusSegment { unsafe BusSegment(base: busBase, length: length, pointer: base) }
}

/// A failure to create or map a model file.
public struct MockFileError: Error, CustomStringConvertible, Equatable, Sendable {
    public var call: String
    public var path: String
    public var errno: Int32
    public var description: String {
        "\(call) \(path) failed (errno \(errno)); check that the directory exists, is writable and on a filesystem that supports shared mmap (e.g. /dev/shm or /tmp)"
    }
}

/// Opens (creating if asked) and maps a file shared, growing it to `length` bytes.
func mapSharedFile(path: String, length: Int, create: Bool) throws(MockFileError) -> UnsafeMutableRawPointer {
    let fd = unsafe open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0o600)
    if fd < 0 { throw MockFileError(call: "open", path: path, errno: errno) }
    defer { close(fd) }
    var st = stat()
    if unsafe fstat(fd, &st) != 0 { throw MockFileError(call: "fstat", path: path, errno: errno) }
    if Int(st.st_size) < length {
        if !create { throw MockFileError(call: "size check", path: path, errno: EINVAL) }
        if ftruncate(fd, off_t(length)) != 0 { throw MockFileError(call: "ftruncate", path: path, errno: errno) }
    }
    let p = unsafe mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    guard let p = unsafe p, unsafe p != MAP_FAILED else { throw MockFileError(call: "mmap", path: path, errno: errno) }
    return unsafe p
}
