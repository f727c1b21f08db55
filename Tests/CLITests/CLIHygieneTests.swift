import Foundation
import Testing
@testable import ntb_transport

/// Daily-use fixes of the CLI: sizes with suffixes on every size option, one error prefix, `tool`'s
/// exit status, `send` checking its file before waiting for the link.
@Suite struct CLIHygieneTests {
    @Test func everySizeOptionTakesSuffixes() throws {
        let perf = try PerfCommand.parse(["--port", "mock:/dev/shm/x", "--role", "host", "--size", "64K", "--size", "4000", "--size", "1KiB", "--mtu", "16K"])
        #expect(perf.size == [65536, 4000, 1024])
        #expect(perf.transport.mtu == 16384)
        let pingpong = try PingpongCommand.parse(["--port", "mock:/dev/shm/x", "--role", "host", "--size", "2k", "--mtu", "64KiB"])
        #expect(pingpong.size == 2048 && pingpong.transport.mtu == 65536)
    }

    @Test(arguments: ["12Q", "K", "1x", "1.5K", ""])
    func aSizeThatIsNoSizeSaysHowToWriteOne(_ text: String) {
        #expect { _ = try PerfCommand.parse(["--port", "mock:/dev/shm/x", "--role", "host", "--size", text]) } throws: {
            PerfCommand.message(for: $0).contains("is not a size: write a number of bytes with an optional K, M, G or T suffix")
        }
    }

    @Test func sizesAreStillRangeChecked() {
        #expect { _ = try PerfCommand.parse(["--port", "mock:/dev/shm/x", "--role", "host", "--size", "2G"]) } throws: {
            PerfCommand.message(for: $0).contains("--size 2147483648 is out of range")
        }
    }
}

@Suite(.serialized) struct CLIHygieneProcessTests {
    @Test func sendRefusesAMissingFileAtOnce() throws {
        let start = Date()
        // The link does not exist either: the file is checked first, without waiting for a link.
        let r = try runTransportCLI(["send", "--port", "mock:/dev/shm/ntb-none-\(getpid())", "--role", "host", "--link-timeout", "30", "/nonexistent/file.bin"])
        #expect(r.status == 64)
        #expect(r.err.hasPrefix("Error: cannot send /nonexistent/file.bin: No such file or directory; check the path"))
        #expect(Date().timeIntervalSince(start) < 20)
        let d = try runTransportCLI(["send", "--port", "mock:/dev/shm/ntb-none-\(getpid())", "--role", "host", "/tmp"])
        #expect(d.status == 64)
        #expect(d.err.hasPrefix("Error: cannot send /tmp: not a regular file"))
    }

    /// Commands from standard input: every one is answered, and a failed one makes the exit status 1.
    @Test func toolFromStandardInputExitsNonZeroIfACommandFailed() throws {
        let link = try CLILink(windows: 1, ram: 8 << 20)
        func tool(_ input: String) throws -> (status: Int32, out: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ntbTransportBinary())
            p.arguments = ["tool", "--port", "mock:\(link.dir)", "--role", "endpoint", "--fast"]
            let stdin = Pipe(), out = Pipe()
            p.standardInput = stdin
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
            let o = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self))
        }
        let good = try tool("spad write 0 7\nspad read 0\n")
        #expect(good.status == 0)
        let bad = try tool("spad write 0 7\nno-such-command\nspad read 0\n")
        #expect(bad.status == 1)
        #expect(bad.out.contains("Error: "))
        #expect(bad.out.split(separator: "\n").count == good.out.split(separator: "\n").count + 1, "every command answered: \(bad.out)")
    }
}
