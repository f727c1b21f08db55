public import DWEDMA
public import PCIKit

/// How a send on the edma backend ended.
public enum EDMASendStatus: UInt8, Sendable, Equatable {
    /// The message is in the peer's buffer and the peer was told (DONE, tail).
    case ok
    /// The eDMA aborted the transfer; nothing was delivered for it. The channel recovered; the
    /// client may send again.
    case aborted
    /// The queue pair went down before the transfer ran.
    case linkDown
}

/// One finished send.
public struct EDMASendCompletion: Sendable, Equatable {
    public var queuePair: Int
    public var cookie: UInt64
    public var length: Int
    public var status: EDMASendStatus
    public init(queuePair: Int, cookie: UInt64, length: Int, status: EDMASendStatus) {
        self.queuePair = queuePair
        self.cookie = cookie
        self.length = length
        self.status = status
    }
}

/// Why a message was not queued.
public enum EDMAEnqueueResult: Sendable, Equatable {
    case queued
    /// The peer has no posted buffer free, or the chain being built is full: poll (and flush), then retry.
    case busy
    /// The message is larger than the buffer the peer posted.
    case tooLarge(capacity: Int)
    /// The peer wrote an impossible ring value; the queue pair must go down.
    case corrupt(EDMARingCorruption)
}

/// An eDMA data channel that can no longer be trusted to move data: the queue pairs on it must go
/// down (``EDMAChannelSender/failAll(_:)``) and the link be re-established.
public enum EDMALinkFault: Sendable, Equatable, CustomStringConvertible {
    /// Transfers were in flight and nothing completed for `bound` (the policy's `stall=`).
    case stalled(bound: Duration)
    /// The eDMA's registers read all ones (`ctrl` = 0xFFFFFFFF): the device or the link is gone.
    case engineGone

    public var description: String {
        switch self {
        case let .stalled(bound):
            return "the eDMA completed nothing for \(bound) with transfers in flight; the link is treated as down (raise stall= in the policy if the engine is just slow)"
        case .engineGone:
            return "the eDMA registers read all ones: the endpoint or the link is gone; check the endpoint and the cable"
        }
    }
}

/// What one ``EDMAChannelSender/poll(now:_:)`` found.
public struct EDMASendPoll: Sendable, Equatable {
    /// Sends reported to the handler.
    public var completed = 0
    /// Queue pairs whose peer must be notified (bit q = queue pair q): their tail moved.
    public var notify: UInt64 = 0
    /// Set when the channel is no longer usable: a link fault.
    public var fault: EDMALinkFault?
    /// The messages queued meanwhile were started as the next chain.
    public var chainStarted = false
    public init() {}
}

/// The sending side of every queue pair mapped to one eDMA data channel (QP → channel = qp % data
/// channels, hardware-reference §4.3): endpoint = a local WRITE channel, host = a remote READ channel.
///
/// Messages from any of its queue pairs are chained into one submission (one doorbell); completion
/// is in order. An abort completes the elements before the failing one, fails exactly the failing one
/// back to the client (``EDMASendStatus/aborted``) and queues the later ones again on the same posted
/// buffers (the channel recovers with a full start, DWEDMA), so the queue pair goes on. A channel that completes nothing for `stallBound` while busy
/// is reported as stalled (a link fault: the eDMA or the link is gone).
///
/// Not thread-safe: one thread drives a channel sender. The data path allocates nothing (all arrays are
/// sized at set-up).
public struct EDMAChannelSender<Local: RegisterSpace, Remote: RegisterSpace, Core: EDMACore, LL: RegisterSpace>: ~Copyable {
    @usableFromInline var channel: EDMAChannel<Core, LL>
    /// The register-level core, to tell an abort from a vanished device (all-ones reads).
    @usableFromInline let core: Core
    /// One ring sender per queue pair served, and their queue pair numbers.
    @usableFromInline var rings: [EDMARingSender<Local, Remote>]
    public let queuePairs: [Int]
    @usableFromInline var watch: EDMAProgressWatch

    // Chain being built, and the chain in flight: transfers plus (ring, cookie) per element.
    @usableFromInline var pending: [EDMATransfer]
    @usableFromInline var pendingOwners: [(ring: Int, cookie: UInt64)]
    @usableFromInline var flight: [EDMATransfer]
    @usableFromInline var flightOwners: [(ring: Int, cookie: UInt64)]
    @usableFromInline var flightSubmission: UInt64 = 0

    /// - Parameters:
    ///   - channel: the claimed eDMA channel (its LL capacity bounds a chain).
    ///   - core: the controller's core (``DWEDMAController/core``), read to check that the engine is there.
    ///   - rings: the transmit ring halves of `queuePairs`, in the same order.
    ///   - stallBound: no completion for this long while busy = stalled.
    public init(channel: consuming EDMAChannel<Core, LL>, core: Core, queuePairs: [Int], rings: [EDMARingSender<Local, Remote>],
                stallBound: Duration) {
        precondition(queuePairs.count == rings.count && !rings.isEmpty)
        precondition(queuePairs.allSatisfy { $0 >= 0 && $0 < EDMALayout.notifyMaxQueuePairs }, "at most 64 queue pairs (ntb_edma_db)")
        let capacity = min(channel.capacity, Int(EDMARing.capacity) * rings.count)
        self.channel = channel
        self.core = core
        self.rings = rings
        self.queuePairs = queuePairs
        watch = EDMAProgressWatch(bound: stallBound)
        pending = []; pending.reserveCapacity(capacity)
        flight = []; flight.reserveCapacity(capacity)
        pendingOwners = []; pendingOwners.reserveCapacity(capacity)
        flightOwners = []; flightOwners.reserveCapacity(capacity)
    }

    /// Points the channel's DONE/ABORT IMWr at an MSI vector (address, base data + vector), so that the
    /// driving thread can sleep on that interrupt instead of polling (see DWEDMA `useInterrupt`).
    public func useInterrupt(msiAddress: UInt64, baseData: UInt16, vector: UInt16) {
        channel.useInterrupt(msiAddress: msiAddress, baseData: baseData, vector: vector)
    }

    /// Messages that can be queued now for `rings[ring]`: the peer's posted buffers not reserved yet,
    /// at most the room left in the chain being built; nil if the peer's `head` is impossible.
    @inlinable
    public func room(ring: Int) -> Int? {
        guard let n = rings[ring].available() else { return nil }
        return min(Int(n), chainCapacity - pending.count)
    }

    /// The ring positions of `rings[ring]` (for statistics): reserved, completed.
    @inlinable
    public func positions(ring: Int) -> (issued: UInt32, completed: UInt32) {
        (rings[ring].issued, rings[ring].completed)
    }

    /// A new link generation (the driving thread, with the queue pairs' sends already failed back):
    /// forgets everything queued or in flight without reporting it and serves `rings` from now on. A
    /// chain still running in the engine is taken by the next ``poll(now:_:)`` and reported as nothing.
    public mutating func adopt(rings: [EDMARingSender<Local, Remote>]) {
        precondition(rings.count == self.rings.count, "a channel sender keeps its queue pairs")
        clearFlight()
        pending.removeAll(keepingCapacity: true)
        pendingOwners.removeAll(keepingCapacity: true)
        self.rings = rings
        watch = EDMAProgressWatch(bound: watch.bound)
    }

    /// Tells the peer of `rings[ring]` that the queue pair goes down: a LINK_DOWN descriptor on its
    /// next posted buffer, then the tail (RFC v3 patch 26 `ntb_edma_send_link_down`-style). Only when nothing is
    /// queued or in flight (the descriptor must come after every transfer) and a buffer is posted.
    /// - Returns: whether it was written (then notify the peer).
    public mutating func sendLinkDown(ring: Int) -> Bool {
        guard pending.isEmpty, flight.isEmpty, !channel.isBusy else { return false }
        guard case .success(_?) = rings[ring].reserve() else { return false }
        rings[ring].complete(flags: EDMARing.linkDownFlag)
        return true
    }

    /// Elements one chain may hold.
    @inlinable
    public var chainCapacity: Int { pending.capacity }
    /// Messages queued or in flight.
    @inlinable
    public var outstanding: Int { pending.count + flight.count }
    /// The channel's counters (submissions, elements, bytes, aborts).
    @inlinable
    public var counters: EDMAChannelCounters { channel.counters }
    /// The direction's shared status word the last ``poll(now:_:)`` read (v0), for the notify channel.
    @inlinable
    public var lastSharedStatus: EDMASharedStatus? { channel.lastSharedStatus }

    /// Queues `length` bytes at bus address `source` for queue pair `rings[ring]`: reserves the
    /// peer's next posted buffer and writes the length into the peer's descriptor. Call ``flush()``
    /// to start queued messages.
    @inlinable
    public mutating func enqueue(ring: Int, source: UInt64, length: UInt32, cookie: UInt64) -> EDMAEnqueueResult {
        precondition(length > 0, "empty message")
        guard pending.count < chainCapacity else { return .busy }
        switch rings[ring].reserve() {
        case let .failure(corruption):
            return .corrupt(corruption)
        case .success(nil):
            return .busy
        case let .success(buffer?):
            guard length <= buffer.capacity else {
                rings[ring].unreserve(1)
                return .tooLarge(capacity: Int(buffer.capacity))
            }
            rings[ring].setLength(length, of: buffer)
            pending.append(EDMATransfer(source: source, destination: buffer.busAddress, length: length))
            pendingOwners.append((ring, cookie))
            return .queued
        }
    }

    /// Starts the queued messages as one chain if the channel is idle; otherwise they start after the
    /// chain in flight completes (``poll(now:_:)`` flushes).
    /// - Returns: whether a chain was started.
    @discardableResult
    @inlinable
    public mutating func flush() -> Bool {
        guard !pending.isEmpty, !channel.isBusy else { return false }
        // One read-back of the last length written to each peer ring before the data moves.
        // (The last pending element of a ring holds its latest reservation, issued − 1.)
        var flushed: UInt64 = 0
        for owner in pendingOwners where flushed & (1 << UInt64(owner.ring)) == 0 {
            flushed |= 1 << UInt64(owner.ring)
            rings[owner.ring].flushLengths(last: rings[owner.ring].issued &- 1)
        }
        let submission: UInt64
        do throws(EDMAError) {
            submission = try unsafe pending.withUnsafeBufferPointer { (b) throws(EDMAError) -> UInt64 in
                try unsafe channel.submit(b)
            }
        } catch {
            // Busy, empty, too long and zero length are excluded above and by enqueue.
            preconditionFailure("eDMA submit refused a checked chain: \(error)")
        }
        flightSubmission = submission
        swap(&pending, &flight)
        swap(&pendingOwners, &flightOwners)
        return true
    }

    /// Checks the channel: reports finished sends to `handle`, writes DONE and the tail into each
    /// peer ring, starts the next chain, and reports which queue pairs' peers to notify.
    @inlinable
    public mutating func poll(now: ContinuousClock.Instant, _ handle: (EDMASendCompletion) -> Void) -> EDMASendPoll {
        var result = EDMASendPoll()
        let completion = channel.poll()
        switch completion {
        case nil where channel.lastPollHadNoResponse:
            // `int_status` read all ones: the device or the link is gone (DWEDMA `noResponse`).
            result.fault = .engineGone
            return result
        case nil:
            break
        case .done?:
            // DONE on every descriptor, then one barrier and one tail per ring.
            for i in 0..<flight.count {
                let owner = flightOwners[i]
                rings[owner.ring].markDone()
                result.notify |= 1 << UInt64(queuePairs[owner.ring])
            }
            for r in 0..<rings.count where result.notify & (1 << UInt64(queuePairs[r])) != 0 { rings[r].publishTail() }
            for i in 0..<flight.count {
                let owner = flightOwners[i]
                handle(EDMASendCompletion(queuePair: queuePairs[owner.ring], cookie: owner.cookie,
                                          length: Int(flight[i].length), status: .ok))
            }
            result.completed = flight.count
            clearFlight()
        case .aborted? where core.registers.load32(at: EDMARegisters.ctrl) == 0xFFFF_FFFF:
            // All-ones reads (the status said "abort" on every channel): the device is gone, not the
            // transfer. Nothing is retried; the caller takes the queue pairs down.
            result.fault = .engineGone
            return result
        case let .aborted(abort)?:
            // The engine walks the chain in order: elements before the failing one landed, the failing
            // one did not, the ones after never ran. Complete the first, fail exactly the second, and
            // queue the rest again (ahead of anything pending). Unknown position: fail the whole chain.
            let good = min(abort.element ?? 0, flight.count)
            let failedEnd = abort.element == nil ? flight.count : min(good + 1, flight.count)
            for i in 0..<good {
                let owner = flightOwners[i]
                rings[owner.ring].complete()
                result.notify |= 1 << UInt64(queuePairs[owner.ring])
                handle(EDMASendCompletion(queuePair: queuePairs[owner.ring], cookie: owner.cookie,
                                          length: Int(flight[i].length), status: .ok))
            }
            for i in good..<failedEnd {
                let owner = flightOwners[i]
                handle(EDMASendCompletion(queuePair: queuePairs[owner.ring], cookie: owner.cookie, length: 0, status: .aborted))
            }
            result.completed = failedEnd
            requeueAfterAbort(from: good, retryFrom: failedEnd, handle)
        }
        if watch.observe(pending: channel.isBusy, progressed: completion != nil, now: now) {
            result.fault = .stalled(bound: watch.bound)
        }
        if completion != nil { result.chainStarted = flush() }
        return result
    }

    /// After an abort: gives back every reservation from flight element `from` on (and of everything
    /// pending), then reserves again, in order, for flight elements `retryFrom...` and the pending
    /// ones, which become the new pending chain. A message that no longer fits the buffer it moves to
    /// (the peer posted buffers of different sizes) is failed as aborted too.
    @usableFromInline
    mutating func requeueAfterAbort(from: Int, retryFrom: Int, _ handle: (EDMASendCompletion) -> Void) {
        var given = [UInt32](repeating: 0, count: rings.count)
        for i in from..<flight.count { given[flightOwners[i].ring] += 1 }
        for owner in pendingOwners { given[owner.ring] += 1 }
        for r in 0..<rings.count where given[r] > 0 { rings[r].unreserve(given[r]) }
        // The retried elements go first: rebuild `pending` from flight[retryFrom...] + pending, using
        // `flight` as scratch once it is emptied.
        var retry = flight.count - retryFrom
        for i in 0..<retry { flight[i] = flight[retryFrom + i]; flightOwners[i] = flightOwners[retryFrom + i] }
        flight.removeLast(flight.count - retry)
        flightOwners.removeLast(flightOwners.count - retry)
        flight.append(contentsOf: pending)
        flightOwners.append(contentsOf: pendingOwners)
        retry = flight.count
        pending.removeAll(keepingCapacity: true)
        pendingOwners.removeAll(keepingCapacity: true)
        for i in 0..<retry {
            let owner = flightOwners[i]
            var transfer = flight[i]
            switch rings[owner.ring].reserve() {
            case let .success(buffer?) where transfer.length <= buffer.capacity:
                rings[owner.ring].setLength(transfer.length, of: buffer)
                transfer.destination = buffer.busAddress
                pending.append(transfer)
                pendingOwners.append(owner)
            case .success(_?):
                rings[owner.ring].unreserve(1)
                handle(EDMASendCompletion(queuePair: queuePairs[owner.ring], cookie: owner.cookie, length: 0, status: .aborted))
            case .success(nil), .failure:
                handle(EDMASendCompletion(queuePair: queuePairs[owner.ring], cookie: owner.cookie, length: 0, status: .aborted))
            }
        }
        clearFlight()
    }

    @inlinable
    mutating func clearFlight() {
        flight.removeAll(keepingCapacity: true)
        flightOwners.removeAll(keepingCapacity: true)
    }

    /// The queue pairs went down: every queued or in-flight message is returned as ``EDMASendStatus/linkDown``
    /// (an in-flight chain keeps running into buffers the peer no longer watches) and the rings reset.
    @inlinable
    public mutating func failAll(_ handle: (EDMASendCompletion) -> Void) {
        for i in 0..<flight.count {
            let o = flightOwners[i]
            handle(EDMASendCompletion(queuePair: queuePairs[o.ring], cookie: o.cookie, length: 0, status: .linkDown))
        }
        for i in 0..<pending.count {
            let o = pendingOwners[i]
            handle(EDMASendCompletion(queuePair: queuePairs[o.ring], cookie: o.cookie, length: 0, status: .linkDown))
        }
        clearFlight()
        pending.removeAll(keepingCapacity: true)
        pendingOwners.removeAll(keepingCapacity: true)
        for r in 0..<rings.count { rings[r].reset() }
    }
}

/// One received message, or the end of the queue pair.
public struct EDMAReceiveCompletion: Sendable, Equatable {
    public enum Status: UInt8, Sendable {
        case ok
        /// The peer took the queue pair down; the buffer holds nothing.
        case linkDown
    }
    public var cookie: UInt64
    public var length: Int
    public var status: Status
    public init(cookie: UInt64, length: Int, status: Status) {
        self.cookie = cookie
        self.length = length
        self.status = status
    }
}

/// The receiving side of one queue pair on the edma backend: posts the client's buffers by bus
/// address into the peer's ring and reports filled ones in order. The payload is written by the
/// peer's (or, on the host, the endpoint's) eDMA straight into the posted buffers: no CPU copy.
public struct EDMAQueueReceiver<Local: RegisterSpace, Remote: RegisterSpace> {
    @usableFromInline var ring: EDMARingReceiver<Local, Remote>
    @usableFromInline var cookies: [UInt64]

    public init(ring: EDMARingReceiver<Local, Remote>) {
        self.ring = ring
        cookies = Array(repeating: 0, count: Int(EDMARing.entries))
    }

    /// Buffers that can still be posted.
    @inlinable
    public var postable: Int { Int(ring.postable) }
    /// Buffers posted and not yet reported.
    @inlinable
    public var outstanding: Int { Int(ring.outstanding) }

    /// Posts a DMA buffer (`busAddress` as the eDMA sees it; host: a PCIe address, endpoint: local).
    /// Call ``publish()`` after one or more posts.
    /// - Returns: false when 127 buffers are already posted.
    @inlinable
    public mutating func post(busAddress: UInt64, length: Int, cookie: UInt64) -> Bool {
        precondition(length > 0 && length <= Int(UInt32.max))
        guard ring.postable > 0 else { return false }
        let index = ring.post(busAddress: busAddress, length: UInt32(length))
        cookies[EDMARing.slot(index)] = cookie
        return true
    }

    /// Makes the posts visible to the peer (barrier, then `head`).
    @inlinable
    public func publish() { ring.publish() }

    /// Reports up to `limit` filled buffers (RFC v3 patch 26 polls 32 per pass).
    /// - Returns: the number reported, or a corruption (the queue pair must go down).
    @inlinable
    public mutating func poll(limit: Int = 32, _ handle: (EDMAReceiveCompletion) -> Void) -> Result<Int, EDMARingCorruption> {
        var n = 0
        while n < limit {
            switch ring.next() {
            case .none:
                return .success(n)
            case let .received(index, length):
                handle(EDMAReceiveCompletion(cookie: cookies[EDMARing.slot(index)], length: length, status: .ok))
            case let .linkDown(index):
                handle(EDMAReceiveCompletion(cookie: cookies[EDMARing.slot(index)], length: 0, status: .linkDown))
            case let .corrupt(why):
                return .failure(EDMARingCorruption(why))
            }
            n += 1
        }
        return .success(n)
    }

    /// Returns every posted buffer (link down) and resets the ring.
    @inlinable
    public mutating func failAll(_ handle: (EDMAReceiveCompletion) -> Void) {
        var index = ring.consumed
        while index != ring.produced {
            handle(EDMAReceiveCompletion(cookie: cookies[EDMARing.slot(index)], length: 0, status: .linkDown))
            index &+= 1
        }
        ring.reset()
    }
}

/// Host → endpoint notification (hardware-reference §4.3): flag the queue pair in the notification page
/// through the eDMA window, then DMA 4 bytes to `db_base` on the dedicated notify read channel; its
/// completion interrupt makes the endpoint scan the page (``EDMANotifyPage/collect(_:queuePairs:)``).
public struct EDMAHostNotifier<Page: RegisterSpace, Core: EDMACore, LL: RegisterSpace>: ~Copyable {
    @usableFromInline let page: Page
    @usableFromInline var channel: EDMAChannel<Core, LL>
    @usableFromInline let transfer: EDMATransfer
    /// Notify DMAs started (the rest rode on one in flight).
    public var transfers: UInt64 { _transfers }
    @usableFromInline var _transfers: UInt64 = 0
    /// When the notify DMA in flight was started (after its doorbell write).
    @usableFromInline var startedAt = ContinuousClock.Instant.now

    /// - Parameters:
    ///   - page: the notification page as the host sees it (eDMA window offset P).
    ///   - channel: the notify read channel (the last published LL region).
    ///   - source: bus address of 4 bytes of host memory (what is written to `target` does not matter).
    ///   - target: `db_base` from the validated info.
    public init(page: Page, channel: consuming EDMAChannel<Core, LL>, source: UInt64, target: UInt64) {
        self.page = page
        self.channel = channel
        transfer = EDMATransfer(source: source, destination: target, length: 4)
    }

    /// Flags queue pairs `bits` and makes sure a notify DMA completes after the flags were written.
    /// A DMA still running will complete after them, so a new one is started only when the channel
    /// is idle (its previous completion is taken first).
    ///
    /// `observed`: a data channel's read of the same `int_status` (v0: one word for every read
    /// channel), begun at `readAfter`. If it began after our DMA in flight was started and shows it
    /// DONE, that DMA finished before the flags below were written, and no register is read here: a
    /// read right after the data channel's own register writes would wait for them to land.
    @inlinable
    public mutating func notify(_ bits: UInt64, observed: EDMASharedStatus? = nil, readAfter: ContinuousClock.Instant? = nil) {
        var b = bits
        while b != 0 {
            let qp = b.trailingZeroBitCount
            EDMANotifyPage.raise(page, queuePair: qp)
            b &= b - 1
        }
        Barrier.write()
        if let observed, let readAfter, readAfter > startedAt, channel.poll(observed: observed) != nil {
            // Finished in the data channel's read: no register read here.
        } else {
            _ = channel.poll()
        }
        guard !channel.isBusy else { return }
        do throws(EDMAError) {
            _ = try channel.submit(transfer)
            _transfers &+= 1
            startedAt = .now
        } catch {
            preconditionFailure("notify submit refused: \(error)")
        }
    }
}
