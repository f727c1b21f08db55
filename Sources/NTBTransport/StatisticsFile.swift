// The only file of NTBTransport that makes system calls: it maps the statistics file.
public import PCIKit
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

/// The transport's threads are PCIKit's ``SystemThread`` (one pthread wrapper for the project).
public typealias TransportThread = SystemThread
