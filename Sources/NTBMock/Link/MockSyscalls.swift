#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import PCIKit

/// The system calls of the mock link (docs/architecture.md, Conventions: one syscall file per module): files in the mock directory, shared
/// mappings, advisory locks. Each failure becomes an ``NTBError`` whose text names the file and the fix.
enum MockSys {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    static func fail(_ call: String, _ path: String, remedy: String) -> NTBError {
        .pci(PCIKitError.system(call: "\(call) \(path)", errno: errno, remedy: remedy))
    }

    static func roundUp(_ n: Int, _ to: Int) -> Int { (n + to - 1) / to * to }

    static func exists(_ path: String) -> Bool { unsafe access(path, F_OK) == 0 }

    static func makeDirectory(_ path: String) throws(NTBError) {
        if unsafe mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw fail("mkdir", path, remedy: "check that the parent directory exists and is writable")
        }
    }

    /// Opens (creating if `create`) a file read-write; with `size`, sets its length.
    static func openFile(_ path: String, create: Bool, size: Int? = nil) throws(NTBError) -> Int32 {
        let fd = unsafe open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0o600)
        if fd < 0 {
            throw fail("open", path, remedy: create ? "check that the mock directory is writable" : "run `ntb-transport mock up --dir` for this directory first")
        }
        if let size, ftruncate(fd, off_t(size)) != 0 {
            close(fd)
            throw fail("ftruncate", path, remedy: "check the free space of the file system (df /dev/shm)")
        }
        return fd
    }

    static func fileSize(_ fd: Int32) -> Int {
        var st = stat()
        return unsafe fstat(fd, &st) == 0 ? Int(st.st_size) : 0
    }

    /// Maps `length` bytes of `fd` at `offset` shared; at `fixed` replaces what is mapped there.
    static func map(_ fd: Int32, offset: Int, length: Int, at fixed: UnsafeMutableRawPointer? = nil, what: String) throws(NTBError) -> UnsafeMutableRawPointer {
        let flags = MAP_SHARED | (unsafe fixed != nil ? MAP_FIXED : 0)
        let p = unsafe mmap(fixed, length, PROT_READ | PROT_WRITE, flags, fd, off_t(offset))
        guard let p = unsafe p, unsafe p != MAP_FAILED else {
            throw fail("mmap", what, remedy: "check the process's address-space and file limits")
        }
        return unsafe p
    }

    /// Reserves (or at `fixed`, resets) `length` bytes of private zero memory: an unmapped window.
    static func mapAnonymous(length: Int, at fixed: UnsafeMutableRawPointer? = nil) throws(NTBError) -> UnsafeMutableRawPointer {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | (unsafe fixed != nil ? MAP_FIXED : 0)
        let p = unsafe mmap(fixed, length, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let p = unsafe p, unsafe p != MAP_FAILED else {
            throw fail("mmap", "anonymous window", remedy: "check the process's address-space limit (ulimit -v)")
        }
        return unsafe p
    }

    static func unmap(_ p: UnsafeMutableRawPointer, _ length: Int) { _ = unsafe munmap(p, length) }

    /// Copies `length` bytes from memory into `fd` at `offset`.
    static func writeFile(_ fd: Int32, from p: UnsafeRawPointer, length: Int, offset: Int) {
        var done = 0
        while done < length {
            let n = unsafe pwrite(fd, p + done, length - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
    }

    /// Takes the exclusive lock of a side without blocking; false if another open file holds it.
    static func tryLock(_ fd: Int32) -> Bool { flock(fd, LOCK_EX | LOCK_NB) == 0 }

    /// Whether some process holds an exclusive lock on `fd`'s file (probe with a shared lock and drop it).
    static func isLocked(_ fd: Int32) -> Bool {
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            _ = flock(fd, LOCK_UN)
            return false
        }
        return errno == EWOULDBLOCK
    }

    static func closeFile(_ fd: Int32) { _ = close(fd) }

    static func remove(_ path: String) { _ = unsafe unlink(path) }
    static func removeDirectory(_ path: String) -> Bool { unsafe rmdir(path) == 0 }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = unsafe opendir(path) else { return [] }
        defer { _ = unsafe closedir(dir) }
        var names: [String] = []
        while let entry = unsafe readdir(dir) {
            let name = unsafe withUnsafeBytes(of: entry.pointee.d_name) { raw in
                unsafe String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static var pid: Int32 { getpid() }

    /// Field 22 of /proc/<pid>/stat (start time in clock ticks), to tell a reused pid from the original.
    static func startTime(of pid: Int32) -> UInt64 {
        let fd = unsafe open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = unsafe buffer.withUnsafeMutableBytes { unsafe read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 0 }
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        // The command name may contain spaces; fields after the last ')' start at field 3.
        guard let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) ?? 0 : 0
    }
}
