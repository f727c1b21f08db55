#if canImport(Glibc)
import Glibc
#endif
import Histogram
import NTBHardware
import NTBMock
import PCIKit
import NTBTransport

/// Figures of one perf run, as the tools print them.
struct PerfResult: Codable {
    var backend: String
    var messageSize: Int
    var queuePairs: Int
    var batch: Int
    var messages: UInt64
    var bytes: UInt64
    var seconds: Double
    var senderCPUSeconds: Double
    var receiverCPUSeconds: Double
    /// CPU of a DMA engine model (the silicon's stand-in), counted apart from both sides.
    var engineCPUSeconds: Double = 0
    /// CPU of the sending threads alone (the data path; the process figure adds the transport's
    /// link monitor and the device's threads).
    var senderThreadCPUSeconds: Double = 0
    /// Threads that drove the queue pairs on each side (`queuePairs / threads` queue pairs each).
    var threads: Int = 1
    /// Times the sending threads slept on their interrupts (`interrupt_waits` of the sending queue
    /// pairs): with a DMA backend, about one per chain.
    var senderSleeps: UInt64 = 0
    var senderSleepsPerGB: Double { bytes > 0 ? Double(senderSleeps) / (Double(bytes) / 1e9) : 0 }
    var gigabytesPerSecond: Double { seconds > 0 ? Double(bytes) / seconds / 1e9 : 0 }
    var messagesPerSecond: Double { seconds > 0 ? Double(messages) / seconds : 0 }
    var senderCPUSecondsPerGB: Double { bytes > 0 ? senderCPUSeconds / (Double(bytes) / 1e9) : 0 }
    var receiverCPUSecondsPerGB: Double { bytes > 0 ? receiverCPUSeconds / (Double(bytes) / 1e9) : 0 }
    var engineCPUSecondsPerGB: Double { bytes > 0 ? engineCPUSeconds / (Double(bytes) / 1e9) : 0 }
    var senderThreadCPUSecondsPerGB: Double { bytes > 0 ? senderThreadCPUSeconds / (Double(bytes) / 1e9) : 0 }

    enum CodingKeys: String, CodingKey {
        case backend, messageSize, queuePairs, batch, messages, bytes, seconds, senderCPUSeconds, receiverCPUSeconds
        case gigabytesPerSecond, messagesPerSecond, senderCPUSecondsPerGB, receiverCPUSecondsPerGB
        case engineCPUSeconds, engineCPUSecondsPerGB, senderThreadCPUSeconds, senderThreadCPUSecondsPerGB, threads
        case senderSleeps, senderSleepsPerGB
    }
    func encode(to e: any Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(backend, forKey: .backend); try c.encode(messageSize, forKey: .messageSize)
        try c.encode(queuePairs, forKey: .queuePairs); try c.encode(batch, forKey: .batch)
        try c.encode(messages, forKey: .messages); try c.encode(bytes, forKey: .bytes)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(senderCPUSeconds, forKey: .senderCPUSeconds); try c.encode(receiverCPUSeconds, forKey: .receiverCPUSeconds)
        try c.encode(gigabytesPerSecond, forKey: .gigabytesPerSecond); try c.encode(messagesPerSecond, forKey: .messagesPerSecond)
        try c.encode(senderCPUSecondsPerGB, forKey: .senderCPUSecondsPerGB); try c.encode(receiverCPUSecondsPerGB, forKey: .receiverCPUSecondsPerGB)
        try c.encode(engineCPUSeconds, forKey: .engineCPUSeconds); try c.encode(engineCPUSecondsPerGB, forKey: .engineCPUSecondsPerGB)
        try c.encode(senderThreadCPUSeconds, forKey: .senderThreadCPUSeconds); try c.encode(senderThreadCPUSecondsPerGB, forKey: .senderThreadCPUSecondsPerGB)
        try c.encode(threads, forKey: .threads)
        try c.encode(senderSleeps, forKey: .senderSleeps); try c.encode(senderSleepsPerGB, forKey: .senderSleepsPerGB)
    }
    init(backend: String, messageSize: Int, queuePairs: Int, batch: Int, messages: UInt64, bytes: UInt64, seconds: Double, senderCPUSeconds: Double, receiverCPUSeconds: Double, engineCPUSeconds: Double = 0, senderThreadCPUSeconds: Double = 0, threads: Int = 1) {
        self.backend = backend; self.messageSize = messageSize; self.queuePairs = queuePairs; self.batch = batch
        self.messages = messages; self.bytes = bytes; self.seconds = seconds
        self.senderCPUSeconds = senderCPUSeconds; self.receiverCPUSeconds = receiverCPUSeconds
        self.engineCPUSeconds = engineCPUSeconds
        self.senderThreadCPUSeconds = senderThreadCPUSeconds
        self.threads = threads
    }
    init(from d: any Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        self.init(backend: try c.decode(String.self, forKey: .backend), messageSize: try c.decode(Int.self, forKey: .messageSize),
                  queuePairs: try c.decode(Int.self, forKey: .queuePairs), batch: try c.decode(Int.self, forKey: .batch),
                  messages: try c.decode(UInt64.self, forKey: .messages), bytes: try c.decode(UInt64.self, forKey: .bytes),
                  seconds: try c.decode(Double.self, forKey: .seconds), senderCPUSeconds: try c.decode(Double.self, forKey: .senderCPUSeconds),
                  receiverCPUSeconds: try c.decode(Double.self, forKey: .receiverCPUSeconds))
        engineCPUSeconds = try c.decodeIfPresent(Double.self, forKey: .engineCPUSeconds) ?? 0
        senderThreadCPUSeconds = try c.decodeIfPresent(Double.self, forKey: .senderThreadCPUSeconds) ?? 0
        threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? 1
        senderSleeps = try c.decodeIfPresent(UInt64.self, forKey: .senderSleeps) ?? 0
    }
}

/// Round-trip latency figures in nanoseconds.
struct LatencyResult: Codable {
    var backend: String
    var messageSize: Int
    var roundTrips: Int
    var waitMode: String
    var p50: UInt64
    var p99: UInt64
    var p999: UInt64
    var max: UInt64
    var mean: Double
}

/// A terminal progress line on stderr (only when stderr is a terminal).
struct Progress {
    let enabled = isatty(2) != 0
    var last = ContinuousClock.now
    mutating func update(_ text: @autoclosure () -> String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        guard now - last >= .milliseconds(200) else { return }
        last = now
        writeStderr("\r\u{1B}[K" + text())
    }
    func finish() { if enabled { writeStderr("\r\u{1B}[K") } }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var nanoseconds: UInt64 { UInt64(max(0, components.seconds)) * 1_000_000_000 + UInt64(max(0, components.attoseconds) / 1_000_000_000) }
}

// MARK: - Initiator side

/// The ports thread `thread` drives when each thread drives `perThread` of them (perf on both sides).
func threadShare<T>(_ ports: [T], thread: Int, perThread: Int) -> [T] {
    Array(ports[(thread * perThread)..<((thread + 1) * perThread)])
}

/// Runs perf as the sender: START on queue pair 0, data on every queue pair (`queuePairs` of them,
/// driven by `queuePairs / perThread` threads, each sending on `perThread` queue pairs in turn), END
/// on each, then the responder's RESULT.
struct PerfInitiator: TransportJob {
    var messageSize: Int
    var totalBytes: UInt64?          // per run, split over queue pairs
    var duration: Duration?
    var queuePairs: Int
    /// Messages per send call (one doorbell or one chain); nil: ``defaultBatch(_:)``.
    var batch: Int?
    var showProgress = true
    /// Queue pairs one thread drives (a DPDK lcore's several queues); `queuePairs` is a multiple.
    var perThread = 1

    /// The batch when none is given: 32 frames per doorbell (`host`); half the transmit ring for a DMA
    /// backend (`edma`: 64 of the RFC's 128 descriptors). One chain then runs while the next one, as
    /// long, fills: longer batches leave nothing queued when a chain completes (the engine idles
    /// while the sender wakes), shorter ones start a short chain after each wake (more chains, more
    /// wakes per GB).
    static func defaultBatch<D: NTBDevice, B: TransportBackend>(_ qp: QueuePair<D, B>) -> Int {
        B.Channel.movesByDMA ? max(1, (qp.transmitEntries + 1) / 2) : 32
    }

    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> PerfResult {
        precondition(perThread >= 1 && queuePairs % perThread == 0, "queue pairs are a multiple of the queue pairs per thread")
        guard queuePairs <= transport.queuePairCount else {
            throw ToolError("perf wants \(queuePairs) queue pairs but the transport has \(transport.queuePairCount); give both sides --qps \(queuePairs)")
        }
        let qps = queuePairs, threads = qps / perThread
        let ports = try transport.queuePairs.prefix(qps).map { try MessagePort.open($0) }
        let maxPayload = ports[0].bufferSize
        let batch = self.batch ?? Self.defaultBatch(ports[0].qp)
        guard messageSize >= 1 && messageSize <= maxPayload else {
            throw ToolError("--size \(messageSize) does not fit a frame (1...\(maxPayload) bytes with this MTU and window)")
        }
        let perQP: UInt64 = totalBytes.map { max(1, $0 / UInt64(messageSize) / UInt64(qps)) } ?? 0
        var start = ControlMessage(.startPerf, UInt64(messageSize), perQP, UInt64(qps), UInt64(batch))
        start.a.4 = UInt64(perThread)
        try ports[0].send(start)
        let cpu0 = TransportThread.processCPUSeconds(), engine0 = engineCPUSeconds(transport.device)
        let sleeps0 = ports.reduce(0) { $0 &+ $1.qp.counters[.interruptWaits] }
        let startTime = ContinuousClock.now
        let deadline = duration.map { startTime.advanced(by: $0) }
        var workers: [TransportThread] = []
        let sentCounts = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: threads)
        sentCounts.initialize(repeating: 0)
        defer { sentCounts.deallocate() }
        let threadCPU = Handoff(UnsafeMutableBufferPointer<Double>.allocate(capacity: threads))
        threadCPU.value.initialize(repeating: 0)
        defer { threadCPU.value.deallocate() }
        let errors = Handoff(UnsafeMutableBufferPointer<ToolError?>.allocate(capacity: threads))
        errors.value.initialize(repeating: nil)
        defer { errors.value.deallocate() }
        let counts = Handoff(sentCounts)
        for t in 1..<threads {
            let mine = Handoff(threadShare(ports, thread: t, perThread: perThread))
            let body = Handoff({
                let t0 = threadCPUSeconds()
                defer { threadCPU.value[t] = threadCPUSeconds() - t0 }
                do { counts.value[t] = try Self.sendLoop(mine.value, size: messageSize, count: perQP, deadline: deadline, batch: batch, progress: false) }
                catch let e as ToolError { errors.value[t] = e } catch { errors.value[t] = ToolError("\(error)") }
            })
            workers.append(try TransportThread(name: "perf-tx\(t)") { body.value() })
        }
        let t0 = threadCPUSeconds()
        sentCounts[0] = try Self.sendLoop(threadShare(ports, thread: 0, perThread: perThread), size: messageSize, count: perQP, deadline: deadline, batch: batch, progress: showProgress)
        threadCPU.value[0] = threadCPUSeconds() - t0
        for w in workers { w.join() }
        if let e = errors.value.compactMap({ $0 }).first { throw e }
        let result = try ports[0].receiveControl(timeout: .seconds(60))
        let elapsed = ContinuousClock.now - startTime
        let engine = engineCPUSeconds(transport.device) - engine0
        let cpu = TransportThread.processCPUSeconds() - cpu0 - engine
        guard result.kind == .result, result.status == 0 else { throw ToolError("the responder reported a failed perf run (status \(result.status))") }
        let sent = sentCounts.reduce(0, +)
        guard result.a.1 == sent else {
            throw ToolError("sent \(sent) messages but the peer received \(result.a.1); see `ntb-transport stats` on both sides")
        }
        var r = PerfResult(backend: Backend.name, messageSize: messageSize, queuePairs: qps, batch: batch,
                           messages: sent, bytes: result.a.0, seconds: elapsed.seconds,
                           senderCPUSeconds: cpu, receiverCPUSeconds: Double(result.a.2) / 1e9,
                           engineCPUSeconds: engine + Double(result.a.4) / 1e9, senderThreadCPUSeconds: threadCPU.value.reduce(0, +),
                           threads: threads)
        r.senderSleeps = ports.reduce(0) { $0 &+ $1.qp.counters[.interruptWaits] } &- sleeps0
        return r
    }

    /// Sends `count` messages on each of `ports` (or until `deadline`) in batches, the ports in turn,
    /// then END on each; returns how many were sent in all. Sleeps (``QueuePair/wait(anyOf:timeout:)``)
    /// only when no port took a whole batch and none had a completion.
    static func sendLoop<D: NTBDevice, B: TransportBackend>(_ ports: [MessagePort<D, B>], size: Int, count: UInt64, deadline: ContinuousClock.Instant?, batch: Int, progress showProgress: Bool) throws -> UInt64 {
        // With a DMA backend the message is DMA memory the engine reads in place (every send reads the
        // same bytes, so it may be in flight many times); the host backend copies it into each frame.
        let dma = B.Channel.movesByDMA ? try ports[0].qp.allocateBuffer(length: size) : nil
        let message = dma.map { UnsafeMutableRawBufferPointer(start: $0.region.mmio.baseAddress, count: size) }
            ?? UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        let bus = dma?.region.busAddress ?? 0
        defer { if let dma { dma.close() } else { message.deallocate() } }
        for i in 0..<size { message[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        let bytes = UnsafeRawBufferPointer(message)
        let queuePairs = ports.map(\.qp)
        var sent = [UInt64](repeating: 0, count: ports.count)
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
                    n = dma == nil ? try qp.sendBatch(count: want) { _ in (bytes, 0) } : try qp.sendBatch(count: want, dma: { _ in (bytes, bus, 0) })
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
            }
            if active == 0 { break }
            if short == active && completions == 0 { _ = QueuePair.wait(anyOf: queuePairs, timeout: .milliseconds(1)) }
            if showProgress && rounds & 1023 == 0 {
                let s = (ContinuousClock.now - start).seconds
                progress.update(String(format: "  %.2f GB/s  %.2f Mmsg/s  %llu messages", Double(total) * Double(size) / s / 1e9, Double(total) / s / 1e6, total))
            }
        }
        progress.finish()
        for port in ports { try port.send(ControlMessage(.endPerf)) }
        for port in ports { try port.drain() }
        return total
    }
}

/// Runs pingpong as the initiator: START, then `count` round trips of `size` bytes, END.
struct PingpongInitiator: TransportJob {
    var messageSize: Int
    var roundTrips: Int
    var warmup: Int = 1000
    var waitMode: String

    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> LatencyResult {
        let port = try MessagePort.open(transport.queuePairs[0])
        guard messageSize >= 1 && messageSize <= port.bufferSize else {
            throw ToolError("--size must be 1...\(port.bufferSize) with this MTU and window")
        }
        try port.send(ControlMessage(.startPingpong, UInt64(messageSize), UInt64(roundTrips + warmup)))
        let message = UnsafeMutableRawBufferPointer.allocate(byteCount: messageSize, alignment: 64)
        defer { message.deallocate() }
        for i in 0..<messageSize { message[i] = UInt8(truncatingIfNeeded: i) }
        var histogram = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        let clock = ContinuousClock()
        var progress = Progress()
        for i in 0..<(roundTrips + warmup) {
            let t0 = clock.now
            try port.send(UnsafeRawBufferPointer(message))
            let (slot, length) = try port.receive()
            let rtt = clock.now - t0
            port.release(slot)
            guard length == messageSize else { throw ToolError("the echo was \(length) bytes, expected \(messageSize)") }
            if i >= warmup { _ = histogram.record(rtt.nanoseconds) }
            if i & 4095 == 0 { progress.update("  \(i) round trips, p50 \(histogram.valueAtPercentile(50)) ns") }
        }
        progress.finish()
        try port.send(ControlMessage(.endPingpong))
        try port.drain()
        return LatencyResult(backend: Backend.name, messageSize: messageSize, roundTrips: roundTrips, waitMode: waitMode,
                             p50: histogram.valueAtPercentile(50), p99: histogram.valueAtPercentile(99),
                             p999: histogram.valueAtPercentile(99.9), max: histogram.max, mean: histogram.mean)
    }
}

/// Sends one file: START_FILE, the name, the content, END_FILE with its CRC-32C; the responder checks it.
struct FileSender: TransportJob {
    var path: String

    struct Result: Codable { var name: String; var bytes: UInt64; var seconds: Double; var crc32c: UInt32 }

    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> Result {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ToolError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw ToolError("\(path) is not a regular file") }
        let name = String(path.split(separator: "/").last ?? "")
        let port = try MessagePort.open(transport.queuePairs[0])
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty, nameBytes.count <= port.bufferSize, nameBytes.count != ControlMessage.size else {
            throw ToolError("the file name must be 1...\(port.bufferSize) bytes and not exactly 64")
        }
        let start = ContinuousClock.now
        try port.send(ControlMessage(.startFile, UInt64(st.st_size), UInt64(nameBytes.count)))
        let nameBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: nameBytes.count, alignment: 8)
        defer { nameBuffer.deallocate() }
        nameBuffer.copyBytes(from: nameBytes)
        try port.send(UnsafeRawBufferPointer(nameBuffer))
        // Chunks never exactly 64 bytes (control size): use maxPayload, or 63 for a 64-byte tail.
        let chunk = port.bufferSize == ControlMessage.size ? ControlMessage.size - 1 : port.bufferSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var crc = CRC32C()
        var total: UInt64 = 0
        var progress = Progress()
        while true {
            var filled = 0
            while filled < chunk {
                let n = read(fd, buffer.baseAddress! + filled, chunk - filled)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw ToolError("reading \(path): \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            var pieces = [(0, filled)]
            if filled == ControlMessage.size { pieces = [(0, 32), (32, 32)] }
            for (off, len) in pieces {
                let piece = UnsafeRawBufferPointer(rebasing: buffer[off..<(off + len)])
                crc.update(piece)
                try port.send(piece)
            }
            total += UInt64(filled)
            progress.update("  \(total >> 20) MiB of \(UInt64(st.st_size) >> 20) MiB")
            if filled < chunk { break }
        }
        progress.finish()
        try port.send(ControlMessage(.endFile, UInt64(crc.checksum), total))
        let reply = try port.receiveControl(timeout: .seconds(60))
        guard reply.kind == .result else { throw ToolError("unexpected reply \(reply.kind) to the file transfer") }
        guard reply.status == 0 else {
            throw ToolError(reply.status == 2 ? "the receiver could not write the file (status 2); check the receiving directory" : "checksum mismatch: sent CRC-32C \(String(crc.checksum, radix: 16)), the receiver computed \(String(reply.a.0, radix: 16)); the file was discarded")
        }
        return Result(name: name, bytes: total, seconds: (ContinuousClock.now - start).seconds, crc32c: crc.checksum)
    }
}

/// Tells the responder to exit.
struct ByeJob: TransportJob {
    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws {
        let port = try MessagePort.open(transport.queuePairs[0])
        try port.send(ControlMessage(.bye))
        try port.drain()
    }
}

// MARK: - Responder side

/// Serves perf, pingpong and file sessions until BYE (or, with `once`, after one file).
struct Responder: TransportJob {
    var directory: String?
    var once = false
    var log: (String) -> Void = { writeStderr($0 + "\n") }

    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws {
        var ports = try transport.queuePairs.map { try MessagePort.open($0) }
        log("serving \(Backend.name) on \(transport.device.name) with \(transport.queuePairCount) queue pair(s)")
        while true {
            if ports.contains(where: \.linkLost) {
                // The peer left (its queue pairs sent LINK_DOWN, or the link dropped): wait for the next one.
                log("peer gone; waiting for it to come back")
                ports = []   // the old ports take their buffers back before new ones post theirs
                try transport.waitForLink(timeout: .seconds(24 * 3600))
                ports = try transport.queuePairs.map { try MessagePort.open($0) }
            }
            let m: ControlMessage
            do { m = try ports[0].receiveControl(timeout: .seconds(24 * 3600)) } catch {
                if ports[0].linkLost { continue }
                throw error
            }
            do {
                switch m.kind {
                case .startPerf:
                    try perfSink(ports, qps: Int(m.a.2), perThread: max(1, Int(m.a.4)), device: transport.device)
                case .startPingpong:
                    try echo(ports[0])
                case .startFile:
                    try receiveFile(ports[0], size: m.a.0)
                    if once { return }
                case .bye:
                    return
                default:
                    throw ToolError("unexpected control message \(m.kind) from the peer")
                }
            } catch {
                if ports.contains(where: \.linkLost) { log("session ended: \(error)"); continue }
                throw error
            }
        }
    }

    func perfSink<D: NTBDevice, B: TransportBackend>(_ ports: [MessagePort<D, B>], qps: Int, perThread: Int, device: D) throws {
        guard qps >= 1 && qps <= ports.count else { throw ToolError("the peer asked for \(qps) queue pairs; we run \(ports.count)") }
        guard perThread >= 1 && qps % perThread == 0 else { throw ToolError("the peer asked for \(perThread) queue pairs per thread, which does not divide \(qps)") }
        let threads = qps / perThread
        let cpu0 = TransportThread.processCPUSeconds(), engine0 = engineCPUSeconds(device)
        let start = ContinuousClock.now
        let totals = Handoff(UnsafeMutableBufferPointer<(UInt64, UInt64)>.allocate(capacity: threads))
        totals.value.initialize(repeating: (0, 0))
        defer { totals.value.deallocate() }
        var workers: [TransportThread] = []
        for t in 1..<threads {
            let mine = Handoff(threadShare(ports, thread: t, perThread: perThread))
            let body = Handoff({ totals.value[t] = (try? Self.sink(mine.value)) ?? (0, 0) })
            workers.append(try TransportThread(name: "perf-rx\(t)") { body.value() })
        }
        totals.value[0] = try Self.sink(threadShare(ports, thread: 0, perThread: perThread))
        for w in workers { w.join() }
        let elapsed = ContinuousClock.now - start
        let engine = engineCPUSeconds(device) - engine0
        let cpu = TransportThread.processCPUSeconds() - cpu0 - engine
        let bytes = totals.value.reduce(0) { $0 + $1.0 }, messages = totals.value.reduce(0) { $0 + $1.1 }
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
            let (slot, length) = try port.receive(timeout: .seconds(60))
            if length == ControlMessage.size, let m = ControlMessage(port.bytes(slot, length)), m.kind == .endPingpong {
                port.release(slot)
                return
            }
            defer { port.release(slot) }
            try port.send(port.bytes(slot, length))
        }
    }

    func receiveFile<D: NTBDevice, B: TransportBackend>(_ port: MessagePort<D, B>, size: UInt64) throws {
        let (nameSlot, nameLength) = try port.receive()
        let rawName = String(decoding: port.bytes(nameSlot, nameLength), as: UTF8.self)
        port.release(nameSlot)
        // Never trust the peer's name: a plain file name, no directories.
        let name = rawName.split(separator: "/").last.map(String.init) ?? ""
        let valid = !name.isEmpty && name != "." && name != ".." && !name.contains("\0")
        let dir = directory ?? "."
        let partial = "\(dir)/.\(name).partial"
        let fd = valid ? open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) : -1
        if !valid { log("refusing file name '\(rawName)' from the peer") }
        else if fd < 0 { log("cannot write \(partial): \(String(cString: strerror(errno)))") }
        var crc = CRC32C()
        var total: UInt64 = 0
        var writeFailed = fd < 0
        while true {
            let (slot, length) = try port.receive(timeout: .seconds(60))
            let bytes = port.bytes(slot, length)
            if length == ControlMessage.size, let m = ControlMessage(bytes), m.kind == .endFile {
                port.release(slot)
                if fd >= 0 { close(fd) }
                let ok = !writeFailed && UInt64(crc.checksum) == m.a.0 && total == m.a.1 && total == size
                if ok {
                    rename(partial, "\(dir)/\(name)")
                    log("received \(name): \(total) bytes, CRC-32C \(String(crc.checksum, radix: 16)) verified")
                } else {
                    if fd >= 0 { unlink(partial) }
                    log("discarded \(name): \(writeFailed ? "write failed" : "checksum or size mismatch")")
                }
                try port.send(ControlMessage(.result, status: ok ? 0 : (writeFailed ? 2 : 1), UInt64(crc.checksum), total))
                return
            }
            crc.update(bytes)
            total += UInt64(length)
            if !writeFailed {
                var off = 0
                while off < length {
                    let n = write(fd, bytes.baseAddress! + off, length - off)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { writeFailed = true; break }
                    off += n
                }
            }
            port.release(slot)
        }
    }
}

/// Single-thread copy bandwidth measured in the same run as the transport, the baseline it is compared with.
///
/// `memcpyGBps` is the honest "single-thread memcpy bandwidth" of the issue's target: libc `memcpy` of
/// `size`-byte chunks from a source ring into a destination ring, EACH as large as the transport's ring
/// (the memory window), so neither side of the copy stays in L1/L2 — the footprint the transport's two
/// copies (sender into the window, receiver out of it) work over. `hotSourceGBps` is the copy the
/// host backend's sender is built on, alone: its non-temporal copy (``HostChannel/copyPayload(_:into:at:)``,
/// Linux `ntb_memcpy_tx`) from ONE hot `size`-byte source into a window-sized ring. Non-temporal
/// stores go to DRAM while the memcpy rings stay in the L3, so on a machine whose L3 holds the
/// rings this figure is the lower one; the transport's ratio to it is its overhead over its own copy.
struct MemcpyBaseline: Codable {
    var chunkBytes: Int
    var footprintBytes: Int
    var memcpyGBps: Double
    var hotSourceGBps: Double

    static func measure(size: Int, window: Int = 4 << 20, total: Int = 2 << 30) -> MemcpyBaseline {
        let slots = max(1, window / size)
        let ringBytes = slots * size
        let src = UnsafeMutableRawPointer.allocate(byteCount: ringBytes, alignment: 4096)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: ringBytes, alignment: 4096)
        defer { src.deallocate(); dst.deallocate() }
        memset(src, 0x5A, ringBytes); memset(dst, 0, ringBytes)
        let count = max(slots, total / size)
        let clock = ContinuousClock()
        // Footprint-matched libc memcpy: chunk i of the source ring into chunk i of the destination ring.
        var start = clock.now
        for i in 0..<count {
            let off = (i % slots) * size
            memcpy(dst + off, src + off, size)
        }
        // Keep the copies observable (the destination is read after the loop).
        var check: UInt8 = 0
        for i in stride(from: 0, to: ringBytes, by: 4096) { check |= dst.load(fromByteOffset: i, as: UInt8.self) }
        let footprint = Double(count * size) / (clock.now - start).seconds / 1e9
        // Hot source, the host backend's non-temporal copy into a window-sized ring.
        let ring = MMIORegion(base: dst, length: ringBytes)
        let message = UnsafeRawBufferPointer(start: src, count: size)
        start = clock.now
        for i in 0..<count {
            HostChannel.copyPayload(message, into: ring, at: (i % slots) * size)
        }
        let hot = Double(count * size) / (clock.now - start).seconds / 1e9
        precondition(check == 0x5A, "memcpy baseline: the destination ring was not written")
        return MemcpyBaseline(chunkBytes: size, footprintBytes: ringBytes, memcpyGBps: footprint, hotSourceGBps: hot)
    }
}

/// Writes to standard error without buffering.
func writeStderr(_ text: String) {
    var t = text
    t.withUTF8 { b in _ = write(2, b.baseAddress, b.count) }
}

/// CPU seconds of the DMA engine model this process hosts (the mock endpoint's eDMA), 0 without one:
/// the model stands for the silicon, so perf counts it apart from the transport's CPU.
func engineCPUSeconds<Device: NTBDevice>(_ device: Device) -> Double {
    (device as? MockNTBDevice)?.runningEDMAModel?.threadCPUSeconds ?? 0
}

/// CPU time of the calling thread.
func threadCPUSeconds() -> Double {
    var t = timespec()
    _ = clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
