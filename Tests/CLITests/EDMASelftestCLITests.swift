import ArgumentParser
import Testing
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

    @Test(arguments: [["--channels", "0"], ["--format", "hdma"], ["--mode", "both"], ["--size", "0"]])
    func badOptionsAreUsageErrors(_ args: [String]) {
        #expect(throws: (any Error).self) { _ = try NTBTransportCommand.parseAsRoot(["edma", "selftest"] + args) }
        do {
            _ = try NTBTransportCommand.parseAsRoot(["edma", "selftest"] + args)
        } catch {
            #expect(NTBTransportCommand.exitCode(for: error) == ExitCode(64))
        }
    }
}
