import ArgumentParser
import Testing
import NTBTools
@testable import ntb_transport

@Suite struct EDMASelftestCLITests {
    @Test func selftestPassesAgainstTheModelWithAbortInjection() throws {
        var cmd = try NTBTransportCommand.parseAsRoot(["edma", "selftest", "--channels", "2", "--size", "65536",
                                                       "--iterations", "2", "--inject-abort"])
        try cmd.run()
    }

    @Test func legacyLocalSelftestPasses() throws {
        var cmd = try NTBTransportCommand.parseAsRoot(["edma", "selftest", "--channels", "1", "--format", "legacy",
                                                       "--mode", "local", "--size", "4096", "--iterations", "1"])
        try cmd.run()
    }

    @Test func missingHardwareIsARuntimeErrorNamingTheFix() throws {
        var cmd = try NTBTransportCommand.parseAsRoot(["edma", "selftest", "0000:7f:1f.7", "--bar", "0", "--offset", "0x1000"])
        do {
            try cmd.run()
            Issue.record("expected an error")
        } catch {
            #expect(NTBTransportCommand.exitCode(for: error) == ExitCode.failure)
            #expect("\(error)".contains("ntb-transport list"))
        }
    }

    @Test(arguments: [["--channels", "0"], ["--format", "hdma"], ["--mode", "both"], ["--size", "0"],
                      ["--bar", "0"], ["0000:00:00.0"], ["0000:00:00.0", "--bar", "0", "--offset", "0x1000", "--inject-abort"],
                      ["0000:00:00.0", "--bar", "0", "--offset", "0x1000", "--mode", "local"], ["--attach", "/tmp/x", "--inject-abort"],
                      ["0000:00:00.0", "--bar", "0", "--offset", "zz"]])
    func badOptionsAreUsageErrors(_ args: [String]) {
        #expect(throws: (any Error).self) { _ = try NTBTransportCommand.parseAsRoot(["edma", "selftest"] + args) }
        do {
            _ = try NTBTransportCommand.parseAsRoot(["edma", "selftest"] + args)
        } catch {
            #expect(NTBTransportCommand.exitCode(for: error) == ExitCode(64))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The model served by another process (the `ntb-transport` binary next to the test bundle), driven
/// from this one through the shared files.
@Suite struct EDMACrossProcessTests {
    static func binary() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var dir = exe
        while let slash = dir.lastIndex(of: "/") {
            dir = String(dir[..<slash])
            let candidate = dir + "/ntb-transport"
            if access(candidate, X_OK) == 0 { return candidate }
            if dir.hasSuffix(".build") { break }
        }
        return nil
    }

    @Test(.enabled(if: binary() != nil, "needs the ntb-transport binary next to the tests"))
    func selftestDrivesAModelInAnotherProcess() throws {
        let bin = try #require(Self.binary())
        let dir = "/tmp/edma-xproc-\(getpid())"
        var pid: pid_t = 0
        let args = [bin, "edma", "model", "--directory", dir, "--channels", "2", "--seconds", "60"]
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        #expect(posix_spawn(&pid, bin, nil, nil, &cargs, environ) == 0)
        defer {
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            for f in ["edma-regs", "edma-rings", "ep-mem", "host-mem"] { unlink(dir + "/" + f) }
            rmdir(dir)
        }
        // Wait until the model published its rings.
        var ready = false
        for _ in 0..<200 where !ready {
            ready = access(dir + "/host-mem", R_OK) == 0 && access(dir + "/edma-rings", R_OK) == 0
            usleep(50_000)
        }
        #expect(ready)
        var cmd = try NTBTransportCommand.parseAsRoot(["edma", "selftest", "--attach", dir, "--size", "16384", "--iterations", "2"])
        try cmd.run()
    }
}

import DWEDMA
import NTBMock
import PCIKit

@Suite struct EDMASelftestRunnerTests {
    /// The hardware path's layout (a small endpoint window: 8 KiB per channel) run against the model.
    @Test func smallWindowLayoutAsOnHardware() throws {
        let dir = "/tmp/edma-runner-\(getpid())"
        _ = mkdir(dir, 0o700)
        defer {
            for f in ["edma-regs", "edma-rings", "ep-mem", "host-mem"] { unlink(dir + "/" + f) }
            rmdir(dir)
        }
        let slot = 8192
        let bytes = SelftestLayout.llArea + 16 * slot
        let ep = try SharedMemoryArena(path: dir + "/ep-mem", busBase: 0x4000_0000, length: bytes)
        let host = try SharedMemoryArena(path: dir + "/host-mem", busBase: 0x1_0000_0000, length: bytes)
        let model = try EDMAEngineModel(EDMAModelConfiguration(directory: dir, writeChannels: 2, readChannels: 2,
                                                               localSpace: BusAddressSpace([ep.segment]),
                                                               pcieSpace: BusAddressSpace([host.segment])))
        defer { model.stop() }
        let edma = try DWEDMAController(registers: model.registerSpace(.host), mode: .remote, ownership: .channels)
        var layout = SelftestLayout(transferSize: 4096)
        layout.slotBytes = slot
        var runner = SelftestRunner(edma: edma, layout: layout, ep: ep.region, host: host.region, iterations: 2)
        #expect(runner.runAll() == 0)
        #expect(model.counters.aborts == 0)
        #expect(model.counters.elements > 0)
    }
}
