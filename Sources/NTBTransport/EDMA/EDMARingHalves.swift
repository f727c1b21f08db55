public import PCIKit

/// What the receive half of a queue pair found at its next descriptor.
public enum EDMAReceiveEvent: Equatable, Sendable {
    /// Nothing completed yet.
    case none
    /// The buffer posted as `index` (the free-running post number) holds `length` bytes.
    case received(index: UInt32, length: Int)
    /// The peer took the queue pair down (`LINK_DOWN_FLAG`); the descriptor carries no data.
    case linkDown(index: UInt32)
    /// The peer wrote something impossible (`tail` beyond the posts, a completed descriptor without
    /// DONE, a length beyond the posted buffer): the queue pair must go down; nothing is trusted.
    case corrupt(String)
}

/// The receive half of one queue pair's edma rings on one side (hardware-reference §4.3).
///
/// Posting: the receiver writes `len` and `addr` (its own buffer's bus address) into the PEER's copy of
/// the descriptor, then (after a barrier) its post count into the peer's `head`. Completion: the sender
/// writes `len`, `flags` and `tail` into OUR copy; we read only local memory.
///
/// `Local` is our copy of the ring (in our inbound window buffer), `Remote` the peer's copy (through
/// our outbound window); both are ring-sized views (``EDMARing/size``).
public struct EDMARingReceiver<Local: RegisterSpace, Remote: RegisterSpace> {
    @usableFromInline let local: Local
    @usableFromInline let remote: Remote
    /// Buffers posted (written to the peer's `head`).
    public var produced: UInt32 { _produced }
    @usableFromInline var _produced: UInt32 = 0
    /// Completions taken.
    public var consumed: UInt32 { _consumed }
    @usableFromInline var _consumed: UInt32 = 0
    /// What we posted per slot, to check the sender's `len` (never trust the peer).
    @usableFromInline var postedLengths: [UInt32]

    public init(local: Local, remote: Remote) {
        precondition(local.length >= EDMARing.size && remote.length >= EDMARing.size, "ring views must hold a whole ntb_edma_ring")
        self.local = local
        self.remote = remote
        postedLengths = Array(repeating: 0, count: Int(EDMARing.entries))
    }

    /// Buffers that can still be posted (127 at most outstanding).
    @inlinable
    public var postable: UInt32 { EDMARing.postable(produced: produced, consumed: consumed) }
    /// Buffers posted and not completed.
    @inlinable
    public var outstanding: UInt32 { EDMARing.used(ahead: produced, behind: consumed) }

    /// Writes the next descriptor for a buffer of `length` bytes at `busAddress` (not yet visible to
    /// the peer: call ``publish()`` after one or more posts).
    /// - Returns: the post's free-running index (reported again by ``next()``).
    /// - Precondition: ``postable`` > 0 and `length` > 0.
    @discardableResult
    @inlinable
    public mutating func post(busAddress: UInt64, length: UInt32) -> UInt32 {
        precondition(postable > 0, "receive ring full")
        precondition(length > 0, "empty receive buffer")
        let index = produced
        let d = EDMARing.descriptorOffset(index)
        // Our copy's flags are what the sender sets; clear the previous round's DONE first.
        local.store32(0, at: d + EDMARing.flagsOffset)
        remote.store32(length, at: d + EDMARing.lengthOffset)
        remote.store64(busAddress, at: d + EDMARing.addressOffset)
        postedLengths[EDMARing.slot(index)] = length
        _produced &+= 1
        return index
    }

    /// Makes every post visible: barrier, then the post count into the peer's `head`
    /// (`dma_wmb`, then `rx_prod` to the peer's head, as RFC v3 patch 26).
    @inlinable
    public func publish() {
        Barrier.write()
        remote.store32(produced, at: EDMARing.headOffset)
    }

    /// Takes the next completion, if the sender reported one.
    @inlinable
    public mutating func next() -> EDMAReceiveEvent {
        let tail = local.load32(at: EDMARing.tailOffset)
        guard let ready = EDMARing.completable(tail: tail, consumed: consumed, produced: produced) else {
            return .corrupt("the peer's tail \(tail) is beyond the \(produced) buffers posted (\(consumed) completed)")
        }
        if ready == 0 { return .none }
        // Read the descriptor only after seeing the tail (the sender wrote it last).
        Barrier.dmaRead()
        let index = consumed
        let d = EDMARing.descriptorOffset(index)
        let flags = local.load32(at: d + EDMARing.flagsOffset)
        if flags & EDMARing.linkDownFlag != 0 {
            _consumed &+= 1
            return .linkDown(index: index)
        }
        guard flags & EDMARing.doneFlag != 0 else {
            return .corrupt("descriptor \(index) is behind the peer's tail but has no DONE flag (flags \(hex(UInt64(flags))))")
        }
        let length = local.load32(at: d + EDMARing.lengthOffset)
        let posted = postedLengths[EDMARing.slot(index)]
        guard length <= posted else {
            return .corrupt("descriptor \(index) reports \(length) bytes for a buffer of \(posted)")
        }
        _consumed &+= 1
        return .received(index: index, length: Int(length))
    }

    /// Forgets every post (the queue pair went down; the caller returns the buffers).
    public mutating func reset() {
        _produced = 0
        _consumed = 0
    }
}

/// A buffer the peer posted, reserved by the sender.
public struct EDMAPostedBuffer: Equatable, Sendable {
    /// The free-running descriptor index.
    public let index: UInt32
    /// The receiver's buffer, as the eDMA addresses it (the transfer's destination).
    public let busAddress: UInt64
    /// Its size: at most this many bytes may be sent into it.
    public let capacity: UInt32

    @usableFromInline init(index: UInt32, busAddress: UInt64, capacity: UInt32) {
        self.index = index
        self.busAddress = busAddress
        self.capacity = capacity
    }
}

/// The transmit half of one queue pair's edma rings on one side (hardware-reference §4.3).
///
/// The sender takes the peer's posted buffers from OUR copy (`head`, `addr`, `len`: written by the
/// receiver), writes the final `len` into the PEER's copy before the transfer, and after the transfer
/// `flags` (DONE) and then `tail` into the peer's copy. Completions are in order.
public struct EDMARingSender<Local: RegisterSpace, Remote: RegisterSpace> {
    @usableFromInline let local: Local
    @usableFromInline let remote: Remote
    /// Buffers reserved (transfers started or about to be).
    public var issued: UInt32 { _issued }
    @usableFromInline var _issued: UInt32 = 0
    /// Transfers completed (written to the peer's `tail`).
    public var completed: UInt32 { _completed }
    @usableFromInline var _completed: UInt32 = 0

    public init(local: Local, remote: Remote) {
        precondition(local.length >= EDMARing.size && remote.length >= EDMARing.size, "ring views must hold a whole ntb_edma_ring")
        self.local = local
        self.remote = remote
    }

    /// Transfers reserved and not completed.
    @inlinable
    public var inFlight: UInt32 { EDMARing.used(ahead: issued, behind: completed) }

    /// Buffers the peer posted that are not reserved yet, or nil if its `head` is impossible.
    @inlinable
    public func available() -> UInt32? {
        EDMARing.sendable(head: local.load32(at: EDMARing.headOffset), issued: issued, completed: completed)
    }

    /// Reserves the next posted buffer.
    /// - Returns: the buffer, `.none` when the peer posted none, or `.corrupt` with what is wrong.
    @inlinable
    public mutating func reserve() -> Result<EDMAPostedBuffer?, EDMARingCorruption> {
        guard let n = available() else {
            return .failure(EDMARingCorruption("the peer's head \(local.load32(at: EDMARing.headOffset)) is impossible (\(issued) reserved, \(completed) completed)"))
        }
        if n == 0 { return .success(nil) }
        Barrier.dmaRead()
        let d = EDMARing.descriptorOffset(issued)
        let capacity = local.load32(at: d + EDMARing.lengthOffset)
        let address = local.load64(at: d + EDMARing.addressOffset)
        guard capacity > 0, address != 0 else {
            return .failure(EDMARingCorruption("the peer posted descriptor \(issued) with length \(capacity) at \(hex(address))"))
        }
        let buffer = EDMAPostedBuffer(index: issued, busAddress: address, capacity: capacity)
        _issued &+= 1
        return .success(buffer)
    }

    /// Writes the message length into the peer's descriptor before the transfer starts (RFC v3 patch 26: "write
    /// final len (+ read-back)"). The read-back is ``flushLengths(last:)``, once per chain: posted
    /// writes arrive in order, so reading back the last one orders all of them before the data.
    @inlinable
    public func setLength(_ length: UInt32, of buffer: EDMAPostedBuffer) {
        precondition(length <= buffer.capacity, "\(length) bytes into a \(buffer.capacity)-byte buffer")
        remote.store32(length, at: EDMARing.descriptorOffset(buffer.index) + EDMARing.lengthOffset)
    }

    /// Reads back the length last written for `index` (flushes the posted length writes).
    @inlinable
    public func flushLengths(last index: UInt32) {
        _ = remote.load32(at: EDMARing.descriptorOffset(index) + EDMARing.lengthOffset)
    }

    /// Reports the oldest in-flight transfer done: `flags` (DONE, or LINK_DOWN) into the peer's
    /// descriptor, barrier, then the completion count into the peer's `tail`. The caller notifies the
    /// peer afterwards.
    /// - Precondition: a transfer is in flight.
    @inlinable
    public mutating func complete(flags: UInt32 = EDMARing.doneFlag) {
        markDone(flags: flags)
        publishTail()
    }

    /// Writes `flags` into the peer's descriptor of the oldest in-flight transfer and counts it
    /// completed, without publishing the tail: for batches (then one ``publishTail()``).
    @inlinable
    public mutating func markDone(flags: UInt32 = EDMARing.doneFlag) {
        precondition(inFlight > 0, "no transfer in flight")
        remote.store32(flags, at: EDMARing.descriptorOffset(completed) + EDMARing.flagsOffset)
        _completed &+= 1
    }

    /// Barrier, then the completion count into the peer's `tail` (the flags before it are visible first).
    @inlinable
    public func publishTail() {
        Barrier.write()
        remote.store32(completed, at: EDMARing.tailOffset)
    }

    /// Gives back the `count` most recent reservations (their transfers never ran: an abort, or a
    /// message too large for the buffer); the next ``reserve()`` takes the same buffers again.
    /// - Precondition: `count` ≤ transfers in flight.
    @inlinable
    public mutating func unreserve(_ count: UInt32) {
        precondition(count <= inFlight, "unreserve \(count) of \(inFlight)")
        _issued &-= count
    }

    /// Forgets every reservation (the queue pair went down).
    public mutating func reset() {
        _issued = 0
        _completed = 0
    }
}

/// The peer wrote something impossible into a ring.
public struct EDMARingCorruption: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Host → endpoint notifications through the notification page (`ntb_edma_db`, hardware-reference §4.3).
public enum EDMANotifyPage {
    /// Host: flags queue pair `qp` in the page at offset P of the eDMA window (`page` is the page's
    /// view). The host then DMAs 4 bytes to `db_base` on the notify read channel, whose completion
    /// interrupt makes the endpoint call ``collect(_:queuePairs:)``.
    @inlinable
    public static func raise<Page: RegisterSpace>(_ page: Page, queuePair qp: Int) {
        page.store32(1, at: EDMALayout.notifyFlagOffset(queuePair: qp))
    }

    /// Endpoint: takes and clears every raised flag of the first `queuePairs` queue pairs.
    /// - Returns: bit q set for each flagged queue pair q.
    @inlinable
    public static func collect<Page: RegisterSpace>(_ page: Page, queuePairs: Int) -> UInt64 {
        precondition(queuePairs >= 0 && queuePairs <= EDMALayout.notifyMaxQueuePairs)
        var bits: UInt64 = 0
        for qp in 0..<queuePairs {
            let at = EDMALayout.notifyFlagOffset(queuePair: qp)
            if page.load32(at: at) != 0 {
                page.store32(0, at: at)
                bits |= 1 << UInt64(qp)
            }
        }
        return bits
    }
}

/// Which eDMA channel carries what (hardware-reference §4.3): data channel `qp % dataChannels`; the read
/// channel after the data channels is the host → endpoint notify channel.
public enum EDMAChannelMap {
    @inlinable
    public static func dataChannel(queuePair qp: Int, dataChannels: Int) -> Int {
        precondition(qp >= 0 && dataChannels > 0)
        return qp % dataChannels
    }
    @inlinable
    public static func notifyChannel(dataChannels: Int) -> Int { dataChannels }
}

/// Detects an eDMA that stopped completing: transfers pending and no completion for `bound`.
public struct EDMAProgressWatch: Sendable {
    public let bound: Duration
    @usableFromInline var since: ContinuousClock.Instant?

    public init(bound: Duration) { self.bound = bound }

    /// Records one look at a channel. `pending`: transfers are in flight; `progressed`: at least one
    /// completed since the last look.
    /// - Returns: true when the channel has had work pending and completed nothing for `bound`.
    @inlinable
    public mutating func observe(pending: Bool, progressed: Bool, now: ContinuousClock.Instant) -> Bool {
        guard pending else { since = nil; return false }
        if progressed || since == nil { since = now; return false }
        return since!.duration(to: now) >= bound
    }
}
