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
        guard count > 0 && warmup >= 0 else { throw ValidationError("--count must be positive and --warmup not negative") }
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

    /// Endpoint: answer every doorbell until the host says it is done or goes away.
    private func respond(_ device: MockNTBDevice) {
        device.writeScratchpad(0, 0)
        print("endpoint: answering doorbells (\(mode) mode); stop with Ctrl-C")
        var answered = 0
        var seenUp = false
        while true {
            if device.isLinkUp { seenUp = true } else if seenUp { break }
            if device.readScratchpad(0) == Self.doneMagic { break }
            guard waitDoorbell(device, deadline: ContinuousClock.now + .milliseconds(200)) else { continue }
            device.clearDoorbell(1)
            device.ringPeerDoorbell(1)
            answered += 1
        }
        print("endpoint: answered \(answered) doorbells")
    }

    /// Host: ring, wait for the answer, record the round trip.
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
                throw ValidationError("no answer to doorbell \(i) within 2 s; is `mock latency --role endpoint` running on this link?")
            }
            let elapsed = clock.now - start
            device.clearDoorbell(1)
            if i >= warmup {
                let (s, atto) = elapsed.components
                histogram.record(UInt64(s) * 1_000_000_000 + UInt64(atto / 1_000_000_000))
            }
        }
        device.writePeerScratchpad(0, Self.doneMagic)
        func us(_ ns: UInt64) -> String { String(format1: Double(ns) / 1000) }
        let poll = port.mockOptions.pollInterval.components
        let pollUS = poll.seconds * 1_000_000 + poll.attoseconds / 1_000_000_000_000
        print("doorbell round trip, \(mode) mode, endpoint poll \(pollUS) µs\(device.link.configuration.msiDoorbell ? " + MSI doorbell" : ""), \(count) samples (µs):")
        print("  min \(us(histogram.min))  p50 \(us(histogram.valueAtPercentile(50)))  p90 \(us(histogram.valueAtPercentile(90)))  p99 \(us(histogram.valueAtPercentile(99)))  max \(us(histogram.max))  mean \(String(format1: histogram.mean / 1000))")
    }
}

extension String {
    /// One decimal place, without Foundation.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
