import Foundation
import Testing

/// The ivshmem adapter across two processes through the CLI, as two VMs use it (`--port ivshmem-file:`
/// here, `--port ivshmem:PCI-ADDRESS` in the VMs): link, file transfer with CRC-32C, pingpong, and the
/// survivor seeing link down when the other process is killed (no clean shutdown: heartbeat timeout).
@Suite(.serialized) struct IVSHMEMCLITests {
    @Test func twoProcessesLinkTransferAndSeeTheOtherDie() throws {
        let dir = "/dev/shm/ntb-ivshmem-cli-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: "\(dir)/out", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = "ivshmem-file:\(dir)/shm"
        var content = [UInt8](repeating: 0, count: 200 * 1024 + 13)
        for i in content.indices { content[i] = UInt8(truncatingIfNeeded: i &* 13 &+ i >> 10) }
        _ = FileManager.default.createFile(atPath: "\(dir)/payload.bin", contents: Data(content))

        let server = Process()
        server.executableURL = URL(fileURLWithPath: ntbTransportBinary())
        server.arguments = ["serve", "--port", port, "--role", "endpoint", "--dir", "\(dir)/out"]
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }

        let link = try runTransportCLI(["tool", "--port", port, "--role", "host", "link up", "link wait up 10000"])
        #expect(link.status == 0 && link.out.contains("link: up"), "\(link.out) \(link.err)")
        let sent = try runTransportCLI(["send", "--port", port, "--role", "host", "\(dir)/payload.bin"])
        #expect(sent.status == 0 && sent.out.contains("verified by the peer"), "\(sent.err)")
        #expect(FileManager.default.contents(atPath: "\(dir)/out/payload.bin") == Data(content))
        let ping = try runTransportCLI(["pingpong", "--port", port, "--role", "host", "--count", "100", "--json"])
        #expect(ping.status == 0, "\(ping.err)")
        #expect(ping.out.contains("\"roundTrips\" : 100") || ping.out.contains("\"roundTrips\":100"), "\(ping.out)")

        // The survivor: a tool holds the link; the server dies without a clean shutdown.
        let survivor = Process()
        survivor.executableURL = URL(fileURLWithPath: ntbTransportBinary())
        survivor.arguments = ["tool", "--port", port, "--role", "host", "--peer-timeout-ms", "300", "link up", "link wait up 10000", "sleep 300", "link wait down 10000"]
        let out = Pipe()
        survivor.standardOutput = out
        try survivor.run()
        usleep(1_000_000)
        kill(server.processIdentifier, SIGKILL)
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        survivor.waitUntilExit()
        #expect(survivor.terminationStatus == 0, "\(text)")
        #expect(text.contains("link: down"), "\(text)")

        // Garbage in the region: a clear error, exit 1.
        let handle = try #require(FileHandle(forWritingAtPath: "\(dir)/shm"))
        try handle.write(contentsOf: Data(repeating: 0x5A, count: 64))
        try handle.close()
        let bad = try runTransportCLI(["tool", "--port", port, "--role", "host", "link status"])
        #expect(bad.status == 1 && bad.err.contains("does not start with an ntb-transport ivshmem header"), "\(bad.err)")
        let usage = try runTransportCLI(["tool", "--port", "ivshmem:nonsense", "--role", "host", "link status"])
        #expect(usage.status == 64)
    }
}
