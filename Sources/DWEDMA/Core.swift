#if canImport(Glibc)
import Glibc
#endif
public import PCIKit

/// One transfer of a chain: `length` bytes from `source` to `destination`, both bus addresses as the
/// eDMA sees them (WRITE channel: source endpoint-local, destination PCIe; READ channel: the
/// reverse, docs/hardware-reference.md §1.8).
public struct EDMATransfer: Sendable, Equatable {
    public var source: UInt64
    public var destination: UInt64
    public var length: UInt32
    @inlinable
    public init(source: UInt64, destination: UInt64, length: UInt32) {
        self.source = source
        self.destination = destination
        self.length = length
    }
}

/// Who drives the engine. Decides RIE on the last element and the LL read-back before the doorbell
/// (`DW_EDMA_CHIP_LOCAL`, docs/hardware-reference.md §1.6).
public enum EDMAMode: Sendable, Equatable {
    /// The endpoint programs its own eDMA; LL memory is coherent local memory.
    case local
    /// A host programs the endpoint's eDMA through a BAR: LIE+RIE on the last element, and a read of
    /// the LL memory before the doorbell flushes the posted LL writes.
    case remote
}

/// The register-level operations of one eDMA register map: the userspace `struct dw_edma_core_ops`.
/// ``EDMAv0Core`` implements the v0 map (legacy and unroll); an HDMA core would be a second
/// conformer, and ``EDMAChannel`` would not change.
public protocol EDMACore {
    associatedtype Space: RegisterSpace
    /// The register space the core programs.
    var registers: Space { get }
    /// Channels of a direction (`ch_count`).
    func channelCount(_ d: EDMADirection) -> Int
    /// The channel status field (`ch_status`).
    func channelStatus(_ d: EDMADirection, channel: Int) -> ChannelStatus
    /// The DONE/ABORT state of one channel (`status_done_int`/`status_abort_int`, `status_int`).
    func channelInterrupt(_ d: EDMADirection, channel: Int) -> ChannelInterrupt
    /// Clears the channel's DONE and/or ABORT state, touching no other channel (`clear_done_int`,
    /// `clear_abort_int`).
    func clearChannelInterrupt(_ d: EDMADirection, channel: Int, done: Bool, abort: Bool)
    /// The channel's current LL pointer register.
    func linkedListPointer(_ d: EDMADirection, channel: Int) -> UInt64
    /// Writes the chain into LL memory and starts it (`write_chunk` + `start`).
    func start<LL: RegisterSpace>(_ d: EDMADirection, channel: Int, ll: LL, llBusAddress: UInt64,
                                  transfers: UnsafeBufferPointer<EDMATransfer>, cycle: Bool,
                                  first: Bool, mode: EDMAMode, maskLocalInterrupt: Bool)
    /// Programs the IMWr (MSI) address and this channel's data (`ch_config`).
    func configureInterrupt(_ d: EDMADirection, channel: Int, address: UInt64, data: UInt16)
    /// Masks and clears every interrupt and disables both engines (`off`).
    func powerOff()
    /// Asks a running channel to stop at once, where the map has a way to (v0: doorbell STOP bit; see
    /// ``EDMAv0Core/requestStop(_:channel:)``). Linux has none: `dw_edma_device_terminate_all` only waits.
    func requestStop(_ d: EDMADirection, channel: Int)
}

extension EDMACore {
    /// No stop request: the caller waits for the running chain to end (as `dw_edma_device_terminate_all`).
    public func requestStop(_ d: EDMADirection, channel: Int) {}
}

/// One channel's completion state as a core reads it.
public struct ChannelInterrupt: Sendable, Equatable {
    public var done: Bool
    public var abort: Bool
    /// The status register read all ones: the device no longer answers.
    public var noResponse: Bool
    /// The whole status word the state was taken from, when every channel of the direction shares
    /// it (v0 `int_status`); nil when each channel has its own (HDMA).
    public var shared: EDMASharedStatus?
    @inlinable public init(done: Bool, abort: Bool, noResponse: Bool, shared: EDMASharedStatus? = nil) {
        self.done = done
        self.abort = abort
        self.noResponse = noResponse
        self.shared = shared
    }
}

/// One read of a direction's shared `int_status` (v0, hardware-reference §1.2): DONE and ABORT of every
/// channel at once, as `dw_edma_interrupt` reads it once for all of them.
public struct EDMASharedStatus: Sendable, Equatable {
    public var direction: EDMADirection
    public var bits: InterruptBits
    @inlinable public init(direction: EDMADirection, bits: InterruptBits) {
        self.direction = direction
        self.bits = bits
    }

    /// Channel `ch`'s state in this word; all ones is a read from a device that no longer answers.
    @inlinable public func channel(_ ch: Int) -> ChannelInterrupt {
        if bits.rawValue == 0xFFFF_FFFF { return ChannelInterrupt(done: false, abort: false, noResponse: true) }
        return ChannelInterrupt(done: bits.isDone(ch), abort: bits.isAborted(ch), noResponse: false, shared: self)
    }
}

/// The v0 register map core (`dw-edma-v0-core.c`), generic over the register space so the
/// hardware path specialises to plain volatile accesses.
@safe
public struct EDMAv0Core<Space: RegisterSpace>: EDMACore {
    public let registers: Space
    public let format: EDMAMapFormat
    /// Serialises the legacy viewport and read-modify-writes of shared registers (Linux `dw->lock`).
    @usableFromInline let lock: UnsafeMutablePointer<pthread_mutex_t>

    init(registers: Space, format: EDMAMapFormat, lock: UnsafeMutablePointer<pthread_mutex_t>) {
        self.registers = registers
        self.format = format
        unsafe self.lock = lock
    }

    @inlinable func withLock<R>(_ body: () -> R) -> R {
        unsafe pthread_mutex_lock(lock)
        defer { unsafe pthread_mutex_unlock(lock) }
        return body()
    }

    /// Writes a channel register (`writel_ch`): in legacy mode select the channel through
    /// `viewport_sel` first, under the lock.
    @inlinable
    public func storeChannel(_ d: EDMADirection, channel: Int, _ reg: Int, _ value: UInt32) {
        if format == .legacy {
            withLock {
                registers.store32(ViewportSelect(d, channel: channel).rawValue, at: EDMARegisters.viewportSelect)
                registers.store32(value, at: EDMARegisters.legacyChannelWindow + reg)
            }
        } else {
            registers.store32(value, at: EDMARegisters.unrollChannelBase(d, channel: channel) + reg)
        }
    }

    /// Reads a channel register (`readl_ch`).
    @inlinable
    public func loadChannel(_ d: EDMADirection, channel: Int, _ reg: Int) -> UInt32 {
        if format == .legacy {
            return withLock {
                registers.store32(ViewportSelect(d, channel: channel).rawValue, at: EDMARegisters.viewportSelect)
                return registers.load32(at: EDMARegisters.legacyChannelWindow + reg)
            }
        }
        return registers.load32(at: EDMARegisters.unrollChannelBase(d, channel: channel) + reg)
    }

    public func channelCount(_ d: EDMADirection) -> Int {
        ControlRegister(rawValue: registers.load32(at: EDMARegisters.ctrl)).channels(d)
    }

    @inlinable
    public func channelStatus(_ d: EDMADirection, channel: Int) -> ChannelStatus {
        ChannelControl(rawValue: loadChannel(d, channel: channel, EDMARegisters.Channel.control1)).status
    }

    @inlinable
    public func interruptStatus(_ d: EDMADirection) -> InterruptBits {
        InterruptBits(rawValue: registers.load32(at: EDMARegisters.intStatus(d)))
    }

    @inlinable
    public func clearInterrupts(_ d: EDMADirection, _ bits: UInt32) {
        registers.store32(bits, at: EDMARegisters.intClear(d))
    }

    @inlinable
    public func channelInterrupt(_ d: EDMADirection, channel: Int) -> ChannelInterrupt {
        EDMASharedStatus(direction: d, bits: interruptStatus(d)).channel(channel)
    }

    /// One write to `int_clear` with only this channel's bits.
    @inlinable
    public func clearChannelInterrupt(_ d: EDMADirection, channel: Int, done: Bool, abort: Bool) {
        var bits: UInt32 = 0
        if done { bits |= InterruptBits.done(channel) }
        if abort { bits |= InterruptBits.abort(channel) }
        clearInterrupts(d, bits)
    }

    @inlinable
    public func linkedListPointer(_ d: EDMADirection, channel: Int) -> UInt64 {
        let lo = loadChannel(d, channel: channel, EDMARegisters.Channel.llpLow)
        let hi = loadChannel(d, channel: channel, EDMARegisters.Channel.llpHigh)
        return UInt64(hi) << 32 | UInt64(lo)
    }

    /// `dw_edma_v0_core_write_chunk`: LIE (+RIE when remote) on the last data element
    /// (``LLElement/writeChain(ll:llBusAddress:transfers:cycle:lastControl:)``).
    @inlinable
    public func writeChunk<LL: RegisterSpace>(ll: LL, llBusAddress: UInt64,
                                              transfers: UnsafeBufferPointer<EDMATransfer>,
                                              cycle: Bool, mode: EDMAMode) {
        let last = ChannelControl.lie | (mode == .remote ? ChannelControl.rie : 0)
        unsafe LLElement.writeChain(ll: ll, llBusAddress: llBusAddress, transfers: transfers, cycle: cycle, lastControl: last)
    }

    /// `dw_edma_v0_core_start` (docs/hardware-reference.md §1.6 step 3).
    @inlinable
    public func start<LL: RegisterSpace>(_ d: EDMADirection, channel: Int, ll: LL, llBusAddress: UInt64,
                                         transfers: UnsafeBufferPointer<EDMATransfer>, cycle: Bool,
                                         first: Bool, mode: EDMAMode, maskLocalInterrupt: Bool = false) {
        unsafe writeChunk(ll: ll, llBusAddress: llBusAddress, transfers: transfers, cycle: cycle, mode: mode)
        // The LL stores must be visible to the engine before any register write that starts it
        // (Linux writel orders earlier memory writes the same way).
        Barrier.write()
        if first {
            // Enable engine.
            registers.store32(1, at: EDMARegisters.engineEnable(d))
            withLock {
                // Interrupt unmask: done, abort. (Remote-only routing keeps the local interrupt masked:
                // LIE+RIE with the local mask set, the RFC's REMOTE routing, hardware-reference §1.7.)
                var mask = registers.load32(at: EDMARegisters.intMask(d))
                if maskLocalInterrupt {
                    mask |= InterruptBits.channel(channel).rawValue
                } else {
                    mask &= ~InterruptBits.channel(channel).rawValue
                }
                registers.store32(mask, at: EDMARegisters.intMask(d))
                // Linked list error.
                var llErr = registers.load32(at: EDMARegisters.linkedListErrorEnable(d))
                llErr |= 1 << UInt32(channel)
                registers.store32(llErr, at: EDMARegisters.linkedListErrorEnable(d))
            }
            // Channel control.
            storeChannel(d, channel: channel, EDMARegisters.Channel.control1, ChannelControl.ccs | ChannelControl.lle)
            // Linked list: "llp is not aligned on 64bit -> keep 32bit accesses".
            storeChannel(d, channel: channel, EDMARegisters.Channel.llpLow, UInt32(truncatingIfNeeded: llBusAddress))
            storeChannel(d, channel: channel, EDMARegisters.Channel.llpHigh, UInt32(truncatingIfNeeded: llBusAddress >> 32))
        }
        // dw_edma_v0_sync_ll_data: the MRd returns only after the posted LL MWr TLPs completed.
        if mode == .remote { _ = ll.load32(at: 0) }
        // Doorbell: the channel number.
        registers.store32(DoorbellValue(channel: channel).rawValue, at: EDMARegisters.doorbell(d))
    }

    /// `dw_edma_v0_core_ch_config`: done and abort IMWr address (one pair per direction, shared by
    /// its channels), then this channel's half of `chXY_imwr_data`.
    public func configureInterrupt(_ d: EDMADirection, channel: Int, address: UInt64, data: UInt16) {
        withLock {
            let lo = UInt32(truncatingIfNeeded: address), hi = UInt32(truncatingIfNeeded: address >> 32)
            registers.store32(lo, at: EDMARegisters.doneIMWrLow(d))
            registers.store32(hi, at: EDMARegisters.doneIMWrHigh(d))
            registers.store32(lo, at: EDMARegisters.abortIMWrLow(d))
            registers.store32(hi, at: EDMARegisters.abortIMWrHigh(d))
            let reg = EDMARegisters.imwrData(d, channel: channel)
            let shift = UInt32(EDMARegisters.imwrDataShift(channel: channel))
            var value = registers.load32(at: reg)
            value &= ~(0xFFFF << shift)
            value |= UInt32(data) << shift
            registers.store32(value, at: reg)
        }
    }

    /// Stops a running channel with the doorbell's STOP bit (bit 31 beside the channel number).
    /// INFERRED, not verified: Linux's v0 core never writes it (docs/hardware-reference.md §6 lists the
    /// doorbell STOP bit as not found); the DesignWare databook names it. The engine model implements it
    /// (the channel halts, no DONE/ABORT). On silicon that ignores it, the caller's bounded wait decides.
    public func requestStop(_ d: EDMADirection, channel: Int) {
        registers.store32(DoorbellValue(channel: channel).rawValue | DoorbellValue.stop, at: EDMARegisters.doorbell(d))
    }

    /// `dw_edma_v0_core_off`: mask and clear everything, disable both engines. Only the owner of the
    /// whole engine may call this (docs/hardware-reference.md §1.7, §5 fact 8).
    public func powerOff() {
        let all = InterruptBits.doneMask | InterruptBits.abortMask
        for d in EDMADirection.allCases { registers.store32(all, at: EDMARegisters.intMask(d)) }
        for d in EDMADirection.allCases { registers.store32(all, at: EDMARegisters.intClear(d)) }
        for d in EDMADirection.allCases { registers.store32(0, at: EDMARegisters.engineEnable(d)) }
    }
}

extension LLElement {
    /// Writes one chain the way both Linux cores do (`dw_edma_v0_core_write_chunk`,
    /// `dw_hdma_v0_core_write_chunk`): data elements from slot 0 with CB = `cycle`, `lastControl` added
    /// to the last one (v0: LIE, +RIE when remote; HDMA: nothing), then a link element `LLP|TCB` (+CB
    /// only when `cycle` is false) back to the LL base. Per-field volatile stores (the LL memory may be
    /// in a BAR), in Linux's field order.
    @inlinable
    public static func writeChain<LL: RegisterSpace>(ll: LL, llBusAddress: UInt64,
                                                     transfers: UnsafeBufferPointer<EDMATransfer>,
                                                     cycle: Bool, lastControl: UInt32) {
        let base: UInt32 = cycle ? ChannelControl.cb : 0
        let last = transfers.count - 1
        var offset = 0
        for i in 0..<transfers.count {
            let t = unsafe transfers[i]
            ll.store32(i == last ? base | lastControl : base, at: offset + dataControl)
            ll.store32(t.length, at: offset + dataTransferSize)
            ll.store64(t.source, at: offset + dataSAR)
            ll.store64(t.destination, at: offset + dataDAR)
            offset += slotSize
        }
        var link = ChannelControl.llp | ChannelControl.tcb
        if !cycle { link |= ChannelControl.cb }
        ll.store32(link, at: offset + linkControl)
        ll.store64(llBusAddress, at: offset + linkPointer)
    }
}
