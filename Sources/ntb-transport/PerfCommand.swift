import ArgumentParser
import Foundation
import NTBHardware
import NTBTransport
import NTBTools

/// `ntb-transport perf`: throughput like Linux ntb_perf, against `ntb-transport serve` on the peer.
struct PerfCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perf",
        abstract: "Measure throughput over queue pairs (run `ntb-transport serve` on the peer first).",
        discussion: """
            Sends messages of each --size over --threads × --qps-per-thread queue pairs for --bytes or \
            --duration, then prints throughput, message rate and CPU seconds per GB on both sides. Each \
            thread drives its queue pairs in turn and sleeps on all of their interrupts at once.
            Example: ntb-transport serve --port mock:/dev/shm/ntb0 --role endpoint &
                     ntb-transport perf --port mock:/dev/shm/ntb0 --role host --size 64 --size 65536
            """
    )

    @OptionGroup var port: PortOptions
    @OptionGroup var transport: TransportOptions

    @Option(name: .long, help: ArgumentHelp("Message size in bytes (K, M suffixes); repeat for several sizes.", valueName: "bytes"), transform: sizeArgument)
    var size: [Int] = [65536 - 12]

    @Option(name: .long, help: ArgumentHelp("Bytes to send per size, e.g. 1G, 512M (default 1G unless --duration).", valueName: "n"))
    var bytes: String?

    @Option(name: .long, help: ArgumentHelp("Seconds to send per size (instead of --bytes).", valueName: "s"))
    var duration: Double?

    @Option(name: .long, help: ArgumentHelp("Sending threads (and receiving threads at the peer).", valueName: "n"))
    var threads: Int = 1

    @Option(name: .long, help: ArgumentHelp("Queue pairs each thread drives in turn (default 1); perf uses threads × this many.", valueName: "n"))
    var qpsPerThread: Int = 1

    @Option(name: .long, help: ArgumentHelp("Messages per doorbell (host) or per eDMA chain (edma). Default: 32 (host); half the transmit ring, 64, for edma, so that one chain runs while the next fills.", valueName: "n"))
    var batch: Int?

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        guard !size.isEmpty else { throw ValidationError("--size must be at least 1") }
        for s in size { try checkRange("--size", s, 1...(1 << 30), "bytes") }
        guard threads >= 1 && threads <= 63 else { throw ValidationError("--threads must be 1...63") }
        guard qpsPerThread >= 1 && threads * qpsPerThread <= 63 else { throw ValidationError("--qps-per-thread must be at least 1, with --threads × --qps-per-thread at most 63") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be 1...4096") }
        if bytes != nil && duration != nil { throw ValidationError("give --bytes or --duration, not both") }
        if let bytes { try checkByteCount("--bytes", bytes) }
        if let duration { try checkRange("--duration", duration, 0.001...86_400, "seconds") }
    }

    func run() throws {
        var options = transport
        let queuePairs = threads * qpsPerThread
        if options.qps == nil && queuePairs > 1 { options.qps = queuePairs }
        let jobs = size.map { s in
            PerfInitiator(messageSize: s, totalBytes: duration == nil ? parseByteCount(bytes ?? "1G") : nil,
                          duration: duration.map { .milliseconds(Int64($0 * 1000)) },
                          queuePairs: queuePairs, batch: batch, showProgress: !json, perThread: qpsPerThread)
        }
        // One transport for every size: the peer's `serve` answers one session after another.
        let results = try runTool { try runSession(port, options, PerfSeries(runs: jobs)) }
        if json { printJSON(results) } else { printPerfTable(results) }
    }
}

func printPerfTable(_ results: [PerfResult]) {
    print(pad("backend", 8), pad("size", 8), pad("qps", 4), pad("thr", 4), pad("batch", 6), pad("messages", 12), pad("GB/s", 8), pad("Mmsg/s", 8), pad("tx CPU s/GB", 12), pad("tx thread", 10), pad("rx CPU s/GB", 12), "engine s/GB")
    for r in results {
        print(pad(r.backend, 8), pad("\(r.messageSize)", 8), pad("\(r.queuePairs)", 4), pad("\(r.threads)", 4), pad("\(r.batch)", 6), pad("\(r.messages)", 12),
              pad(String(format: "%.2f", r.gigabytesPerSecond), 8), pad(String(format: "%.2f", r.messagesPerSecond / 1e6), 8),
              pad(String(format: "%.3f", r.senderCPUSecondsPerGB), 12), pad(String(format: "%.3f", r.senderThreadCPUSecondsPerGB), 10),
              pad(String(format: "%.3f", r.receiverCPUSecondsPerGB), 12), r.engineCPUSeconds > 0 ? String(format: "%.3f", r.engineCPUSecondsPerGB) : "-")
    }
}

func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }

func printJSON<T: Encodable>(_ value: T) {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    if let data = try? e.encode(value), let s = String(data: data, encoding: .utf8) { print(s) }
}

/// Runs a tool body: runtime failures print their description on one line and exit 1.
func runTool<R>(_ body: () throws -> R) throws -> R {
    do { return try body() } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e } catch {
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}
