import NTBTransport

/// Figures of one perf run, as the tools print them.
public struct PerfResult: Codable, Sendable {
    public var backend: String
    public var messageSize: Int
    public var queuePairs: Int
    public var batch: Int
    public var messages: UInt64
    public var bytes: UInt64
    public var seconds: Double
    public var senderCPUSeconds: Double
    public var receiverCPUSeconds: Double
    /// CPU of a DMA engine model (the silicon's stand-in), counted apart from both sides.
    public var engineCPUSeconds: Double = 0
    /// CPU of the sending threads alone (the data path; the process figure adds the transport's
    /// link monitor and the device's threads).
    public var senderThreadCPUSeconds: Double = 0
    /// Threads that drove the queue pairs on each side (`queuePairs / threads` queue pairs each).
    public var threads: Int = 1
    /// Times the sending threads slept on their interrupts (`interrupt_waits` of the sending queue
    /// pairs): with a DMA backend, about one per chain.
    public var senderSleeps: UInt64 = 0
    public var senderSleepsPerGB: Double { bytes > 0 ? Double(senderSleeps) / (Double(bytes) / 1e9) : 0 }
    /// The sending queue pairs' wait counters over the run (`stats` names: wakes, spins, doorbells,
    /// doorbells_received, poll_waits), for per-message figures of the wait path.
    public var senderWaits: [String: UInt64] = [:]
    public var gigabytesPerSecond: Double { seconds > 0 ? Double(bytes) / seconds / 1e9 : 0 }
    public var messagesPerSecond: Double { seconds > 0 ? Double(messages) / seconds : 0 }
    public var senderCPUSecondsPerGB: Double { bytes > 0 ? senderCPUSeconds / (Double(bytes) / 1e9) : 0 }
    public var receiverCPUSecondsPerGB: Double { bytes > 0 ? receiverCPUSeconds / (Double(bytes) / 1e9) : 0 }
    public var engineCPUSecondsPerGB: Double { bytes > 0 ? engineCPUSeconds / (Double(bytes) / 1e9) : 0 }
    public var senderThreadCPUSecondsPerGB: Double { bytes > 0 ? senderThreadCPUSeconds / (Double(bytes) / 1e9) : 0 }

    enum CodingKeys: String, CodingKey {
        case backend, messageSize, queuePairs, batch, messages, bytes, seconds, senderCPUSeconds, receiverCPUSeconds
        case gigabytesPerSecond, messagesPerSecond, senderCPUSecondsPerGB, receiverCPUSecondsPerGB
        case engineCPUSeconds, engineCPUSecondsPerGB, senderThreadCPUSeconds, senderThreadCPUSecondsPerGB, threads
        case senderSleeps, senderSleepsPerGB, senderWaits
    }
    public func encode(to e: any Encoder) throws {
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
        try c.encode(senderWaits, forKey: .senderWaits)
    }
    public init(backend: String, messageSize: Int, queuePairs: Int, batch: Int, messages: UInt64, bytes: UInt64, seconds: Double, senderCPUSeconds: Double, receiverCPUSeconds: Double, engineCPUSeconds: Double = 0, senderThreadCPUSeconds: Double = 0, threads: Int = 1) {
        self.backend = backend; self.messageSize = messageSize; self.queuePairs = queuePairs; self.batch = batch
        self.messages = messages; self.bytes = bytes; self.seconds = seconds
        self.senderCPUSeconds = senderCPUSeconds; self.receiverCPUSeconds = receiverCPUSeconds
        self.engineCPUSeconds = engineCPUSeconds
        self.senderThreadCPUSeconds = senderThreadCPUSeconds
        self.threads = threads
    }
    public init(from d: any Decoder) throws {
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
        senderWaits = try c.decodeIfPresent([String: UInt64].self, forKey: .senderWaits) ?? [:]
    }
}

/// Round-trip latency figures in nanoseconds.
public struct LatencyResult: Codable, Sendable {
    public var backend: String
    public var messageSize: Int
    public var roundTrips: Int
    public var waitMode: String
    public var p50: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64
    public var mean: Double

    public init(backend: String, messageSize: Int, roundTrips: Int, waitMode: String, p50: UInt64, p99: UInt64, p999: UInt64, max: UInt64, mean: Double) {
        self.backend = backend; self.messageSize = messageSize; self.roundTrips = roundTrips; self.waitMode = waitMode
        self.p50 = p50; self.p99 = p99; self.p999 = p999; self.max = max; self.mean = mean
    }
}

