import NTBHardware
import PCIKit

/// One buffer of ``QueuePair/makeBuffers(count:length:)``: the memory to send from or receive into,
/// and where a DMA engine reaches it (absent when the queue pair's data path copies with the CPU).
@safe
public struct MessageBuffer: @unchecked Sendable {
    /// The buffer's memory; valid as long as the queue pair that made it.
    public let bytes: UnsafeMutableRawBufferPointer
    /// Where a DMA engine reaches the buffer; nil for ordinary memory (always nil on `host`).
    public let busAddress: UInt64?

    @inlinable
    public init(bytes: UnsafeMutableRawBufferPointer, busAddress: UInt64?) {
        unsafe self.bytes = bytes
        self.busAddress = busAddress
    }
}

/// `count` buffers of `length` bytes each (64-byte aligned, one allocation) that their queue pair
/// made and keeps alive until it goes away, so buffers offered to the peer stay valid whatever the
/// client does. Index them: `buffers[i]`.
@safe
public struct MessageBuffers: RandomAccessCollection, @unchecked Sendable {
    /// The first buffer's memory.
    public let base: UnsafeMutableRawPointer
    /// The bus address of `base`; nil for ordinary memory.
    public let busAddress: UInt64?
    /// Bytes per buffer.
    public let length: Int
    /// Bytes from one buffer to the next (`length` rounded up to 64).
    public let stride: Int
    public let count: Int

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { count }

    @inlinable
    public subscript(i: Int) -> MessageBuffer {
        precondition(i >= 0 && i < count, "buffer index out of range")
        let offset = i &* stride
        return unsafe MessageBuffer(bytes: UnsafeMutableRawBufferPointer(start: base + offset, count: length),
                                    busAddress: busAddress.map { $0 &+ UInt64(offset) })
    }

    /// The index of the buffer at `pointer` (the start of one of these buffers), e.g. to find the
    /// buffer of a completion whose cookie the client did not use for that.
    @inlinable
    public func index(of pointer: UnsafeRawPointer) -> Int? {
        let offset = unsafe pointer - UnsafeRawPointer(base)
        guard offset >= 0, offset % stride == 0, offset / stride < count else { return nil }
        return offset / stride
    }
}

/// Memory a queue pair made for its client, freed with the queue pair.
@safe
final class OwnedBuffer: @unchecked Sendable {
    let dma: DMABuffer?
    let heap: UnsafeMutableRawPointer?
    init(dma: DMABuffer) { self.dma = dma; unsafe heap = nil }
    init(heap: UnsafeMutableRawPointer) { dma = nil; unsafe self.heap = heap }
    deinit {
        dma?.close()
        unsafe heap?.deallocate()
    }
}

/// The buffer API: one for every backend. The queue pair hands out memory its data path moves best
/// (DMA memory with bus addresses on `edma`, ordinary memory on `host`) and keeps it alive itself.
extension QueuePair {
    /// Makes `count` buffers of `length` bytes for sends and receives, owned by the queue pair (freed
    /// when it goes away, after the transport closed). With a data path that prefers DMA memory
    /// (``prefersDMABuffers``, `edma`) they are memory a DMA engine on this port reaches, and
    /// sends from them and receives into them move no byte with the CPU.
    /// - Throws: `invalidConfiguration` for a count or length below 1 or too large; `device` when the
    ///   device has no DMA memory left.
    public func makeBuffers(count: Int, length: Int) throws(TransportError) -> MessageBuffers {
        guard count > 0, length > 0, length <= Int.max - 63 else {
            throw .invalidConfiguration("buffers of queue pair \(index): asked for \(count) of \(length) bytes; ask for at least one buffer of at least one byte")
        }
        let stride = (length + 63) & ~63
        let (total, overflow) = count.multipliedReportingOverflow(by: stride)
        guard !overflow else {
            throw .invalidConfiguration("buffers of queue pair \(index): \(count) of \(length) bytes do not fit in memory; ask for fewer or smaller buffers")
        }
        let owned: OwnedBuffer
        let base: UnsafeMutableRawPointer
        var busAddress: UInt64?
        if prefersDMABuffers {
            let dma = try allocateDMAMemory(length: total)
            owned = OwnedBuffer(dma: dma)
            unsafe base = dma.region.address
            busAddress = dma.region.busAddress
        } else {
            unsafe base = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 4096)
            unsafe owned = OwnedBuffer(heap: base)
        }
        ownedBuffers.withLock { $0.append(owned) }
        return unsafe MessageBuffers(base: base, busAddress: busAddress, length: length, stride: stride, count: count)
    }

    /// Posts `buffer` (from ``makeBuffers(count:length:)``) for one incoming message; the completion
    /// carries `cookie` (e.g. the buffer's index). As ``postReceive(_:cookie:)`` of ordinary memory, but a DMA
    /// data path receives into the buffer itself.
    @inlinable
    public func postReceive(_ buffer: MessageBuffer, cookie: UInt64) throws(TransportError) {
        try unsafe post(buffer.bytes, busAddress: buffer.busAddress, cookie: cookie)
    }

    /// Sends the first `length` bytes of `buffer` (from ``makeBuffers(count:length:)``). As
    /// ``send(_:cookie:)``, but keep the buffer unchanged until its completion (`host`
    /// copies it at once, `edma` reads it by DMA later).
    /// - Throws: as `send`; `invalidConfiguration` when `length` exceeds the buffer.
    @inlinable
    public func send(_ buffer: MessageBuffer, length: Int, cookie: UInt64) throws(TransportError) {
        guard unsafe length <= buffer.bytes.count else { throw Self.beyondBuffer(length, buffer) }
        try unsafe path.pointee.send(self, UnsafeRawBufferPointer(start: buffer.bytes.baseAddress, count: max(length, 0)), busAddress: buffer.busAddress, cookie: cookie)
    }

    /// Sends up to `count` messages from buffers (from ``makeBuffers(count:length:)``) with one
    /// doorbell (`host`) or as one chain (`edma`); `message(i)` gives the i-th buffer, how many of its
    /// bytes to send and the cookie. Returns how many were sent, as ``sendBatch(count:_:)``.
    /// - Throws: as `sendBatch`; `invalidConfiguration` when a length exceeds its buffer (the
    ///   messages before it were sent).
    @inlinable
    public func sendBatch(count: Int, buffers message: (Int) -> (buffer: MessageBuffer, length: Int, cookie: UInt64)) throws(TransportError) -> Int {
        guard unsafe state.pointee.isUp else { counters.add(.txErrLinkDown); throw .linkDown(queuePair: index) }
        var beyond: TransportError?
        do throws(TransportError) {
            return try unsafe path.pointee.sendBatch(self, count: count) { i in
                let m = message(i)
                var n = max(m.length, 0)
                // Not read past the buffer: sent as an empty message, which the data path refuses.
                if unsafe n > m.buffer.bytes.count { beyond = Self.beyondBuffer(m.length, m.buffer); n = 0 }
                return unsafe (UnsafeRawBufferPointer(start: m.buffer.bytes.baseAddress, count: n), m.buffer.busAddress, m.cookie)
            }
        } catch .emptyMessage where beyond != nil {
            throw beyond!
        }
    }

    @usableFromInline
    static func beyondBuffer(_ length: Int, _ buffer: MessageBuffer) -> TransportError {
        unsafe .invalidConfiguration("a \(length)-byte message from a \(buffer.bytes.count)-byte buffer; send at most the buffer's length, or make larger buffers")
    }
}
