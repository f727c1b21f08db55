import ArgumentParser
import Histogram
import NTBHardware
import NTBMock

/// `ntb-transport mock latency`: doorbell round-trip latency between two processes on a mock link.
///
/// Run the endpoint first (it answers every doorbell with one back), then the host, which rings doorbell
/// bit 0, waits for the endpoint's answer, and prints the round-trip histogram. Modes:
/// - `poll`: both sides spin on `pollEvents()` (the endpoint scans its doorbell array itself; the host
///   checks its MSI vectors without blocking).
/// - `interrupt`: both sides block in `waitForEvents` — the host on its MSI vectors (FIFOs), the endpoint on
///   its event notifier, raised by its service thread every `--poll-us` (vNTB polling) or at once when the
///   link was created with `--msi-doorbell`.
struct MockLatencyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Measure the doorbell round trip between two processes on a mock link.",
        discussion: """
            Example:
              ntb-transport mock up --dir /dev/shm/lat
              ntb-transport mock latency --port mock:/dev/shm/lat --role endpoint --mode poll --poll-us 100 &
              ntb-transport mock latency --port mock:/dev/shm/lat --role host --mode poll --count 20000
            """
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable { case poll, interrupt }

    @OptionGroup var port: PortOptions
    @Option(help: "poll (busy-poll both sides) or interrupt (block in waitForEvents).") var mode: Mode = .poll
    @Option(help: "Round trips to measure (host).") var count: Int = 10_000
    @Option(help: "Round trips before measuring (host).") var warmup: Int = 1000

    /// Scratchpad 0 value the host leaves in the endpoint's scratchpad when it is done.
    static let doneMagic: UInt32 = 0xD0E_D0E

    func validate() throws {
        try checkRange("--count", count, 1...1_000_000_000)
        try checkRange("--warmup", warmup, 0...1_000_000_000)
    }

    func run() throws {
        let device = try port.open()
        defer { device.close() }
        switch device.role {
        case .endpoint: respond(device)
        case .host: try measure(device)
        }
    }

    private func waitDoorbell(_ device: MockNTBDevice, deadline: ContinuousClock.Instant) -> Bool {
        while device.readDoorbell() & 1 == 0 {
            switch mode {
            case .poll: _ = device.pollEvents()
            case .interrupt: _ = device.waitForEvents(timeout: .milliseconds(100))
            }
            if ContinuousClock.now > deadline { return false }
        }
        return true
    }

    /// Endpoint: answer every doorbell until the host says it is done or goes away. In poll mode it also
    /// echoes scratchpad 1 into the host's scratchpad 2: the shared-memory round trip, the baseline.
    private func respond(_ device: MockNTBDevice) {
        device.writeScratchpad(0, 0)
        print("endpoint: answering doorbells (\(mode) mode); stop with Ctrl-C")
        var answered = 0
        var seenUp = false
        var echoed = device.readScratchpad(1)
        while true {
            if device.isLinkUp { seenUp = true } else if seenUp { break }
            if device.readScratchpad(0) == Self.doneMagic { break }
            switch mode {
            case .poll:
                let v = device.readScratchpad(1)
                if v != echoed { device.writePeerScratchpad(2, v); echoed = v }
                _ = device.pollEvents()
            case .interrupt:
                _ = device.waitForEvents(timeout: .milliseconds(100))
            }
            if device.readDoorbell() & 1 != 0 {
                device.clearDoorbell(1)
                device.ringPeerDoorbell(1)
                answered += 1
            }
        }
        print("endpoint: answered \(answered) doorbells")
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    private static func nanoseconds(_ d: Duration) -> UInt64 {
        let (s, atto) = d.components
        return UInt64(s) * 1_000_000_000 + UInt64(atto / 1_000_000_000)
    }

    /// Host: ring, wait for the answer, record the round trip; in poll mode then the scratchpad baseline.
    private func measure(_ device: MockNTBDevice) throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !device.link.isPeerPresent && ContinuousClock.now < deadline { _ = device.waitForEvents(timeout: .milliseconds(50)) }
        try device.enableLink()
        device.clearDoorbell(device.readDoorbell())
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        let clock = ContinuousClock()
        for i in 0..<(warmup + count) {
            let start = clock.now
            device.ringPeerDoorbell(1)
            guard waitDoorbell(device, deadline: start + .seconds(2)) else {
                throw Failure(description: "no answer to doorbell \(i) within 2 s; is `mock latency --role endpoint` running on this link?")
            }
            let elapsed = clock.now - start
            device.clearDoorbell(1)
            if i >= warmup { histogram.record(Self.nanoseconds(elapsed)) }
        }
        var baseline = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        if mode == .poll {
            // Baseline in the same run: a scratchpad write the endpoint echoes back, both sides spinning on
            // shared memory. The doorbell path costs this plus slot/MSI handling.
            var value = device.readPeerScratchpad(1)
            for i in 0..<(warmup + count) {
                value = value &+ 1 == 0 ? 1 : value &+ 1
                let start = clock.now
                device.writePeerScratchpad(1, value)
                while device.readScratchpad(2) != value {
                    if clock.now - start > .seconds(2) { throw Failure(description: "no scratchpad echo \(i) within 2 s") }
                }
                if i >= warmup { baseline.record(Self.nanoseconds(clock.now - start)) }
            }
        }
        device.writePeerScratchpad(0, Self.doneMagic)
        func us(_ ns: UInt64) -> String { String(format1: Double(ns) / 1000) }
        func line(_ h: Histogram<UInt64>) -> String {
            "  min \(us(h.min))  p50 \(us(h.valueAtPercentile(50)))  p90 \(us(h.valueAtPercentile(90)))  p99 \(us(h.valueAtPercentile(99)))  max \(us(h.max))  mean \(String(format1: h.mean / 1000))"
        }
        let poll = port.mockOptions.pollInterval.components
        let pollUS = poll.seconds * 1_000_000 + poll.attoseconds / 1_000_000_000_000
        print("doorbell round trip, \(mode) mode, endpoint poll \(pollUS) µs\(device.link.configuration.msiDoorbell ? " + MSI doorbell" : ""), \(count) samples (µs):")
        print(line(histogram))
        if mode == .poll {
            print("baseline: scratchpad echo round trip (shared memory, both spinning) (µs):")
            print(line(baseline))
            let ratio = Double(histogram.valueAtPercentile(50)) / Double(max(1, baseline.valueAtPercentile(50)))
            print("  doorbell p50 / baseline p50 = \(String(format1: ratio))")
        }
    }
}

extension String {
    /// One decimal place, without Foundation.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
