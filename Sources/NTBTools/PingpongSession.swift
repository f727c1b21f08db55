#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBTransport
import Histogram

/// Runs pingpong as the initiator: START, then `count` round trips of `size` bytes, END.
public struct PingpongInitiator: PortSession, Sendable {
    public var messageSize: Int
    public var roundTrips: Int
    public var warmup: Int = 1000
    public var waitMode: String

    public init(messageSize: Int, roundTrips: Int, warmup: Int = 1000, waitMode: String) {
        self.messageSize = messageSize; self.roundTrips = roundTrips; self.warmup = warmup; self.waitMode = waitMode
    }

    /// Runs pingpong on queue pair 0 of `set` (the peer runs a ``Responder``).
    public func run<Device: NTBDevice, Backend: TransportBackend>(_ set: PortSet<Device, Backend>) throws -> LatencyResult {
        let port = try set.port(0)
        guard messageSize >= 1 && messageSize <= port.bufferSize else {
            throw ToolError("--size must be 1...\(port.bufferSize) with this MTU and window")
        }
        try port.send(ControlMessage(.startPingpong, UInt64(messageSize), UInt64(roundTrips + warmup)))
        let message = UnsafeMutableRawBufferPointer.allocate(byteCount: messageSize, alignment: 64)
        defer { unsafe message.deallocate() }
        for i in 0..<messageSize { unsafe message[i] = UInt8(truncatingIfNeeded: i) }
        var histogram = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        let clock = ContinuousClock()
        var progress = Progress()
        for i in 0..<(roundTrips + warmup) {
            let t0 = clock.now
            unsafe try port.send(UnsafeRawBufferPointer(message))
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

