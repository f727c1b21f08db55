public import NTBHardware
public import NTBTransport

/// The demo's large-message phase on one link: perf with 64 KiB-class messages, a 64-byte polling
/// pingpong, a file transfer, then bye (the endpoint serves them in turn).
public struct DemoLargePhase: PortSession, Sendable {
    public struct Result: Codable, Sendable {
        public var large: PerfResult
        public var latency: LatencyResult
        public var file: FileSender.Result
    }
    public var messageSize: Int
    public var bytes: UInt64
    public var roundTrips: Int
    public var file: String
    public var quiet: Bool

    public init(messageSize: Int, bytes: UInt64, roundTrips: Int, file: String, quiet: Bool) {
        self.messageSize = messageSize
        self.bytes = bytes
        self.roundTrips = roundTrips
        self.file = file
        self.quiet = quiet
    }

    public func run<Device: NTBDevice, Backend: TransportBackend>(_ ports: PortSet<Device, Backend>) throws -> Result {
        func say(_ s: String) { if !quiet { writeStderr("  \(s)\n") } }
        say("perf: \(messageSize)-byte messages, \(bytes >> 20) MiB")
        // A DMA backend's sender sleeps while the engine works and wakes on its completion MSI: its
        // CPU per GB is then what the transport costs, not the time it spun (sleepOnDMA).
        // host: 8 frames per doorbell (the receiver starts copying early); edma: the default, half
        // the ring per chain (one chain runs while the next fills).
        let large = try PerfInitiator(messageSize: messageSize, totalBytes: bytes, duration: nil, queuePairs: 1,
                                      showProgress: !quiet, frameBatch: 8, sleepOnDMA: true).run(ports)
        say("pingpong: 64 bytes, polling, \(roundTrips) round trips")
        let latency = try PingpongInitiator(messageSize: 64, roundTrips: roundTrips, waitMode: "polling").run(ports)
        say("send: \(file)")
        let sent = try FileSender(path: file).run(ports)
        try ByeInitiator().run(ports)
        return Result(large: large, latency: latency, file: sent)
    }
}

/// The demo's small-message phase: 64-byte messages in batches of 64, then bye.
public struct DemoSmallPhase: PortSession, Sendable {
    public var messages: Int
    public var quiet: Bool

    public init(messages: Int, quiet: Bool) {
        self.messages = messages
        self.quiet = quiet
    }

    public func run<Device: NTBDevice, Backend: TransportBackend>(_ ports: PortSet<Device, Backend>) throws -> PerfResult {
        let small = try PerfInitiator(messageSize: 64, totalBytes: UInt64(messages) * 64, duration: nil, queuePairs: 1, batch: 64, showProgress: !quiet).run(ports)
        try ByeInitiator().run(ports)
        return small
    }
}
