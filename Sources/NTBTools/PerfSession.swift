#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBTransport
import PCIKit

/// The ports thread `thread` drives when each thread drives `perThread` of them (perf on both sides).
func threadShare<T>(_ ports: [T], thread: Int, perThread: Int) -> [T] {
    Array(ports[(thread * perThread)..<((thread + 1) * perThread)])
}

/// Runs perf as the sender: START on queue pair 0, data on every queue pair (`queuePairs` of them,
/// driven by `queuePairs / perThread` threads, each sending on `perThread` queue pairs in turn), END
/// on each, then the responder's RESULT.
public struct PerfInitiator: PortSession, Sendable {
    public var messageSize: Int
    public var totalBytes: UInt64?          // per run, split over queue pairs
    public var duration: Duration?
    public var queuePairs: Int
    /// Messages per send call (one doorbell or one chain); nil: ``defaultBatch(_:)``.
    public var batch: Int?
    public var showProgress = true
    /// Queue pairs one thread drives (a DPDK lcore's several queues); `queuePairs` is a multiple.
    public var perThread = 1
    /// The batch when `batch` is nil and the CPU writes the messages (``QueuePair/sendsCompleteLater``
    /// false, `host`); nil: ``defaultBatch(_:)``.
    public var frameBatch: Int?
    /// Where sends complete later (``QueuePair/sendsCompleteLater``: an engine moves them, `edma`),
    /// the sending queue pairs sleep on their completion interrupt during the run (their wait mode
    /// is restored afterwards): the sender's CPU per GB is then what the transport costs, not the
    /// time it spun.
    public var sleepOnDMA = false

    public init(messageSize: Int, totalBytes: UInt64?, duration: Duration?, queuePairs: Int, batch: Int? = nil, showProgress: Bool = true, perThread: Int = 1,
                frameBatch: Int? = nil, sleepOnDMA: Bool = false) {
        self.messageSize = messageSize; self.totalBytes = totalBytes; self.duration = duration; self.queuePairs = queuePairs
        self.batch = batch; self.showProgress = showProgress; self.perThread = perThread
        self.frameBatch = frameBatch; self.sleepOnDMA = sleepOnDMA
    }

    /// The batch when none is given: the queue pair's ``QueuePair/preferredBatch`` (32 frames per
    /// doorbell on `host`; half the transmit ring on `edma`, 64 of the RFC's 128 descriptors).
    public static func defaultBatch<D: NTBDevice, B: TransportBackend>(_ qp: QueuePair<D, B>) -> Int {
        max(1, qp.preferredBatch)
    }

    /// Runs perf on the ports of `set` (the peer runs a ``Responder``).
    public func run<Device: NTBDevice, Backend: TransportBackend>(_ set: PortSet<Device, Backend>) throws -> PerfResult {
        let transport = set.transport
        guard perThread >= 1 && queuePairs >= 1 && queuePairs % perThread == 0 else {
            throw ToolError("perf: \(queuePairs) queue pairs are not a multiple of \(perThread) queue pairs per thread")
        }
        guard queuePairs <= transport.queuePairCount else {
            throw ToolError("perf wants \(queuePairs) queue pairs but the transport has \(transport.queuePairCount); give both sides --qps \(queuePairs)")
        }
        let ports = try set.ports(queuePairs)
        let qp0 = ports[0].qp
        let batch = self.batch ?? (qp0.sendsCompleteLater ? nil : frameBatch) ?? Self.defaultBatch(qp0)
        if sleepOnDMA && qp0.sendsCompleteLater {
            let modes = ports.map(\.qp.waitMode)
            for port in ports { port.qp.waitMode = .interrupt }
            defer { for (port, mode) in zip(ports, modes) { port.qp.waitMode = mode } }
            return try run(ports, batch: batch, transport: transport)
        }
        return try run(ports, batch: batch, transport: transport)
    }

    func run<Device: NTBDevice, Backend: TransportBackend>(_ ports: [MessagePort<Device, Backend>], batch: Int, transport: Transport<Device, Backend>) throws -> PerfResult {
        let qps = queuePairs, threads = qps / perThread
        let maxPayload = ports[0].bufferSize
        guard messageSize >= 1 && messageSize <= maxPayload else {
            throw ToolError("--size \(messageSize) does not fit a frame (1...\(maxPayload) bytes with this MTU and window)")
        }
        let perQP: UInt64 = totalBytes.map { max(1, $0 / UInt64(messageSize) / UInt64(qps)) } ?? 0
        var start = ControlMessage(.startPerf, UInt64(messageSize), perQP, UInt64(qps), UInt64(batch))
        start.a.4 = UInt64(perThread)
        try ports[0].send(start)
        let cpu0 = TransportThread.processCPUSeconds(), engine0 = engineCPUSeconds(transport.device)
        let sleeps0 = ports.reduce(0) { $0 &+ $1.qp.counters[.interruptWaits] }
        let waitCounters: [QueuePairCounter] = [.wakes, .spins, .doorbells, .doorbellsReceived, .pollWaits]
        let waits0 = waitCounters.map { k in ports.reduce(0) { $0 &+ $1.qp.counters[k] } }
        let startTime = ContinuousClock.now
        let deadline = duration.map { startTime.advanced(by: $0) }
        var workers: [TransportThread] = []
        let sentCounts = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: threads)
        unsafe sentCounts.initialize(repeating: 0)
        defer { unsafe sentCounts.deallocate() }
        let threadCPU = unsafe Handoff(UnsafeMutableBufferPointer<Double>.allocate(capacity: threads))
        unsafe threadCPU.value.initialize(repeating: 0)
        defer { unsafe threadCPU.value.deallocate() }
        let errors = unsafe Handoff(UnsafeMutableBufferPointer<ToolError?>.allocate(capacity: threads))
        unsafe errors.value.initialize(repeating: nil)
        defer { unsafe errors.value.deallocate() }
        let counts = unsafe Handoff(sentCounts)
        for t in 1..<threads {
            let mine = Handoff(threadShare(ports, thread: t, perThread: perThread))
            let body = Handoff({
                let t0 = threadCPUSeconds()
                defer { unsafe threadCPU.value[t] = threadCPUSeconds() - t0 }
                do { unsafe counts.value[t] = try Self.sendLoop(mine.value, size: messageSize, count: perQP, deadline: deadline, batch: batch, progress: false) }
                catch let e as ToolError { unsafe errors.value[t] = e } catch { unsafe errors.value[t] = ToolError("\(error)") }
            })
            workers.append(try TransportThread(name: "perf-tx\(t)") { body.value() })
        }
        let t0 = threadCPUSeconds()
        unsafe sentCounts[0] = try Self.sendLoop(threadShare(ports, thread: 0, perThread: perThread), size: messageSize, count: perQP, deadline: deadline, batch: batch, progress: showProgress)
        unsafe threadCPU.value[0] = threadCPUSeconds() - t0
        for w in workers { w.join() }
        if let e = unsafe errors.value.compactMap({ $0 }).first { throw e }
        let result = try ports[0].receiveControl(timeout: .seconds(60))
        let elapsed = ContinuousClock.now - startTime
        let engine = engineCPUSeconds(transport.device) - engine0
        let cpu = TransportThread.processCPUSeconds() - cpu0 - engine
        guard result.kind == .result, result.status == 0 else { throw ToolError("the responder reported a failed perf run (status \(result.status)); its log says why (e.g. a different --qps)") }
        let sent = unsafe sentCounts.reduce(0, +)
        guard result.a.1 == sent else {
            throw ToolError("sent \(sent) messages but the peer received \(result.a.1); see `ntb-transport stats` on both sides")
        }
        var r = unsafe PerfResult(backend: Backend.name, messageSize: messageSize, queuePairs: qps, batch: batch,
                           messages: sent, bytes: result.a.0, seconds: elapsed.seconds,
                           senderCPUSeconds: cpu, receiverCPUSeconds: Double(result.a.2) / 1e9,
                           engineCPUSeconds: engine + Double(result.a.4) / 1e9, senderThreadCPUSeconds: threadCPU.value.reduce(0, +),
                           threads: threads)
        r.senderSleeps = ports.reduce(0) { $0 &+ $1.qp.counters[.interruptWaits] } &- sleeps0
        for (k, before) in zip(waitCounters, waits0) { r.senderWaits[k.name] = ports.reduce(0) { $0 &+ $1.qp.counters[k] } &- before }
        return r
    }

    /// Sends `count` messages on each of `ports` (or until `deadline`) in batches, the ports in turn,
    /// then END on each; returns how many were sent in all. Sleeps (``QueuePair/wait(anyOf:timeout:)``)
    /// only when no port took a whole batch and none had a completion. A queue pair that takes no
    /// message for `stallLimit` ends the run with an error naming it and its counters.
    public static func sendLoop<D: NTBDevice, B: TransportBackend>(_ ports: [MessagePort<D, B>], size: Int, count: UInt64, deadline: ContinuousClock.Instant?, batch: Int, progress showProgress: Bool,
                                                                   stallLimit: Duration = .seconds(10)) throws -> UInt64 {
        // The message is the first port's data buffer: a DMA data path reads it in place (every send
        // reads the same bytes, so it may be in flight many times); a frame channel copies it.
        let message = ports[0].dataBuffer
        let capacity = unsafe message.bytes.count
        guard size >= 1 && size <= capacity else {
            throw ToolError("--size \(size) does not fit a message (1...\(capacity) bytes with this MTU and window)")
        }
        for i in 0..<size { unsafe message.bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        let queuePairs = ports.map(\.qp)
        var sent = [UInt64](repeating: 0, count: ports.count)
        // Per queue pair: since when it has taken nothing (the clock is read only while it takes nothing).
        var stalledSince = [ContinuousClock.Instant?](repeating: nil, count: ports.count)
        var total: UInt64 = 0
        var progress = Progress()
        let start = ContinuousClock.now
        var rounds = 0
        while true {
            if count == 0, rounds & 63 == 0, let deadline, ContinuousClock.now >= deadline { break }
            rounds &+= 1
            var active = 0, short = 0, completions = 0
            for p in 0..<ports.count {
                var want = batch
                if count > 0 {
                    if sent[p] >= count { continue }
                    want = Int(min(UInt64(batch), count - sent[p]))
                }
                active &+= 1
                let qp = queuePairs[p]
                let n: Int
                do throws(TransportError) {
                    n = try qp.sendBatch(count: want, buffers: { _ in (message, size, 0) })
                } catch {
                    throw ToolError(error.description)
                }
                sent[p] &+= UInt64(n)
                total &+= UInt64(n)
                if n < want {
                    short &+= 1
                    completions &+= ports[p].pump()
                    if ports[p].linkLost { throw ToolError("the peer went away during perf") }
                }
                if n > 0 {
                    stalledSince[p] = nil
                } else {
                    let now = ContinuousClock.now
                    if let since = stalledSince[p] {
                        if now - since >= stallLimit { throw stalled(qp, sent: sent[p], of: count, for: stallLimit) }
                    } else {
                        stalledSince[p] = now
                    }
                }
            }
            if active == 0 { break }
            if short == active && completions == 0 { _ = QueuePair.wait(anyOf: queuePairs, timeout: .milliseconds(1)) }
            if showProgress && rounds & 1023 == 0 {
                let s = (ContinuousClock.now - start).seconds
                progress.update("  \(fixed(Double(total) * Double(size) / s / 1e9, 2)) GB/s  \(fixed(Double(total) / s / 1e6, 2)) Mmsg/s  \(total) messages")
            }
        }
        progress.finish()
        for port in ports { try port.send(ControlMessage(.endPerf)) }
        for port in ports { try port.drain() }
        return total
    }

    /// The error of a queue pair that took no message for `limit`.
    static func stalled<D: NTBDevice, B: TransportBackend>(_ qp: QueuePair<D, B>, sent: UInt64, of count: UInt64, for limit: Duration) -> ToolError {
        let c = qp.counters
        return ToolError("perf: queue pair \(qp.index) took no message for \(formatSeconds(limit)) (sent \(sent) of \(count == 0 ? "a timed run" : String(count)), "
                         + "free_tx \(qp.transmitFree), tx_ring_full \(c[.txRingFull]), tx_pkts \(c[.txPackets])): "
                         + "the peer stopped consuming it; see `ntb-transport stats` on both sides")
    }
}


/// Several perf runs on one transport, one after another (the peer's responder answers each).
public struct PerfSeries: PortSession, Sendable {
    public var runs: [PerfInitiator]
    public init(runs: [PerfInitiator]) { self.runs = runs }
    public func run<Device: NTBDevice, Backend: TransportBackend>(_ ports: PortSet<Device, Backend>) throws -> [PerfResult] {
        try runs.map { try $0.run(ports) }
    }
}
