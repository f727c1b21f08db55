import NTBHardware
import NTBTransport
import PCIKit

/// The message ports of one transport, one per queue pair: every session on the transport gets the
/// same port of a queue pair (reset if its link went down in between), so its receive buffers are
/// posted once. Make one set per transport and hand it to each session.
///
/// The buffers are the queue pair's (``QueuePair/makeBuffers(count:length:)``): they stay valid until
/// the transport is gone, also where a data path offered them to the peer's ring (`edma`).
public final class PortSet<Device: NTBDevice, Backend: TransportBackend> {
    public let transport: Transport<Device, Backend>
    var kept: [MessagePort<Device, Backend>?]

    public init(_ transport: Transport<Device, Backend>) {
        self.transport = transport
        kept = Array(repeating: nil, count: transport.queuePairCount)
    }

    /// The port of queue pair `index`.
    public func port(_ index: Int) throws(TransportError) -> MessagePort<Device, Backend> {
        let qp = transport.queuePairs[index]
        if let port = kept[index] {
            // The queue pair went down since the port posted (it may have been polled by someone
            // else, e.g. waitForLink, who took the returned buffers): post everything again.
            if port.linkLost || qp.counters[.linkDowns] != port.linkDownsAtPost { try port.reset() }
            return port
        }
        let port = try MessagePort(qp)
        kept[index] = port
        return port
    }

    /// The ports of the first `count` queue pairs (all by default).
    public func ports(_ count: Int? = nil) throws(TransportError) -> [MessagePort<Device, Backend>] {
        var ports: [MessagePort<Device, Backend>] = []
        for i in 0..<(count ?? transport.queuePairCount) { ports.append(try port(i)) }
        return ports
    }
}

/// A queue pair with a pool of receive buffers, as the tools use it: receive the next message, send
/// with back-pressure. No allocation per message. One port per queue pair: its buffers come from the
/// queue pair (``QueuePair/makeBuffers(count:length:)``), so they are memory its data path moves best
/// (DMA memory on `edma`, where the payload lands in them without a copy). Get ports from a
/// ``PortSet``.
@safe
public final class MessagePort<Device: NTBDevice, Backend: TransportBackend> {
    public let qp: QueuePair<Device, Backend>
    public let bufferSize: Int
    public let bufferCount: Int
    /// The receive buffers (`bufferCount`), then one buffer of `bufferSize` to send bulk data from
    /// (``dataBuffer``).
    let buffers: MessageBuffers
    let controlBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ControlMessage.size, alignment: 64)
    // Received messages not yet taken: FIFO of (slot, length, status).
    var inboxSlot: [Int]
    var inboxLength: [Int]
    var inboxHead = 0
    var inboxCount = 0
    public internal(set) var sendsCompleted: UInt64 = 0
    public internal(set) var linkLost = false
    /// The queue pair's link-down count when every buffer was last posted.
    var linkDownsAtPost: UInt64 = 0
    public let waitTimeout: Duration

    /// As many receive buffers as the RFC ring holds (127), so a DMA data path keeps long chains
    /// going (few interrupts); a frame channel fills at most its ring.
    init(_ qp: QueuePair<Device, Backend>, buffers: Int = Int(EDMARing.capacity), waitTimeout: Duration = .seconds(10)) throws(TransportError) {
        self.qp = qp
        bufferSize = qp.maxPayload
        bufferCount = buffers
        self.buffers = try qp.makeBuffers(count: buffers + 1, length: max(bufferSize, 1))
        inboxSlot = Array(repeating: 0, count: buffers)
        inboxLength = Array(repeating: 0, count: buffers)
        self.waitTimeout = waitTimeout
        linkDownsAtPost = qp.counters[.linkDowns]
        for i in 0..<buffers { try post(i) }
    }

    deinit {
        // Nothing more arrives for this port (the buffers stay the queue pair's).
        qp.removeReceives()
        unsafe controlBuffer.deallocate()
    }

    /// A buffer of `bufferSize` bytes to send bulk data from with ``QueuePair/send(_:length:cookie:)``
    /// or ``QueuePair/sendBatch(count:buffers:)`` (without a copy on a DMA data path). Keep it
    /// unchanged while sends from it are in flight.
    public var dataBuffer: MessageBuffer { buffers[bufferCount] }

    /// After a link down every buffer came back: start over with all of them posted.
    func reset() throws(TransportError) {
        qp.removeReceives()
        inboxHead = 0
        inboxCount = 0
        linkLost = false
        linkDownsAtPost = qp.counters[.linkDowns]
        for i in 0..<bufferCount { try post(i) }
    }

    func post(_ slot: Int) throws(TransportError) {
        try qp.postReceive(buffers[slot], cookie: UInt64(slot))
    }

    /// The bytes of a received slot.
    public func bytes(_ slot: Int, _ length: Int) -> UnsafeRawBufferPointer {
        unsafe UnsafeRawBufferPointer(start: buffers[slot].bytes.baseAddress, count: length)
    }

    /// Polls once; returns how many completions it saw.
    @discardableResult
    public func pump() -> Int {
        qp.poll { c in
            switch c.kind {
            case .send:
                sendsCompleted &+= 1
            case .receive:
                if c.status == .ok {
                    var i = inboxHead + inboxCount
                    if i >= bufferCount { i -= bufferCount }
                    inboxSlot[i] = Int(c.cookie)
                    inboxLength[i] = c.length
                    inboxCount += 1
                } else if c.status == .linkDown {
                    linkLost = true
                } else {
                    // overflow / invalid frame: counted by the queue pair; give the buffer back.
                    try? post(Int(c.cookie))
                }
            case .linkDown:
                linkLost = true
            case .linkUp:
                break
            }
        }
    }

    /// Takes the next received message, waiting up to `timeout` (nil: the port's default).
    public func receive(timeout: Duration? = nil) throws(ToolError) -> (slot: Int, length: Int) {
        // The clock is read once nothing came at the first look (not once per message; `wait` spins first).
        var deadline: ContinuousClock.Instant?
        while inboxCount == 0 {
            if linkLost { throw ToolError("the peer went away (queue pair \(qp.index) link down)") }
            if pump() == 0 {
                let now = ContinuousClock.now
                if deadline == nil { deadline = now.advanced(by: timeout ?? waitTimeout) }
                if now >= deadline! { throw ToolError("no message from the peer on queue pair \(qp.index) within \(timeout ?? waitTimeout); is the peer running?") }
                _ = qp.wait(timeout: .milliseconds(5))
            }
        }
        return popInbox()
    }

    /// Takes the oldest received message from the inbox (not empty).
    func popInbox() -> (slot: Int, length: Int) {
        let r = (inboxSlot[inboxHead], inboxLength[inboxHead])
        inboxHead = inboxHead + 1 == bufferCount ? 0 : inboxHead + 1
        inboxCount -= 1
        return r
    }

    /// Counts data messages on `ports` until a control message of `kind` arrived on each, reposting
    /// every buffer at once (the perf sink: no per-message clock or inbox). One thread drives all the
    /// ports: it polls them in turn and sleeps on all of them at once
    /// (``QueuePair/wait(anyOf:timeout:)``). Throws if the peer goes away or stays silent.
    public static func sink(_ ports: [MessagePort], until kind: ControlMessage.Kind, idleLimit: Duration = .seconds(30)) throws(ToolError) -> (bytes: UInt64, messages: UInt64) {
        var bytes: UInt64 = 0, messages: UInt64 = 0
        var done = [Bool](repeating: false, count: ports.count)
        var idleSince: ContinuousClock.Instant?
        // Messages an earlier receive already took from the queue pair come first.
        for (p, port) in ports.enumerated() {
            while !done[p], port.inboxCount > 0 {
                let (slot, length) = port.popInbox()
                if length == ControlMessage.size, let m = unsafe ControlMessage(port.bytes(slot, length)), m.kind == kind { done[p] = true }
                else { bytes &+= UInt64(length); messages &+= 1 }
                try? port.post(slot)
            }
        }
        // Where the queue pair hands messages over from its receive ring (frame channels, host):
        // count each one where it lies, no copy (QueuePair.poll(inPlace:)); the buffers come back to
        // the queue pair afterwards. Nothing follows the END on a queue pair until the initiator has
        // our result, so no later message is consumed here. Otherwise messages land in the posted
        // buffers, which are reposted at once.
        let inPlace = ports.first?.qp.receivesInPlace ?? false
        if inPlace { for p in ports.indices where !done[p] { ports[p].qp.removeReceives() } }
        defer { if inPlace { for port in ports { for i in 0..<port.bufferCount { try? port.post(i) } } } }
        // The queue pairs still sending (rebuilt when one ends, not per poll).
        var waiting = ports.indices.filter { !done[$0] }.map { ports[$0].qp }
        while !waiting.isEmpty {
            var n = 0
            for (p, port) in ports.enumerated() where !done[p] {
                n &+= port.sinkPoll(kind, &done[p], &bytes, &messages)
                if done[p] { waiting = ports.indices.filter { !done[$0] }.map { ports[$0].qp } }
            }
            if n == 0 && !waiting.isEmpty {
                if ports.contains(where: \.linkLost) { throw ToolError("the peer went away during perf") }
                let now = ContinuousClock.now
                if let since = idleSince {
                    if now - since > idleLimit { throw ToolError("perf: no data from the peer for \(idleLimit)") }
                } else {
                    idleSince = now
                }
                _ = QueuePair.wait(anyOf: waiting, timeout: .milliseconds(2))
            } else {
                idleSince = nil
            }
        }
        return (bytes, messages)
    }

    /// One poll of the sink: counts data messages into `bytes` and `messages`, sets `done` at the
    /// control message of `kind`; returns the number of completions seen.
    func sinkPoll(_ kind: ControlMessage.Kind, _ done: inout Bool, _ bytes: inout UInt64, _ messages: inout UInt64) -> Int {
        unsafe qp.poll(limit: 256, inPlace: { b in
            if b.count == ControlMessage.size, let m = unsafe ControlMessage(b), m.kind == kind { done = true }
            else { bytes &+= UInt64(b.count); messages &+= 1 }
        }) { c in
            switch c.kind {
            case .receive:
                let slot = Int(c.cookie)
                if c.status == .ok {
                    if c.length == ControlMessage.size, let m = unsafe ControlMessage(self.bytes(slot, c.length)), m.kind == kind {
                        done = true
                    } else {
                        bytes &+= UInt64(c.length)
                        messages &+= 1
                    }
                    try? post(slot)
                } else if c.status == .linkDown {
                    linkLost = true
                } else {
                    try? post(slot)
                }
            case .linkDown: linkLost = true
            case .send: sendsCompleted &+= 1
            case .linkUp: break
            }
        }
    }

    /// Non-blocking receive.
    public func tryReceive() -> (slot: Int, length: Int)? {
        if inboxCount == 0 { pump() }
        guard inboxCount > 0 else { return nil }
        return popInbox()
    }

    /// Gives a received slot back to the queue pair.
    public func release(_ slot: Int) {
        try? post(slot)
    }

    /// Sends one message, polling for completions while the ring is full.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(ToolError) {
        let clock = ContinuousClock()
        var deadline: ContinuousClock.Instant?
        while true {
            do throws(TransportError) {
                unsafe try qp.send(bytes, cookie: 0)
                return
            } catch .ringFull {
                if pump() == 0 {
                    let now = clock.now
                    if deadline == nil { deadline = now.advanced(by: waitTimeout) }
                    if now >= deadline! { throw ToolError("the peer stopped consuming queue pair \(qp.index) for \(waitTimeout)") }
                    _ = qp.wait(timeout: .milliseconds(1))
                }
            } catch {
                throw ToolError(error.description)
            }
        }
    }

    /// Sends a control message.
    public func send(_ message: ControlMessage) throws(ToolError) {
        unsafe message.encode(into: controlBuffer)
        unsafe try send(UnsafeRawBufferPointer(controlBuffer))
    }

    /// Receives the next message and requires it to be a control message.
    public func receiveControl(timeout: Duration? = nil) throws(ToolError) -> ControlMessage {
        let (slot, length) = try receive(timeout: timeout)
        defer { release(slot) }
        guard let m = unsafe ControlMessage(bytes(slot, length)) else {
            throw ToolError("expected a control message from the peer, got \(length) bytes of data; restart both sides")
        }
        return m
    }

    /// Waits until every send was consumed by the peer.
    public func drain() throws(ToolError) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: waitTimeout)
        while qp.sendsInFlight > 0 {
            if linkLost { throw ToolError("the peer went away before consuming every message") }
            if pump() == 0 {
                if clock.now >= deadline { throw ToolError("the peer did not consume the last messages within \(waitTimeout)") }
                _ = qp.wait(timeout: .milliseconds(1))
            }
        }
    }
}
