public import NTBHardware
import Synchronization

/// Generations and link events of a queue pair: what both data paths share at link up and down.
extension QueuePair {
    /// Returns every in-flight send and posted receive with `linkDown` (sends whose outcome the data
    /// path knows keep it), then the link-down event.
    @inlinable
    func failInFlight(_ handle: (Completion) -> Void) -> Int {
        let s = unsafe state
        var n = unsafe path.pointee.settleSends(self, handle)
        while unsafe s.pointee.sends.pending > 0 {
            let (cookie, _) = unsafe s.pointee.sends.pop()
            handle(Completion(kind: .send, status: .linkDown, cookie: cookie, length: 0))
            n &+= 1
        }
        unsafe s.pointee.sends.oldest = 0
        while unsafe s.pointee.receives.count > 0 {
            let (_, _, cookie) = unsafe s.pointee.receives.pop()
            handle(Completion(kind: .receive, status: .linkDown, cookie: cookie, length: 0))
            n &+= 1
        }
        unsafe s.pointee.receives.oldest = 0
        if unsafe s.pointee.isUp {
            unsafe s.pointee.isUp = false
            counters.add(.linkDowns)
            handle(Completion(kind: .linkDown, status: .ok, cookie: 0, length: 0))
            n &+= 1
        }
        updateGauges()
        return n
    }

    /// The control plane moved us to generation `target` (link down: 0, or a new set-up).
    @inlinable
    func transition(to target: UInt64, _ handle: (Completion) -> Void) -> Int {
        let s = unsafe state
        var n = 0
        if unsafe s.pointee.isUp || s.pointee.sends.pending > 0 { n = failInFlight(handle) }
        unsafe s.pointee.isUp = false
        var capacity = unsafe s.pointee.sends.capacity
        if target != 0, var next = link.slot.withLock({ slot -> Channel? in defer { slot = nil }; return slot }) {
            next.resetIndices()
            capacity = 2 * next.transmitEntries
            if unsafe s.pointee.hasChannel { channel = next } else {
                unsafe channelSlot.initialize(to: next)
                unsafe s.pointee.hasChannel = true
            }
        }
        unsafe s.pointee.sends.reset(capacity: capacity)
        unsafe path.pointee.adopt(transmitCapacity: capacity)
        unsafe s.pointee.adopted = target
        // Gauges before the acknowledgement: they read ring memory (txFree), which the control plane
        // zeroes (prepareSharedMemory) as soon as it sees the acknowledgement (issue 14, TSan).
        updateGauges()
        link.acknowledged.store(target, ordering: .releasing)
        return n
    }

    /// The peer sent LINK_DOWN (`ntb_qp_link_down` → `ntb_qp_link_cleanup`), or the channel faulted.
    @inlinable
    func peerTookDown(_ handle: (Completion) -> Void) -> Int {
        let n = failInFlight(handle)
        link.downRequest.store(true, ordering: .releasing)
        return n
    }

    /// Refreshes the gauge counters (ring positions) for `stats`; not called per message.
    @inlinable
    public func updateGauges() {
        guard unsafe state.pointee.hasChannel else {
            counters[.linkIsUp] = 0
            return
        }
        counters[.rxIndex] = UInt64(channel.receiveIndex)
        counters[.rxMaxEntry] = UInt64(channel.receiveEntries)
        counters[.txIndex] = UInt64(channel.transmitIndex)
        counters[.remoteRxEntry] = UInt64(channel.transmitTail)
        counters[.txMaxEntry] = UInt64(channel.transmitEntries)
        counters[.txFree] = UInt64(channel.transmitFree)
        counters[.maxPayload] = UInt64(channel.maxPayload)
        counters[.linkIsUp] = unsafe state.pointee.isUp ? 1 : 0
    }

    // MARK: Client link down (ntb_transport_link_down)

    /// Takes this queue pair down on purpose: clears our QP_LINKS bit in the peer, tells the peer if
    /// the link is up (`ntb_send_link_down`: a LINK_DOWN frame or descriptor), and returns every
    /// in-flight buffer through `handle`. The queue pair does not relink until the transport is set
    /// up again.
    @inlinable
    public func shutdown(_ handle: (Completion) -> Void = { _ in }) {
        link.clientDown.store(true, ordering: .releasing)
        let spad = HostWire.Scratchpad.queuePairLinks
        let val = device.readScratchpad(spad)
        device.writePeerScratchpad(spad, val & ~UInt32(truncatingIfNeeded: doorbellBit))
        if unsafe state.pointee.isUp { unsafe path.pointee.sendLinkDown(self) }
        _ = failInFlight(handle)
    }
}
