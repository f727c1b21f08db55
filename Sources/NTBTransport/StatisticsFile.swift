// The only file of NTBTransport that makes system calls: it maps the statistics file.
#if canImport(Glibc)
import Glibc
#endif

/// The text of an errno value.
func errorText(_ code: Int32) -> String { unsafe String(cString: strerror(code)) }

/// Memory for the counters of every queue pair: plain memory, or a file mapped shared so that
/// another process (`ntb-transport stats`) can read a running transport, as Linux shows them in debugfs.
///
/// File layout (native endian, all `UInt64`): magic, format version, queue pair count, counters per
/// queue pair, then `queuePairs × counters` values in ``QueuePairCounter`` order.
@safe
public final class StatisticsStorage: @unchecked Sendable {
    public static let magic: UInt64 = 0x5453_5150_4254_4E01   // "\u{1}NTBQPST"
    public static let formatVersion: UInt64 = 1
    static let headerWords = 4

    public let queuePairCount: Int
    public let path: String?
    private let words: UnsafeMutablePointer<UInt64>
    private let byteCount: Int
    private let mapped: Bool

    /// Counters in plain memory.
    public init(queuePairs: Int) {
        queuePairCount = queuePairs
        path = nil
        byteCount = (Self.headerWords + queuePairs * QueuePairCounter.allCases.count) * 8
        unsafe words = UnsafeMutablePointer<UInt64>.allocate(capacity: byteCount / 8)
        unsafe words.initialize(repeating: 0, count: byteCount / 8)
        mapped = false
        writeHeader()
    }

    /// Counters in a new file at `path` (replaced if it exists), mapped shared.
    public init(queuePairs: Int, publishingTo path: String) throws(TransportError) {
        queuePairCount = queuePairs
        self.path = path
        byteCount = (Self.headerWords + queuePairs * QueuePairCounter.allCases.count) * 8
        unsafe unlink(path)
        let fd = unsafe open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .system("cannot create the statistics file \(path): \(errorText(errno)); check that its directory exists and is writable") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(byteCount)) == 0,
              let p = unsafe mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), unsafe p != MAP_FAILED
        else { throw .system("cannot map the statistics file \(path): \(errorText(errno))") }
        unsafe words = p.bindMemory(to: UInt64.self, capacity: byteCount / 8)
        mapped = true
        writeHeader()
    }

    private func writeHeader() {
        unsafe words[0] = Self.magic
        unsafe words[1] = Self.formatVersion
        unsafe words[2] = UInt64(queuePairCount)
        unsafe words[3] = UInt64(QueuePairCounter.allCases.count)
    }

    /// The counter slots of queue pair `index`.
    public func counters(_ index: Int) -> QueuePairCounters {
        precondition(index >= 0 && index < queuePairCount)
        return unsafe QueuePairCounters(base: words + Self.headerWords + index * QueuePairCounter.allCases.count)
    }

    deinit {
        if mapped {
            unsafe munmap(UnsafeMutableRawPointer(words), byteCount)
            if let path { unsafe unlink(path) }
        } else {
            unsafe words.deallocate()
        }
    }

    /// Reads a statistics file written by a running transport. The values are copied.
    public static func read(path: String) throws(TransportError) -> [QueuePairStatistics] {
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system("no statistics at \(path): \(errorText(errno)); start a transport (recv, perf, pingpong) on this port and role first") }
        defer { close(fd) }
        var st = stat()
        guard unsafe fstat(fd, &st) == 0, st.st_size >= headerWords * 8 else { throw .system("\(path) is not a statistics file") }
        let size = Int(st.st_size)
        guard let p = unsafe mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), unsafe p != MAP_FAILED else {
            throw .system("cannot map \(path): \(errorText(errno))")
        }
        defer { unsafe munmap(p, size) }
        let w = unsafe p.bindMemory(to: UInt64.self, capacity: size / 8)
        let counters = QueuePairCounter.allCases.count
        guard unsafe w[0] == magic, unsafe w[1] == formatVersion, unsafe w[3] == UInt64(counters) else {
            throw .system("\(path) was written by a different version of ntb-transport; use the same binary for stats")
        }
        let qps = unsafe Int(w[2])
        guard qps >= 0, qps <= 64, size >= (headerWords + qps * counters) * 8 else { throw .system("\(path) is truncated") }
        return (0..<qps).map { q in
            QueuePairStatistics(values: (0..<counters).map { c in unsafe w[headerWords + q * counters + c] })
        }
    }
}

/// A plain OS thread (pthread) for the link monitor and for queue pairs the user spreads over
/// threads. Joined explicitly; the body runs once.
public final class TransportThread: @unchecked Sendable {
    private var handle = pthread_t()
    private var joined = false

    private final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }

    /// Starts `body` on a new thread.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(TransportError) {
        let box = unsafe Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = unsafe pthread_create(&handle, nil, { arg in
            let box = unsafe Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            unsafe Unmanaged<Box>.fromOpaque(box).release()
            throw .system("cannot start thread \(name): \(errorText(rc)); check the process thread limit")
        }
    }

    /// Waits for the body to return.
    public func join() {
        guard !joined, pthread_equal(handle, pthread_self()) == 0 else { return }
        joined = true
        pthread_join(handle, nil)
    }

    deinit { if !joined { pthread_detach(handle) } }

    /// CPU time this process has used, in seconds (user + system), for CPU-per-GB figures.
    public static func processCPUSeconds() -> Double {
        var ru = rusage()
        unsafe getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
        return Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
    }

    /// Gives the CPU to another runnable thread (spin loops on busy machines).
    @inlinable public static func yield() { _yield() }
    @usableFromInline static func _yield() { sched_yield() }

    /// Sleeps the calling thread.
    public static func sleep(_ duration: Duration) {
        let (s, atto) = duration.components
        var ts = timespec(tv_sec: Int(s), tv_nsec: Int(atto / 1_000_000_000))
        unsafe nanosleep(&ts, nil)
    }
}
