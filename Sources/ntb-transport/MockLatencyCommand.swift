import ArgumentParser
import Histogram
import NTBHardware
import NTBMock
import NTBTools

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

    @OptionGroup var port: PortOptions
    @Option(help: "poll (busy-poll both sides) or interrupt (block in waitForEvents).") var mode: DoorbellLatency.Mode = .poll
    @Option(help: "Round trips to measure (host).") var count: Int = 10_000
    @Option(help: "Round trips before measuring (host).") var warmup: Int = 1000

    func validate() throws {
        try checkRange("--count", count, 1...1_000_000_000)
        try checkRange("--warmup", warmup, 0...1_000_000_000)
    }

    func run() throws {
        let device = try port.open()
        defer { device.close() }
        let latency = DoorbellLatency(mode: mode, count: count, warmup: warmup)
        switch device.role {
        case .endpoint:
            print("endpoint: answering doorbells (\(mode) mode); stop with Ctrl-C")
            print("endpoint: answered \(latency.respond(device)) doorbells")
        case .host:
            let report = try latency.measure(device, peerPresent: { device.link.isPeerPresent })
            func us(_ ns: UInt64) -> String { String(format1: Double(ns) / 1000) }
            func line(_ h: Histogram<UInt64>) -> String {
                "  min \(us(h.min))  p50 \(us(h.valueAtPercentile(50)))  p90 \(us(h.valueAtPercentile(90)))  p99 \(us(h.valueAtPercentile(99)))  max \(us(h.max))  mean \(String(format1: h.mean / 1000))"
            }
            let poll = port.mockOptions.pollInterval.components
            let pollUS = poll.seconds * 1_000_000 + poll.attoseconds / 1_000_000_000_000
            print("doorbell round trip, \(mode) mode, endpoint poll \(pollUS) µs\(device.link.configuration.msiDoorbell ? " + MSI doorbell" : ""), \(count) samples (µs):")
            print(line(report.doorbell))
            if let baseline = report.baseline {
                print("baseline: scratchpad echo round trip (shared memory, both spinning) (µs):")
                print(line(baseline))
                let ratio = Double(report.doorbell.valueAtPercentile(50)) / Double(max(1, baseline.valueAtPercentile(50)))
                print("  doorbell p50 / baseline p50 = \(String(format1: ratio))")
            }
        }
    }
}

extension DoorbellLatency.Mode: ExpressibleByArgument {}

extension String {
    /// One decimal place, without Foundation.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
