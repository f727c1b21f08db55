import Foundation
import Synchronization
import Testing
import NTBMock

/// The built `ntb-transport` next to the test bundle (swift build --build-tests builds both).
func ntbTransportBinary(file: String = #filePath) -> String {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ntb-transport").path,
        URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/ntb-transport").path,
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
}

/// An `ntb-transport tool` shell in its own process: one side of the link, as on its own machine.
final class ToolProcess: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lines = Mutex<[String]>([])
    private let partial = Mutex<String>("")

    init(directory: String, role: MockRole) throws {
        process.executableURL = URL(fileURLWithPath: ntbTransportBinary())
        process.arguments = ["tool", "--port", "mock:\(directory)", "--role", role.rawValue, "--fast"]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            let text = self.partial.withLock { p -> String in p += String(decoding: data, as: UTF8.self); return p }
            var complete = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let rest = complete.removeLast()
            self.partial.withLock { $0 = rest }
            self.lines.withLock { $0.append(contentsOf: complete) }
        }
        try process.run()
    }

    /// Sends one command and returns its one-line answer (or "timeout").
    func send(_ command: String, timeout: Duration = .seconds(5)) -> String {
        try? input.fileHandleForWriting.write(contentsOf: Data((command + "\n").utf8))
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = lines.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return line }
            usleep(1000)
        }
        return "timeout"
    }

    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func quit() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }
}

func withTwoProcessLink(_ body: (String) throws -> Void) throws {
    let link = try CLILink {
        $0.heartbeatMilliseconds = 10
        $0.hostRAMSize = 8 << 20
        $0.endpointRAMSize = 8 << 20
        $0.memoryWindowSize = 1 << 20
    }
    try body(link.dir)
}

@Suite(.serialized) struct TwoProcessLinkTests {
    @Test func linkDoorbellsScratchpadsAndWindows_bothWays_betweenTwoProcesses() throws {
        try withTwoProcessLink { dir in
            let ep = try ToolProcess(directory: dir, role: .endpoint)
            #expect(ep.send("link status") == "link: down")
            let host = try ToolProcess(directory: dir, role: .host)
            #expect(host.send("link up") == "link: up")
            #expect(ep.send("link wait up 3000") == "link: up")

            #expect(host.send("peer-spad write 3 0x2a") == "peer-spad[3] = 0x2a")
            #expect(ep.send("spad read 3") == "spad[3] = 0x2a")
            #expect(ep.send("peer-spad write 4 0x55") == "peer-spad[4] = 0x55")
            #expect(host.send("spad read 4") == "spad[4] = 0x55")

            #expect(host.send("db ring 0x4") == "peer db: 0x4")
            #expect(ep.send("db wait 3000") == "db: 0x4")
            #expect(ep.send("db clear 0x4") == "db: 0x0")
            #expect(ep.send("db ring 0x8") == "peer db: 0x8")
            #expect(host.send("db wait 3000") == "db: 0x8")

            // Endpoint writes reach host memory at the host's CONFIGURE_MW translation...
            #expect(host.send("mw trans 0 4096").hasPrefix("mw 0: 0x1000"))
            #expect(ep.send("peer-mw write 0 16 deadbeef") == "peer-mw 0 @0x10: wrote 4 bytes")
            #expect(host.send("mw read 0 16 4") == "mw 0 @0x10: deadbeef")
            // ...and host writes reach endpoint memory at the endpoint's inbound translation.
            #expect(ep.send("mw trans 1 8192").hasPrefix("mw 1: 0x8"))
            #expect(host.send("peer-mw write 1 4096 cafe") == "peer-mw 1 @0x1000: wrote 2 bytes")
            #expect(ep.send("mw read 1 4096 2") == "mw 1 @0x1000: cafe")

            #expect(host.send("link down") == "link: down")
            #expect(ep.send("link wait down 3000") == "link: down")
            host.quit()
            ep.quit()
        }
    }

    @Test func sigkilledEndpoint_isLinkDownWithinASecond_andARestartedOneLinksUpAgain() throws {
        try withTwoProcessLink { dir in
            let ep = try ToolProcess(directory: dir, role: .endpoint)
            #expect(ep.send("link status") == "link: down")
            let host = try ToolProcess(directory: dir, role: .host)
            #expect(host.send("link up") == "link: up")
            #expect(ep.send("link wait up 3000") == "link: up")

            ep.kill()
            #expect(host.send("link wait down 1000") == "link: down", "peer death must be seen within 1 s")

            let second = try ToolProcess(directory: dir, role: .endpoint)
            #expect(host.send("link wait up 3000") == "link: up", "the host re-configures a restarted endpoint")
            #expect(second.send("link wait up 3000") == "link: up")
            #expect(host.send("peer-spad write 0 0x99") == "peer-spad[0] = 0x99")
            #expect(second.send("spad read 0") == "spad[0] = 0x99")
            #expect(host.send("db ring 0x1") == "peer db: 0x1")
            #expect(second.send("db wait 3000") == "db: 0x1")
            #expect(second.send("db ring 0x2") == "peer db: 0x2")
            #expect(host.send("db wait 3000") == "db: 0x2")

            // And the other way round: the host dies, the endpoint sees link down.
            host.kill()
            #expect(second.send("link wait down 1000") == "link: down")
            let host2 = try ToolProcess(directory: dir, role: .host)
            #expect(host2.send("link up") == "link: up")
            #expect(second.send("link wait up 3000") == "link: up")
            host2.quit()
            second.quit()
        }
    }

    @Test func aHungEndpoint_isLinkDown_andLinksUpAgainWhenItResumes() throws {
        try withTwoProcessLink { dir in
            let ep = try ToolProcess(directory: dir, role: .endpoint)
            #expect(ep.send("link status") == "link: down")
            let host = try ToolProcess(directory: dir, role: .host)
            #expect(host.send("link up") == "link: up")
            kill(ep.process.processIdentifier, SIGSTOP)
            #expect(host.send("link wait down 3000") == "link: down", "a peer whose heartbeat stops is gone")
            kill(ep.process.processIdentifier, SIGCONT)
            #expect(host.send("link wait up 3000") == "link: up")
            #expect(host.send("db ring 0x1") == "peer db: 0x1")
            #expect(ep.send("db wait 3000") == "db: 0x1")
            host.quit()
            ep.quit()
        }
    }

    @Test func aSecondProcessOnTheSameSide_isRefusedWithTheHoldersPid() throws {
        try withTwoProcessLink { dir in
            let ep = try ToolProcess(directory: dir, role: .endpoint)
            #expect(ep.send("link status") == "link: down")
            let intruder = Process()
            intruder.executableURL = URL(fileURLWithPath: ntbTransportBinary())
            intruder.arguments = ["tool", "--port", "mock:\(dir)", "--role", "endpoint", "link status"]
            let err = Pipe()
            intruder.standardError = err
            intruder.standardOutput = Pipe()
            try intruder.run()
            intruder.waitUntilExit()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(intruder.terminationStatus == 1)
            #expect(text.contains("held by pid \(ep.process.processIdentifier)"))
            ep.quit()
        }
    }
}
