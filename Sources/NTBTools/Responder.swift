#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBTransport

/// Tells the responder to exit.
public struct ByeInitiator: PortSession, Sendable {
    public init() {}

    public func run<Device: NTBDevice, Backend: TransportBackend>(_ set: PortSet<Device, Backend>) throws {
        let port = try set.port(0)
        try port.send(ControlMessage(.bye))
        try port.drain()
    }
}

/// Serves perf, pingpong and file sessions until BYE (or, with `once`, after one file).
public struct Responder: PortSession {
    public var directory: String?
    public var once = false
    /// How long a session waits for the peer's next message.
    public var sessionTimeout: Duration = .seconds(60)
    /// How long the responder waits for the next session (it then just goes on waiting).
    public var idleTimeout: Duration = .seconds(24 * 3600)
    public var log: (String) -> Void = { writeStderr($0 + "\n") }

    public init(directory: String? = nil, once: Bool = false, sessionTimeout: Duration = .seconds(60), log: @escaping (String) -> Void = { writeStderr($0 + "\n") }) {
        self.directory = directory; self.once = once; self.sessionTimeout = sessionTimeout; self.log = log
    }

    /// Serves on the ports of `set` until BYE.
    public func run<Device: NTBDevice, Backend: TransportBackend>(_ set: PortSet<Device, Backend>) throws {
        let transport = set.transport
        var ports = try set.ports()
        log("serving \(Backend.name) on \(transport.device.name) with \(transport.queuePairCount) queue pair(s)")
        while true {
            if ports.contains(where: \.linkLost) {
                // The peer left (its queue pairs sent LINK_DOWN, or the link dropped): wait for the next one.
                log("peer gone; waiting for it to come back")
                ports = []   // the old ports take their buffers back before new ones post theirs
                try transport.waitForLink(timeout: .seconds(24 * 3600))
                ports = try set.ports()
            }
            // A bad or unexpected message, a peer that vanishes, a client that asks for what we do
            // not run: that session ends with one log line, and we wait for the next one.
            let m: ControlMessage
            do { m = try ports[0].receiveControl(timeout: idleTimeout) } catch {
                if ports[0].linkLost { continue }
                discardPending(ports)
                log("session refused: \(error)")
                continue
            }
            do {
                switch m.kind {
                case .startPerf:
                    try perfSink(ports, qps: Int(m.a.2), perThread: max(1, Int(m.a.4)), device: transport.device)
                case .startPingpong:
                    try echo(ports[0])
                case .startFile:
                    try FileReceiver(directory: directory ?? ".", timeout: sessionTimeout, log: log).receive(ports[0], size: m.a.0, nameLength: m.a.1)
                    if once { return }
                case .bye:
                    return
                default:
                    throw ToolError("unexpected control message \(m.kind) from the peer; the peer runs another version of ntb-transport?")
                }
            } catch {
                if ports.contains(where: \.linkLost) { log("session ended: \(error)"); continue }
                // A file session that failed is a failed `recv`; a server goes on.
                if once { throw error }
                // What the peer still sends for this session goes first; then a perf initiator
                // waiting for its RESULT gets a failed one.
                discardPending(ports)
                if m.kind == .startPerf { try? ports[0].send(ControlMessage(.result, status: 1)) }
                log("session ended: \(error)")
            }
        }
    }

    /// After a failed session: drops what the peer still sends for it (without a log line each)
    /// until the queue pairs were quiet for `quiet`, at most `limit`, so the next session starts
    /// clean.
    func discardPending<D: NTBDevice, B: TransportBackend>(_ ports: [MessagePort<D, B>], quiet: Duration = .milliseconds(200), limit: Duration = .seconds(30)) {
        let start = ContinuousClock.now
        var lastSeen = start
        while true {
            var any = false
            for port in ports {
                while let (slot, _) = port.tryReceive() { port.release(slot); any = true }
            }
            let now = ContinuousClock.now
            if any { lastSeen = now }
            if now - lastSeen >= quiet || now - start >= limit || ports.contains(where: \.linkLost) { return }
            _ = QueuePair.wait(anyOf: ports.map(\.qp), timeout: .milliseconds(5))
        }
    }

    func perfSink<D: NTBDevice, B: TransportBackend>(_ ports: [MessagePort<D, B>], qps: Int, perThread: Int, device: D) throws {
        guard qps >= 1 && qps <= ports.count else {
            throw ToolError("perf: the peer asked for \(qps) queue pairs; we run \(ports.count) (give both sides the same --qps)")
        }
        guard perThread >= 1 && qps % perThread == 0 else {
            throw ToolError("perf: the peer asked for \(perThread) queue pairs per thread, which does not divide \(qps)")
        }
        let threads = qps / perThread
        let cpu0 = TransportThread.processCPUSeconds(), engine0 = engineCPUSeconds(device)
        let start = ContinuousClock.now
        let totals = unsafe Handoff(UnsafeMutableBufferPointer<(UInt64, UInt64)>.allocate(capacity: threads))
        unsafe totals.value.initialize(repeating: (0, 0))
        defer { unsafe totals.value.deallocate() }
        var workers: [TransportThread] = []
        for t in 1..<threads {
            let mine = Handoff(threadShare(ports, thread: t, perThread: perThread))
            let body = Handoff({ unsafe totals.value[t] = (try? Self.sink(mine.value)) ?? (0, 0) })
            workers.append(try TransportThread(name: "perf-rx\(t)") { body.value() })
        }
        unsafe totals.value[0] = try Self.sink(threadShare(ports, thread: 0, perThread: perThread))
        for w in workers { w.join() }
        let elapsed = ContinuousClock.now - start
        let engine = engineCPUSeconds(device) - engine0
        let cpu = TransportThread.processCPUSeconds() - cpu0 - engine
        let bytes = unsafe totals.value.reduce(0) { $0 + $1.0 }, messages = unsafe totals.value.reduce(0) { $0 + $1.1 }
        var result = ControlMessage(.result, status: 0, bytes, messages, UInt64(max(cpu, 0) * 1e9), elapsed.nanoseconds)
        result.a.4 = UInt64(max(engine, 0) * 1e9)
        try ports[0].send(result)
    }

    /// Counts data messages on `ports` until END on each; reposts each buffer at once.
    static func sink<D: NTBDevice, B: TransportBackend>(_ ports: [MessagePort<D, B>]) throws -> (UInt64, UInt64) {
        let r = try MessagePort.sink(ports, until: .endPerf)
        return (r.bytes, r.messages)
    }

    func echo<D: NTBDevice, B: TransportBackend>(_ port: MessagePort<D, B>) throws {
        while true {
            let (slot, length) = try port.receive(timeout: sessionTimeout)
            if length == ControlMessage.size, let m = unsafe ControlMessage(port.bytes(slot, length)), m.kind == .endPingpong {
                port.release(slot)
                return
            }
            defer { port.release(slot) }
            unsafe try port.send(port.bytes(slot, length))
        }
    }
}
