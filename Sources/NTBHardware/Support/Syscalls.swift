import CNTBShim
import PCIKit
#if canImport(Glibc)
import Glibc
#endif

/// The system calls of NTBHardware (docs/architecture.md, Conventions: one syscall file per module): waiting on several interrupt
/// descriptors at once, and short sleeps in command and doorbell polling loops.

/// A fixed set of file descriptors waited on with one `poll(2)`; the `pollfd` array is allocated once,
/// so waiting allocates nothing.
@safe
final class DescriptorPoller: @unchecked Sendable {
    private let fds: UnsafeMutablePointer<pollfd>
    let count: Int

    init(_ descriptors: [Int32]) {
        count = descriptors.count
        unsafe fds = .allocate(capacity: max(1, descriptors.count))
        for (i, fd) in descriptors.enumerated() {
            unsafe (fds + i).initialize(to: pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
        }
    }

    deinit { unsafe fds.deallocate() }

    /// Waits until one descriptor is readable or `milliseconds` pass (0: just look). Returns how many are ready.
    func wait(milliseconds: Int32) -> Int {
        guard count > 0 else {
            if milliseconds > 0 { sleep(for: .milliseconds(Int(milliseconds))) }
            return 0
        }
        while true {
            let r = unsafe poll(fds, nfds_t(count), milliseconds)
            if r < 0 && errno == EINTR { continue }
            return Int(max(0, r))
        }
    }

    /// Waits until one descriptor is readable or `timeout` passes, to the nanosecond (`ppoll`). Returns
    /// how many are ready.
    func wait(timeout: Duration) -> Int {
        let (sec, atto) = timeout.components
        let ns = sec < 0 ? 0 : sec &* 1_000_000_000 &+ atto / 1_000_000_000
        while true {
            let r = unsafe ntb_sys_poll_ns(fds, UInt(count), ns)
            if r < 0 && errno == EINTR { continue }
            return Int(max(0, r))
        }
    }

    /// Whether descriptor `i` was readable at the last ``wait(milliseconds:)``.
    func isReady(_ i: Int) -> Bool {
        precondition(i >= 0 && i < count)
        return unsafe fds[i].revents & Int16(POLLIN | POLLERR | POLLHUP) != 0
    }
}

/// Sleeps the calling thread (nanosleep, retried on EINTR).
func sleep(for duration: Duration) {
    let (s, atto) = duration.components
    guard s > 0 || atto > 0 else { return }
    var request = timespec(tv_sec: Int(s), tv_nsec: Int(atto / 1_000_000_000))
    var remaining = timespec()
    while unsafe nanosleep(&request, &remaining) != 0 && errno == EINTR {
        request = remaining
    }
}

/// Monotonic clock reading for deadlines.
func now() -> ContinuousClock.Instant { ContinuousClock.now }

/// Starts a thread running `body` (service threads of device models and endpoint functions) with
/// PCIKit's ``SystemThread``; joinable unless `detached`. The caller owns the returned pthread.
@discardableResult
public func spawnThread(detached: Bool = false, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    let thread: SystemThread
    do throws(PCIKitError) { thread = try SystemThread(name: "ntb-service", body) } catch {
        preconditionFailure("\(error)")
    }
    let tid = thread.release()
    if detached { pthread_detach(tid) }
    return tid
}

/// A shared file mapped read-write (the ivshmem adapter's file form); unmapped when released.
@safe
final class SharedFileMapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int

    /// Maps `path` shared. A missing or empty file is created with `createSize` bytes (zeroed) if given.
    init(path: String, createSize: Int?) throws(NTBError) {
        // The errno stays in the error (ENOENT, EACCES, ... are told apart by callers).
        func failure(_ call: String, _ remedy: String) -> NTBError {
            .pci(.system(call: "\(call) \(path)", errno: errno, remedy: remedy))
        }
        let fd = unsafe open(path, createSize != nil ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("open", "check the path and its permissions") }
        defer { close(fd) }
        var st = stat()
        guard unsafe fstat(fd, &st) == 0 else { throw failure("fstat", "check the file") }
        var size = Int(st.st_size)
        if size == 0, let createSize {
            guard ftruncate(fd, off_t(createSize)) == 0 else { throw failure("ftruncate", "check the free space of the file system") }
            size = createSize
        }
        guard size > 0 else { throw .unsupported("\(path) is empty; create it with a size first (truncate -s 4M \(path))") }
        let p = unsafe mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p = unsafe p, unsafe p != MAP_FAILED else { throw failure("mmap", "check the process's address-space limit") }
        unsafe base = p
        length = size
    }

    deinit { _ = unsafe munmap(base, length) }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, a UUID) as 16 bytes; empty if unreadable.
func readBootID() -> [UInt8] {
    let fd = unsafe open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var text = [UInt8](repeating: 0, count: 64)
    let n = unsafe text.withUnsafeMutableBytes { unsafe read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return [] }
    var bytes: [UInt8] = []
    var high: UInt8?
    for c in text[0..<n] {
        let v: UInt8
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
        default: continue
        }
        if let h = high { bytes.append(h << 4 | v); high = nil } else { high = v }
        if bytes.count == 16 { break }
    }
    return bytes
}
