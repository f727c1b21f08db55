public import NTBHardware
import PCIKit
import Synchronization

/// Where the transport link stands (for `waitForLink`, `stats`, messages).
public enum TransportLinkState: Equatable, Sendable {
    /// The NTB link is down.
    case down
    /// The NTB link is up; the scratchpad handshake has not completed (peer not there yet, or a mismatch).
    case negotiating
    /// Memory windows are set up; queue pairs negotiate their own links (QP_LINKS).
    case up
}

/// The transport on one NTB device: link management (the v4 scratchpad handshake, memory windows,
/// QP_LINKS, link down and recovery) and the queue pairs (Linux `struct ntb_transport_ctx`).
///
/// The control plane runs on a link monitor thread (or in ``poll()`` when
/// `linkMonitorInterval` is nil); queue pairs are driven by the client's threads.
/// A backend whose peer writes our posted buffers by DMA that keeps running after the peer is gone (the
/// edma backend's endpoint: the host's READ channels are engines on our side). Control plane only.
public protocol PeerWriterQuiescing {
    /// Waits (bounded) until nothing the departed peer started can write our posted buffers any more.
    /// Returns nil when that holds, else a description of what still runs.
    func quiescePeerWriters(bound: Duration) -> String?
}

public final class Transport<Device: NTBDevice, Backend: TransportBackend>: @unchecked Sendable {
    public let device: Device
    public let backend: Backend
    public let configuration: TransportConfiguration
    /// Memory windows in use: min(outbound windows, (scratchpads − 4) / 2).
    public let memoryWindowCount: Int
    /// Queue pairs (`qp_count`).
    public let queuePairCount: Int
    /// The queue pairs, index = queue pair number.
    public let queuePairs: [QueuePair<Device, Backend>]
    /// The counters of every queue pair.
    public let statistics: StatisticsStorage

    private let links: [QueuePairLink<Backend.Channel>]
    private let control: Mutex<ControlState>
    private let stopMonitor = Atomic<Bool>(false)
    private var monitor: TransportThread?
    private let publishedState = Atomic<UInt8>(0)
    private let problem = Mutex<TransportError?>(nil)
    /// This transport's session id (random, never 0), written into the peer's session scratchpad.
    public let sessionID: UInt32
    /// The scratchpad that carries the session id: the device's last one, when ntb_transport v4 leaves
    /// it unused (index ≥ 4 + 2·NUM_MWS; Linux neither writes nor reads it). nil: no spare scratchpad.
    public let sessionScratchpad: Int?
    private let rejections = Atomic<UInt64>(0)
    private let restarts = Atomic<UInt64>(0)

    private struct InboundWindow {
        var buffer: DMABuffer?
        var translatedSize = 0
    }

    private enum QueuePairControl {
        case idle
        case awaitingAck(UInt64)
        case negotiating(UInt64, next: ContinuousClock.Instant)
        case up(UInt64)
    }

    private struct ControlState {
        var transportUp = false
        var nextAttempt = ContinuousClock.now
        /// The session id the peer had written when the transport came up (0: a peer without one).
        var peerSession: UInt32 = 0
        /// QP_LINKS bits of our queue pairs whose rings are reset for the current generation: the
        /// only bits we ever write into the peer's QP_LINKS.
        var preparedLinks: UInt32 = 0
        var generation: UInt64 = 0
        var windows: [InboundWindow]
        var retired: [DMABuffer] = []
        var queuePairs: [QueuePairControl]
        var channels: [Backend.Channel?]
        var closed = false
    }

    /// Sets up the transport on `device` (`ntb_transport_probe` + `ntb_transport_create_queue` for
    /// every queue pair), enables the link and starts the link monitor.
    public init(device: Device, configuration: TransportConfiguration = .init(), backendOptions: Backend.Options? = nil) throws(TransportError) {
        self.device = device
        self.configuration = configuration
        guard configuration.mtu > HostWire.headerSize else {
            throw .invalidConfiguration("an MTU of \(configuration.mtu) bytes cannot hold a frame header; use at least \(HostWire.headerSize + 1) (default 65536)")
        }
        let spads = device.scratchpadCount
        guard spads >= HostWire.minimumScratchpads else {
            throw .invalidConfiguration("\(device.name) has \(spads) scratchpads; ntb_transport needs at least \(HostWire.minimumScratchpads)")
        }
        // The backend's reserved windows are the device's last ones (RFC v3 patch 25: mw_count -= 1 for the eDMA
        // window), taken off both counts so that both sides advertise the same NUM_MWS.
        let reserved = Backend.reservedMemoryWindows
        precondition(reserved >= 0, "a backend reserves a non-negative number of memory windows")
        let windows = min(device.peerMemoryWindowCount - reserved, (spads - HostWire.Scratchpad.sizeHigh(0)) / 2, device.memoryWindowCount - reserved)
        guard windows > 0 else {
            if reserved > 0 {
                throw .invalidConfiguration("\(device.name) has \(device.memoryWindowCount) memory windows; the \(Backend.name) backend keeps the last \(reserved) for itself and the transport needs at least one more (use the host backend on this port)")
            }
            throw .invalidConfiguration("\(device.name) has no memory windows; the transport needs at least one")
        }
        memoryWindowCount = windows
        // qp_count = ilog2(db_valid_mask), then max_num_clients if smaller, else at most mw_count.
        let mask = device.doorbellValidMask
        guard mask != 0 else { throw .invalidConfiguration("\(device.name) has no doorbells; the transport needs one per queue pair") }
        var qps = 63 - mask.leadingZeroBitCount
        if let wanted = configuration.queuePairs, wanted > 0, wanted < qps { qps = wanted }
        else if windows < qps { qps = windows }
        if let wanted = configuration.queuePairs, wanted > qps {
            throw .invalidConfiguration("\(device.name) supports \(qps) queue pairs (ilog2 of its doorbell mask \(String(mask, radix: 16))), not \(wanted); ask for fewer")
        }
        guard qps > 0 else { throw .invalidConfiguration("\(device.name)'s doorbell mask \(String(mask, radix: 16)) leaves no queue pair (Linux uses ilog2(mask)); it needs at least two doorbell bits") }
        queuePairCount = qps
        backend = try Backend(device: device, configuration: configuration, options: backendOptions ?? Backend.defaultOptions)
        if let path = configuration.statisticsPath {
            statistics = try StatisticsStorage(queuePairs: qps, publishingTo: path)
        } else {
            statistics = StatisticsStorage(queuePairs: qps)
        }
        let links = (0..<qps).map { _ in QueuePairLink<Backend.Channel>() }
        self.links = links
        queuePairs = (0..<qps).map { [statistics] i in
            QueuePair<Device, Backend>(index: i, device: device, link: links[i], counters: statistics.counters(i), configuration: configuration)
        }
        control = Mutex(ControlState(windows: Array(repeating: InboundWindow(), count: windows),
                                     queuePairs: Array(repeating: .idle, count: qps),
                                     channels: Array(repeating: nil, count: qps)))
        for i in 0..<qps {
            // ntb_transport_create_queue: ntb_db_clear + ntb_db_clear_mask for the queue pair's bit.
            device.clearDoorbell(1 << UInt64(i))
            device.clearDoorbellMask(1 << UInt64(i))
        }
        sessionID = UInt32.random(in: 1...UInt32.max)
        let firstSpare = HostWire.Scratchpad.sizeHigh(windows)
        sessionScratchpad = spads - 1 >= firstSpare ? spads - 1 : nil
        // A new session (docs/transport.md "Peer restarts"): nothing in our scratchpads was written for
        // it (a previous process on this port left the peer's VERSION, sizes and QP_LINKS there), and the
        // peer must learn that we are new before it trusts its own scratchpads again.
        for i in 0..<spads { device.writeScratchpad(i, 0) }
        do throws(NTBError) { try device.enableLink() } catch { throw .device(error) }
        announceNewSession()
        if sessionScratchpad == nil {
            // Without a session id, a peer still up with our previous session notices only that its
            // VERSION was cleared: leave it cleared for a few of its monitor periods before we write it.
            let quiet = min(max(configuration.linkMonitorIdleInterval * 4, .milliseconds(50)), .milliseconds(500))
            control.withLock { $0.nextAttempt = ContinuousClock.now.advanced(by: quiet) }
        }
        if let interval = configuration.linkMonitorInterval {
            // Weak: the transport closes (and joins this thread) when its last user lets go.
            // While everything is up and nothing changes, the monitor backs off (doubling its sleep up to
            // `linkMonitorIdleInterval`) so it does not wake on a polling data path's core 1000 times a second.
            let idle = max(interval, configuration.linkMonitorIdleInterval)
            let step = UncheckedSendable({ [weak self] () -> Bool? in
                guard let self, !self.stopMonitor.load(ordering: .relaxed) else { return nil }
                self.poll()
                return self.isSettled
            })
            do throws(PCIKitError) {
                monitor = try TransportThread(name: "ntb-link-mon") {
                    var sleep = interval
                    while let settled = step.value() {
                        sleep = settled ? min(sleep * 2, idle) : interval
                        TransportThread.sleep(sleep)
                    }
                }
            } catch { throw .pci(error) }
        }
    }

    deinit { close() }

    /// The transport link state as of the last control-plane step.
    public var linkState: TransportLinkState {
        switch publishedState.load(ordering: .relaxed) {
        case 2: .up
        case 1: .negotiating
        default: .down
        }
    }

    /// The last handshake problem (a mismatch the peer published), if any; cleared on success.
    public var handshakeProblem: TransportError? { problem.withLock { $0 } }

    /// Why the link is not up, in words (nil when it is up or no reason is known): the handshake
    /// value the peer sent that we refused, or the NTB link being down.
    public var linkStateReason: String? {
        switch linkState {
        case .up: return nil
        case .down: return "the NTB link is down"
        case .negotiating: return handshakeProblem.map { "handshake refused: \($0)" }
        }
    }

    /// Handshake attempts refused because of a value the peer published (a bad VERSION, NUM_QPS,
    /// NUM_MWS or MW size); each is retried after `HostWire.linkRetry`.
    public var handshakeRejections: UInt64 { rejections.load(ordering: .relaxed) }

    /// How often the peer was seen to start a new session while our link was up (it restarted
    /// without a link-down event), each followed by a reset and a relink.
    public var peerRestarts: UInt64 { restarts.load(ordering: .relaxed) }

    /// Tells the peer a new session started: clears the VERSION and QP_LINKS we (or a previous
    /// process on this port) wrote into its scratchpads, and writes our session id into its session
    /// scratchpad. A peer that is up with our old session sees either change and resets.
    private func announceNewSession() {
        device.writePeerScratchpad(HostWire.Scratchpad.queuePairLinks, 0)
        device.writePeerScratchpad(HostWire.Scratchpad.version, 0)
        if let s = sessionScratchpad { device.writePeerScratchpad(s, sessionID) }
    }

    /// Whether the peer started a new session since our transport came up: its session id changed,
    /// or the VERSION it wrote into our scratchpads is gone (a new session clears it).
    private func peerStartedNewSession(_ state: ControlState) -> String? {
        let version = device.readScratchpad(HostWire.Scratchpad.version)
        if version != HostWire.version { return "VERSION became \(version)" }
        if let s = sessionScratchpad {
            let id = device.readScratchpad(s)
            if id != state.peerSession { return "session id \(String(state.peerSession, radix: 16)) became \(String(id, radix: 16))" }
        }
        return nil
    }

    // MARK: Control plane

    /// One step of link management: link events, the scratchpad handshake, QP_LINKS, relinks.
    /// Runs on the monitor thread; call it yourself when `linkMonitorInterval` is nil.
    public func poll() {
        control.withLock { state in
            guard !state.closed else { return }
            let now = ContinuousClock.now
            // ntb_transport_event_callback: link down → ntb_transport_link_cleanup.
            guard device.isLinkUp else {
                if state.transportUp { linkCleanup(&state) }
                publishedState.store(0, ordering: .relaxed)
                return
            }
            if state.transportUp, peerStartedNewSession(state) != nil {
                // The peer restarted without a link event: everything it knew is gone. Reset exactly as
                // on link down (queue pairs down, rings reset at relink, own scratchpads zeroed), take
                // back the QP_LINKS bits we gave its old session, and negotiate again.
                restarts.add(1, ordering: .relaxed)
                linkCleanup(&state)
                device.writePeerScratchpad(HostWire.Scratchpad.queuePairLinks, 0)
            }
            if !state.transportUp {
                publishedState.store(1, ordering: .relaxed)
                if now >= state.nextAttempt {
                    linkWork(&state)
                    if !state.transportUp { state.nextAttempt = now.advanced(by: HostWire.linkRetry) }
                }
                guard state.transportUp else { return }
            }
            publishedState.store(2, ordering: .relaxed)
            for q in 0..<queuePairCount { stepQueuePair(q, &state, now: now) }
        }
    }

    /// Whether the control plane has nothing to do until an event: the transport is up, every queue pair
    /// is up (or taken down by its client), and no data path asked for a relink.
    private var isSettled: Bool {
        control.withLock { state in
            guard state.transportUp, !state.closed else { return false }
            for q in 0..<queuePairCount {
                if links[q].downRequest.load(ordering: .relaxed) { return false }
                switch state.queuePairs[q] {
                case .up: continue
                case .idle: if !links[q].clientDown.load(ordering: .relaxed) { return false }
                case .awaitingAck, .negotiating: return false
                }
            }
            return true
        }
    }

    /// `ntb_transport_link_work`: publish our sizes and counts in the PEER's scratchpads (in the
    /// reverse of the order we read them: MW sizes, NUM_MWS, NUM_QPS, VERSION last), then check what
    /// the peer published in OURS, set up the inbound windows, and give every queue pair its memory.
    private func linkWork(_ state: inout ControlState) {
        typealias Spad = HostWire.Scratchpad
        var outboundSizes: [Int] = []
        for i in 0..<memoryWindowCount {
            var size: Int
            do throws(NTBError) { size = try device.peerMemoryWindow(i).length } catch {
                record(.device(error)); return
            }
            if let cap = configuration.maxMemoryWindowSize, size > cap { size = cap }
            outboundSizes.append(size)
            device.writePeerScratchpad(Spad.sizeHigh(i), UInt32(truncatingIfNeeded: UInt64(size) >> 32))
            device.writePeerScratchpad(Spad.sizeLow(i), UInt32(truncatingIfNeeded: UInt64(size)))
        }
        device.writePeerScratchpad(Spad.memoryWindowCount, UInt32(memoryWindowCount))
        device.writePeerScratchpad(Spad.queuePairCount, UInt32(queuePairCount))
        // Our session id before VERSION: a peer that reads our VERSION also reads this session's id.
        if let s = sessionScratchpad { device.writePeerScratchpad(s, sessionID) }
        device.writePeerScratchpad(Spad.version, HostWire.version)

        // Everything below is the peer's word: a bad value is refused, counted and retried (the peer
        // may be restarting, or misconfigured until someone fixes it), never fatal.
        let version = device.readScratchpad(Spad.version)
        guard version != 0 else { return }   // the peer has not written yet
        guard version == HostWire.version else {
            reject(.handshakeMismatch(field: "VERSION", ours: UInt64(HostWire.version), peers: UInt64(version))); return
        }
        let qps = device.readScratchpad(Spad.queuePairCount)
        guard qps == UInt32(queuePairCount) else {
            reject(.handshakeMismatch(field: "NUM_QPS", ours: UInt64(queuePairCount), peers: UInt64(qps))); return
        }
        let mws = device.readScratchpad(Spad.memoryWindowCount)
        guard mws == UInt32(memoryWindowCount) else {
            reject(.handshakeMismatch(field: "NUM_MWS", ours: UInt64(memoryWindowCount), peers: UInt64(mws))); return
        }
        let peerSession = sessionScratchpad.map { device.readScratchpad($0) } ?? 0
        for i in 0..<memoryWindowCount {
            let size = UInt64(device.readScratchpad(Spad.sizeHigh(i))) << 32 | UInt64(device.readScratchpad(Spad.sizeLow(i)))
            do throws(TransportError) { try setWindow(i, size: size, &state) } catch {
                reject(error)
                for w in 0..<memoryWindowCount { freeWindow(w, &state) }
                return
            }
        }
        // Give every queue pair its memory (ntb_transport_setup_qp_mw).
        var channels: [Backend.Channel] = []
        for q in 0..<queuePairCount {
            let txPlace = QueuePairPlacement(queuePair: q, queuePairCount: queuePairCount, windowCount: memoryWindowCount, windowSize: outboundSizes[q % memoryWindowCount])
            let window = state.windows[txPlace.window]
            let rxPlace = QueuePairPlacement(queuePair: q, queuePairCount: queuePairCount, windowCount: memoryWindowCount, windowSize: window.translatedSize)
            do throws(TransportError) {
                let outbound: MMIORegion
                do throws(NTBError) { outbound = try device.peerMemoryWindow(txPlace.window) } catch { throw .device(error) }
                let inbound = window.buffer!.region
                guard txPlace.offset + txPlace.size <= outbound.length, rxPlace.offset + rxPlace.size <= inbound.length else {
                    throw .invalidConfiguration("queue pair \(q) does not fit memory window \(txPlace.window)")
                }
                let memory = QueuePairMemory(
                    queuePair: q, queuePairCount: queuePairCount,
                    transmitArea: outbound.subregion(offset: txPlace.offset, length: txPlace.size),
                    transmitWindow: txPlace.window,
                    receiveArea: inbound.mmio.subregion(offset: rxPlace.offset, length: rxPlace.size),
                    receiveBusAddress: inbound.busAddress + UInt64(rxPlace.offset),
                    mtu: configuration.mtu)
                channels.append(try backend.makeChannel(memory))
            } catch {
                reject(error)
                for w in 0..<memoryWindowCount { freeWindow(w, &state) }
                return
            }
        }
        problem.withLock { $0 = nil }
        state.transportUp = true
        state.peerSession = peerSession
        for q in 0..<queuePairCount {
            state.channels[q] = channels[q]
            if links[q].clientDown.load(ordering: .relaxed) { continue }
            assign(q, channel: channels[q], &state)
        }
    }

    /// Hands queue pair `q` a fresh generation with `channel`; its data path acknowledges it.
    private func assign(_ q: Int, channel: Backend.Channel, _ state: inout ControlState) {
        state.generation &+= 1
        let g = state.generation
        state.preparedLinks &= ~(UInt32(1) << UInt32(q))   // its rings are about to be reset again
        links[q].slot.withLock { $0 = channel }
        links[q].up.store(0, ordering: .releasing)
        links[q].target.store(g, ordering: .releasing)
        state.queuePairs[q] = .awaitingAck(g)
    }

    private func stepQueuePair(_ q: Int, _ state: inout ControlState, now: ContinuousClock.Instant) {
        let link = links[q]
        if link.clientDown.load(ordering: .relaxed) {
            if case .idle = state.queuePairs[q] {} else { state.queuePairs[q] = .idle }
            return
        }
        // The peer sent LINK_DOWN: ntb_qp_link_cleanup_work, then relink while the transport is up.
        if link.downRequest.load(ordering: .acquiring), let channel = state.channels[q] {
            link.downRequest.store(false, ordering: .relaxed)
            assign(q, channel: channel, &state)
        }
        switch state.queuePairs[q] {
        case .idle, .up:
            return
        case let .awaitingAck(g):
            guard link.acknowledged.load(ordering: .acquiring) == g else { return }
            // The data path left the old generation: reset the shared memory it owned.
            state.channels[q]!.prepareSharedMemory()
            state.preparedLinks |= UInt32(1) << UInt32(q)
            state.queuePairs[q] = .negotiating(g, next: now)
            qpLinkWork(q, g, &state, now: now)
        case let .negotiating(g, next):
            if now >= next { qpLinkWork(q, g, &state, now: now) }
        }
    }

    /// `ntb_qp_link_work`: tell the peer our bit; up when the peer's bit is in ours.
    ///
    /// Linux writes (own QP_LINKS | its bit), i.e. echoes back the bits the peer wrote into its own
    /// spad, so the peer then finds its OWN bits in its QP_LINKS and takes queue pairs for linked whose
    /// rings the other side has not reset yet (it then sends or posts into memory about to be zeroed:
    /// a stalled queue pair). We write only the bits of our queue pairs whose rings are reset; a Linux
    /// peer checks only its bit in what we write, so this is the same handshake to it.
    private func qpLinkWork(_ q: Int, _ g: UInt64, _ state: inout ControlState, now: ContinuousClock.Instant) {
        let spad = HostWire.Scratchpad.queuePairLinks
        let bit = UInt32(1) << UInt32(q)
        let val = device.readScratchpad(spad)
        device.writePeerScratchpad(spad, state.preparedLinks | bit)
        if val & bit != 0 {
            state.queuePairs[q] = .up(g)
            links[q].up.store(g, ordering: .releasing)
        } else {
            state.queuePairs[q] = .negotiating(g, next: now.advanced(by: HostWire.linkRetry))
        }
    }

    /// `ntb_set_mw`: allocate an inbound buffer for the size the peer advertised and translate the window.
    private func setWindow(_ i: Int, size: UInt64, _ state: inout ControlState) throws(TransportError) {
        let align: MemoryWindowAlignment
        do throws(NTBError) { align = try device.memoryWindowAlignment(i) } catch { throw .device(error) }
        // Never trust the peer's number: non-zero, within the window's limit and a sane bound.
        let limit = align.maxSize > 0 ? align.maxSize : UInt64(1) << 40
        guard size > 0, size <= limit else {
            throw .device(.invalidPeerValue(field: "MW\(i)_SZ", value: size, expected: "1...\(limit)"))
        }
        let sizeAlign = max(align.sizeAlignment, 1)
        let xlat = Int((size + sizeAlign - 1) / sizeAlign * sizeAlign)
        let addrAlign = Int(max(align.addressAlignment, 1))
        if state.windows[i].buffer == nil || state.windows[i].translatedSize != xlat {
            if let old = state.windows[i].buffer { state.retired.append(old) }   // a data path may still read it
            do throws(NTBError) {
                state.windows[i].buffer = try device.allocateInboundBuffer(length: xlat, alignment: addrAlign)
            } catch { throw .device(error) }
            state.windows[i].translatedSize = xlat
        }
        let region = state.windows[i].buffer!.region
        do throws(NTBError) { try device.setMemoryWindowTranslation(i, busAddress: region.busAddress, size: xlat) } catch {
            throw .device(error)
        }
    }

    /// `ntb_free_mw`, except that the buffer is kept (and reused at the next link-up with the same
    /// size) because a queue pair's data path may still be reading it.
    private func freeWindow(_ i: Int, _ state: inout ControlState) {
        guard state.windows[i].buffer != nil else { return }
        try? device.clearMemoryWindowTranslation(i)
    }

    /// How long link cleanup waits for a departed peer's DMA into our buffers, before and after asking
    /// it to stop (``PeerWriterQuiescing``).
    static var peerWriterBound: Duration { .milliseconds(250) }

    /// `ntb_transport_link_cleanup`: every queue pair down, windows untranslated, local spads zeroed.
    /// A backend whose peer drives DMA into our posted buffers is first asked to wait until those
    /// writers are idle (``PeerWriterQuiescing``): the queue pairs give the buffers back to their owners
    /// as soon as they see generation 0, and a departed peer's chain must not write them after that.
    private func linkCleanup(_ state: inout ControlState) {
        if let quiescing = backend as? any PeerWriterQuiescing,
           let problem = quiescing.quiescePeerWriters(bound: Self.peerWriterBound) {
            record(.device(.unsupported("\(device.name): \(problem)")))
        }
        for q in 0..<queuePairCount {
            links[q].up.store(0, ordering: .releasing)
            links[q].target.store(0, ordering: .releasing)
            links[q].downRequest.store(false, ordering: .relaxed)
            state.queuePairs[q] = .idle
            state.channels[q] = nil
        }
        state.transportUp = false
        state.preparedLinks = 0
        state.nextAttempt = ContinuousClock.now
        for i in 0..<memoryWindowCount { freeWindow(i, &state) }
        // "The scratchpad registers keep the values if the remote side goes down, blast them now".
        for i in 0..<device.scratchpadCount { device.writeScratchpad(i, 0) }
    }

    private func record(_ error: TransportError) {
        problem.withLock { $0 = error }
    }

    /// A handshake value the peer published was refused: remembered for `waitForLink`/`stats`, counted.
    private func reject(_ error: TransportError) {
        rejections.add(1, ordering: .relaxed)
        record(error)
    }

    // MARK: Waiting and teardown

    /// Drives every queue pair (from this thread) until all are up, or throws at `timeout`: the
    /// handshake value the peer sent that we refused (a refused value is retried until then, as Linux
    /// does), or a timeout error saying which stage did not complete. Use it before handing queue pairs to other threads; completions reported while
    /// waiting (only link events are possible) are dropped.
    public func waitForLink(timeout: Duration) throws(TransportError) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if configuration.linkMonitorInterval == nil { poll() }
            var allUp = true
            for qp in queuePairs {
                qp.poll { _ in }
                if !qp.isLinkUp { allUp = false }
            }
            if allUp { return }
            if clock.now >= deadline {
                if let p = handshakeProblem { throw p }
                switch linkState {
                case .down: throw .timeout("the NTB link of \(device.name) did not come up within \(timeout); start the peer (ntb-transport with the other --role) and check the port")
                case .negotiating: throw .timeout("the peer on \(device.name) did not complete the ntb_transport handshake within \(timeout); check that it runs ntb_transport version 4 with the same queue pair count")
                case .up: throw .timeout("the queue pairs of \(device.name) did not link within \(timeout); check that the peer opened them")
                }
            }
            TransportThread.sleep(.microseconds(200))
        }
    }

    /// Tears down (`ntb_transport_free`): each queue pair sends LINK_DOWN to the peer and returns its
    /// buffers, the link monitor stops, windows are untranslated, local spads zeroed, the link disabled.
    /// - Precondition: no other thread is driving a queue pair.
    public func close() {
        let wasOpen = control.withLock { state -> Bool in
            defer { state.closed = true }
            return !state.closed
        }
        guard wasOpen else { return }
        stopMonitor.store(true, ordering: .relaxed)
        monitor?.join()
        for qp in queuePairs where !links[qp.index].clientDown.load(ordering: .relaxed) { qp.shutdown() }
        control.withLock { state in
            if state.transportUp { linkCleanup(&state) }
            for i in 0..<memoryWindowCount {
                state.windows[i].buffer?.close()
                state.windows[i].buffer = nil
            }
            for b in state.retired { b.close() }
            state.retired.removeAll()
        }
        for i in 0..<queuePairCount { device.setDoorbellMask(1 << UInt64(i)) }
        try? device.disableLink()
        publishedState.store(0, ordering: .relaxed)
    }
}

/// Hands a value to another thread when the type's own guarantees (documented at the use) make it safe.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
