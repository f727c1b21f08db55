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
        waitCore(bits: doorbellBit, timeout: timeout, unsignalledSends: { awaitsUnsignalledSends }, { hasWork() }, taken: { _ in unsafe path.pointee.doorbellTaken() })
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
        return queuePairs[0].waitCore(bits: bits, timeout: timeout, unsignalledSends: { queuePairs.contains { $0.awaitsUnsignalledSends } }, {
            for q in queuePairs where q.hasWork() { return true }
            return false
        }, taken: { seen in
            for q in queuePairs where seen & q.doorbellBit != 0 { unsafe q.path.pointee.doorbellTaken() }
        })
    }

    /// ``wait(timeout:)`` on the doorbell `bits` until `ready()`; `taken(bits)` learns the pending
    /// bits a sleep takes (a DMA queue pair then reads its engine's status).
    @inlinable
    func waitCore(bits: UInt64, timeout: Duration, unsignalledSends: () -> Bool, _ ready: () -> Bool, taken: (UInt64) -> Void) -> Bool {
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
            // NAPI (napi_complete_done, ntb_netdev's poll): a wake or a spin that found work keeps the
            // queue pair polling for busyPollBudget before it re-arms the doorbell and sleeps, so a busy
            // link costs no sleeps and no doorbell system calls; an idle one sleeps at the first wait.
            // A data path whose peer signals every completion (DMA: the engine's MSI) sleeps at once:
            // a chain takes far longer than the budget, so spinning would only burn the sender's CPU.
            let s = unsafe state
            let deadline = clock.now.advanced(by: timeout)
            if unsafe !DataPath.peerSignalsConsumption && s.pointee.busy {
                if spin(for: min(Self.busyPollBudget, timeout), clock: clock, ready) { counters.add(.spins); return true }
                unsafe s.pointee.busy = false
            }
            let found = sleepOnDoorbell(bits, until: deadline, clock: clock, unsignalledSends: unsignalledSends, ready, taken)
            unsafe s.pointee.busy = found
            return found
        case .adaptive:
            // Spin for the budget, then sleep. The budget follows the measured gap between the start of
            // a wait and the work that ended it: work that came within 4 × maxSpinBudget (the gap
            // includes the doorbell's wake latency, 100 µs and more on a polled vNTB) doubles the budget
            // (at least to the gap, at most maxSpinBudget), so a stream is soon caught spinning; a wait
            // that timed out or work that came later halves it, down to minSpinBudget (an idle queue
            // pair costs a few µs a wait).
            let s = unsafe state
            let start = clock.now
            let deadline = start.advanced(by: timeout)
            let budget = unsafe s.pointee.spinBudget
            if spin(for: min(budget, timeout), clock: clock, ready) { counters.add(.spins); return true }
            let found = sleepOnDoorbell(bits, until: deadline, clock: clock, unsignalledSends: unsignalledSends, ready, taken)
            let gap = clock.now - start
            if found && gap <= Self.maxSpinBudget * 4 {
                unsafe s.pointee.spinBudget = min(Self.maxSpinBudget, max(budget * 2, gap))
            } else {
                unsafe s.pointee.spinBudget = max(Self.minSpinBudget, budget / 2)
            }
            return found
        }
    }

    /// How long an interrupt-mode queue pair keeps polling after work before it sleeps (Linux's
    /// `net.core.busy_poll` suggests 50 µs).
    @inlinable static var busyPollBudget: Duration { .microseconds(50) }
    /// Bounds of the adaptive spin budget.
    @inlinable static var minSpinBudget: Duration { .microseconds(2) }
    @inlinable static var maxSpinBudget: Duration { .microseconds(250) }

    /// Looks at `ready()` for up to `budget` (the clock is read every 64 looks, a vDSO call costing
    /// about 10 looks); returns whether it found work. Yields now and then, so that on a machine
    /// with more spinning threads than cores the peer still runs.
    @inlinable
    func spin(for budget: Duration, clock: ContinuousClock, _ ready: () -> Bool) -> Bool {
        for _ in 0..<64 where ready() { return true }
        let end = clock.now.advanced(by: budget)
        var rounds = 0
        while true {
            for _ in 0..<64 where ready() { return true }
            if clock.now >= end { return false }
            rounds &+= 1
            if rounds & 15 == 0 { TransportThread.yield() }
        }
    }

    /// Sends in flight that no doorbell will report (frame channels: the peer only publishes its tail).
    @inlinable
    var awaitsUnsignalledSends: Bool {
        unsafe !DataPath.peerSignalsConsumption && state.pointee.sends.pending > 0
    }

    @inlinable
    func sleepOnDoorbell(_ bits: UInt64, until deadline: ContinuousClock.Instant, clock: ContinuousClock, unsignalledSends sendsUnsignalled: () -> Bool, _ ready: () -> Bool, _ taken: (UInt64) -> Void) -> Bool {
        counters.add(.interruptWaits)
        let s = unsafe state
        // Asked only here, where a sleep is about to start: a wait that finds work spinning (every
        // wait on a busy polling link) never evaluates it. `poll`, not this wait, retires sends, so
        // the answer holds for the whole sleep.
        let unsignalledSends = sendsUnsignalled()
        var slept = false
        while true {
            // ntb_transport_rxc_db: clear our doorbell bit, then re-check, so a doorbell that arrives
            // between the check and the sleep still wakes us. The bits taken may be DMA completion
            // interrupts: the re-check reads the engine's status for those. After a sleep the doorbell
            // that ended it is taken here too (counted at the wake it caused, not at the next sleep).
            let seen = device.takeDoorbells(bits)
            if seen != 0 { counters.add(.doorbellsReceived); taken(seen) }
            if ready() {
                if slept {
                    counters.add(.wakes)
                    if unsignalledSends { unsafe s.pointee.reapSlice = max(s.pointee.reapSlice / 2, .microseconds(5)) }
                }
                return true
            }
            if slept && unsignalledSends { unsafe s.pointee.reapSlice = min(s.pointee.reapSlice * 2, .milliseconds(2)) }
            let now = clock.now
            if now >= deadline { return false }
            // Link transitions come from the control plane without a doorbell: sleep in short slices.
            // Sends the peer consumes without telling us (Linux's receiver rings nothing) are
            // re-checked on a timer that follows how soon the peer consumed the last ones, as
            // ntb_netdev's tx reaper timer does; a wait with nothing in flight sleeps 2 ms slices.
            let slice = unsignalledSends ? unsafe s.pointee.reapSlice : .milliseconds(2)
            _ = device.waitForDoorbells(bits, timeout: min(deadline - now, slice))
            slept = true
        }
    }
}
