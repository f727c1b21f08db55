#if canImport(Glibc)
import Glibc
#endif
import PCIKit
import DWEDMA
import CNTBShim
import Synchronization

/// The model's data movers: stepping channels through single transfers and linked lists, the copies,
/// completions, aborts and interrupts.
extension EDMAEngineModel {
    // MARK: Engine

    /// One element's copy, resolved under `engine` and run outside it.
    @safe struct CopyJob {
        var to: UnsafeMutableRawPointer
        var from: UnsafeMutableRawPointer
        var size: Int
        var generation: UInt64
        /// The LL element's control word (LIE/RIE), when the chain is in LL mode.
        var control: UInt32
    }

    enum Step { case idle, progressed, copy(CopyJob) }

    /// The next step of channel `c` (under `engine`): nothing to do, a state change made, or a copy
    /// for the caller to run and then hand to ``finishStep(_:_:_:)``.
    func prepareStep(_ d: EDMADirection, _ c: Int) -> Step {
        guard channels[d.rawValue][c].running else { return .idle }
        return channels[d.rawValue][c].lle ? prepareLinkedList(d, c) : prepareSingle(d, c)
    }

    /// After a copy (under `engine`): advances the channel, unless its chain was stopped or
    /// restarted meanwhile (the copy then stands for a transfer cut off by the stop).
    func finishStep(_ d: EDMADirection, _ c: Int, _ job: CopyJob) {
        let ch = channels[d.rawValue][c]
        shared.withLock { $0.counters.elements &+= 1; $0.counters.bytes &+= UInt64(job.size) }
        guard ch.running && ch.generation == job.generation else { return }
        if ch.lle { finishLinkedList(d, c, job) } else { finishSingle(d, c) }
    }

    /// Non-LL mode: one transfer from the channel's SAR/DAR/size registers.
    func prepareSingle(_ d: EDMADirection, _ c: Int) -> Step {
        let ch = channels[d.rawValue][c]
        switch resolveCopy(d, c, sar: ch.sar, dar: ch.dar, size: ch.size, element: 0) {
        case .abort(let reason):
            abort(d, c, reason)
            return .progressed
        case .copy(let to, let from):
            return unsafe .copy(CopyJob(to: to, from: from, size: Int(ch.size), generation: ch.generation, control: 0))
        }
    }

    func finishSingle(_ d: EDMADirection, _ c: Int) {
        let ch = channels[d.rawValue][c]
        channels[d.rawValue][c].running = false
        channels[d.rawValue][c].status = ChannelStatus.done.rawValue
        channels[d.rawValue][c].pendingLIE = ch.control1 & ChannelControl.lie != 0
        channels[d.rawValue][c].pendingRIE = ch.control1 & ChannelControl.rie != 0
        mirror(d, c)
        raiseDone(d, c, setting: InterruptBits.done(c))
    }

    @safe enum Resolution { case copy(to: UnsafeMutableRawPointer, from: UnsafeMutableRawPointer), abort(EDMAModelAbortReason) }

    /// Where `size` bytes SAR → DAR go in the direction's spaces (WRITE: local → PCIe, READ: PCIe →
    /// local), or why the channel aborts instead. The spaces' memory stays mapped while the model
    /// runs, so the copy can run after the lock is dropped.
    func resolveCopy(_ d: EDMADirection, _ c: Int, sar: UInt64, dar: UInt64, size: UInt32,
                     element: Int) -> Resolution {
        shared.withLock { s in
            if let i = s.injections.firstIndex(where: { $0.direction == d && $0.channel == c && $0.element == element }) {
                s.injections.remove(at: i)
                return .abort(.injected)
            }
            if size == 0 { return .abort(.zeroLength) }
            let (src, dst) = d == .write ? (s.localSpace, s.pcieSpace) : (s.pcieSpace, s.localSpace)
            guard let from = unsafe src.resolve(sar, length: Int(size)) else { return .abort(.unmappedSource(sar)) }
            guard let to = unsafe dst.resolve(dar, length: Int(size)) else { return .abort(.unmappedDestination(dar)) }
            return unsafe .copy(to: to, from: from)
        }
    }

    func prepareLinkedList(_ d: EDMADirection, _ c: Int) -> Step {
        var ch = channels[d.rawValue][c]
        let local = shared.withLock { $0.localSpace }
        guard let p = unsafe local.resolve(ch.llp, length: 16) else {
            llError(d, c, .unmappedLinkedList(ch.llp)); return .progressed
        }
        let control = unsafe ntb_mmio_read32(p, 0)
        let cb = control & ChannelControl.cb != 0
        if control & ChannelControl.llp != 0 {
            // Link element: valid when CB matches CCS after the TCB toggle.
            let tcb = control & ChannelControl.tcb != 0
            let ccsAfter = tcb ? !ch.ccs : ch.ccs
            guard cb == ccsAfter else { stop(d, c); return .progressed }
            ch.linkHops += 1
            if ch.linkHops > 16 { channels[d.rawValue][c] = ch; llError(d, c, .badElement); return .progressed }
            ch.ccs = ccsAfter
            ch.llp = unsafe ntb_mmio_read64(p, UInt(LLElement.linkPointer))
            channels[d.rawValue][c] = ch
            mirror(d, c)
            return .progressed
        }
        guard cb == ch.ccs else { stop(d, c); return .progressed }
        // The walk reached the next data element: raise what earlier LIE/RIE elements asked for.
        if ch.pendingLIE || ch.pendingRIE { raisePending(d, c); ch = channels[d.rawValue][c] }
        guard let q = unsafe local.resolve(ch.llp, length: LLElement.slotSize) else {
            llError(d, c, .unmappedLinkedList(ch.llp)); return .progressed
        }
        let size = unsafe ntb_mmio_read32(q, UInt(LLElement.dataTransferSize))
        let sar = unsafe ntb_mmio_read64(q, UInt(LLElement.dataSAR))
        let dar = unsafe ntb_mmio_read64(q, UInt(LLElement.dataDAR))
        ch.sar = sar; ch.dar = dar; ch.size = size
        channels[d.rawValue][c] = ch
        switch resolveCopy(d, c, sar: sar, dar: dar, size: size, element: ch.ordinal) {
        case .abort(let reason):
            mirror(d, c)
            abort(d, c, reason)
            return .progressed
        case .copy(let to, let from):
            return unsafe .copy(CopyJob(to: to, from: from, size: Int(size), generation: ch.generation, control: control))
        }
    }

    func finishLinkedList(_ d: EDMADirection, _ c: Int, _ job: CopyJob) {
        var ch = channels[d.rawValue][c]
        ch.linkHops = 0
        ch.ordinal += 1
        ch.sar = ch.sar &+ UInt64(job.size); ch.dar = ch.dar &+ UInt64(job.size); ch.size = 0
        ch.llp = ch.llp &+ UInt64(LLElement.slotSize)
        if job.control & ChannelControl.lie != 0 { ch.pendingLIE = true }
        if job.control & ChannelControl.rie != 0 { ch.pendingRIE = true }
        channels[d.rawValue][c] = ch
        mirror(d, c)
    }

    /// The chain ended (CB mismatch): CS = done, then DONE for any pending LIE/RIE.
    func stop(_ d: EDMADirection, _ c: Int) {
        channels[d.rawValue][c].running = false
        channels[d.rawValue][c].generation &+= 1
        channels[d.rawValue][c].status = ChannelStatus.done.rawValue
        mirror(d, c)
        raisePending(d, c)
    }

    func raisePending(_ d: EDMADirection, _ c: Int) {
        guard channels[d.rawValue][c].pendingLIE || channels[d.rawValue][c].pendingRIE else { return }
        raiseDone(d, c, setting: InterruptBits.done(c))
    }

    /// Sets `status` in int_status and raises the channel's pending interrupts, in the order a PCIe
    /// observer sees them: the IMWr's memory write lands before the status bit is visible (posted
    /// writes are not passed by a later read completion), and every interrupt (local IRQ, MSI) is
    /// raised only after the status is visible, so a handler that reads int_status finds its bit.
    func raiseDone(_ d: EDMADirection, _ c: Int, setting status: UInt32) {
        let ch = channels[d.rawValue][c]
        let msi: EventNotifier? = ch.pendingRIE
            ? imwr(address: UInt64(reg32(EDMARegisters.doneIMWrHigh(d))) << 32 | UInt64(reg32(EDMARegisters.doneIMWrLow(d))), d, c)
            : nil
        setStatus(d, status)
        if ch.pendingLIE || ch.pendingRIE { kickRegisters() }
        let masked = reg32(EDMARegisters.intMask(d)) & InterruptBits.done(c) != 0
        if ch.pendingLIE && !masked { localInterrupt() }
        msi?.signal()
        channels[d.rawValue][c].pendingLIE = false
        channels[d.rawValue][c].pendingRIE = false
    }

    func setStatus(_ d: EDMADirection, _ bits: UInt32) {
        reg32(EDMARegisters.intStatus(d), reg32(EDMARegisters.intStatus(d)) | bits)
    }

    /// LL fetch errors abort only when `linked_list_err_en` has the channel; otherwise the channel
    /// halts silently.
    func llError(_ d: EDMADirection, _ c: Int, _ reason: EDMAModelAbortReason) {
        if reg32(EDMARegisters.linkedListErrorEnable(d)) & (1 << UInt32(c)) != 0 {
            abort(d, c, reason)
        } else {
            // The reason is recorded before the halt is visible, so whoever sees the halt sees it.
            shared.withLock { $0.lastAbort["\(d)\(c)"] = reason }
            channels[d.rawValue][c].running = false
            channels[d.rawValue][c].status = ChannelStatus.halted.rawValue
            mirror(d, c)
        }
    }

    func abort(_ d: EDMADirection, _ c: Int, _ reason: EDMAModelAbortReason) {
        // Counted and recorded before the halt or the ABORT bit is visible: a reader that saw the
        // bit must see the reason (a test read it in between once, in CI).
        shared.withLock { $0.counters.aborts &+= 1; $0.lastAbort["\(d)\(c)"] = reason }
        channels[d.rawValue][c].running = false
        channels[d.rawValue][c].status = ChannelStatus.halted.rawValue
        channels[d.rawValue][c].pendingLIE = false
        channels[d.rawValue][c].pendingRIE = false
        mirror(d, c)
        // Same order as raiseDone: IMWr memory write, then the status bit, then the interrupts.
        let addr = UInt64(reg32(EDMARegisters.abortIMWrHigh(d))) << 32 | UInt64(reg32(EDMARegisters.abortIMWrLow(d)))
        let msi = addr != 0 ? imwr(address: addr, d, c) : nil
        setStatus(d, InterruptBits.abort(c))
        kickRegisters()
        if reg32(EDMARegisters.intMask(d)) & InterruptBits.abort(c) == 0 { localInterrupt() }
        msi?.signal()
    }

    func localInterrupt() {
        shared.withLock { $0.counters.localInterrupts &+= 1 }
        configuration.localInterrupt?.signal()
    }

    /// An IMWr: a memory write of the channel's data half to `address` in PCIe space. A registered
    /// MSI address returns its notifier, for the caller to signal once the status is visible;
    /// otherwise the write lands in memory if mapped, or is dropped.
    func imwr(address: UInt64, _ d: EDMADirection, _ c: Int) -> EventNotifier? {
        let reg = reg32(EDMARegisters.imwrData(d, channel: c))
        let data = (reg >> UInt32(EDMARegisters.imwrDataShift(channel: c))) & 0xFFFF
        let target: EventNotifier? = shared.withLock { s in
            if let t = s.msi.first(where: { $0.address == address && ($0.data == nil || $0.data == data) }) {
                s.counters.imwrDelivered &+= 1
                return t.notifier
            }
            if let p = unsafe s.pcieSpace.resolve(address, length: 4) {
                unsafe ntb_mmio_write32(p, 0, data)
                s.counters.imwrToMemory &+= 1
            } else {
                s.counters.imwrDropped &+= 1
            }
            return nil
        }
        return target
    }
}
