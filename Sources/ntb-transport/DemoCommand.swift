import ArgumentParser
import Foundation
import NTBHardware
import NTBMock
import NTBPorts
import NTBTransport
import NTBTools

/// `ntb-transport demo`: the whole product on the built-in mock link, in two processes.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run perf, pingpong and a file transfer over every backend on a mock link with the peer in a second process, and compare.",
        discussion: """
            Creates a mock NTB link in a temporary directory, starts the endpoint side as a second process \
            (`ntb-transport serve --role endpoint`), runs the tools from the host side, prints one table \
            (throughput, latency percentiles, CPU per GB, ratio to a single-thread memcpy measured in the \
            same run) and removes the link.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Bytes per throughput run (K, M, G suffixes).", valueName: "n"))
    var bytes: String = "1G"

    @Option(name: .customLong("small-messages"), help: ArgumentHelp("64-byte messages per small-message run.", valueName: "n"))
    var smallMessages: Int = 10_000_000

    @Option(name: .customLong("round-trips"), help: ArgumentHelp("Pingpong round trips.", valueName: "n"))
    var roundTrips: Int = 50_000

    @Option(name: .customLong("file-size"), help: ArgumentHelp("Size of the transferred file (K, M, G suffixes).", valueName: "n"))
    var fileSize: String = "64M"

    @Option(name: .long, help: ArgumentHelp("Backends to run (default: every registered one).", valueName: "name"))
    var backend: [String] = []

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        try checkByteCount("--bytes", bytes)
        guard let file = parseByteCount(fileSize), file <= 64 << 30 else {
            throw ValidationError("--file-size \(fileSize) is out of range: 1...64G bytes, a number with an optional K, M or G suffix")
        }
        try checkRange("--small-messages", smallMessages, 1...1_000_000_000)
        try checkRange("--round-trips", roundTrips, 1...1_000_000_000)
        for b in backend where !TransportBackends.names.contains(b) {
            throw ValidationError("--backend \(b): not one of \(TransportBackends.names.joined(separator: ", "))")
        }
    }

    struct Row: Codable {
        var backend: String
        var error: String?
        var large: PerfResult?
        var small: PerfResult?
        var latency: LatencyResult?
        var file: FileSender.Result?
        /// Footprint-matched single-thread libc memcpy (see ``MemcpyBaseline``): the ratio's reference.
        var memcpyGBps: Double
        /// Non-temporal copy from one hot 65524-byte source into the window (for comparison only).
        var memcpyHotSourceGBps: Double
    }

    func run() throws {
        try runTool {
            var template = "/dev/shm/ntb-demo-XXXXXX".utf8CString
            let made = unsafe template.withUnsafeMutableBufferPointer { unsafe mkdtemp($0.baseAddress!) }
            guard unsafe made != nil else { throw ToolError(unsafe "cannot create a temporary directory in /dev/shm: \(String(cString: strerror(errno)))") }
            let dir = unsafe String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
            // The directory is ours alone: remove the link, then everything else in it (logs, files, stats).
            defer { try? MockLink.remove(at: dir, force: true); try? FileManager.default.removeItem(atPath: dir) }
            var config = MockLinkConfiguration()
            config.memoryWindowCount = 2   // the edma backend keeps the last one for the eDMA window
            try MockLink.create(at: dir, configuration: config)
            let largeSize = 0x10000 - 12
            if !json { writeStderr("measuring the memcpy baseline...\n") }
            let baseline = MemcpyBaseline.measure(size: largeSize, window: config.memoryWindowSize)
            // The floors explain the table; JSON carries only the rows.
            let lineFloor = json ? nil : CacheLineBaseline.measure(pin: { try pinToCPU($0) })
            let wakeFloor = json ? nil : WakeBaseline.measure()
            let sourceFile = "\(dir)/demo-file.bin"
            try makeFile(sourceFile, size: Int(parseByteCount(fileSize)!))
            var rows: [Row] = []
            for name in backend.isEmpty ? TransportBackends.names : backend {
                if !json { writeStderr("backend \(name): starting the endpoint process...\n") }
                var row = Row(backend: name, memcpyGBps: baseline.memcpyGBps, memcpyHotSourceGBps: baseline.hotSourceGBps)
                do {
                    try runBackend(name, dir: dir, sourceFile: sourceFile, largeSize: largeSize, row: &row)
                } catch {
                    row.error = "\(error)"
                }
                rows.append(row)
            }
            if json { printJSON(rows) } else { printDemoTable(rows, baseline: baseline, lineFloor: lineFloor, wakeFloor: wakeFloor) }
            if rows.allSatisfy({ $0.error != nil }) { throw ToolError("no backend completed the demo") }
        }
    }

    /// Small messages run with this MTU: a 64 KiB MTU leaves only 63 frames in a 4 MiB window, which
    /// caps the message rate; both sides use the same MTU, as Linux requires.
    static let smallMessageMTU = 2048

    private func runBackend(_ name: String, dir: String, sourceFile: String, largeSize: Int, row: inout Row) throws {
        let large = try runPhase(name, dir: dir, mtu: 0x10000, DemoLargePhase(messageSize: largeSize, bytes: parseByteCount(bytes)!,
                                                                          roundTrips: roundTrips, file: sourceFile, quiet: json))
        row.large = large.large
        row.latency = large.latency
        row.file = large.file
        row.small = try runPhase(name, dir: dir, mtu: Self.smallMessageMTU, DemoSmallPhase(messages: smallMessages, quiet: json))
    }

    /// Starts the endpoint as a second process with `mtu`, runs `job` from the host side, says bye.
    private func runPhase<J: PortSession>(_ name: String, dir: String, mtu: Int, _ job: J) throws -> J.Result {
        let received = "\(dir)/received-\(name)"
        unsafe mkdir(received, 0o755)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: selfExecutable())
        // With two or more CPUs the sides are pinned apart (host CPU 0, endpoint CPU 1), as a benchmark
        // on two machines would have them; otherwise the scheduler may stack both spinning sides on one.
        let pin = sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2
        // The edma endpoint hosts the eDMA engine model (the silicon's stand-in) in its process: a
        // spinning receiver on the same core would starve it, so that side sleeps between messages
        // (interrupt; the engine's interrupt wakes it) and is not pinned (the engine runs beside it).
        let isEDMA = name == TransportBackendKind.edma.rawValue
        let endpointWait = isEDMA ? "interrupt" : "polling"
        child.arguments = ["serve", "--port", "mock:\(dir)", "--role", "endpoint", "--backend", name, "--fast",
                           "--wait", endpointWait, "--mtu", "\(mtu)", "--qps", "1", "--dir", received] + (pin && !isEDMA ? ["--cpu", "1"] : [])
        let log = "\(dir)/endpoint-\(name)-\(mtu).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        child.standardError = FileHandle(forWritingAtPath: log)
        child.standardOutput = FileHandle.nullDevice
        if pin { try unpinCPU() }   // the previous phase pinned us; the child must not inherit it
        try child.run()
        // Pin this side only once the endpoint runs: a child inherits the parent's CPU set, and the
        // unpinned edma endpoint (with its engine model) must not be confined to our core.
        if pin { try pinToCPU(0) }
        defer {
            if child.isRunning { child.terminate() }
            child.waitUntilExit()
        }
        var options = try TransportOptions.parse(["--backend", name, "--wait", "polling", "--link-timeout", "30", "--mtu", "\(mtu)"])
        options.qps = 1
        let result: J.Result
        do {
            // The host side of the link, as `--port mock:DIR --role host --fast` opens it (counters in DIR/stats.host).
            let port = try PortOptions.parse(["--port", "mock:\(dir)", "--role", "host", "--fast"])
            result = try job.run(on: try port.makePort(), settings: options.settings(statisticsPath: port.statisticsPath))
        } catch {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw ToolError("\(error)" + (text.isEmpty ? "" : "; endpoint said: " + text.split(separator: "\n").suffix(3).joined(separator: " | ")))
        }
        child.waitUntilExit()
        if child.terminationStatus != 0 {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw ToolError("the endpoint process exited with status \(child.terminationStatus): \(text.split(separator: "\n").suffix(3).joined(separator: " | "))")
        }
        return result
    }

    private func makeFile(_ path: String, size: Int) throws {
        let fd = unsafe open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ToolError("cannot create \(path)") }
        defer { close(fd) }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var left = size
        while left > 0 {
            let n = min(left, chunk.count)
            for i in stride(from: 0, to: n, by: 8) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                unsafe withUnsafeBytes(of: state) { s in for j in 0..<min(8, n - i) { chunk[i + j] = unsafe s[j] } }
            }
            let w = unsafe chunk.withUnsafeBytes { unsafe write(fd, $0.baseAddress, n) }
            guard w == n else { throw ToolError("cannot write \(path)") }
            left -= n
        }
    }
}

/// The path of this executable (to start the endpoint as a second process).
func selfExecutable() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = unsafe readlink("/proc/self/exe", &buffer, buffer.count - 1)
    if n > 0 { return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    return CommandLine.arguments[0]
}

func printDemoTable(_ rows: [DemoCommand.Row], baseline b: MemcpyBaseline, lineFloor: CacheLineBaseline? = nil, wakeFloor: WakeBaseline? = nil) {
    let baseline = b.memcpyGBps
    print("")
    print("ntb-transport demo: two processes over a mock NTB link (shared memory), this machine")
    print(String(format: "memcpy baseline (single thread, libc memcpy of %d-byte chunks, %d KiB source ring -> %d KiB destination ring, the transport's ring footprint): %.2f GB/s",
                 b.chunkBytes, b.footprintBytes >> 10, b.footprintBytes >> 10, baseline))
    print(String(format: "  the host backend's own copy alone (ntb_memcpy_tx: non-temporal stores, which bypass the cache, from one hot %d-byte source into a window-sized ring): %.2f GB/s; \"x nt\" = the transport over it", b.chunkBytes, b.hotSourceGBps))
    if let lineFloor {
        print(String(format: "latency floor: one cache line bounced between CPU 0 and CPU 1 (two pinned threads), %.0f ns per round trip (a pingpong round trip moves several lines each way)", lineFloor.roundTripNanoseconds))
    }
    if let wakeFloor {
        print(String(format: "sleep/wake floor: a thread blocked in poll(2) on an eventfd and woken by another uses %.1f us of its own CPU per wake", wakeFloor.cpuMicrosecondsPerWake))
    }
    print("64K = 65524-byte messages (MTU 65536); 64B = 64-byte messages in batches of 64 (MTU \(DemoCommand.smallMessageMTU)); latency = 64-byte round trips, polling")
    print("tx/rx CPU = each side's process; tx thread = the sending thread alone; engine = the DW eDMA engine model's thread (it stands for the silicon, so it is counted apart)")
    if let h = rows.first(where: { $0.backend == "host" })?.large, let e = rows.first(where: { $0.backend == "edma" })?.large,
       h.senderCPUSecondsPerGB > 0, h.senderThreadCPUSecondsPerGB > 0 {
        print(String(format: "edma sender CPU per GB, 64K messages: %.1f %% of host's (process), %.1f %% (sending thread)",
                     100 * e.senderCPUSecondsPerGB / h.senderCPUSecondsPerGB, 100 * e.senderThreadCPUSecondsPerGB / h.senderThreadCPUSecondsPerGB))
        if let wakeFloor, e.senderSleeps > 0 {
            // The part of the sender's CPU that is sleeping on the completion interrupt, at this machine's price.
            let sleeping = e.senderSleepsPerGB * wakeFloor.cpuMicrosecondsPerWake / 1e6
            print(String(format: "  it slept on the completion interrupt %.0f times per GB (about once per chain); at the sleep/wake floor that alone is %.3f s/GB, %.1f %% of host's",
                         e.senderSleepsPerGB, sleeping, 100 * sleeping / h.senderThreadCPUSecondsPerGB))
        }
    }
    print("")
    print(pad("backend", 8), pad("64K GB/s", 9), pad("x memcpy", 9), pad("x nt", 6), pad("64B Mmsg/s", 11), pad("p50 us", 8), pad("p99 us", 8), pad("p99.9 us", 9), pad("max us", 9),
          pad("tx CPU s/GB", 12), pad("tx thread", 10), pad("rx CPU s/GB", 12), pad("engine s/GB", 12), pad("file GB/s", 10), "file check")
    for r in rows {
        if let e = r.error { print(pad(r.backend, 8), "unavailable: \(e)"); continue }
        guard let l = r.large, let s = r.small, let p = r.latency, let f = r.file else { continue }
        func us(_ ns: UInt64) -> String { String(format: "%.2f", Double(ns) / 1000) }
        print(pad(r.backend, 8), pad(String(format: "%.2f", l.gigabytesPerSecond), 9), pad(String(format: "%.2f", l.gigabytesPerSecond / baseline), 9), pad(String(format: "%.2f", l.gigabytesPerSecond / b.hotSourceGBps), 6),
              pad(String(format: "%.2f", s.messagesPerSecond / 1e6), 11), pad(us(p.p50), 8), pad(us(p.p99), 8), pad(us(p.p999), 9), pad(us(p.max), 9),
              pad(String(format: "%.3f", l.senderCPUSecondsPerGB), 12), pad(String(format: "%.3f", l.senderThreadCPUSecondsPerGB), 10),
              pad(String(format: "%.3f", l.receiverCPUSecondsPerGB), 12),
              pad(l.engineCPUSeconds > 0 ? String(format: "%.3f", l.engineCPUSecondsPerGB) : "-", 12),
              pad(String(format: "%.2f", Double(f.bytes) / max(f.seconds, 1e-9) / 1e9), 10), "CRC-32C \(String(f.crc32c, radix: 16)) ok")
    }
}
