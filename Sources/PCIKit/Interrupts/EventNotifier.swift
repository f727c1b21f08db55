#if canImport(Glibc)
import Glibc
#endif
import CNTBShim

/// An interrupt delivered through a file descriptor: an eventfd (VFIO MSI/MSI-X/INTx, in-process
/// models), a FIFO in a mock link's directory (a model in another process raising an interrupt), or a
/// UIO device node.
///
/// `wait(timeout:)` blocks in `poll(2)` until the interrupt fires; `consume()` acknowledges it and
/// returns how many times it fired (at least 1) or 0 if it had not.
public final class EventNotifier: @unchecked Sendable {
    public enum Kind: Sendable, Equatable {
        /// eventfd(2): 8-byte counter.
        case eventfd
        /// A FIFO or pipe: each signal is one byte.
        case fifo
        /// /dev/uioN: reads a 4-byte interrupt count; writing 1 re-enables the interrupt.
        case uio
    }

    public let fd: Int32
    public let kind: Kind
    private let ownsDescriptor: Bool

    /// Wraps an existing descriptor (taking ownership unless `owned` is false).
    public init(fd: Int32, kind: Kind, owned: Bool = true) {
        self.fd = fd
        self.kind = kind
        self.ownsDescriptor = owned
    }

    /// A new non-blocking eventfd.
    public convenience init() throws(PCIKitError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        if fd < 0 { throw PCIKitError.system(call: "eventfd", errno: errno, remedy: "check the process limit on open files (ulimit -n)") }
        self.init(fd: fd, kind: .eventfd)
    }

    /// Opens (creating if needed) a FIFO at `path`, read-write and non-blocking, so that another
    /// process can raise this interrupt by opening the same path.
    public convenience init(fifoAt path: String) throws(PCIKitError) {
        if unsafe mkfifo(path, 0o600) != 0 && errno != EEXIST {
            throw PCIKitError.system(call: "mkfifo \(path)", errno: errno, remedy: "check that the directory exists and is writable")
        }
        let fd = unsafe open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { throw PCIKitError.system(call: "open \(path)", errno: errno, remedy: "check the permissions of the mock directory") }
        self.init(fd: fd, kind: .fifo)
    }

    deinit { if ownsDescriptor { close(fd) } }

    /// Raises the interrupt (for models and tests; hardware raises its own).
    public func signal() {
        switch kind {
        case .eventfd:
            var one: UInt64 = 1
            _ = unsafe write(fd, &one, 8)
        case .fifo:
            var one: UInt8 = 1
            _ = unsafe write(fd, &one, 1)   // EAGAIN when full: the interrupt is pending anyway
        case .uio:
            var one: UInt32 = 1             // unmask (uio_pci_generic: re-enable INTx)
            _ = unsafe write(fd, &one, 4)
        }
    }

    /// Acknowledges pending interrupts without blocking; returns how many fired (0 if none).
    @discardableResult
    public func consume() -> UInt64 {
        switch kind {
        case .eventfd:
            var count: UInt64 = 0
            return unsafe read(fd, &count, 8) == 8 ? count : 0
        case .fifo:
            var total: UInt64 = 0
            var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            while true {
                let n = unsafe withUnsafeMutableBytes(of: &buffer) { unsafe read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                total += UInt64(n)
            }
            return total
        case .uio:
            var count: UInt32 = 0
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard unsafe poll(&pfd, 1, 0) > 0 else { return 0 }
            return unsafe read(fd, &count, 4) == 4 ? 1 : 0
        }
    }

    /// Waits until the interrupt fires or `timeout` passes (nil: forever). Returns true if it fired.
    /// Does not consume it; call ``consume()``.
    public func wait(timeout: Duration?) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms: Int32
        if let timeout {
            let (s, atto) = timeout.components
            let total = s * 1000 + atto / 1_000_000_000_000_000
            ms = Int32(clamping: max(0, total == 0 && atto > 0 ? 1 : total))
        } else {
            ms = -1
        }
        while true {
            let r = unsafe poll(&pfd, 1, ms)
            if r < 0 && errno == EINTR { continue }
            return r > 0
        }
    }
}
