public import NTBHardware

/// The data path of frame channels (`host`, Linux `ntb_transport` v4): each send is copied into the
/// next frame of the peer's memory and completes when the peer's published tail passed it; each
/// received frame is copied into the oldest posted buffer (or handed over in place).
@frozen
public struct FrameDataPath<Channel: FrameChannel>: QueuePairDataPath {
    /// Sends the peer consumed (its tail passed them) and `poll` has not reported yet.
    @usableFromInline var reaped = 0
    /// rx_err_ver is counted once per bad frame, not once per poll of it.
    @usableFromInline var lastBadVersion: UInt64 = .max

    @inlinable public static var prefersDMABuffers: Bool { false }
    @inlinable public static var peerSignalsConsumption: Bool { false }

    public init() {}
    public func deallocate() {}

    @inlinable
    public mutating func adopt(transmitCapacity: Int) {
        reaped = 0
        lastBadVersion = .max
    }

    // MARK: Sends (ntb_transport_tx_enqueue)

    @inlinable
    public mutating func send<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) where B.Channel == Channel {
        try unsafe admitOne(q, bytes)
        unsafe q.channel.transmit(bytes, flags: 0)
        Self.record(q, bytes.count, cookie)
        Self.ring(q)
    }

    /// A frame of a batch: written without its flags; ``publishBatch(_:)`` sets them after one barrier.
    @inlinable @inline(__always)
    public mutating func stage<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ bytes: UnsafeRawBufferPointer, busAddress: UInt64?, cookie: UInt64) throws(TransportError) where B.Channel == Channel {
        unsafe q.channel.stageTransmit(bytes)
        Self.record(q, bytes.count, cookie)
    }

    @inlinable
    public mutating func publishBatch<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        q.channel.publishStaged()
        Self.ring(q)
    }

    /// Records a frame just written in the completion FIFO.
    @inlinable @inline(__always)
    static func record<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ length: Int, _ cookie: UInt64) where B.Channel == Channel {
        unsafe q.state.pointee.sends.push(cookie: cookie, length: length)
        q.counters.add(.txPackets)
        q.counters.add(.txBytes, UInt64(length))
        q.counters.add(.txMemcpy)
    }

    @inlinable @inline(__always)
    static func ring<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        // Payload, barrier, flags (in transmit), read-back (flushTransmit), doorbell.
        q.channel.flushTransmit()
        q.device.ringPeerDoorbell(q.doorbellBit)
        q.counters.add(.doorbells)
    }

    @inlinable @inline(__always)
    public mutating func reap<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        let consumed = q.channel.reapTransmitted()
        if consumed < 0 { q.counters.add(.txErrIndex) } else { reaped &+= consumed }
    }

    // MARK: Completions (ntb_process_rxc, ntb_complete_rxc)

    @inlinable
    public mutating func poll<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, limit: Int, inPlace: Bool, _ frame: (UnsafeRawBufferPointer) -> Void, _ handle: (Completion) -> Void) -> (reported: Int, peerDown: Bool) where B.Channel == Channel {
        let s = unsafe q.state, counters = q.counters
        var reported = 0
        // Sends the peer consumed.
        reap(q)
        while reaped > 0 {
            let (c, l) = unsafe s.pointee.sends.pop()
            reaped &-= 1
            handle(Completion(kind: .send, status: .ok, cookie: c, length: l))
            reported &+= 1
        }
        // Frames the peer wrote.
        var received = 0
        loop: while received < limit {
            switch q.channel.peekReceive() {
            case .empty:
                counters.add(.rxRingEmpty)
                break loop
            case let .frame(length):
                guard unsafe s.pointee.receives.count > 0 else {
                    guard inPlace else { counters.add(.rxErrNoBuf); break loop }
                    unsafe frame(q.channel.receivedBytes(length: length))
                    counters.add(.rxPackets)
                    counters.add(.rxBytes, UInt64(length))
                    q.channel.consumeReceived()
                    received &+= 1
                    continue loop
                }
                let (base, capacity, cookie) = unsafe s.pointee.receives.pop()
                if length > capacity {
                    counters.add(.rxErrOverflow)
                    handle(Completion(kind: .receive, status: .overflow, cookie: cookie, length: 0))
                } else {
                    let bytes = unsafe q.channel.receivedBytes(length: length)
                    if let base = unsafe base, length > 0 { unsafe base.copyMemory(from: bytes.baseAddress!, byteCount: length) }
                    counters.add(.rxPackets)
                    counters.add(.rxBytes, UInt64(length))
                    counters.add(.rxMemcpy)
                    handle(Completion(kind: .receive, status: .ok, cookie: cookie, length: length))
                }
                // Unlike Linux (which leaves rx_pkts behind on overflow and then refuses every later
                // frame as a version error), the packet number advances for every consumed frame.
                q.channel.consumeReceived()
                received &+= 1
            case .linkDown:
                q.channel.clearLinkDownFrame()
                q.channel.publishReceiveTail()
                return (reported &+ received, true)
            case let .badVersion(found, _):
                let key = UInt64(q.channel.receiveIndex) << 32 | UInt64(found)
                if key != lastBadVersion {
                    lastBadVersion = key
                    counters.add(.rxErrVersion)
                }
                break loop
            case .badLength:
                guard unsafe s.pointee.receives.count > 0 else {
                    guard inPlace else { counters.add(.rxErrNoBuf); break loop }
                    counters.add(.rxErrLength)
                    q.channel.consumeReceived()
                    received &+= 1
                    continue loop
                }
                counters.add(.rxErrLength)
                let (_, _, cookie) = unsafe s.pointee.receives.pop()
                handle(Completion(kind: .receive, status: .invalidFrame, cookie: cookie, length: 0))
                q.channel.consumeReceived()
                received &+= 1
            }
        }
        if received > 0 {
            q.channel.publishReceiveTail()
            // A drain that freed half the ring or more: the sender has (nearly) run out of frames and,
            // unless it polls, sleeps until it learns of the space. Linux's receiver only publishes its
            // tail (ntb_netdev re-checks on a tx timer); one doorbell per such drain wakes our sender at
            // once, and a Linux sender takes it as an ordinary rx doorbell (ntb_transport_rxc_db).
            if unsafe received &* 2 >= q.channel.receiveEntries && s.pointee.waitMode != .polling {
                q.device.ringPeerDoorbell(q.doorbellBit)
                counters.add(.doorbells)
            }
        }
        return (reported &+ received, false)
    }

    @inlinable
    public mutating func hasWork<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) -> Bool where B.Channel == Channel {
        if reaped > 0 || q.channel.receivePending() { return true }
        guard unsafe q.state.pointee.sends.pending > 0 else { return false }
        reap(q)
        return reaped > 0
    }

    // MARK: Link down

    @inlinable
    public mutating func settleSends<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>, _ handle: (Completion) -> Void) -> Int where B.Channel == Channel {
        // Sends the peer consumed before the link dropped still succeeded.
        var n = 0
        while reaped > 0, unsafe q.state.pointee.sends.pending > 0 {
            let (c, l) = unsafe q.state.pointee.sends.pop()
            handle(Completion(kind: .send, status: .ok, cookie: c, length: l))
            reaped &-= 1
            n &+= 1
        }
        reaped = 0
        return n
    }

    @inlinable
    public mutating func sendLinkDown<D: NTBDevice, B: TransportBackend>(_ q: QueuePair<D, B>) where B.Channel == Channel {
        // ntb_send_link_down: an empty frame with LINK_DOWN, if one is free.
        reap(q)
        guard q.channel.transmitFree > 0 else { return }
        unsafe q.channel.transmit(UnsafeRawBufferPointer(start: nil, count: 0), flags: HostWire.linkDownFlag)
        Self.ring(q)
    }

    @inlinable public mutating func receivesRemoved() {}
    @inlinable public mutating func doorbellTaken() {}
}
