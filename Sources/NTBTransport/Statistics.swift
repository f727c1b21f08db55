/// The per-queue-pair counters, named as Linux shows them in debugfs
/// (`/sys/kernel/debug/ntb_transport/<dev>/qpN/stats`, `debugfs_read` in ntb_transport.c), plus a few
/// of ours for conditions Linux does not check (marked "ours").
///
/// Counters live in plain memory, or in a shared statistics file (``StatisticsFile``) so that
/// `ntb-transport stats` can read a running transport. Each queue pair writes only its own slots.
public enum QueuePairCounter: Int, CaseIterable, Sendable {
    case rxBytes, rxPackets, rxMemcpy, rxAsync, rxRingEmpty, rxErrNoBuf, rxErrOverflow, rxErrVersion
    /// ours: the peer wrote a length longer than the frame's payload.
    case rxErrLength
    case txBytes, txPackets, txMemcpy, txAsync, txRingFull, txErrNoBuf
    /// ours: the peer published a ring tail (`rx_info.entry`) that is out of range or ahead of what we sent.
    case txErrIndex
    /// ours: sends refused because the queue pair link was down.
    case txErrLinkDown
    /// ours: sends the DMA engine aborted (each failed back to the client).
    case txErrAbort
    /// ours: the DMA engine stopped completing or vanished (the queue pair went down).
    case dmaFaults
    /// ours: reads of the DMA engine's completion status in interrupt mode (one per completion
    /// interrupt, plus a look every millisecond while sends are in flight).
    case dmaStatusReads
    /// ours: DMA chains started, one doorbell each (`tx_pkts / dma_chains` is the mean chain length).
    case dmaChains
    /// ours: doorbells rung, link transitions, adaptive wait decisions.
    case doorbells, linkUps, linkDowns, interruptWaits, pollWaits
    /// ours: sleeps on the doorbell that ended with work (interrupt and adaptive waits).
    case wakes
    /// ours: sleeps that found this queue pair's doorbell bit (or DMA completion interrupt) pending.
    case doorbellsReceived
    /// ours: interrupt and adaptive waits that found work while spinning, without a sleep.
    case spins
    /// gauges (current values, not counts).
    case rxIndex, rxMaxEntry, txIndex, remoteRxEntry, txMaxEntry, txFree, linkIsUp, maxPayload

    /// The Linux debugfs name, or ours in the same style.
    public var name: String {
        switch self {
        case .rxBytes: "rx_bytes"
        case .rxPackets: "rx_pkts"
        case .rxMemcpy: "rx_memcpy"
        case .rxAsync: "rx_async"
        case .rxRingEmpty: "rx_ring_empty"
        case .rxErrNoBuf: "rx_err_no_buf"
        case .rxErrOverflow: "rx_err_oflow"
        case .rxErrVersion: "rx_err_ver"
        case .rxErrLength: "rx_err_len"
        case .txBytes: "tx_bytes"
        case .txPackets: "tx_pkts"
        case .txMemcpy: "tx_memcpy"
        case .txAsync: "tx_async"
        case .txRingFull: "tx_ring_full"
        case .txErrNoBuf: "tx_err_no_buf"
        case .txErrIndex: "tx_err_index"
        case .txErrLinkDown: "tx_err_link_down"
        case .txErrAbort: "tx_err_abort"
        case .dmaFaults: "dma_faults"
        case .dmaStatusReads: "dma_status_reads"
        case .dmaChains: "dma_chains"
        case .doorbells: "doorbells"
        case .linkUps: "link_ups"
        case .linkDowns: "link_downs"
        case .interruptWaits: "interrupt_waits"
        case .pollWaits: "poll_waits"
        case .wakes: "wakes"
        case .doorbellsReceived: "doorbells_received"
        case .spins: "spins"
        case .rxIndex: "rx_index"
        case .rxMaxEntry: "rx_max_entry"
        case .txIndex: "tx_index"
        case .remoteRxEntry: "RRI"
        case .txMaxEntry: "tx_max_entry"
        case .txFree: "free_tx"
        case .linkIsUp: "qp_link_up"
        case .maxPayload: "max_payload"
        }
    }
}

/// A queue pair's counter slots (a view into a ``StatisticsStorage``).
@safe
public struct QueuePairCounters: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutablePointer<UInt64>

    @usableFromInline init(base: UnsafeMutablePointer<UInt64>) { unsafe self.base = base }

    /// The current value of `counter`.
    @inlinable public subscript(counter: QueuePairCounter) -> UInt64 {
        get { unsafe base[counter.rawValue] }
        nonmutating set { unsafe base[counter.rawValue] = newValue }
    }

    /// Adds `amount` to `counter` (wrapping).
    @inlinable @inline(__always)
    public func add(_ counter: QueuePairCounter, _ amount: UInt64 = 1) {
        unsafe base[counter.rawValue] &+= amount
    }

    /// All counters as (name, value), in declaration order.
    public var snapshot: QueuePairStatistics {
        QueuePairStatistics(values: QueuePairCounter.allCases.map { unsafe base[$0.rawValue] })
    }
}

/// A copy of one queue pair's counters.
public struct QueuePairStatistics: Equatable, Sendable {
    public var values: [UInt64]
    public init(values: [UInt64]) {
        precondition(values.count == QueuePairCounter.allCases.count)
        self.values = values
    }
    public subscript(counter: QueuePairCounter) -> UInt64 { values[counter.rawValue] }
}
