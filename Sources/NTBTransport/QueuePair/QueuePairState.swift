/// The part of a queue pair's data-path state that both data paths share: the generation it runs
/// at, the completion FIFO of sends and the FIFO of posted receive buffers, and the waiting state.
///
/// It lives behind a pointer (``QueuePair/state``): accesses through it are plain loads and stores,
/// while stored `var`s of a class would pay a dynamic exclusivity check on every access.
@usableFromInline
@safe struct QueuePairState {
    /// A channel was adopted (``QueuePair/channelSlot`` is initialised).
    @usableFromInline var hasChannel = false
    /// Last generation the data path adopted.
    @usableFromInline var adopted: UInt64 = 0
    @usableFromInline var isUp = false
    @usableFromInline var sends = SendQueue()
    @usableFromInline var receives: ReceiveQueue
    // Adaptive waiting: how long a wait spins before sleeping on the doorbell; follows the measured
    // gap between a sleep's start and the work that ended it (see QueuePair.waitCore).
    @usableFromInline var spinBudget: Duration = .microseconds(20)
    // Interrupt waiting (NAPI): a wake or a spin found work, so the next wait polls for
    // QueuePair.busyPollBudget before it re-arms the doorbell and sleeps.
    @usableFromInline var busy = false
    // Interrupt sleeps while sends wait for a peer that does not signal consumption: how long one
    // sleep slice lasts before the tail is checked again (halves when a check finds progress,
    // doubles up to 2 ms when it does not).
    @usableFromInline var reapSlice: Duration = .microseconds(20)
    // Polls since the gauges (ring positions for `stats`) were last refreshed.
    @usableFromInline var pollsSinceGauges = 0
    @usableFromInline var waitMode: TransportConfiguration.WaitMode

    init(receiveDepth: Int, waitMode: TransportConfiguration.WaitMode) {
        receives = ReceiveQueue(depth: receiveDepth)
        self.waitMode = waitMode
    }

    func deallocate() {
        sends.deallocate()
        receives.deallocate()
    }
}

/// Sends written and not yet reported by `poll`: a FIFO of cookies and lengths indexed by send
/// slot (a DMA send's slot is its tag). It holds 2·N slots for a ring of N entries, so a sender
/// never has more outstanding than a poll can report.
@usableFromInline
@safe struct SendQueue {
    @usableFromInline var cookies: UnsafeMutablePointer<UInt64>
    @usableFromInline var lengths: UnsafeMutablePointer<Int>
    @usableFromInline var capacity = 0
    @usableFromInline var oldest = 0
    @usableFromInline var pending = 0

    init() {
        unsafe cookies = .allocate(capacity: 1)
        unsafe lengths = .allocate(capacity: 1)
    }

    func deallocate() {
        unsafe cookies.deallocate()
        unsafe lengths.deallocate()
    }

    /// Makes room for `capacity` slots (a new channel's ring size); empties the FIFO.
    @usableFromInline mutating func reset(capacity newCapacity: Int) {
        if newCapacity != capacity {
            deallocate()
            capacity = newCapacity
            unsafe cookies = .allocate(capacity: max(newCapacity, 1))
            unsafe lengths = .allocate(capacity: max(newCapacity, 1))
        }
        oldest = 0
        pending = 0
    }

    /// Slots still free.
    @inlinable var room: Int { capacity &- pending }

    /// The slot the next send takes.
    @inlinable var nextSlot: Int {
        let slot = oldest &+ pending
        return slot >= capacity ? slot &- capacity : slot
    }

    /// Records a send in the next slot; returns the slot.
    /// - Precondition: `room > 0`.
    @inlinable @inline(__always) @discardableResult
    mutating func push(cookie: UInt64, length: Int) -> Int {
        let slot = nextSlot
        unsafe cookies[slot] = cookie
        unsafe lengths[slot] = length
        pending &+= 1
        return slot
    }

    /// Takes the oldest send.
    /// - Precondition: `pending > 0`.
    @inlinable @inline(__always)
    mutating func pop() -> (cookie: UInt64, length: Int) {
        let r = unsafe (cookies[oldest], lengths[oldest])
        oldest = oldest &+ 1 == capacity ? 0 : oldest &+ 1
        pending &-= 1
        return r
    }
}

/// Posted receive buffers, oldest first (fixed capacity: `receiveQueueDepth`).
@usableFromInline
@safe struct ReceiveQueue {
    @usableFromInline let bases: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    @usableFromInline let capacities: UnsafeMutablePointer<Int>
    @usableFromInline let cookies: UnsafeMutablePointer<UInt64>
    /// Where a DMA engine reaches each buffer; nil = not DMA memory (a DMA data path bounces it).
    @usableFromInline let busAddresses: UnsafeMutablePointer<UInt64?>
    @usableFromInline let depth: Int
    @usableFromInline var oldest = 0
    @usableFromInline var count = 0

    init(depth: Int) {
        self.depth = depth
        unsafe bases = .allocate(capacity: depth)
        unsafe bases.initialize(repeating: nil, count: depth)
        unsafe capacities = .allocate(capacity: depth)
        unsafe capacities.initialize(repeating: 0, count: depth)
        unsafe cookies = .allocate(capacity: depth)
        unsafe cookies.initialize(repeating: 0, count: depth)
        unsafe busAddresses = .allocate(capacity: depth)
        unsafe busAddresses.initialize(repeating: nil, count: depth)
    }

    func deallocate() {
        unsafe bases.deallocate()
        unsafe capacities.deallocate()
        unsafe cookies.deallocate()
        unsafe busAddresses.deallocate()
    }

    /// The slot of the buffer `offset` places after the oldest.
    @inlinable @inline(__always)
    func slot(_ offset: Int) -> Int {
        let slot = oldest &+ offset
        return slot >= depth ? slot &- depth : slot
    }

    /// Appends a buffer.
    /// - Precondition: `count < depth`.
    @inlinable @inline(__always)
    mutating func push(_ buffer: UnsafeMutableRawBufferPointer, busAddress: UInt64?, cookie: UInt64) {
        let slot = slot(count)
        unsafe bases[slot] = buffer.baseAddress
        unsafe capacities[slot] = buffer.count
        unsafe cookies[slot] = cookie
        unsafe busAddresses[slot] = busAddress
        count &+= 1
    }

    /// Takes the oldest buffer.
    /// - Precondition: `count > 0`.
    @inlinable @inline(__always)
    mutating func pop() -> (base: UnsafeMutableRawPointer?, capacity: Int, cookie: UInt64) {
        let r = unsafe (bases[oldest], capacities[oldest], cookies[oldest])
        oldest = oldest &+ 1 == depth ? 0 : oldest &+ 1
        count &-= 1
        return unsafe r
    }
}
