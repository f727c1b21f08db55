public import NTBHardware

/// How a queue pair moves messages for one channel family: ``FrameDataPath`` (the CPU copies into
/// frames, ``FrameChannel``) or ``DMADataPath`` (a DMA engine moves buffers, ``DMAChannel``). A
/// channel chooses its data path through ``TransportChannel/DataPath``, so a queue pair specialises
/// to one of the two at compile time: no branch on the backend, no existential.
///
/// A data path holds only its own state (it lives behind a pointer of the queue pair, apart from
/// the shared ``QueuePair`` state it reaches through `q`) and is driven by the queue pair's thread.
/// Clients never call it: they use ``QueuePair``.
public protocol QueuePairDataPath {
    associatedtype Channel: TransportChannel
    /// Whether messages move best from DMA memory (``QueuePair/makeBuffers(count:length:)`` then
    /// allocates memory a DMA engine reaches, and receives land in it without a copy).
    static var prefersDMABuffers: Bool { get }
    /// Whether the peer signals that it consumed our sends (a doorbell or completion interrupt). Frame
    /// channels: no (Linux's receiver publishes its tail and rings nothing), so a sender waiting for
    /// ring space re-checks on a short timer, as `ntb_netdev`'s tx reaper timer does.
    static var peerSignalsConsumption: Bool { get }

    /// The state before any channel was adopted.
    init()
    /// Frees what ``init()`` and ``adopt(transmitCapacity:)`` allocated.
    func deallocate()
    /// A new generation: the send FIFO holds `transmitCapacity` slots now, everything in flight was
    /// returned; forget per-generation state.
    mutating func adopt(transmitCapacity: Int)

    /// Sends one message (``QueuePair/send(_:busAddress:cookie:)``).
    mutating func send<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) where B.Channel == Channel
    /// Writes one message of a batch (``sendBatch(_:count:_:)``); it reaches the peer at
    /// ``publishBatch(_:)``. The message was admitted and a transmit entry is free.
    /// - Throws: `ringFull` when the channel has no room after all (the batch ends there), or why
    ///   the message cannot go.
    mutating func stage<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) where B.Channel == Channel
    /// Makes the staged messages go (one barrier and doorbell, or one DMA chain).
    mutating func publishBatch<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel
    /// Takes what the peer or the engine finished, so that `q.free` is up to date.
    mutating func reap<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel
    /// Reports finished sends and received messages of an up queue pair (``QueuePair/poll(limit:_:)``);
    /// `peerDown`: the peer took the queue pair down (or it faulted), the queue pair fails what is in flight.
    mutating func poll<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, limit: Int, inPlace: Bool, _ frame: (UnsafeRawBufferPointer) -> Void, _ handle: (Completion) -> Void) -> (reported: Int, peerDown: Bool) where B.Channel == Channel
    /// Whether a poll of an up queue pair would report something now (cheap).
    mutating func hasWork<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) -> Bool where B.Channel == Channel
    /// At link down: reports the sends in flight whose outcome is known (they finished before the
    /// link dropped); the queue pair fails the rest. Returns how many it reported.
    mutating func settleSends<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ handle: (Completion) -> Void) -> Int where B.Channel == Channel
    /// Tells the peer this up queue pair goes down (``QueuePair/shutdown(_:)``).
    mutating func sendLinkDown<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel
    /// The client took back every posted receive buffer (``QueuePair/removeReceives(_:)``).
    mutating func receivesRemoved()
    /// A sleep on the doorbell took this queue pair's bit.
    mutating func doorbellTaken()
}

extension QueuePairDataPath {
    /// Checks a message and makes room for it (`ntb_transport_tx_enqueue`'s checks).
    /// - Throws: `linkDown`, `emptyMessage`, `messageTooLarge`, `ringFull`.
    @inlinable @inline(__always)
    mutating func admitOne<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ bytes: UnsafeRawBufferPointer) throws(TransportError) where B.Channel == Channel {
        try unsafe q.admit(bytes)
        if q.free == 0 {
            reap(q)
            guard q.free > 0 else { q.counters.add(.txRingFull); throw .ringFull(queuePair: q.index) }
        }
    }

    /// Sends up to `count` messages at once (one doorbell, or one DMA chain); the queue pair link is
    /// up. Returns how many were sent: fewer than `count` when the ring filled up (tx_ring_full).
    /// - Throws: why message i cannot go; the messages before it were sent.
    @inlinable
    mutating func sendBatch<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, count: Int, _ message: (Int) -> (bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64)) throws(TransportError) -> Int where B.Channel == Channel {
        if q.free < count { reap(q) }
        var sent = 0
        while sent < count {
            if q.free == 0 { q.counters.add(.txRingFull); break }
            let m = unsafe message(sent)
            do throws(TransportError) {
                try unsafe q.admit(m.bytes)
                try unsafe stage(q, m.bytes, busAddress: m.busAddress, cookie: m.cookie)
            } catch .ringFull {
                break
            } catch {
                if sent > 0 { publishBatch(q) }
                throw error
            }
            sent &+= 1
        }
        if sent > 0 { publishBatch(q) }
        return sent
    }
}
