#if canImport(Glibc)
import Glibc
#endif
import SystemPackage
import CNTBShim

/// An interrupt delivered through a file descriptor: an eventfd (VFIO MSI/MSI-X/INTx, in-process
/// models), a FIFO in a mock link's directory (a model in another process raising an interrupt), or a
/// UIO device node.
///
/// `wait(timeout:)` blocks in `poll(2)` until the interrupt fires; `consume()` acknowledges it and
/// returns how many times it fired (at least 1) or 0 if it had not. Several notifiers can be waited on
/// together with ``InterruptSet``. System calls go through `Internals/Syscalls.swift`.
@safe
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
    /// FIFO only: a word in memory shared by raiser and consumer, 1 while a raised interrupt has not been
    /// consumed (see ``init(fifoAt:pendingWord:retaining:)``); nil = every signal writes the FIFO.
    private let pendingWord: UnsafeMutablePointer<UInt32>?
    /// Keeps the memory behind `pendingWord` mapped.
    private let pendingOwner: AnyObject?

    /// Wraps an existing descriptor (taking ownership unless `owned` is false).
    public init(fd: Int32, kind: Kind, owned: Bool = true) {
        self.fd = fd
        self.kind = kind
        self.ownsDescriptor = owned
        unsafe self.pendingWord = nil
        self.pendingOwner = nil
    }

    private init(fd: Int32, pendingWord: UnsafeMutablePointer<UInt32>, owner: AnyObject) {
        self.fd = fd
        self.kind = .fifo
        self.ownsDescriptor = true
        unsafe self.pendingWord = pendingWord
        self.pendingOwner = owner
    }

    /// A new non-blocking eventfd.
    public convenience init() throws(PCIKitError) {
        let fd: Int32
        do { fd = try Syscalls.eventfd() } catch {
            throw .system(call: "eventfd", errno: error.rawValue, remedy: "check the process limit on open files (ulimit -n)")
        }
        self.init(fd: fd, kind: .eventfd)
    }

    /// Opens (creating if needed) a FIFO at `path`, read-write and non-blocking, so that another
    /// process can raise this interrupt by opening the same path.
    public convenience init(fifoAt path: String) throws(PCIKitError) {
        self.init(fd: try Self.openFIFO(path), kind: .fifo)
    }

    /// A FIFO interrupt that coalesces like a pending interrupt line: `pendingWord` (in memory every raiser
    /// and the consumer of this FIFO share, kept mapped by `owner`) is 1 while a raised interrupt was not
    /// consumed. ``signal()`` writes the FIFO only when it turns the word from 0 to 1 (otherwise the
    /// interrupt is already pending: no system call), ``consume()`` clears the word BEFORE draining the FIFO,
    /// so a signal after the clear writes a new byte, and clears and drains again while the word was set
    /// during the drain (that signal's byte may have been drained), so no wake-up is lost. A peer that spins and never
    /// consumes costs the raiser one atomic exchange per interrupt.
    public convenience init(fifoAt path: String, pendingWord: UnsafeMutablePointer<UInt32>, retaining owner: AnyObject) throws(PCIKitError) {
        unsafe self.init(fd: try Self.openFIFO(path), pendingWord: pendingWord, owner: owner)
    }

    private static func openFIFO(_ path: String) throws(PCIKitError) -> Int32 {
        do { try Syscalls.mkfifo(path, mode: 0o600) } catch {
            if error != .fileExists {
                throw .system(call: "mkfifo \(path)", errno: error.rawValue, remedy: "check that the directory exists and is writable")
            }
        }
        let fd: Int32
        do { fd = try Syscalls.open(path, O_RDWR | O_NONBLOCK) } catch {
            throw .system(call: "open \(path)", errno: error.rawValue, remedy: "check the permissions of the mock directory")
        }
        return fd
    }

    deinit { if ownsDescriptor { Syscalls.close(fd) } }

    /// Raises the interrupt (for models and tests; hardware raises its own). For `.uio` this writes 1,
    /// which re-enables (unmasks) the interrupt (uio_pci_generic `irqcontrol`).
    public func signal() {
        switch kind {
        case .eventfd:
            var one: UInt64 = 1
            _ = try? unsafe Syscalls.write(fd, &one, 8)
        case .fifo:
            if let word = unsafe pendingWord, unsafe ntb_xchg32(word, 1) != 0 { return }   // already pending
            var one: UInt8 = 1
            _ = try? unsafe Syscalls.write(fd, &one, 1)   // EAGAIN when full: the interrupt is pending anyway
        case .uio:
            var one: UInt32 = 1
            _ = try? unsafe Syscalls.write(fd, &one, 4)
        }
    }

    /// Acknowledges pending interrupts without blocking; returns how many fired (0 if none).
    @discardableResult
    public func consume() -> UInt64 {
        switch kind {
        case .eventfd:
            var count: UInt64 = 0
            return (try? unsafe Syscalls.read(fd, &count, 8)) == 8 ? count : 0
        case .fifo:
            // Clear before draining: a signal after the clear writes a new byte (see init(fifoAt:pendingWord:)).
            // That byte may be drained here too, leaving the word set with the FIFO empty, which would
            // swallow every later signal (they see "pending" and write nothing): so clear and drain
            // again until the word stays clear after a drain.
            // A read of a FIFO returns what it holds, up to the buffer: a short read emptied it, so one
            // read per drain (no second read to see EAGAIN), into a buffer on the stack.
            return unsafe withUnsafeTemporaryAllocation(byteCount: 64, alignment: 8) { buffer in
                var total: UInt64 = 0
                repeat {
                    if let word = unsafe pendingWord { _ = unsafe ntb_xchg32(word, 0) }
                    while true {
                        let n = (try? unsafe Syscalls.read(fd, buffer.baseAddress!, buffer.count)) ?? 0
                        if n <= 0 { break }
                        total += UInt64(n)
                        if n < buffer.count { break }
                    }
                } while unsafe pendingWord.map { unsafe ntb_atomic_load_u32($0) != 0 } ?? false
                return total
            }
        case .uio:
            guard (try? Syscalls.pollIn(fd, timeoutMs: 0)) == true else { return 0 }
            var count: UInt32 = 0
            return (try? unsafe Syscalls.read(fd, &count, 4)) == 4 ? 1 : 0
        }
    }

    /// Waits until the interrupt fires or `timeout` passes (nil: forever). Returns true if it fired.
    /// Does not consume it; call ``consume()``.
    public func wait(timeout: Duration?) -> Bool {
        (try? Syscalls.pollIn(fd, timeoutMs: milliseconds(timeout))) ?? false
    }
}

/// A timeout in whole milliseconds for poll/epoll (-1: forever; a positive sub-millisecond timeout
/// rounds up to 1 so it still waits).
func milliseconds(_ timeout: Duration?) -> Int32 {
    guard let timeout else { return -1 }
    let (s, atto) = timeout.components
    if s < 0 { return 0 }
    let ms = s * 1000 + atto / 1_000_000_000_000_000
    return Int32(clamping: ms == 0 && atto > 0 ? 1 : ms)
}

/// Several interrupts waited on together (epoll): one vector per ``EventNotifier``.
///
/// ```swift
/// let vectors = try device.enableInterrupts(.msix, count: 4)
/// let set = try InterruptSet(vectors)
/// for v in try set.wait(timeout: .milliseconds(100)) { vectors[v].consume() }
/// ```
public final class InterruptSet: @unchecked Sendable {
    public let notifiers: [EventNotifier]
    private let epoll: OwnedDescriptor

    public init(_ notifiers: [EventNotifier]) throws(PCIKitError) {
        self.notifiers = notifiers
        let fd: Int32
        do { fd = try Syscalls.epollCreate() } catch {
            throw .system(call: "epoll_create1", errno: error.rawValue, remedy: "check the process limit on open files (ulimit -n)")
        }
        epoll = OwnedDescriptor(fd)
        for (i, n) in notifiers.enumerated() {
            do { try Syscalls.epollAdd(fd, n.fd, tag: UInt64(i)) } catch {
                throw .system(call: "epoll_ctl", errno: error.rawValue, remedy: "the notifier's descriptor is not pollable")
            }
        }
    }

    /// Waits until at least one interrupt fires or `timeout` passes; returns the indices (into
    /// ``notifiers``) of those that fired, empty on timeout. Does not consume them.
    public func wait(timeout: Duration?) throws(PCIKitError) -> [Int] {
        var tags = [UInt64](repeating: 0, count: max(1, notifiers.count))
        let n: Int
        do {
            n = try unsafe withMutableBytes(&tags) { raw throws(Errno) in
                try unsafe Syscalls.epollWait(epoll.fd, tags: raw.bindMemory(to: UInt64.self), timeoutMs: milliseconds(timeout))
            }
        } catch {
            throw .system(call: "epoll_wait", errno: error.rawValue, remedy: "the interrupt descriptors were closed")
        }
        return tags.prefix(n).map { Int($0) }.sorted()
    }
}
