import Foundation
import Testing
import NTBMock
import NTBTools
@testable import ntb_transport

/// Runs the built binary; returns status, stdout, stderr.
func runTransportCLI(_ args: [String], timeout: TimeInterval = 120) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: ntbTransportBinary())
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A mock link directory for one CLI test (its geometry set by `configure`), removed with the value.
final class CLILink {
    let dir = "/dev/shm/ntb-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    init(_ configure: (inout MockLinkConfiguration) -> Void) throws {
        var c = MockLinkConfiguration()
        configure(&c)
        try MockLink.create(at: dir, configuration: c)
    }
    /// A link of `windows` windows of 1 MiB and `ram` bytes of RAM on each side.
    convenience init(windows: Int, ram: Int) throws {
        try self.init {
            $0.memoryWindowCount = windows
            $0.memoryWindowSize = 1 << 20
            $0.hostRAMSize = ram
            $0.endpointRAMSize = ram
        }
    }
    deinit { try? MockLink.remove(at: dir, force: true); try? FileManager.default.removeItem(atPath: dir) }

    /// `DIR/out`, created (where `serve` stores received files).
    func outputDirectory() throws -> String {
        try FileManager.default.createDirectory(atPath: "\(dir)/out", withIntermediateDirectories: true)
        return "\(dir)/out"
    }

    /// Writes `DIR/name` with `size` varied bytes (`byte(i)`); returns its path and content.
    func payload(_ name: String, size: Int, _ byte: (Int) -> UInt8) -> (path: String, content: [UInt8]) {
        let content = (0..<size).map(byte)
        _ = FileManager.default.createFile(atPath: "\(dir)/\(name)", contents: Data(content))
        return ("\(dir)/\(name)", content)
    }

    /// Starts `ntb-transport serve` as this link's endpoint with `arguments` after the port and role.
    func serve(_ arguments: [String], stderr: Any = FileHandle.nullDevice) throws -> Process {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: ntbTransportBinary())
        server.arguments = ["serve", "--port", "mock:\(dir)", "--role", "endpoint", "--fast"] + arguments
        server.standardError = stderr
        try server.run()
        return server
    }
}

@Suite struct TransportToolUnitTests {
    @Test func controlMessagesRoundTripAndDataIsNotMistakenForOne() {
        let m = ControlMessage(.result, status: 2, 1, 2, 3, 4)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        m.encode(into: buffer)
        #expect(ControlMessage(UnsafeRawBufferPointer(buffer)) == m)
        #expect(buffer.load(as: UInt64.self) == ControlMessage.magic.littleEndian)
        for i in 0..<64 { buffer[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }   // a perf payload
        #expect(ControlMessage(UnsafeRawBufferPointer(buffer)) == nil)
        #expect(ControlMessage(UnsafeRawBufferPointer(rebasing: buffer[0..<63])) == nil)
    }

    @Test func crc32cMatchesTheStandardCheckValue() {
        var c = CRC32C()
        Array("123456789".utf8).withUnsafeBytes { c.update($0) }
        #expect(c.checksum == 0xE306_9283)
    }

    /// The CRC the CPU instruction computes is the bitwise definition's, whatever the pieces a file
    /// arrives in (lengths and alignments that exercise the instruction's wide and narrow steps).
    @Test func crc32cOfPiecesMatchesTheBitwiseDefinition() {
        let bytes = (0..<10_007).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 7) }
        var reference: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            reference ^= UInt32(b)
            for _ in 0..<8 { reference = reference & 1 != 0 ? (reference >> 1) ^ 0x82F6_3B78 : reference >> 1 }
        }
        reference ^= 0xFFFF_FFFF
        for piece in [1, 3, 8, 61, 4096, 10_007] {
            var c = CRC32C()
            bytes.withUnsafeBytes { all in
                var at = 0
                while at < all.count {
                    let n = min(piece, all.count - at)
                    c.update(UnsafeRawBufferPointer(rebasing: all[at..<at + n]))
                    at += n
                }
            }
            #expect(c.checksum == reference, "pieces of \(piece) bytes")
        }
        var empty = CRC32C()
        empty.update(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(empty.checksum == 0)
    }

    @Test func byteCounts() {
        #expect(parseByteCount("4K") == 4096)
        #expect(parseByteCount("1G") == 1 << 30)
        #expect(parseByteCount("512MiB") == 512 << 20)
        #expect(parseByteCount("100") == 100)
        #expect(parseByteCount("x") == nil)
        #expect(parseByteCount("0") == nil)
    }
}

@Suite(.serialized) struct TransportToolProcessTests {
    @Test func usageErrorsExit64() throws {
        let r = try runTransportCLI(["perf", "--port", "mock:/dev/shm/none", "--role", "host", "--batch", "0"])
        #expect(r.status == 64)
        let b = try runTransportCLI(["pingpong", "--port", "mock:/dev/shm/none", "--role", "host", "--backend", "nope"])
        #expect(b.status == 64)
        #expect(b.err.contains("host"))
    }

    @Test func runtimeFailureIsOneLineAndExits1() throws {
        let r = try runTransportCLI(["pingpong", "--port", "mock:/dev/shm/ntb-no-such-link-\(getpid())", "--role", "host", "--link-timeout", "1"])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("Error: "))
        #expect(r.err.split(separator: "\n").count == 1)
    }

    @Test func sendAndRecvInTwoProcessesVerifyTheChecksum_andStatsReadsTheRunningSide() throws {
        let link = try CLILink(windows: 1, ram: 8 << 20)
        let dir = link.dir
        let out = try link.outputDirectory()
        // 300 KiB of varied bytes, and a 64-byte tail (sent as two pieces, never as a control message).
        let (source, content) = link.payload("payload.bin", size: 300 * 1024 + 64) { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }

        let server = try link.serve(["--dir", out])
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }

        let sent = try runTransportCLI(["send", "--port", "mock:\(dir)", "--role", "host", "--fast", source])
        #expect(sent.status == 0, "\(sent.err)")
        #expect(sent.out.contains("verified by the peer"))
        #expect(FileManager.default.contents(atPath: "\(out)/payload.bin") == Data(content))

        let ping = try runTransportCLI(["pingpong", "--port", "mock:\(dir)", "--role", "host", "--fast", "--count", "200", "--json"])
        #expect(ping.status == 0, "\(ping.err)")
        let latency = try JSONDecoder().decode(LatencyResult.self, from: Data(ping.out.utf8))
        #expect(latency.roundTrips == 200 && latency.p50 > 0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max)

        // The server is still running: its counters are readable by another process.
        let stats = try runTransportCLI(["stats", "--port", "mock:\(dir)", "--role", "endpoint", "--json"])
        #expect(stats.status == 0, "\(stats.err)")
        let qps = try #require(try JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [[String: Int]])
        #expect(qps.count == 1)
        #expect((qps.first?["rx_pkts"] ?? 0) >= 1200)   // START, name, 5 chunks, END, START, 1200 pings, END...
        #expect(qps.first?["rx_err_ver"] == 0)
    }
}

/// The edma backend between two processes: the endpoint process hosts the DW eDMA engine model.
@Suite(.serialized) struct EDMATransportToolTests {
    @Test func fileAndPerfOverTheEDMABackendBetweenTwoProcesses() throws {
        let link = try CLILink(windows: 2, ram: 32 << 20)   // the last window is the eDMA window
        let dir = link.dir
        let out = try link.outputDirectory()
        let (source, content) = link.payload("payload.bin", size: 700 * 1024 + 33) { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 10) }

        let server = try link.serve(["--backend", "edma", "--mtu", "16384", "--dir", out])
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }

        let sent = try runTransportCLI(["send", "--port", "mock:\(dir)", "--role", "host", "--fast", "--backend", "edma", "--mtu", "16384", source])
        #expect(sent.status == 0, "\(sent.err)")
        #expect(sent.out.contains("verified by the peer"))
        #expect(FileManager.default.contents(atPath: "\(out)/payload.bin") == Data(content))

        let perf = try runTransportCLI(["perf", "--port", "mock:\(dir)", "--role", "host", "--fast", "--backend", "edma", "--mtu", "16384",
                                        "--size", "16384", "--bytes", "16M", "--json"])
        #expect(perf.status == 0, "\(perf.err)")
        let results = try JSONDecoder().decode([PerfResult].self, from: Data(perf.out.utf8))
        let r = try #require(results.first)
        #expect(r.backend == "edma" && r.messages == 1024 && r.bytes == 16 << 20)
        // The engine model's thread ran in the endpoint process and is reported apart.
        #expect(r.engineCPUSeconds > 0)

        let stats = try runTransportCLI(["stats", "--port", "mock:\(dir)", "--role", "endpoint", "--json"])
        #expect(stats.status == 0, "\(stats.err)")
        let qps = try #require(try JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [[String: Int]])
        #expect((qps.first?["rx_async"] ?? 0) >= 1024 + 44)
        #expect(qps.first?["tx_err_abort"] == 0 && qps.first?["dma_faults"] == 0)
    }

    /// The README's main job, small: both backends run perf, pingpong and a file transfer between two
    /// processes, and the table explains the edma sender's CPU with the sleep/wake floor of the run.
    @Test func theDemoRunsEveryBackendAndExplainsTheSendersCPU() throws {
        let r = try runTransportCLI(["demo", "--bytes", "32M", "--small-messages", "20000", "--round-trips", "2000", "--file-size", "1M"])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        for backend in ["host", "edma"] {
            let row = lines.first { $0.hasPrefix(backend + "    ") }   // the table row, padded
            #expect(row?.hasSuffix(" ok") == true, "\(backend): \(row ?? "no row")\n\(r.out)")
        }
        #expect(lines.contains { $0.hasPrefix("sleep/wake floor: ") && $0.hasSuffix(" us of its own CPU per wake") })
        #expect(lines.contains { $0.hasPrefix("edma sender CPU per GB, 64K messages: ") })
        #expect(lines.contains { $0.contains("slept on the completion interrupt") })
        // Nothing of the link is left behind.
        let left = try FileManager.default.contentsOfDirectory(atPath: "/dev/shm").filter { $0.hasPrefix("ntb-demo-") }
        #expect(left.isEmpty, "\(left)")
    }

    @Test func theWakeFloorIsMeasured() throws {
        let floor = try #require(WakeBaseline.measure(wakes: 200))
        #expect(floor.cpuMicrosecondsPerWake > 0 && floor.cpuMicrosecondsPerWake < 100_000)
    }

    /// One thread per side drives two queue pairs in turn (`--qps-per-thread`): four queue pairs on
    /// two threads each side; every message arrives and is counted.
    @Test func perfDrivesSeveralQueuePairsPerThread() throws {
        let link = try CLILink(windows: 2, ram: 64 << 20)
        let dir = link.dir
        let server = try link.serve(["--backend", "edma", "--mtu", "16384", "--qps", "4", "--wait", "interrupt"])
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
        let perf = try runTransportCLI(["perf", "--port", "mock:\(dir)", "--role", "host", "--fast", "--backend", "edma", "--mtu", "16384",
                                        "--qps", "4", "--wait", "interrupt", "--threads", "2", "--qps-per-thread", "2",
                                        "--size", "16384", "--bytes", "16M", "--json"])
        #expect(perf.status == 0, "\(perf.err)")
        let results = try JSONDecoder().decode([PerfResult].self, from: Data(perf.out.utf8))
        let r = try #require(results.first)
        #expect(r.queuePairs == 4 && r.threads == 2)
        #expect(r.messages == 1024 && r.bytes == 16 << 20)
        // No --batch: an edma chain is half the RFC's 128-descriptor ring, so the next one fills while it runs.
        #expect(r.batch == 64)
        // The senders slept on their completion interrupts (the JSON's senderSleeps).
        #expect(r.senderSleeps > 0)
        let stats = try runTransportCLI(["stats", "--port", "mock:\(dir)", "--role", "endpoint", "--json"])
        let qps = try #require(try JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [[String: Int]])
        #expect(qps.count == 4 && qps.allSatisfy { ($0["rx_async"] ?? 0) >= 256 })

        let bad = try runTransportCLI(["perf", "--port", "mock:\(dir)", "--role", "host", "--threads", "8", "--qps-per-thread", "8"])
        #expect(bad.status == 64 && bad.err.contains("--qps-per-thread"))
    }

    /// Without --backend the policy file decides: `auto` gives edma once the endpoint published its
    /// eDMA window, and both processes pick it on their own.
    @Test func thePolicyPicksEDMAForThePortWhenBackendIsNotGiven() throws {
        let link = try CLILink(windows: 2, ram: 32 << 20)
        let dir = link.dir
        let policy = "\(dir)/policy.conf"
        _ = FileManager.default.createFile(atPath: policy, contents: Data("# the mock port\nauto@mock:\(dir)\n".utf8))
        let out = try link.outputDirectory()
        let (_, content) = link.payload("p.bin", size: 100_000) { UInt8(truncatingIfNeeded: $0 &* 3 &+ 1) }

        let log = Pipe()
        let server = try link.serve(["--policy", policy, "--mtu", "16384", "--dir", out], stderr: log)
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
        // The endpoint publishes its window when its transport starts: wait until a probe sees it.
        let deadline = Date().addingTimeInterval(20)
        var shown = ""
        repeat {
            shown = try runTransportCLI(["policy", "show", "mock:\(dir)", "--policy", policy, "--probe"]).out
            if shown.contains("mock:\(dir): edma") { break }
            Thread.sleep(forTimeInterval: 0.1)
        } while Date() < deadline
        #expect(shown.contains("mock:\(dir): edma"), "\(shown)")

        let sent = try runTransportCLI(["send", "--port", "mock:\(dir)", "--role", "host", "--fast", "--policy", policy, "--mtu", "16384", "\(dir)/p.bin"])
        #expect(sent.status == 0, "\(sent.err)")
        #expect(FileManager.default.contents(atPath: "\(out)/p.bin") == Data(content))
        server.terminate()
        server.waitUntilExit()
        let said = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(said.contains("serving edma"), "\(said)")
    }
}
