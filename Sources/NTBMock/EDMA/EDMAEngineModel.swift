#if canImport(Glibc)
import Glibc
#endif
public import PCIKit
public import DWEDMA
import CNTBShim
import Synchronization

/// Configuration of an eDMA engine model.
public struct EDMAModelConfiguration: Sendable {
    /// Directory for `edma-regs` and `edma-rings` (created if missing).
    public var directory: String
    public var writeChannels: Int
    public var readChannels: Int
    public var format: EDMAMapFormat
    /// Entries per posted-write ring (power of two).
    public var ringCapacity: Int
    /// The endpoint's local address space (its RAM and the LL regions).
    public var localSpace: BusAddressSpace
    /// The PCIe address space (host memory through the endpoint's outbound windows).
    public var pcieSpace: BusAddressSpace
    /// The endpoint's local eDMA interrupt (LIE, interrupt emulation), if anyone listens.
    public var localInterrupt: EventNotifier?
    /// Called by a data mover just before it copies an element of (direction, channel): tests hold
    /// a copy in progress with it.
    public var copyHook: (@Sendable (EDMADirection, Int) -> Void)?

    public init(directory: String, writeChannels: Int = 4, readChannels: Int = 4, format: EDMAMapFormat = .unroll,
                ringCapacity: Int = 1024, localSpace: BusAddressSpace = .init(), pcieSpace: BusAddressSpace = .init(),
                localInterrupt: EventNotifier? = nil, copyHook: (@Sendable (EDMADirection, Int) -> Void)? = nil) {
        precondition((1...8).contains(writeChannels) && (1...8).contains(readChannels))
        precondition(ringCapacity >= 2 && ringCapacity & (ringCapacity - 1) == 0)
        self.directory = directory
        self.writeChannels = writeChannels
        self.readChannels = readChannels
        self.format = format
        self.ringCapacity = ringCapacity
        self.localSpace = localSpace
        self.pcieSpace = pcieSpace
        self.localInterrupt = localInterrupt
        self.copyHook = copyHook
    }
}

/// What the model has done, for tests and the self-test report.
public struct EDMAModelCounters: Sendable, Equatable {
    public var storesApplied: UInt64 = 0
    public var doorbells: UInt64 = 0
    /// Doorbells ignored: engine disabled, no such channel, or channel already running.
    public var doorbellsIgnored: UInt64 = 0
    public var elements: UInt64 = 0
    public var bytes: UInt64 = 0
    public var aborts: UInt64 = 0
    public var localInterrupts: UInt64 = 0
    public var imwrDelivered: UInt64 = 0
    public var imwrToMemory: UInt64 = 0
    public var imwrDropped: UInt64 = 0
    public var emulatedInterrupts: UInt64 = 0
    public init() {}
}

/// Why the model aborted a channel.
public enum EDMAModelAbortReason: Sendable, Equatable {
    case unmappedLinkedList(UInt64)
    case unmappedSource(UInt64)
    case unmappedDestination(UInt64)
    case zeroLength
    case badElement
    case injected
}

/// A model of the DesignWare eDMA v0 engine that executes what drivers write into its registers, as
/// the silicon does (docs/hardware-reference.md §1), on its own thread.
///
/// Register writes arrive through ``PostedWriteRegisterSpace``s (one ring per accessor, shared
/// memory, so a driver in another process works too) and are applied in order by the model's
/// register thread. Each direction has a data mover thread that walks the LL of its running
/// channels round robin, one element per turn, copying through the bus address spaces; a long copy
/// delays neither register accesses (a PCIe read of a busy eDMA's registers completes at once) nor
/// the other direction.
///
/// Semantics modelled (inferred where Linux does not say; see docs/mock-device.md):
/// * `engine_en` BIT(0) gates doorbells; clearing it stops the direction's channels.
/// * Doorbell = channel number; a running channel ignores it. Bit 31 (STOP) halts the channel (CS = 2, no interrupt).
/// * `ch_control1` write: CCS loads the consumer cycle state, LLE selects LL mode; CS [6:5] is the
///   model's status (1 running, 3 done, 2 after an abort).
/// * Data element consumed while CB == CCS; otherwise the channel stops (CS = 3), `llp` at it.
///   Link element followed when its CB equals CCS after the TCB toggle (the Linux recipe writes
///   CB = !cycle with TCB, which satisfies this); otherwise the channel stops.
/// * LIE/RIE of an element raise DONE when the walk passes it: status bit, then the local interrupt
///   (LIE, unless masked) and IMWr (RIE) to `done_imwr` with the channel's data half.
/// * Aborts (unmapped SAR/DAR, zero length, injected; LL errors when `linked_list_err_en` has the
///   channel) set ABORT and CS = 2, leave `llp` at the failing element, raise the local abort
///   interrupt unless masked and IMWr to `abort_imwr` when it is programmed.
/// * `int_clear` is write-1-to-clear; a write to `int_status` is interrupt emulation.
@safe
public final class EDMAEngineModel: @unchecked Sendable {
    public let configuration: EDMAModelConfiguration
    /// The mapping of the register file and rings (also attachable from another process).
    public let mapping: EDMARegisterMapping

    struct MSITarget { var address: UInt64; var data: UInt32?; var notifier: EventNotifier }
    struct Injection { var direction: EDMADirection; var channel: Int; var element: Int }
    struct Shared {
        var localSpace: BusAddressSpace
        var pcieSpace: BusAddressSpace
        var msi: [MSITarget] = []
        var injections: [Injection] = []
        var counters = EDMAModelCounters()
        var lastAbort: [String: EDMAModelAbortReason] = [:]
    }
    let shared: Mutex<Shared>

    struct Channel {
        var control1: UInt32 = 0      // last value written (CS bits replaced by status)
        var status: UInt32 = 0
        var ccs = false
        var lle = false
        var llp: UInt64 = 0
        var sar: UInt64 = 0
        var dar: UInt64 = 0
        var size: UInt32 = 0
        var running = false
        var ordinal = 0
        var linkHops = 0
        var pendingLIE = false
        var pendingRIE = false
        /// Bumped by every doorbell and stop, so a copy that finishes after its chain was stopped
        /// (engine disabled) or restarted does not advance the new state.
        var generation: UInt64 = 0
    }
    /// Channel state and the register file's read-modify-writes, shared by the register thread and
    /// the two data movers: touched only under `engine`. Copies run outside it.
    var channels: [[Channel]]
    let engine = Mutex<Void>(())
    let stopFlag: UnsafeMutablePointer<UInt32>
    /// Per direction (write, read): a futex word bumped by its doorbells, and a flag set while the
    /// direction's mover sleeps on it.
    let moverWake: UnsafeMutablePointer<UInt32>
    var registerThread: pthread_t? = nil
    var moverThreads: [pthread_t] = []

    /// Creates the model files in `configuration.directory` and starts the model thread.
    public init(_ configuration: EDMAModelConfiguration) throws(MockFileError) {
        self.configuration = configuration
        unsafe _ = mkdir(configuration.directory, 0o700)
        mapping = try EDMARegisterMapping(directory: configuration.directory, create: true, capacity: configuration.ringCapacity)
        shared = Mutex(Shared(localSpace: configuration.localSpace, pcieSpace: configuration.pcieSpace))
        channels = [Array(repeating: Channel(), count: configuration.writeChannels),
                    Array(repeating: Channel(), count: configuration.readChannels)]
        unsafe stopFlag = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        unsafe stopFlag.initialize(to: 0)
        unsafe moverWake = UnsafeMutablePointer<UInt32>.allocate(capacity: 4)
        unsafe moverWake.initialize(repeating: 0, count: 4)
        reg32(EDMARegisters.ctrl, ControlRegister(writeChannels: configuration.writeChannels,
                                                  readChannels: configuration.readChannels).rawValue)
        let all = InterruptBits.doneMask | InterruptBits.abortMask
        reg32(EDMARegisters.intMask(.write), all)   // reset: everything masked
        reg32(EDMARegisters.intMask(.read), all)
        for d in EDMADirection.allCases { for c in 0..<count(d) { mirror(d, c) } }
        unsafe ntb_atomic_store_u32(&mapping.file.pointee.model_pid, UInt32(bitPattern: getpid()))
        unsafe ntb_atomic_store_u32(&mapping.file.pointee.model_alive, 1)
        start()
    }

    deinit {
        stop()
        unsafe stopFlag.deallocate()
        unsafe moverWake.deallocate()
    }

    /// The register space of `accessor` in this process.
    public func registerSpace(_ accessor: EDMAAccessor) -> PostedWriteRegisterSpace { mapping.space(accessor) }

    /// Stops the model's threads (loads from accessors then return all ones). Idempotent.
    public func stop() {
        guard let t = registerThread else { return }
        unsafe ntb_atomic_store_u32(stopFlag, 1)
        unsafe ntb_atomic_store_u32(&mapping.file.pointee.model_alive, 0)
        kickRegisters()
        _ = pthread_join(t, nil)
        for d in EDMADirection.allCases { kickMover(d) }
        for c in moverThreads { _ = pthread_join(c, nil) }
        registerThread = nil
        moverThreads = []
    }

    // MARK: Control plane (any thread)

    /// Replaces the address spaces (the mock link calls this when windows change).
    public func setAddressSpaces(local: BusAddressSpace, pcie: BusAddressSpace) {
        shared.withLock { $0.localSpace = local; $0.pcieSpace = pcie }
    }

    /// Delivers IMWr writes to `address` (with `data`, or any data when nil) as a signal of `notifier`.
    public func registerMSI(address: UInt64, data: UInt32?, notifier: EventNotifier) {
        shared.withLock { $0.msi.append(MSITarget(address: address, data: data, notifier: notifier)) }
    }

    /// Fault injection: the next time channel `channel` of `direction` reaches data element `element`
    /// (0-based, counted from its doorbell), it aborts instead of copying. One-shot.
    public func injectAbort(direction: EDMADirection, channel: Int, element: Int) {
        shared.withLock { $0.injections.append(Injection(direction: direction, channel: channel, element: element)) }
    }

    /// A snapshot of the counters.
    public var counters: EDMAModelCounters { shared.withLock { $0.counters } }

    /// Why `channel` of `direction` last aborted.
    public func lastAbortReason(_ d: EDMADirection, channel: Int) -> EDMAModelAbortReason? {
        shared.withLock { $0.lastAbort["\(d)\(channel)"] }
    }

    /// CPU time the model's threads (register thread and data movers) have used. The model
    /// stands for the silicon: benchmarks count it apart from the driver's CPU (issue 6: "account
    /// for it apart").
    public var threadCPUSeconds: Double {
        guard let registerThread else { return 0 }
        var total = 0.0
        for thread in [registerThread] + moverThreads {
            var clock = clockid_t()
            guard unsafe pthread_getcpuclockid(thread, &clock) == 0 else { continue }
            var t = timespec()
            guard unsafe clock_gettime(clock, &t) == 0 else { continue }
            total += Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        return total
    }

    // MARK: Thread

    final class Box: @unchecked Sendable { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }

    static func spawn(_ body: @escaping () -> Void) -> pthread_t {
        let box = unsafe Unmanaged.passRetained(Box(body)).toOpaque()
        var t = pthread_t()
        let rc = unsafe pthread_create(&t, nil, { arg in
            let b = unsafe Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return t
    }

    func start() {
        registerThread = Self.spawn { [unowned self] in self.runRegisters() }
        for d in EDMADirection.allCases {
            moverThreads.append(Self.spawn { [unowned self] in self.runMover(d) })
        }
    }

    /// How long the register thread keeps looking for register writes after its last one before it
    /// sleeps. Silicon answers a register access at once; a model that slept after every access
    /// would make each doorbell a wake-up system call and each read after a write a sleep of the
    /// reader, costs the driver does not have on hardware. The model's CPU is the silicon's
    /// stand-in (counted apart). Past `idleYield` the spin yields the CPU to any other runnable
    /// thread (a data mover copying, the driver) at each turn.
    static let idleSpin: Duration = .microseconds(200)
    static let idleYield: Duration = .microseconds(10)

    /// The register thread: applies posted writes in order (the controller's register interface).
    func runRegisters() {
        let file = unsafe mapping.file
        let clock = ContinuousClock()
        var lastWork = clock.now
        var kicks = unsafe ntb_atomic_load_u32(&file.pointee.model_wake)
        while unsafe ntb_atomic_load_u32(stopFlag) == 0 {
            if drainRings() { lastWork = clock.now; continue }
            // A kick (a producer's wake, or a channel raising an interrupt that a driver is about
            // to answer with register accesses) restarts the idle spin.
            let k = unsafe ntb_atomic_load_u32(&file.pointee.model_wake)
            if k != kicks { kicks = k; lastWork = clock.now }
            let idle = clock.now - lastWork
            if idle < Self.idleSpin {
                if idle > Self.idleYield { sched_yield() }
                continue
            }
            // Sleep until a producer publishes (Dekker-style: flag, re-check, wait).
            unsafe ntb_atomic_store_u32(&file.pointee.model_sleeping, 1)
            let w = unsafe ntb_atomic_load_u32(&file.pointee.model_wake)
            if unsafe !ringsHaveWork() && ntb_atomic_load_u32(stopFlag) == 0 {
                unsafe _ = ntb_futex_wait(&file.pointee.model_wake, w, 50_000_000)
            }
            unsafe ntb_atomic_store_u32(&file.pointee.model_sleeping, 0)
            kicks = unsafe ntb_atomic_load_u32(&file.pointee.model_wake)
            lastWork = clock.now
        }
    }

    /// Wakes the register thread, or restarts its idle spin (the producers' protocol of
    /// ``PostedWriteRegisterSpace``: bump `model_wake`, futex-wake only when it sleeps). Used by
    /// ``stop()``, and when a channel is about to raise an interrupt: the driver answers it with
    /// register accesses (read `int_status`, write `int_clear`, the next doorbell), which silicon
    /// serves at once, so the driver should not pay the model's wake-up (a futex wake on its write,
    /// a sleep on its read): the model's own CPU, counted apart.
    func kickRegisters() {
        let file = unsafe mapping.file
        unsafe _ = ntb_atomic_fetch_add_u32(&file.pointee.model_wake, 1)
        if unsafe ntb_atomic_load_u32(&file.pointee.model_sleeping) != 0 {
            unsafe ntb_futex_wake_all(&file.pointee.model_wake)
        }
    }

    /// Wakes direction `d`'s data mover (after a doorbell, and from ``stop()``).
    func kickMover(_ d: EDMADirection) {
        let word = unsafe moverWake + 2 * d.rawValue
        unsafe _ = ntb_atomic_fetch_add_u32(word, 1)
        if unsafe ntb_atomic_load_u32(word + 1) != 0 { unsafe ntb_futex_wake_all(word) }
    }

    /// A direction's data mover: serves the direction's running channels round robin, one LL
    /// element each per turn (the channels of a direction share the engine's data path, arbitrated
    /// per `wr_ch_arb_weight`/`rd_ch_arb_weight`, registers Linux leaves at reset; docs/hardware-reference.md
    /// §1.2. The arbitration granularity is unverified: the model switches per element). The copy
    /// runs outside `engine`, so register accesses and the other direction go on meanwhile.
    func runMover(_ d: EDMADirection) {
        let word = unsafe moverWake + 2 * d.rawValue
        let channelCount = count(d)
        var next = 0
        while unsafe ntb_atomic_load_u32(stopFlag) == 0 {
            let seen = unsafe ntb_atomic_load_u32(word)
            var idle = true
            for i in 0..<channelCount {
                let c = (next + i) % channelCount
                switch engine.withLock({ _ in prepareStep(d, c) }) {
                case .idle:
                    continue
                case .progressed:
                    idle = false
                case .copy(let job):
                    configuration.copyHook?(d, c)
                    Self.move(job)
                    engine.withLock { _ in finishStep(d, c, job) }
                    idle = false
                }
                next = (c + 1) % channelCount
                break
            }
            if !idle { continue }
            // No channel of this direction runs: sleep until a doorbell.
            unsafe ntb_atomic_store_u32(word + 1, 1)
            if unsafe ntb_atomic_load_u32(word) == seen && ntb_atomic_load_u32(stopFlag) == 0 {
                unsafe _ = ntb_futex_wait(word, seen, 50_000_000)
            }
            unsafe ntb_atomic_store_u32(word + 1, 0)
        }
    }

    /// One element's data, as the engine writes it: a DMA write goes to memory and does not fill a
    /// CPU's cache, so large elements are written with non-temporal stores (a cached memmove would
    /// make the model faster the more of the destination buffers fit the CPU's last-level cache,
    /// which the silicon never is). Small or overlapping elements use memmove.
    static func move(_ job: CopyJob) {
        let to = unsafe UInt(bitPattern: job.to), from = unsafe UInt(bitPattern: job.from), n = UInt(job.size)
        if job.size >= 4096 && (to &+ n <= from || from &+ n <= to) {
            unsafe ntb_transport_copy_nocache(job.to, job.from, n)
        } else {
            unsafe memmove(job.to, job.from, job.size)
        }
    }

    func ringsHaveWork() -> Bool {
        for a in EDMAAccessor.allCases {
            let ring = unsafe mapping.ring(a)
            let next = unsafe ntb_atomic_load_acquire_u64(&ring.pointee.applied)
            let e = unsafe mapping.entries(a) + Int(next & UInt64(mapping.capacity - 1))
            if unsafe ntb_atomic_load_acquire_u64(&e.pointee.seq) == next + 1 { return true }
        }
        return false
    }

    /// Applies every published store of every ring, in ticket order per ring.
    func drainRings() -> Bool {
        var any = false
        let mask = UInt64(mapping.capacity - 1)
        for a in EDMAAccessor.allCases {
            let ring = unsafe mapping.ring(a)
            let entries = unsafe mapping.entries(a)
            var applied = unsafe ntb_atomic_load_acquire_u64(&ring.pointee.applied)
            var n: UInt64 = 0
            while true {
                let e = unsafe entries + Int(applied & mask)
                if unsafe ntb_atomic_load_acquire_u64(&e.pointee.seq) != applied + 1 { break }
                let value = unsafe e.pointee.value, offset = Int(unsafe e.pointee.offset), width = Int(unsafe e.pointee.width)
                engine.withLock { _ in apply(offset: offset, width: width, value: value) }
                applied += 1
                n += 1
                unsafe ntb_atomic_store_release_u64(&ring.pointee.applied, applied)
            }
            if n > 0 {
                any = true
                shared.withLock { $0.counters.storesApplied &+= n }
                ntb_atomic_fence()
                if unsafe ntb_atomic_load_u32(&ring.pointee.waiters) != 0 {
                    unsafe _ = ntb_atomic_fetch_add_u32(&ring.pointee.applied_wake, 1)
                    unsafe ntb_futex_wake_all(&ring.pointee.applied_wake)
                }
            }
        }
        return any
    }
}
