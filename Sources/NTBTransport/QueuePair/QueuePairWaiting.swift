public import NTBHardware
public import PCIKit
import Synchronization

/// Waiting for work: polling, interrupt (the doorbell) or adaptive (spin, then sleep).
extension QueuePair {
    // MARK: Waiting (polling, interrupt, adaptive)

    /// Whether a poll would report something now (cheap: a flag, a tail and two atomics).
    @inlinable
    public func hasWork() -> Bool {
        let s = unsafe state
        if unsafe link.target.load(ordering: .relaxed) != s.pointee.adopted { return true }
        if unsafe !s.pointee.isUp { return unsafe s.pointee.adopted != 0 && link.up.load(ordering: .relaxed) == s.pointee.adopted }
        return unsafe path.pointee.hasWork(self)
    }

    /// Waits until ``poll(limit:_:)`` has something to report or `timeout` passes; returns whether it has.
    ///
    /// `polling` spins; `interrupt` sleeps on the doorbell interrupt (`waitForEvents`) right away;
    /// `adaptive` spins up to a budget, then sleeps, and doubles the budget when work arrived soon
    /// after falling asleep (spinning would have caught it) or halves it when the sleep was long.
    @inlinable
    public func wait(timeout: Duration) -> Bool {
        waitCore(bits: doorbellBit, timeout: timeout, { hasWork() }, taken: { _ in unsafe path.pointee.doorbellTaken() })
    }

    /// Waits until any of `queuePairs` has something to report or `timeout` passes; returns whether
    /// one has. For one thread that drives several queue pairs (as a DPDK lcore polls several
    /// queues): it sleeps once, on the doorbells of all of them, instead of once per queue pair.
    ///
    /// The queue pairs must belong to one transport and be driven by the calling thread. The wait
    /// mode and the adaptive spin budget are the first queue pair's, and the wait is counted there.
    @inlinable
    public static func wait(anyOf queuePairs: [QueuePair], timeout: Duration) -> Bool {
        precondition(!queuePairs.isEmpty, "wait on at least one queue pair")
        if queuePairs.count == 1 { return queuePairs[0].wait(timeout: timeout) }
        var bits: UInt64 = 0
        for q in queuePairs {
            precondition(q.device === queuePairs[0].device, "wait(anyOf:) takes queue pairs of one transport")
            bits |= q.doorbellBit
        }
        return queuePairs[0].waitCore(bits: bits, timeout: timeout, {
            for q in queuePairs where q.hasWork() { return true }
            return false
        }, taken: { seen in
            for q in queuePairs where seen & q.doorbellBit != 0 { unsafe q.path.pointee.doorbellTaken() }
        })
    }

    /// ``wait(timeout:)`` on the doorbell `bits` until `ready()`; `taken(bits)` learns the pending
    /// bits a sleep takes (a DMA queue pair then reads its engine's status).
    @inlinable
    func waitCore(bits: UInt64, timeout: Duration, _ ready: () -> Bool, taken: (UInt64) -> Void) -> Bool {
        if ready() { return true }
        let clock = ContinuousClock()
        switch unsafe state.pointee.waitMode {
        case .polling:
            counters.add(.pollWaits)
            // Most waits on a polling data path end within a microsecond: spin a round before the first
            // clock read (a vDSO call costs about as much as 10 ring checks).
            for _ in 0..<256 where ready() { return true }
            let deadline = clock.now.advanced(by: timeout)
            var rounds = 0
            while clock.now < deadline {
                for _ in 0..<256 where ready() { return true }
                // On a machine with more spinning threads than cores, let the peer run now and then.
                rounds &+= 1
                if rounds & 3 == 0 { TransportThread.yield() }
            }
            return ready()
        case .interrupt:
            return sleepOnDoorbell(bits, until: clock.now.advanced(by: timeout), clock: clock, ready, taken)
        case .adaptive:
            let deadline = clock.now.advanced(by: timeout)
            var spins = 0
            let s = unsafe state
            while unsafe spins < s.pointee.spinLimit {
                if ready() { counters.add(.pollWaits); return true }
                spins &+= 1
                if spins & 1023 == 0 { TransportThread.yield() }
            }
            let before = clock.now
            let found = sleepOnDoorbell(bits, until: deadline, clock: clock, ready, taken)
            let slept = clock.now - before
            if found && slept < .microseconds(100) { unsafe s.pointee.spinLimit = min(s.pointee.spinLimit * 2, 1 << 20) }
            else if slept > .milliseconds(1) { unsafe s.pointee.spinLimit = max(s.pointee.spinLimit / 2, 256) }
            return found
        }
    }

    @inlinable
    func sleepOnDoorbell(_ bits: UInt64, until deadline: ContinuousClock.Instant, clock: ContinuousClock, _ ready: () -> Bool, _ taken: (UInt64) -> Void) -> Bool {
        counters.add(.interruptWaits)
        while true {
            // ntb_transport_rxc_db: clear our doorbell bit, then re-check, so a doorbell that arrives
            // between the check and the sleep still wakes us. The bits taken may be DMA completion
            // interrupts: the re-check reads the engine's status for those.
            let seen = device.takeDoorbells(bits)
            if seen != 0 { taken(seen) }
            if ready() { return true }
            let now = clock.now
            if now >= deadline { return false }
            // Link transitions come from the control plane without a doorbell: sleep in short slices.
            _ = device.waitForDoorbells(bits, timeout: min(deadline - now, .milliseconds(2)))
            if ready() { return true }
        }
    }
}
