public import NTBHardware

/// The data path of DMA channels (`edma`, RFC v3): a send is queued on the engine by bus address
/// (or through a bounce buffer) and completes when its DMA did, by tag (not necessarily in order);
/// posted receive buffers are offered to the peer's ring, whose engine fills them.
@frozen @safe
public struct DMADataPath<Channel: DMAChannel>: QueuePairDataPath {
    /// Per send slot: 0 = in flight, 1 = done, 2 = aborted (sends finish by tag, the slot).
    @usableFromInline var status: UnsafeMutablePointer<UInt8>
    @usableFromInline var statusCapacity = 0
    /// Posted receive buffers (from the oldest) offered to the peer's ring.
    @usableFromInline var offered = 0
    /// The channel reported a fault or corruption: the next poll takes the queue pair down.
    @usableFromInline var faulted = false
    /// Channels whose completions raise our doorbell, in interrupt mode: the completion interrupt
    /// was taken and the engine's status not read since; when the status was last read.
    @usableFromInline var completionSignalled = true
    @usableFromInline var lastStatusLook = ContinuousClock.Instant.now

    @inlinable public static var prefersDMABuffers: Bool { true }
    @inlinable public static var peerSignalsConsumption: Bool { true }

    public init() {
        unsafe status = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        unsafe status.initialize(to: 0)
    }

    public func deallocate() { unsafe status.deallocate() }

    public mutating func adopt(transmitCapacity: Int) {
        if transmitCapacity != statusCapacity {
            deallocate()
            statusCapacity = transmitCapacity
            unsafe status = UnsafeMutablePointer<UInt8>.allocate(capacity: max(transmitCapacity, 1))
        }
        unsafe status.initialize(repeating: 0, count: max(statusCapacity, 1))
        offered = 0
        faulted = false
    }

    /// Interrupt mode: the longest a queue pair goes without reading the engine's status while
    /// sends are in flight, interrupt or not (the stall watch needs looks; a lost interrupt costs
    /// at most this).
    @inlinable static var statusLookInterval: Duration { .milliseconds(1) }

    // MARK: Sends

    @inlinable
    public mutating func send<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) where B.Channel == Channel {
        try unsafe admitOne(q, bytes)
        try unsafe stage(q, bytes, busAddress: busAddress, cookie: cookie)
        publishBatch(q)
    }

    /// Starts the queued messages as one chain (if the engine is idle; else when the chain in
    /// flight completes).
    @inlinable
    public mutating func publishBatch<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        if q.channel.startTransmit() { q.counters.add(.dmaChains) }
    }

    /// Queues one message in the next send slot (its tag).
    @inlinable @inline(__always)
    public mutating func stage<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) where B.Channel == Channel {
        let slot = unsafe q.state.pointee.sends.nextSlot
        if let refusal = unsafe q.channel.enqueueTransmit(bytes, busAddress: busAddress, tag: slot) {
            switch refusal {
            case .busy:
                q.counters.add(.txRingFull)
                throw .ringFull(queuePair: q.index)
            case let .tooLarge(capacity):
                throw .messageTooLarge(length: bytes.count, maxPayload: capacity)
            case .corrupt:
                q.counters.add(.txErrIndex)
                faulted = true
                throw .linkDown(queuePair: q.index)
            }
        }
        unsafe q.state.pointee.sends.push(cookie: cookie, length: bytes.count)
        unsafe status[slot] = 0
        q.counters.add(.txPackets)
        q.counters.add(.txBytes, UInt64(bytes.count))
        q.counters.add(.txAsync)
    }

    @inlinable @inline(__always)
    public mutating func reap<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        guard unsafe q.state.pointee.sends.pending > 0 else { return }
        let now = ContinuousClock.now
        if unsafe q.state.pointee.waitMode == .interrupt && q.channel.completionRaisesDoorbell {
            // Linux reads int_status only in the eDMA interrupt handler (dw_edma_interrupt): read
            // the engine's status after our completion interrupt, and at least every
            // ``statusLookInterval`` (stall detection). A status read crosses PCIe and first waits
            // for our own posted register writes to land, so it is not done per send.
            if q.device.takeDoorbells(q.doorbellBit) != 0 { completionSignalled = true }
            guard completionSignalled || now - lastStatusLook >= Self.statusLookInterval else { return }
            completionSignalled = false
            lastStatusLook = now
            q.counters.add(.dmaStatusReads)
        }
        let status = unsafe status, counters = q.counters
        let r = q.channel.reapDMATransmits(now: now) { tag, ok in
            unsafe status[tag] = ok ? 1 : 2
            if !ok { counters.add(.txErrAbort) }
        }
        if r.ringDoorbell {
            q.device.ringPeerDoorbell(q.doorbellBit)
            counters.add(.doorbells)
        }
        if r.chainStarted { counters.add(.dmaChains) }
        if r.fault { counters.add(.dmaFaults); faulted = true }
    }

    // MARK: Completions

    /// Finished DMAs, then buffers the peer's engine filled.
    @inlinable
    public mutating func poll<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, limit: Int, inPlace: Bool, _ frame: (UnsafeRawBufferPointer) -> Void, _ handle: (Completion) -> Void) -> (reported: Int, peerDown: Bool) where B.Channel == Channel {
        let s = unsafe q.state, counters = q.counters
        reap(q)
        if faulted { return (0, true) }
        var reported = 0
        while unsafe s.pointee.sends.pending > 0 {
            let slot = unsafe s.pointee.sends.oldest
            let outcome = unsafe status[slot]
            if outcome == 0 { break }
            unsafe status[slot] = 0
            let (c, l) = unsafe s.pointee.sends.pop()
            handle(Completion(kind: .send, status: outcome == 1 ? .ok : .aborted, cookie: c, length: outcome == 1 ? l : 0))
            reported &+= 1
        }
        offerReceives(q)
        var received = 0
        loop: while received < limit {
            switch q.channel.takeReceived() {
            case .empty:
                counters.add(.rxRingEmpty)
                break loop
            case let .received(length, inPlace):
                // Every filled buffer was offered, so one is posted (the channel checked the length
                // against what was offered).
                let (base, _, cookie) = unsafe s.pointee.receives.pop()
                offered &-= 1
                if !inPlace, let base = unsafe base, length > 0 {
                    unsafe base.copyMemory(from: q.channel.bouncedBytes(length: length).baseAddress!, byteCount: length)
                    counters.add(.rxMemcpy)
                }
                q.channel.releaseReceived()
                counters.add(.rxPackets)
                counters.add(.rxBytes, UInt64(length))
                counters.add(.rxAsync)
                handle(Completion(kind: .receive, status: .ok, cookie: cookie, length: length))
                received &+= 1
            case .linkDown:
                return (reported &+ received, true)
            case .corrupt:
                counters.add(.rxErrLength)
                return (reported &+ received, true)
            }
        }
        if received > 0 { offerReceives(q) }
        return (reported &+ received, false)
    }

    /// Offers posted buffers the peer has not seen yet to the channel.
    @inlinable
    mutating func offerReceives<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        let s = unsafe q.state
        guard unsafe offered < s.pointee.receives.count else { return }
        let before = offered
        while unsafe offered < s.pointee.receives.count {
            let slot = unsafe s.pointee.receives.slot(offered)
            guard unsafe q.channel.offerReceive(busAddress: s.pointee.receives.busAddresses[slot],
                                                capacity: min(s.pointee.receives.capacities[slot], q.channel.maxPayload)) else { break }
            offered &+= 1
        }
        if offered != before && q.channel.publishReceives() {
            q.device.ringPeerDoorbell(q.doorbellBit)
            q.counters.add(.doorbells)
        }
    }

    @inlinable
    public mutating func hasWork<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) -> Bool where B.Channel == Channel {
        let s = unsafe q.state
        if faulted || q.channel.receivePending() { return true }
        if unsafe offered < s.pointee.receives.count && q.channel.receivePostable > 0 { return true }
        guard unsafe s.pointee.sends.pending > 0 else { return false }
        if unsafe status[s.pointee.sends.oldest] != 0 { return true }
        reap(q)
        if faulted { return true }
        return unsafe status[s.pointee.sends.oldest] != 0
    }

    // MARK: Link down

    /// DMA sends that finished before the link dropped keep their outcome; the rest fail.
    @inlinable
    public mutating func settleSends<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ handle: (Completion) -> Void) -> Int where B.Channel == Channel {
        let s = unsafe q.state
        var n = 0
        while unsafe s.pointee.sends.pending > 0 {
            let slot = unsafe s.pointee.sends.oldest
            let outcome = unsafe status[slot]
            unsafe status[slot] = 0
            let (c, l) = unsafe s.pointee.sends.pop()
            handle(Completion(kind: .send, status: outcome == 1 ? .ok : outcome == 2 ? .aborted : .linkDown, cookie: c, length: outcome == 1 ? l : 0))
            n &+= 1
        }
        offered = 0
        faulted = false
        return n
    }

    @inlinable
    public mutating func sendLinkDown<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        if q.channel.sendLinkDown() { q.device.ringPeerDoorbell(q.doorbellBit) }
    }

    /// Buffers already offered to the peer's ring stay there until the link resets; the queue pair
    /// forgets them (the peer can still fill them: only remove receives whose memory stays valid,
    /// as the buffers of ``QueuePair/makeBuffers(count:length:)`` do).
    @inlinable public mutating func receivesRemoved() { offered = 0 }

    @inlinable public mutating func doorbellTaken() { completionSignalled = true }
}
