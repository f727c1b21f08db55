import NTBHardware
import NTBTransport

/// Errors of the tools' sessions.
struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

/// A queue pair with a pool of receive buffers, as the tools use it: receive the next message, send
/// with back-pressure. No allocation per message. One port per queue pair at a time: a port going away
/// takes back every posted buffer of its queue pair.
final class MessagePort<Device: NTBDevice, Backend: TransportBackend> {
    let qp: QueuePair<Device, Backend>
    let bufferSize: Int
    let bufferCount: Int
    private let slab: UnsafeMutableRawPointer
    private let controlBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ControlMessage.size, alignment: 64)
    // Received messages not yet taken: FIFO of (slot, length, status).
    private var inboxSlot: [Int]
    private var inboxLength: [Int]
    private var inboxHead = 0
    private var inboxCount = 0
    private(set) var sendsCompleted: UInt64 = 0
    private(set) var linkLost = false
    let waitTimeout: Duration

    init(_ qp: QueuePair<Device, Backend>, buffers: Int = 64, waitTimeout: Duration = .seconds(10)) throws(TransportError) {
        self.qp = qp
        bufferSize = qp.maxPayload
        bufferCount = buffers
        slab = UnsafeMutableRawPointer.allocate(byteCount: buffers * max(bufferSize, 1), alignment: 4096)
        inboxSlot = Array(repeating: 0, count: buffers)
        inboxLength = Array(repeating: 0, count: buffers)
        self.waitTimeout = waitTimeout
        for i in 0..<buffers { try post(i) }
    }

    deinit {
        // The queue pair must not fill buffers of a port that is gone.
        qp.removeReceives()
        slab.deallocate()
        controlBuffer.deallocate()
    }

    private func post(_ slot: Int) throws(TransportError) {
        try qp.postReceive(UnsafeMutableRawBufferPointer(start: slab + slot * bufferSize, count: bufferSize), cookie: UInt64(slot))
    }

    /// The bytes of a received slot.
    func bytes(_ slot: Int, _ length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: slab + slot * bufferSize, count: length)
    }

    /// Polls once; returns how many completions it saw.
    @discardableResult
    func pump() -> Int {
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
    func receive(timeout: Duration? = nil) throws(ToolError) -> (slot: Int, length: Int) {
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
        let r = (inboxSlot[inboxHead], inboxLength[inboxHead])
        inboxHead = inboxHead + 1 == bufferCount ? 0 : inboxHead + 1
        inboxCount -= 1
        return r
    }

    /// Counts data messages until a control message of `kind` arrives, reposting every buffer at once
    /// (the perf sink: no per-message clock or inbox). Throws if the peer goes away or stays silent.
    func sink(until kind: ControlMessage.Kind, idleLimit: Duration = .seconds(30)) throws(ToolError) -> (bytes: UInt64, messages: UInt64) {
        var bytes: UInt64 = 0, messages: UInt64 = 0
        var done = false
        var idleSince: ContinuousClock.Instant?
        // Messages an earlier receive already took from the queue pair come first.
        while !done, inboxCount > 0 {
            let (slot, length) = (inboxSlot[inboxHead], inboxLength[inboxHead])
            inboxHead = inboxHead + 1 == bufferCount ? 0 : inboxHead + 1
            inboxCount -= 1
            if length == ControlMessage.size, let m = ControlMessage(self.bytes(slot, length)), m.kind == kind { done = true }
            else { bytes &+= UInt64(length); messages &+= 1 }
            try? post(slot)
        }
        while !done {
            let n = qp.poll(limit: 256) { c in
                switch c.kind {
                case .receive:
                    let slot = Int(c.cookie)
                    if c.status == .ok {
                        if c.length == ControlMessage.size, let m = ControlMessage(self.bytes(slot, c.length)), m.kind == kind {
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
            if n == 0 && !done {
                if linkLost { throw ToolError("the peer went away during perf") }
                let now = ContinuousClock.now
                if let since = idleSince {
                    if now - since > idleLimit { throw ToolError("perf: no data from the peer for \(idleLimit)") }
                } else {
                    idleSince = now
                }
                _ = qp.wait(timeout: .milliseconds(2))
            } else {
                idleSince = nil
            }
        }
        return (bytes, messages)
    }

    /// Non-blocking receive.
    func tryReceive() -> (slot: Int, length: Int)? {
        if inboxCount == 0 { pump() }
        guard inboxCount > 0 else { return nil }
        let r = (inboxSlot[inboxHead], inboxLength[inboxHead])
        inboxHead = inboxHead + 1 == bufferCount ? 0 : inboxHead + 1
        inboxCount -= 1
        return r
    }

    /// Gives a received slot back to the queue pair.
    func release(_ slot: Int) {
        try? post(slot)
    }

    /// Sends one message, polling for completions while the ring is full.
    func send(_ bytes: UnsafeRawBufferPointer) throws(ToolError) {
        let clock = ContinuousClock()
        var deadline: ContinuousClock.Instant?
        while true {
            do throws(TransportError) {
                try qp.send(bytes, cookie: 0)
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
    func send(_ message: ControlMessage) throws(ToolError) {
        message.encode(into: controlBuffer)
        try send(UnsafeRawBufferPointer(controlBuffer))
    }

    /// Receives the next message and requires it to be a control message.
    func receiveControl(timeout: Duration? = nil) throws(ToolError) -> ControlMessage {
        let (slot, length) = try receive(timeout: timeout)
        defer { release(slot) }
        guard let m = ControlMessage(bytes(slot, length)) else {
            throw ToolError("expected a control message from the peer, got \(length) bytes of data; restart both sides")
        }
        return m
    }

    /// Waits until every send was consumed by the peer.
    func drain() throws(ToolError) {
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
