// Syscalls.swift - the only file of PCIKit that calls the kernel (docs/architecture.md, Conventions: one syscall file per module).
//
// Every wrapper is `@inline(never)` and reads errno right after the call, before anything else can
// change it (swift-nio System.swift). EINTR is retried here. In debug builds (ENABLE_MOCKING), a
// `SyscallMock` set for the current task answers the calls instead of the kernel and records them,
// so tests can assert the exact sequence of calls and inject failures. In release builds the hook does
// not exist.
#if canImport(Glibc)
import Glibc
#endif
import CNTBShim
import SystemPackage

private typealias StatBuffer = Glibc.stat

/// An ioctl request: its number and its name (for traces and error messages).
struct IOCtl: Sendable, Equatable {
    let number: UInt
    let name: String

    static let getAPIVersion = IOCtl(number: NTB_VFIO_GET_API_VERSION, name: "VFIO_GET_API_VERSION")
    static let checkExtension = IOCtl(number: NTB_VFIO_CHECK_EXTENSION, name: "VFIO_CHECK_EXTENSION")
    static let setIOMMU = IOCtl(number: NTB_VFIO_SET_IOMMU, name: "VFIO_SET_IOMMU")
    static let groupGetStatus = IOCtl(number: NTB_VFIO_GROUP_GET_STATUS, name: "VFIO_GROUP_GET_STATUS")
    static let groupSetContainer = IOCtl(number: NTB_VFIO_GROUP_SET_CONTAINER, name: "VFIO_GROUP_SET_CONTAINER")
    static let groupUnsetContainer = IOCtl(number: NTB_VFIO_GROUP_UNSET_CONTAINER, name: "VFIO_GROUP_UNSET_CONTAINER")
    static let groupGetDeviceFD = IOCtl(number: NTB_VFIO_GROUP_GET_DEVICE_FD, name: "VFIO_GROUP_GET_DEVICE_FD")
    static let deviceGetInfo = IOCtl(number: NTB_VFIO_DEVICE_GET_INFO, name: "VFIO_DEVICE_GET_INFO")
    static let deviceGetRegionInfo = IOCtl(number: NTB_VFIO_DEVICE_GET_REGION_INFO, name: "VFIO_DEVICE_GET_REGION_INFO")
    static let deviceGetIRQInfo = IOCtl(number: NTB_VFIO_DEVICE_GET_IRQ_INFO, name: "VFIO_DEVICE_GET_IRQ_INFO")
    static let deviceSetIRQs = IOCtl(number: NTB_VFIO_DEVICE_SET_IRQS, name: "VFIO_DEVICE_SET_IRQS")
    static let deviceReset = IOCtl(number: NTB_VFIO_DEVICE_RESET, name: "VFIO_DEVICE_RESET")
    static let iommuGetInfo = IOCtl(number: NTB_VFIO_IOMMU_GET_INFO, name: "VFIO_IOMMU_GET_INFO")
    static let iommuMapDMA = IOCtl(number: NTB_VFIO_IOMMU_MAP_DMA, name: "VFIO_IOMMU_MAP_DMA")
    static let iommuUnmapDMA = IOCtl(number: NTB_VFIO_IOMMU_UNMAP_DMA, name: "VFIO_IOMMU_UNMAP_DMA")
}

/// One system call, as recorded.
public enum Syscall: Equatable, Sendable, CustomStringConvertible {
    case open(path: String, flags: Int32)
    case close(fd: Int32)
    case ioctl(fd: Int32, request: String)
    case mmap(fd: Int32, length: Int, offset: Int64)
    case munmap(length: Int)
    case pread(fd: Int32, count: Int, offset: Int64)
    case pwrite(fd: Int32, count: Int, offset: Int64)
    case read(fd: Int32, count: Int)
    case write(fd: Int32, count: Int)
    case eventfd
    case epollCreate
    case epollAdd(epfd: Int32, fd: Int32)
    case epollWait(epfd: Int32, timeoutMs: Int32)
    case poll(fd: Int32, timeoutMs: Int32)
    case mlock(length: Int)
    case munlock(length: Int)
    case readlink(path: String)
    case listDirectory(path: String)
    case stat(path: String)
    case chown(path: String, gid: UInt32)
    case chmod(path: String, mode: UInt32)
    case mkfifo(path: String)

    public var description: String {
        switch self {
        case let .open(p, _): "open \(p)"
        case let .close(fd): "close \(fd)"
        case let .ioctl(fd, r): "ioctl \(fd) \(r)"
        case let .mmap(fd, l, o): "mmap \(fd) len=\(l) off=\(o)"
        case let .munmap(l): "munmap len=\(l)"
        case let .pread(fd, c, o): "pread \(fd) \(c)@\(o)"
        case let .pwrite(fd, c, o): "pwrite \(fd) \(c)@\(o)"
        case let .read(fd, c): "read \(fd) \(c)"
        case let .write(fd, c): "write \(fd) \(c)"
        case .eventfd: "eventfd"
        case .epollCreate: "epoll_create"
        case let .epollAdd(e, fd): "epoll_ctl \(e) add \(fd)"
        case let .epollWait(e, t): "epoll_wait \(e) \(t)ms"
        case let .poll(fd, t): "poll \(fd) \(t)ms"
        case let .mlock(l): "mlock len=\(l)"
        case let .munlock(l): "munlock len=\(l)"
        case let .readlink(p): "readlink \(p)"
        case let .listDirectory(p): "readdir \(p)"
        case let .stat(p): "stat \(p)"
        case let .chown(p, g): "chown \(p) gid=\(g)"
        case let .chmod(p, m): "chmod \(p) \(String(m, radix: 8))"
        case let .mkfifo(p): "mkfifo \(p)"
        }
    }
}


#if ENABLE_MOCKING
/// A stand-in kernel for tests (debug builds only). Install it for a piece of code with ``run(_:)``;
/// every PCIKit system call made by that code (on the same task) is recorded in ``calls`` and answered
/// by `respond`.
@safe public final class SyscallMock: @unchecked Sendable {
    /// The mock's answer to a call.
    @safe public enum Response {
        /// The call succeeds and returns this value (a descriptor, a byte count, 0).
        case success(Int)
        /// The call fails with this errno.
        case failure(Errno)
        /// mmap succeeds at this address (memory the test owns).
        case memory(UnsafeMutableRawPointer)
        /// Let the real kernel answer (e.g. for files in a fake sysfs tree).
        case passthrough
    }

    /// Every call so far, in order.
    public private(set) var calls: [Syscall] = []
    private let respond: (Syscall, UnsafeMutableRawPointer?) -> Response

    /// - Parameter respond: answers one call; the pointer is the call's argument buffer (the ioctl
    ///   argument, the read/pread destination, the write/pwrite source), for the mock to fill or inspect.
    public init(respond: @escaping (Syscall, UnsafeMutableRawPointer?) -> Response) {
        unsafe self.respond = respond
    }

    @TaskLocal static var active: SyscallMock?

    /// Runs `body` with this mock answering PCIKit's system calls.
    public func run<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let result: Result<T, E> = SyscallMock.$active.withValue(self) {
            do throws(E) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    func handle(_ call: Syscall, _ arg: UnsafeMutableRawPointer?) -> Response {
        calls.append(call)
        return unsafe respond(call, arg)
    }
}
#endif

/// What the mock said, reduced to what a wrapper needs (nil: do the real call). In release builds this
/// is nil at once and `call` is never evaluated.
@inline(__always)
private func mocked(_ call: @autoclosure () -> Syscall, _ arg: UnsafeMutableRawPointer? = nil) -> MockAnswer? {
    #if ENABLE_MOCKING
    guard let mock = SyscallMock.active else { return nil }
    switch unsafe mock.handle(call(), arg) {
    case .success(let v): return .value(v)
    case .failure(let e): return .error(e)
    case .memory(let p): return unsafe .memory(p)
    case .passthrough: return nil
    }
    #else
    return nil
    #endif
}

@safe private enum MockAnswer {
    case value(Int)
    case error(Errno)
    case memory(UnsafeMutableRawPointer)
}

/// PCIKit's system calls. Each throws the call's `Errno`; EINTR is retried.
enum Syscalls {
    @inline(never)
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(Errno) -> Int32 {
        while true {
            let r: Int32
            switch mocked(.open(path: path, flags: flags)) {
            case .value(let v)?: r = Int32(v)
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered open with memory")
            case nil:
                r = unsafe Glibc.open(path, flags | O_CLOEXEC, mode)
                if r < 0 { let e = errno; if e == EINTR { continue }; throw Errno(rawValue: e) }
            }
            return r
        }
    }

    /// Closes a descriptor. EINTR is not retried (Linux has closed the descriptor anyway).
    @inline(never)
    static func close(_ fd: Int32) {
        if mocked(.close(fd: fd)) != nil { return }
        _ = Glibc.close(fd)
    }

    /// ioctl with a pointer argument; returns the ioctl's non-negative result.
    @inline(never)
    static func ioctl(_ fd: Int32, _ request: IOCtl, _ arg: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
        while true {
            switch unsafe mocked(.ioctl(fd: fd, request: request.name), arg) {
            case .value(let v)?: return Int32(v)
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered ioctl with memory")
            case nil:
                let r = unsafe ntb_sys_ioctl_ptr(fd, request.number, arg)
                if r < 0 { let e = ntb_sys_errno(); if e == EINTR { continue }; throw Errno(rawValue: e) }
                return r
            }
        }
    }

    /// ioctl with an integer argument.
    @inline(never)
    static func ioctl(_ fd: Int32, _ request: IOCtl, value: UInt) throws(Errno) -> Int32 {
        while true {
            switch mocked(.ioctl(fd: fd, request: request.name)) {
            case .value(let v)?: return Int32(v)
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered ioctl with memory")
            case nil:
                let r = ntb_sys_ioctl_int(fd, request.number, value)
                if r < 0 { let e = ntb_sys_errno(); if e == EINTR { continue }; throw Errno(rawValue: e) }
                return r
            }
        }
    }

    @inline(never)
    static func mmap(length: Int, protection: Int32, flags: Int32, fd: Int32, offset: Int64,
                     at address: UnsafeMutableRawPointer? = nil) throws(Errno) -> UnsafeMutableRawPointer {
        switch mocked(.mmap(fd: fd, length: length, offset: offset)) {
        case .memory(let p)?: return unsafe p
        case .error(let e)?: throw e
        case .value?: preconditionFailure("mock answered mmap with a value")
        case nil:
            let p = unsafe Glibc.mmap(address, length, protection, flags, fd, off_t(offset))
            guard let p = unsafe p, unsafe p != MAP_FAILED else { throw Errno(rawValue: errno) }
            return unsafe p
        }
    }

    @inline(never)
    static func munmap(_ address: UnsafeMutableRawPointer, _ length: Int) {
        if mocked(.munmap(length: length)) != nil { return }
        _ = unsafe Glibc.munmap(address, length)
    }

    @inline(never)
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int64) throws(Errno) -> Int {
        while true {
            switch unsafe mocked(.pread(fd: fd, count: count, offset: offset), buffer) {
            case .value(let v)?: return v
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered pread with memory")
            case nil:
                let r = unsafe Glibc.pread(fd, buffer, count, off_t(offset))
                if r < 0 { let e = errno; if e == EINTR { continue }; throw Errno(rawValue: e) }
                return r
            }
        }
    }

    @inline(never)
    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: Int64) throws(Errno) -> Int {
        while true {
            switch unsafe mocked(.pwrite(fd: fd, count: count, offset: offset), UnsafeMutableRawPointer(mutating: buffer)) {
            case .value(let v)?: return v
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered pwrite with memory")
            case nil:
                let r = unsafe Glibc.pwrite(fd, buffer, count, off_t(offset))
                if r < 0 { let e = errno; if e == EINTR { continue }; throw Errno(rawValue: e) }
                return r
            }
        }
    }

    /// read(2). EAGAIN is thrown (callers of non-blocking descriptors treat it as "nothing pending").
    @inline(never)
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(Errno) -> Int {
        while true {
            switch unsafe mocked(.read(fd: fd, count: count), buffer) {
            case .value(let v)?: return v
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered read with memory")
            case nil:
                let r = unsafe Glibc.read(fd, buffer, count)
                if r < 0 { let e = errno; if e == EINTR { continue }; throw Errno(rawValue: e) }
                return r
            }
        }
    }

    @inline(never)
    static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(Errno) -> Int {
        while true {
            switch unsafe mocked(.write(fd: fd, count: count), UnsafeMutableRawPointer(mutating: buffer)) {
            case .value(let v)?: return v
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered write with memory")
            case nil:
                let r = unsafe Glibc.write(fd, buffer, count)
                if r < 0 { let e = errno; if e == EINTR { continue }; throw Errno(rawValue: e) }
                return r
            }
        }
    }

    /// A non-blocking, close-on-exec eventfd.
    @inline(never)
    static func eventfd() throws(Errno) -> Int32 {
        switch mocked(.eventfd) {
        case .value(let v)?: return Int32(v)
        case .error(let e)?: throw e
        case .memory?: preconditionFailure("mock answered eventfd with memory")
        case nil:
            let fd = CNTBShim.eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
            if fd < 0 { throw Errno(rawValue: errno) }
            return fd
        }
    }

    @inline(never)
    static func epollCreate() throws(Errno) -> Int32 {
        switch mocked(.epollCreate) {
        case .value(let v)?: return Int32(v)
        case .error(let e)?: throw e
        case .memory?: preconditionFailure("mock answered epoll_create with memory")
        case nil:
            let fd = epoll_create1(Int32(EPOLL_CLOEXEC))
            if fd < 0 { throw Errno(rawValue: errno) }
            return fd
        }
    }

    /// Adds `fd` for input to an epoll set, with `tag` as its event data.
    @inline(never)
    static func epollAdd(_ epfd: Int32, _ fd: Int32, tag: UInt64) throws(Errno) {
        switch mocked(.epollAdd(epfd: epfd, fd: fd)) {
        case .value?: return
        case .error(let e)?: throw e
        case .memory?: preconditionFailure("mock answered epoll_ctl with memory")
        case nil:
            var ev = unsafe epoll_event()
            unsafe ev.events = EPOLLIN.rawValue
            unsafe ev.data.u64 = tag
            if unsafe epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 { throw Errno(rawValue: errno) }
        }
    }

    /// Waits on an epoll set; writes the tags of ready descriptors to `tags` and returns their count
    /// (0 on timeout). EINTR returns 0 (the caller's deadline logic decides whether to wait again).
    @inline(never)
    static func epollWait(_ epfd: Int32, tags: UnsafeMutableBufferPointer<UInt64>, timeoutMs: Int32) throws(Errno) -> Int {
        switch mocked(.epollWait(epfd: epfd, timeoutMs: timeoutMs)) {
        case .value(let v)?: return v
        case .error(let e)?: if e == .interrupted { return 0 }; throw e
        case .memory?: preconditionFailure("mock answered epoll_wait with memory")
        case nil:
            let max = min(tags.count, 64)
            return try unsafe withUnsafeTemporaryAllocation(of: epoll_event.self, capacity: max) { events throws(Errno) -> Int in
                let n = unsafe epoll_wait(epfd, events.baseAddress, Int32(max), timeoutMs)
                if n < 0 { let e = errno; if e == EINTR { return 0 }; throw Errno(rawValue: e) }
                for i in 0..<Int(n) { unsafe tags[i] = events[i].data.u64 }
                return Int(n)
            }
        }
    }

    /// poll(2) on one descriptor for input. Returns true if it is readable; EINTR is retried.
    @inline(never)
    static func pollIn(_ fd: Int32, timeoutMs: Int32) throws(Errno) -> Bool {
        while true {
            switch mocked(.poll(fd: fd, timeoutMs: timeoutMs)) {
            case .value(let v)?: return v > 0
            case .error(let e)?: if e == .interrupted { continue }; throw e
            case .memory?: preconditionFailure("mock answered poll with memory")
            case nil:
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = unsafe Glibc.poll(&pfd, 1, timeoutMs)
                if r < 0 { let e = errno; if e == EINTR { continue }; throw Errno(rawValue: e) }
                return r > 0
            }
        }
    }

    @inline(never)
    static func mlock(_ address: UnsafeRawPointer, _ length: Int) throws(Errno) {
        switch mocked(.mlock(length: length)) {
        case .value?: return
        case .error(let e)?: throw e
        case .memory?: preconditionFailure("mock answered mlock with memory")
        case nil: if unsafe Glibc.mlock(address, length) != 0 { throw Errno(rawValue: errno) }
        }
    }

    @inline(never)
    static func munlock(_ address: UnsafeRawPointer, _ length: Int) {
        if mocked(.munlock(length: length)) != nil { return }
        _ = unsafe Glibc.munlock(address, length)
    }

    /// The target of a symbolic link.
    @inline(never)
    static func readlink(_ path: String) throws(Errno) -> String {
        switch mocked(.readlink(path: path)) {
        case .error(let e)?: throw e
        case .value?, .memory?: preconditionFailure("mock must pass readlink through to a fake tree or fail it")
        case nil:
            var buffer = [CChar](repeating: 0, count: 4097)
            let n = unsafe buffer.withUnsafeMutableBufferPointer { unsafe Glibc.readlink(path, $0.baseAddress!, 4096) }
            if n < 0 { throw Errno(rawValue: errno) }
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// The names in a directory, without `.` and `..`, sorted.
    @inline(never)
    static func listDirectory(_ path: String) throws(Errno) -> [String] {
        switch mocked(.listDirectory(path: path)) {
        case .error(let e)?: throw e
        case .value?, .memory?: preconditionFailure("mock must pass readdir through to a fake tree or fail it")
        case nil:
            guard let dir = unsafe opendir(path) else { throw Errno(rawValue: errno) }
            defer { unsafe closedir(dir) }
            var names: [String] = []
            while let entry = unsafe readdir(dir) {
                let name = unsafe withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    unsafe String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            return names.sorted()
        }
    }

    /// Owner, group and mode of a file (following symlinks).
    @inline(never)
    static func stat(_ path: String) throws(Errno) -> (uid: UInt32, gid: UInt32, mode: UInt32) {
        switch mocked(.stat(path: path)) {
        case .error(let e)?: throw e
        case .value?, .memory?: preconditionFailure("mock must pass stat through to a fake tree or fail it")
        case nil:
            var st = StatBuffer()
            if unsafe fstatat(AT_FDCWD, path, &st, 0) != 0 { throw Errno(rawValue: errno) }
            return (st.st_uid, st.st_gid, st.st_mode)
        }
    }

    @inline(never)
    static func chown(_ path: String, gid: UInt32) throws(Errno) {
        switch mocked(.chown(path: path, gid: gid)) {
        case .value?: return
        case .error(let e)?: throw e
        case .memory?: preconditionFailure("mock answered chown with memory")
        case nil: if unsafe Glibc.chown(path, uid_t.max, gid) != 0 { throw Errno(rawValue: errno) }
        }
    }

    @inline(never)
    static func chmod(_ path: String, mode: UInt32) throws(Errno) {
        switch mocked(.chmod(path: path, mode: mode)) {
        case .value?: return
        case .error(let e)?: throw e
        case .memory?: preconditionFailure("mock answered chmod with memory")
        case nil: if unsafe Glibc.chmod(path, mode) != 0 { throw Errno(rawValue: errno) }
        }
    }

    @inline(never)
    static func mkfifo(_ path: String, mode: UInt32) throws(Errno) {
        switch mocked(.mkfifo(path: path)) {
        case .value?: return
        case .error(let e)?: throw e
        case .memory?: preconditionFailure("mock answered mkfifo with memory")
        case nil: if unsafe Glibc.mkfifo(path, mode) != 0 { throw Errno(rawValue: errno) }
        }
    }

    /// The id of a Unix group (getgrnam(3); reads /etc/group or NSS, not a system call as such).
    static func groupID(named name: String) -> UInt32? {
        guard let gr = unsafe getgrnam(name) else { return nil }
        return unsafe gr.pointee.gr_gid
    }

    /// The system page size.
    static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// The effective user id.
    static var effectiveUserID: UInt32 { geteuid() }
}

// MARK: - File helpers built on the wrappers above

extension Syscalls {
    /// Reads a whole (small) file, e.g. a sysfs attribute.
    static func readFile(_ path: String, limit: Int = 1 << 20) throws(Errno) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let r: Result<Int, Errno> = unsafe chunk.withUnsafeMutableBytes { buf in
                do throws(Errno) { return .success(try unsafe read(fd, buf.baseAddress!, buf.count)) } catch { return .failure(error) }
            }
            let n = try r.get()
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Reads a text attribute without its trailing newline.
    static func readText(_ path: String) throws(Errno) -> String {
        String(decoding: try readFile(path), as: UTF8.self).trimmingWhitespace()
    }

    /// Writes `text` to an existing file in one write(2), as sysfs control files need.
    static func writeText(_ path: String, _ text: String) throws(Errno) {
        let fd = try open(path, O_WRONLY)
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let r: Result<Int, Errno> = unsafe bytes.withUnsafeBytes { buf in
            do throws(Errno) { return .success(try unsafe write(fd, buf.baseAddress!, buf.count)) } catch { return .failure(error) }
        }
        let n = try r.get()
        if n != bytes.count { throw Errno.ioError }
    }

    /// Whether a path exists (following symlinks).
    static func exists(_ path: String) -> Bool {
        do { _ = try stat(path); return true } catch { return false }
    }
}
