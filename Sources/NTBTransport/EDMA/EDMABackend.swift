#if canImport(Glibc)
import Glibc
#endif
public import DWEDMA
public import NTBHardware
public import PCIKit
import Synchronization

/// What the edma backend needs besides the generic configuration: where the eDMA is (the policy's
/// per-port options), and on the host the window a probe already validated, so the backend does not
/// probe again (``EDMAEngineAccess/connect(_:locator:validated:peerWindowBase:)``).
public struct EDMABackendOptions: Sendable, Equatable {
    public var locator: EDMALocator
    /// Host: the peer's eDMA window as the policy's probe validated it; nil: probe at connect.
    public var validatedWindow: ValidatedEDMAWindow?

    public init(locator: EDMALocator = EDMALocator(), validatedWindow: ValidatedEDMAWindow? = nil) {
        self.locator = locator
        self.validatedWindow = validatedWindow
    }
}

/// The `edma` backend (hardware-reference §4, Koichiro Den's RFC v3 "NTB transport backed by endpoint DW
/// eDMA"): the endpoint's DesignWare eDMA moves every message; the memory windows carry only control
/// data (the per-queue-pair rings) and the eDMA window, the last one (RFC v3 patch 25, `mw_count -= 1`).
///
/// - Endpoint: starts its engine and publishes the eDMA window in ``init(device:configuration:)``,
///   before the link comes up; transmits with its local WRITE channels; tells the host with the
///   queue pair's NTB doorbell (an MSI at the host).
/// - Host: after the handshake (first ``makeChannel(_:)``) validates what the endpoint published and
///   drives the endpoint's READ channels through the window; tells the endpoint through the notify
///   read channel (flag in the notification page, 4 bytes DMA'd to `db_base`).
/// - Queue pair q uses data channel q (`qp % channels` with at most one queue pair per channel: a
///   channel is driven by the one thread of its queue pair, so nothing is locked in the data path).
/// - Receivers post the client's buffers by bus address (``QueuePair/postReceive(_:busAddress:cookie:)``):
///   the payload lands there, no CPU copy; sends from DMA memory are read in place. Buffers without
///   a bus address go through the channel's bounce buffers (one copy, counted in rx_memcpy).
///
/// Generic over the device's ``PeerEDMAAccess`` capability: ``TransportBackends/visit(_:device:_:)``
/// opens it with the device's type, so the register accesses are statically dispatched.
public struct EDMABackend<Device: PeerEDMAAccess>: TransportBackend {
    public typealias Channel = EDMAQueueChannel<Device.EDMARegisterSpace>
    public typealias Options = EDMABackendOptions
    public static var name: String { TransportBackendKind.edma.rawValue }
    public static var defaultOptions: EDMABackendOptions { EDMABackendOptions() }
    public static var summary: String { "the endpoint's DW eDMA moves each message (RFC v3 rings); windows carry control data only" }
    /// The last memory window is the eDMA window (RFC v3 patch 25).
    public static var reservedMemoryWindows: Int { 1 }

    @usableFromInline let engine: EDMABackendEngine<Device>

    public init<D: NTBDevice>(device: D, configuration: TransportConfiguration, options: EDMABackendOptions) throws(TransportError) {
        guard let device = device as? Device else {
            throw .invalidConfiguration("the edma backend was opened for \(Device.self) but the port's device is \(D.self); open it with TransportBackends.visit(_:device:_:)")
        }
        engine = try EDMABackendEngine(device: device, configuration: configuration, options: options)
    }

    public func makeChannel(_ memory: QueuePairMemory) throws(TransportError) -> Channel {
        try engine.makeChannel(memory)
    }
}

extension EDMABackend: PeerWriterQuiescing {
    public func quiescePeerWriters(bound: Duration) -> String? { engine.quiescePeerWriters(bound: bound) }

    /// What the endpoint published, or what the host validated (for messages and `info`).
    public var windowDescription: String { engine.windowDescription }
}

/// Set-up state of the edma backend on one port: the engine, the eDMA window, and per queue pair its
/// claimed data channel, ring state and bounce buffers (allocated once, reused across relinks).
/// Control plane only, except the per-queue state, which the queue pair's thread owns.
public final class EDMABackendEngine<Device: PeerEDMAAccess>: @unchecked Sendable {
    public typealias Space = Device.EDMARegisterSpace
    typealias Sender = EDMAChannelSender<MMIORegion, MMIORegion, EDMAv0Core<Space>, MMIORegion>

    let device: Device
    let locator: EDMALocator
    let side: EDMASide
    let mtu: Int
    private var controller: DWEDMAController<Space>?
    private var published: EDMAPeerWindow.Published?
    private var validated: ValidatedEDMAWindow?
    /// Host: a window the policy's probe validated before set-up, used by the first connect.
    private var probed: ValidatedEDMAWindow?
    /// Host: the eDMA window as this side maps it (LL regions, notification page).
    private var peerWindowRegion: MMIORegion?
    private var endpointLists: DMABuffer?
    private var buffers: [DMABuffer] = []
    private var queues: [EDMAQueueState<Space>?]
    private var notifyPort = EDMANotifyPort<Space>()
    private let lock = Mutex<Void>(())

    init(device: Device, configuration: TransportConfiguration, options: EDMABackendOptions) throws(TransportError) {
        self.device = device
        locator = options.locator
        probed = options.validatedWindow
        side = device.edmaSide
        mtu = configuration.mtu
        queues = Array(repeating: nil, count: locator.dataChannels)
        // The transport keeps the LAST window for the eDMA (RFC v3 patch 25); the policy may not move it.
        let windows = side == .endpoint ? device.memoryWindowCount : device.peerMemoryWindowCount
        guard locator.window.resolve(windowCount: windows) == windows - 1 else {
            throw .invalidConfiguration("the edma backend keeps the last memory window (\(windows - 1)) for the eDMA window, as the RFC does (RFC v3 patch 25); the policy puts it in window \(locator.window): set window=last")
        }
        guard UInt64(mtu) <= UInt64(UInt32.max) else { throw .invalidConfiguration("an MTU of \(mtu) bytes does not fit an eDMA descriptor's 32-bit length") }
        if side == .endpoint {
            // hardware-reference §4.3 "Init order": engine up and window published before link-up.
            let registerSize = locator.registerWindowSize ?? Self.powerOfTwo(atLeast: EDMAWindowLayout.registerBytesNeeded(readChannels: locator.publishedChannelCount))
            let (published, controller) = try EDMAEngineAccess.publish(device, locator: locator, registerSize: registerSize)
            self.published = published
            self.controller = controller
            do throws(NTBError) {
                endpointLists = try device.allocateInboundBuffer(length: locator.dataChannels * locator.pageSize, alignment: locator.pageSize)
            } catch { throw .device(error) }
        }
    }

    deinit {
        for i in queues.indices { queues[i]?.deallocate() }
        if let published {
            // The endpoint withdraws its eDMA window: a host that probes now sees no magic.
            EDMAInfo.retract(from: published.buffer.region.mmio)
            try? device.clearMemoryWindowTranslation(published.window)
            published.buffer.close()
        }
        endpointLists?.close()
        for b in buffers { b.close() }
    }

    /// Endpoint: waits until no READ channel of our engine runs (the host's data channels: they write into
    /// the buffers we posted; hardware-reference §1.8, §4.3), so the transport may give those buffers back
    /// when the host's session ended. A dead host cannot stop its own chains, and a chain keeps running
    /// after its driver is gone (verified on the engine model; on silicon inferred from §1.6: nothing but
    /// the chain's end or an error stops a channel). Waits up to `bound`, then asks each still running
    /// channel to stop (doorbell STOP, inferred, ``EDMAv0Core/requestStop(_:channel:)``) and waits `bound`
    /// again. Returns nil when idle, else what still runs. Host side: nothing to wait for (the endpoint's
    /// engine is not ours to stop), nil.
    func quiescePeerWriters(bound: Duration) -> String? {
        guard side == .endpoint, let controller else { return nil }
        let core = controller.core
        let clock = ContinuousClock()
        func running() -> [Int] {
            (0..<controller.readChannels).filter { core.channelStatus(.read, channel: $0) == .running }
        }
        var busy = running()
        if busy.isEmpty { return nil }
        var deadline = clock.now.advanced(by: bound)
        var stopped = false
        while !busy.isEmpty {
            if clock.now >= deadline {
                if stopped { break }
                for ch in busy { core.requestStop(.read, channel: ch) }
                stopped = true
                deadline = clock.now.advanced(by: bound)
            }
            usleep(100)
            busy = running()
        }
        if busy.isEmpty { return nil }
        return "eDMA read channels \(busy.map(String.init).joined(separator: ", ")) of the departed host still run after a stop request; the buffers they write were given back anyway (reset the endpoint's eDMA)"
    }

    var windowDescription: String {
        if let validated { return validated.description }
        if let published { return "published ntb_edma_info in window \(published.window): \(published.info.channelCount) read channels" }
        return "not connected yet"
    }

    static func powerOfTwo(atLeast n: Int) -> Int {
        var p = 256
        while p < n { p <<= 1 }
        return p
    }

    /// Queue pair `memory.queuePair`'s channel: claims its data channel the first time (host: after
    /// connecting to the peer's engine), then hands out views of this generation's rings.
    func makeChannel(_ memory: QueuePairMemory) throws(TransportError) -> EDMAQueueChannel<Space> {
        try lock.withLock { _ throws(TransportError) in try makeChannelLocked(memory) }
    }

    private func makeChannelLocked(_ memory: QueuePairMemory) throws(TransportError) -> EDMAQueueChannel<Space> {
        let q = memory.queuePair
        guard q < locator.dataChannels else {
            throw .invalidConfiguration("the edma backend runs one queue pair per eDMA data channel and this port has \(locator.dataChannels) (channels= in the policy); ask for at most \(locator.dataChannels) queue pairs (--qps)")
        }
        guard memory.receiveArea.length >= EDMARing.queuePairAreaSize, memory.transmitArea.length >= EDMARing.queuePairAreaSize else {
            throw .invalidConfiguration("queue pair \(q) gets \(min(memory.receiveArea.length, memory.transmitArea.length)) bytes of window; the RFC rings need \(EDMARing.queuePairAreaSize); use fewer queue pairs or larger windows")
        }
        if side == .host && controller == nil {
            // hardware-reference §4.3: the host connects after the handshake (the endpoint published before link-up).
            let (window, controller) = try EDMAEngineAccess.connect(device, locator: locator, validated: probed)
            probed = nil
            let region: MMIORegion
            do throws(NTBError) { region = try device.peerMemoryWindow(window.window) } catch { throw .device(error) }
            self.validated = window
            self.peerWindowRegion = region
            self.controller = controller
            try openNotifyChannel(window, region, controller)
        }
        guard let controller else { preconditionFailure("the endpoint's engine is opened in init") }
        let isEndpoint = side == .endpoint
        let txNumber = EDMARing.ringNumber(.transmit, isEndpoint: isEndpoint)
        let rxNumber = EDMARing.ringNumber(.transmit, isEndpoint: !isEndpoint)   // the peer's transmit ring
        let views = EDMARingViews(
            txLocal: memory.receiveArea.subregion(offset: EDMARing.ringOffset(txNumber), length: EDMARing.size),
            txRemote: memory.transmitArea.subregion(offset: EDMARing.ringOffset(txNumber), length: EDMARing.size),
            rxLocal: memory.receiveArea.subregion(offset: EDMARing.ringOffset(rxNumber), length: EDMARing.size),
            rxRemote: memory.transmitArea.subregion(offset: EDMARing.ringOffset(rxNumber), length: EDMARing.size),
            area: memory.receiveArea.subregion(offset: 0, length: EDMARing.queuePairAreaSize))
        if queues[q] == nil {
            let channel: EDMAChannel<EDMAv0Core<Space>, MMIORegion>
            do throws(EDMAError) {
                var claimed: EDMAChannel<EDMAv0Core<Space>, MMIORegion>
                if let window = validated, let region = peerWindowRegion {
                    let ll = region.subregion(offset: window.layout.linkedListOffset(q), length: window.layout.pageSize)
                    claimed = try controller.channel(.read, q, ll: ll, llBusAddress: window.info.linkedListAddresses[q])
                } else {
                    let lists = endpointLists!
                    claimed = try controller.channel(.write, q, ll: lists.region.mmio.subregion(offset: q * locator.pageSize, length: locator.pageSize),
                                                     llBusAddress: lists.region.busAddress + UInt64(q * locator.pageSize))
                }
                // A previous host killed mid-transfer may have left a chain running on this channel: make
                // the hardware channel ours here (bounded), not in the data path's first submit (DWEDMA).
                try claimed.takeOver()
                channel = claimed
            } catch {
                throw .device(.unsupported("\(device.name): cannot claim eDMA data channel \(q): \(error)"))
            }
            let sender = Sender(channel: channel, core: controller.core, queuePairs: [q],
                                rings: [EDMARingSender(local: views.txLocal, remote: views.txRemote)],
                                stallBound: locator.stallTimeout)
            // Host: completions raise one of our MSI vectors (IMWr, RIE), so a waiting queue pair wakes.
            var interrupts = false
            if validated != nil, let target = device.edmaCompletionInterrupt(queuePair: q) {
                sender.useInterrupt(msiAddress: target.address, baseData: target.data, vector: 0)
                interrupts = true
            }
            // Bounce buffers for messages without a bus address: a few MTU-sized slots each way.
            let slotSize = (mtu + 63) & ~63
            let slots = max(2, min(EDMABounce.maxSlots, (2 << 20) / slotSize))
            let tx: DMABuffer, rx: DMABuffer
            do throws(NTBError) {
                tx = try device.allocateInboundBuffer(length: slots * slotSize, alignment: 4096)
                rx = try device.allocateInboundBuffer(length: slots * slotSize, alignment: 4096)
            } catch { throw .device(error) }
            buffers += [tx, rx]
            queues[q] = EDMAQueueState(sender: sender, receiver: EDMARingReceiver(local: views.rxLocal, remote: views.rxRemote),
                                       bounce: EDMABounce(tx: tx.region, rx: rx.region, slotSize: slotSize, slots: slots),
                                       completionRaisesDoorbell: interrupts)
        }
        return EDMAQueueChannel(state: queues[q]!, views: views, maxPayload: mtu, queuePair: q,
                                endpoint: isEndpoint, notify: notifyPort)
    }

    /// Host: the notify read channel (the one after the data channels) with its LL region in the
    /// window, a 4-byte source in host memory and `db_base` as the target (hardware-reference §4.3).
    private func openNotifyChannel(_ window: ValidatedEDMAWindow, _ region: MMIORegion, _ controller: DWEDMAController<Space>) throws(TransportError) {
        let n = EDMAChannelMap.notifyChannel(dataChannels: locator.dataChannels)
        do {
            let source: DMABuffer
            do throws(NTBError) { source = try device.allocateInboundBuffer(length: 4096, alignment: 4096) } catch { throw .device(error) }
            buffers.append(source)
            let channel: EDMAChannel<EDMAv0Core<Space>, MMIORegion>
            do throws(EDMAError) {
                var claimed = try controller.channel(.read, n, ll: region.subregion(offset: window.layout.linkedListOffset(n), length: window.layout.pageSize),
                                                     llBusAddress: window.info.linkedListAddresses[n])
                try claimed.takeOver()
                channel = claimed
            } catch { throw .device(.unsupported("\(device.name): cannot claim the eDMA notify channel \(n): \(error)")) }
            let page = region.subregion(offset: window.layout.notifyOffset, length: window.layout.pageSize)
            notifyPort = EDMANotifyPort(EDMAHostNotifier(page: page, channel: channel, source: source.region.busAddress, target: window.info.notifyAddress))
        }
    }
}

/// The host's notify channel, shared by its queue pairs (one DMA of 4 bytes tells the endpoint about
/// every flagged queue pair), behind a lock taken once per notification, not per message.
public final class EDMANotifyPort<Space: RegisterSpace>: @unchecked Sendable {
    @usableFromInline let notifier: Mutex<EDMAHostNotifier<MMIORegion, EDMAv0Core<Space>, MMIORegion>?>

    /// The endpoint's port: it notifies with doorbells, never through here.
    init() { notifier = Mutex(nil) }

    init(_ n: consuming sending EDMAHostNotifier<MMIORegion, EDMAv0Core<Space>, MMIORegion>) {
        notifier = Mutex(Optional(n))
    }

    /// Flags queue pairs `bits` in the endpoint's notification page and DMAs to `db_base`
    /// (``EDMAHostNotifier/notify(_:observed:readAfter:)``).
    @inlinable
    func notify(_ bits: UInt64, observed: EDMASharedStatus? = nil, readAfter: ContinuousClock.Instant? = nil) {
        notifier.withLock { n in n?.notify(bits, observed: observed, readAfter: readAfter) }
    }
}

/// The four ring views of one queue pair in one link generation (hardware-reference §4.3: each side reads
/// only its own copy, which the peer writes through its outbound window).
@usableFromInline
struct EDMARingViews: @unchecked Sendable {
    /// Our transmit ring: our copy (head, posted addresses, written by the peer) and the peer's copy.
    @usableFromInline let txLocal: MMIORegion
    @usableFromInline let txRemote: MMIORegion
    /// The peer's transmit ring, where we post: our copy (tail, flags, lengths) and the peer's.
    @usableFromInline let rxLocal: MMIORegion
    @usableFromInline let rxRemote: MMIORegion
    /// Both rings of our copy (reset before the queue pair links).
    @usableFromInline let area: MMIORegion
}

/// Bounce buffers of one queue pair: slots of `slotSize` bytes, free ones as bits.
@usableFromInline
struct EDMABounce {
    static let maxSlots = 32
    @usableFromInline let tx: DMARegion
    @usableFromInline let rx: DMARegion
    @usableFromInline let slotSize: Int
    @usableFromInline let allSlots: UInt64
    @usableFromInline var txFree: UInt64
    @usableFromInline var rxFree: UInt64
    /// Send tag → bounce slot (−1: none).
    @usableFromInline var tagSlot: [Int8]
    /// Receive ring slot → bounce slot (−1: the client's buffer).
    @usableFromInline var ringSlot: [Int8]
    /// The bounce slot of the buffer last taken (−1: none).
    @usableFromInline var taken: Int = -1
    /// A buffer was offered while the peer had none of ours: tell it at the next publish.
    @usableFromInline var kick = false

    init(tx: DMARegion, rx: DMARegion, slotSize: Int, slots: Int) {
        precondition(slots > 0 && slots <= Self.maxSlots)
        self.tx = tx
        self.rx = rx
        self.slotSize = slotSize
        allSlots = slots == 64 ? .max : (1 << UInt64(slots)) - 1
        txFree = allSlots
        rxFree = allSlots
        tagSlot = Array(repeating: -1, count: 2 * Int(EDMARing.entries))
        ringSlot = Array(repeating: -1, count: Int(EDMARing.entries))
    }

    @usableFromInline mutating func reset() {
        txFree = allSlots
        rxFree = allSlots
        for i in tagSlot.indices { tagSlot[i] = -1 }
        for i in ringSlot.indices { ringSlot[i] = -1 }
        taken = -1
        kick = false
    }
}

/// One queue pair's data-path state on the edma backend, owned by its thread (pointers, so that the
/// channel value the queue pair holds is a few words and the state is not copied).
@usableFromInline
@safe struct EDMAQueueState<Space: RegisterSpace>: @unchecked Sendable {
    @usableFromInline typealias Sender = EDMAChannelSender<MMIORegion, MMIORegion, EDMAv0Core<Space>, MMIORegion>
    @usableFromInline let sender: UnsafeMutablePointer<Sender>
    @usableFromInline let receiver: UnsafeMutablePointer<EDMARingReceiver<MMIORegion, MMIORegion>>
    @usableFromInline let bounce: UnsafeMutablePointer<EDMABounce>
    /// The data channel's DONE/ABORT IMWr is the queue pair's doorbell MSI (host side).
    @usableFromInline let completionRaisesDoorbell: Bool

    init(sender: consuming Sender, receiver: EDMARingReceiver<MMIORegion, MMIORegion>, bounce: EDMABounce, completionRaisesDoorbell: Bool) {
        self.completionRaisesDoorbell = completionRaisesDoorbell
        unsafe self.sender = .allocate(capacity: 1)
        unsafe self.sender.initialize(to: sender)
        unsafe self.receiver = .allocate(capacity: 1)
        unsafe self.receiver.initialize(to: receiver)
        unsafe self.bounce = .allocate(capacity: 1)
        unsafe self.bounce.initialize(to: bounce)
    }

    func deallocate() {
        unsafe sender.deinitialize(count: 1); unsafe sender.deallocate()
        unsafe receiver.deinitialize(count: 1); unsafe receiver.deallocate()
        unsafe bounce.deinitialize(count: 1); unsafe bounce.deallocate()
    }
}

/// A queue pair's channel on the edma backend: the RFC rings (hardware-reference §4.3) in this generation's
/// window areas, the data channel's sender, and the receive ring where we post.
///
/// Sends: the peer's next posted buffer is reserved and its length written (read back once per chain),
/// the messages of a batch go out as one eDMA chain, and when it completes DONE goes into each
/// descriptor, then the tail, then the peer is told (endpoint: doorbell; host: notify channel).
/// Receives: buffers are offered by bus address into the peer's copy of its transmit ring, then its
/// `head`; completions come from our copy's `tail`, flags and lengths, each validated.
public struct EDMAQueueChannel<Space: RegisterSpace>: DMAChannel, @unchecked Sendable {
    public typealias DataPath = DMADataPath<Self>
    @usableFromInline let state: EDMAQueueState<Space>
    @usableFromInline let views: EDMARingViews
    @usableFromInline let payloadLimit: Int
    @usableFromInline let queuePair: Int
    @usableFromInline let endpoint: Bool
    @usableFromInline unowned(unsafe) let notify: EDMANotifyPort<Space>

    init(state: EDMAQueueState<Space>, views: EDMARingViews, maxPayload: Int, queuePair: Int, endpoint: Bool, notify: EDMANotifyPort<Space>) {
        self.state = state
        self.views = views
        payloadLimit = maxPayload
        self.queuePair = queuePair
        self.endpoint = endpoint
        unsafe self.notify = notify
    }

    @inlinable public var maxPayload: Int { payloadLimit }
    @inlinable public var transmitEntries: Int { Int(EDMARing.capacity) }
    @inlinable public var receiveEntries: Int { Int(EDMARing.capacity) }

    /// Buffers the peer posted that we may fill now (an impossible `head` reads as 1, so that the
    /// next send finds and reports the corruption).
    @inlinable public var transmitFree: Int { unsafe state.sender.pointee.room(ring: 0) ?? 1 }

    /// Zeroes our copy of both rings (head, tail, descriptors) before the queue pair links: the
    /// peer starts its indices from 0 too.
    public func prepareSharedMemory() {
        for offset in stride(from: 0, to: views.area.length, by: 4) { views.area.store32(0, at: offset) }
        Barrier.full()
    }

    /// A new generation (the queue pair's thread): the rings of this generation's memory, indices 0.
    public mutating func resetIndices() {
        unsafe state.sender.pointee.adopt(rings: [EDMARingSender(local: views.txLocal, remote: views.txRemote)])
        unsafe state.receiver.pointee = EDMARingReceiver(local: views.rxLocal, remote: views.rxRemote)
        unsafe state.bounce.pointee.reset()
    }

    // MARK: Transmit

    @inlinable
    public mutating func enqueueTransmit(_ payload: UnsafeRawBufferPointer, busAddress: UInt64?, tag: Int) -> TransmitRefusal? {
        let bounce = unsafe state.bounce
        var slot = -1
        var source: UInt64
        if let busAddress {
            source = busAddress
        } else {
            guard unsafe bounce.pointee.txFree != 0 else { return .busy }
            slot = unsafe bounce.pointee.txFree.trailingZeroBitCount
            source = unsafe bounce.pointee.tx.busAddress &+ UInt64(slot &* bounce.pointee.slotSize)
        }
        switch unsafe state.sender.pointee.enqueue(ring: 0, source: source, length: UInt32(truncatingIfNeeded: payload.count), cookie: UInt64(tag)) {
        case .queued:
            if slot >= 0 {
                // The chain starts at startTransmit: the copy lands before the engine reads it.
                unsafe bounce.pointee.txFree &= ~(1 << UInt64(slot))
                unsafe bounce.pointee.tagSlot[tag] = Int8(truncatingIfNeeded: slot)
                unsafe (bounce.pointee.tx.mmio.baseAddress + slot &* bounce.pointee.slotSize).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
            }
            return nil
        case .busy: return .busy
        case let .tooLarge(capacity): return .tooLarge(capacity: capacity)
        case .corrupt: return .corrupt
        }
    }

    @inlinable public var completionRaisesDoorbell: Bool { state.completionRaisesDoorbell }

    @inlinable
    @discardableResult
    public mutating func startTransmit() -> Bool {
        unsafe state.sender.pointee.flush()
    }

    @inlinable
    public mutating func reapDMATransmits(now: ContinuousClock.Instant, _ finished: (_ tag: Int, _ ok: Bool) -> Void) -> DMATransmitReap {
        let bounce = unsafe state.bounce
        let poll = unsafe state.sender.pointee.poll(now: now) { c in
            let tag = Int(truncatingIfNeeded: c.cookie)
            let slot = unsafe bounce.pointee.tagSlot[tag]
            if slot >= 0 {
                unsafe bounce.pointee.txFree |= 1 << UInt64(slot)
                unsafe bounce.pointee.tagSlot[tag] = -1
            }
            finished(tag, c.status == .ok)
        }
        var result = DMATransmitReap(fault: poll.fault != nil, chainStarted: poll.chainStarted)
        if poll.notify != 0 {
            // DONE and the tail are in the peer's ring: now tell it (hardware-reference §4.3).
            if endpoint { result.ringDoorbell = true } else {
                unsafe notify.notify(poll.notify, observed: state.sender.pointee.lastSharedStatus, readAfter: now)
            }
        }
        return result
    }

    public mutating func sendLinkDown() -> Bool {
        guard unsafe state.sender.pointee.sendLinkDown(ring: 0) else { return false }
        if endpoint { return true }
        unsafe notify.notify(1 << UInt64(queuePair))
        return false
    }

    // MARK: Receive

    @inlinable public var receivePostable: Int { unsafe Int(state.receiver.pointee.postable) }

    @inlinable
    public mutating func offerReceive(busAddress: UInt64?, capacity: Int) -> Bool {
        let receiver = unsafe state.receiver, bounce = unsafe state.bounce
        guard unsafe receiver.pointee.postable > 0, capacity > 0 else { return false }
        // The peer may be waiting for a buffer only if it had none of ours left: otherwise it has
        // transfers in flight and wakes on their completion (it is told once, at the publish).
        if unsafe receiver.pointee.outstanding == 0 { unsafe bounce.pointee.kick = true }
        let index: UInt32
        if let busAddress {
            index = unsafe receiver.pointee.post(busAddress: busAddress, length: UInt32(truncatingIfNeeded: min(capacity, payloadLimit)))
            unsafe bounce.pointee.ringSlot[EDMARing.slot(index)] = -1
        } else {
            guard unsafe bounce.pointee.rxFree != 0 else { return false }
            let slot = unsafe bounce.pointee.rxFree.trailingZeroBitCount
            unsafe bounce.pointee.rxFree &= ~(1 << UInt64(slot))
            index = unsafe receiver.pointee.post(busAddress: bounce.pointee.rx.busAddress &+ UInt64(slot &* bounce.pointee.slotSize),
                                          length: UInt32(truncatingIfNeeded: min(capacity, bounce.pointee.slotSize)))
            unsafe bounce.pointee.ringSlot[EDMARing.slot(index)] = Int8(truncatingIfNeeded: slot)
        }
        return true
    }

    @inlinable
    public mutating func publishReceives() -> Bool {
        unsafe state.receiver.pointee.publish()
        guard unsafe state.bounce.pointee.kick else { return false }
        unsafe state.bounce.pointee.kick = false
        // Endpoint → host: the queue pair's doorbell (an MSI); host → endpoint: the notify channel.
        if endpoint { return true }
        unsafe notify.notify(1 << UInt64(queuePair))
        return false
    }

    @inlinable
    public func receivePending() -> Bool {
        unsafe views.rxLocal.load32(at: EDMARing.tailOffset) != state.receiver.pointee.consumed
    }

    @inlinable
    public mutating func takeReceived() -> DMAReceiveEvent {
        let bounce = unsafe state.bounce
        switch unsafe state.receiver.pointee.next() {
        case .none:
            return .empty
        case let .received(index, length):
            let slot = unsafe Int(bounce.pointee.ringSlot[EDMARing.slot(index)])
            unsafe bounce.pointee.taken = slot
            return .received(length: length, inPlace: slot < 0)
        case let .linkDown(index):
            let slot = unsafe Int(bounce.pointee.ringSlot[EDMARing.slot(index)])
            if slot >= 0 { unsafe bounce.pointee.rxFree |= 1 << UInt64(slot) }
            return .linkDown
        case .corrupt:
            return .corrupt
        }
    }

    @inlinable
    public func bouncedBytes(length: Int) -> UnsafeRawBufferPointer {
        let b = unsafe state.bounce.pointee
        precondition(b.taken >= 0 && length <= b.slotSize)
        return unsafe UnsafeRawBufferPointer(start: b.rx.mmio.baseAddress + b.taken &* b.slotSize, count: length)
    }

    @inlinable
    public mutating func releaseReceived() {
        let bounce = unsafe state.bounce
        let slot = unsafe bounce.pointee.taken
        if slot >= 0 {
            unsafe bounce.pointee.rxFree |= 1 << UInt64(slot)
            unsafe bounce.pointee.taken = -1
        }
    }

    // MARK: Statistics

    @inlinable public var transmitIndex: UInt32 { unsafe state.sender.pointee.positions(ring: 0).issued }
    @inlinable public var transmitTail: UInt32 { unsafe state.sender.pointee.positions(ring: 0).completed }
    @inlinable public var receiveIndex: UInt32 { unsafe state.receiver.pointee.consumed }
}
