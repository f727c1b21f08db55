import ArgumentParser
import NTBTransport
import NTBTools

/// `ntb-transport pingpong`: round-trip latency with HdrHistogram percentiles.
struct PingpongCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pingpong",
        abstract: "Measure round-trip latency (run `ntb-transport serve` on the peer first).",
        discussion: "Sends one message, waits for the echo, repeats; prints p50/p99/p99.9/max in nanoseconds. Use --wait polling for the lowest latency."
    )

    @OptionGroup var port: PortOptions
    @OptionGroup var transport: TransportOptions

    @Option(name: .long, help: ArgumentHelp("Message size in bytes (K, M suffixes).", valueName: "bytes"), transform: sizeArgument)
    var size: Int = 64

    @Option(name: .long, help: ArgumentHelp("Round trips to measure (after 1000 warm-up ones).", valueName: "n"))
    var count: Int = 100_000

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        try checkRange("--size", size, 1...(1 << 30), "bytes")
        try checkRange("--count", count, 1...1_000_000_000)
    }

    func run() throws {
        let r = try runTool { try runSession(port, transport, PingpongInitiator(messageSize: size, roundTrips: count, waitMode: transport.wait.rawValue)) }
        if json { printJSON(r); return }
        printLatencyTable([r])
    }
}

func printLatencyTable(_ results: [LatencyResult]) {
    print(pad("backend", 8), pad("size", 6), pad("wait", 10), pad("round trips", 12), pad("p50 ns", 9), pad("p99 ns", 9), pad("p99.9 ns", 9), pad("max ns", 10))
    for r in results {
        print(pad(r.backend, 8), pad("\(r.messageSize)", 6), pad(r.waitMode, 10), pad("\(r.roundTrips)", 12), pad("\(r.p50)", 9), pad("\(r.p99)", 9), pad("\(r.p999)", 9), pad("\(r.max)", 10))
    }
}
