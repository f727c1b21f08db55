#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Testing
@testable import NTBTransport

/// Policy files that are large, or not files at all: diagnostics stay linear in the input, and a path
/// that is not a regular file is named as such.
@Suite struct PolicyRobustnessTests {
    /// A 50 KB line of repeated order items (the F8 case): one diagnostic per problem, each excerpt bounded.
    @Test func aLongLineOfRepeatsGivesBoundedDiagnostics() {
        let line = "auto@0000:01:00.0 order=" + Array(repeating: "edma", count: 10_000).joined(separator: ",")
        #expect(line.utf8.count > 50_000)
        let clock = ContinuousClock(), start = clock.now
        let result = Policy.parse(line, file: "big.conf")
        let rendered = result.diagnostics.map { $0.rendered(sourceLine: line) }
        #expect(clock.now - start < .seconds(2))
        #expect(result.policy == nil)
        #expect(result.errors.count == 1)
        #expect(result.errors.first?.message == "'edma' appears twice in order")
        // Each rendering carries at most the excerpt, never the whole line.
        for r in rendered { #expect(r.utf8.count < 2 * PolicyDiagnostic.excerptLimit + 200) }
    }

    /// Many distinct problems on one line: capped, and the cap is said.
    @Test func manyProblemsOnOneLineAreCapped() {
        let line = Array(repeating: "bogus@0000:01:00.0", count: 5_000).joined(separator: ",")
        let result = Policy.parse(line, file: "big.conf")
        #expect(result.diagnostics.count == LineParser.diagnosticsPerLine + 1)
        #expect(result.diagnostics.last?.message.contains("more problems on line 1 are not shown") == true)
        #expect(result.diagnostics.last?.severity == .error)
    }

    @Test func aLongLineIsCutAroundTheColumn() {
        let line = String(repeating: "a", count: 1000) + "X" + String(repeating: "b", count: 1000)
        let d = PolicyDiagnostic(.error, at: SourceLocation(file: "p", line: 1, column: 1001), "here")
        let lines = d.rendered(sourceLine: line).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3)
        #expect(lines[1].hasPrefix("...") && lines[1].hasSuffix("..."))
        #expect(lines[1].count == PolicyDiagnostic.excerptLimit + 6)
        // The caret sits under the X.
        let caret = lines[2].count - 1
        #expect(Array(lines[1])[caret] == "X")
    }

    @Test(arguments: [("/dev/null", "a character device"), ("/tmp", "a directory")])
    func notARegularFileIsNamed(_ path: String, _ what: String) {
        guard case let .failure(failure) = readPolicyFile(path) else {
            Issue.record("\(path) was read as a policy")
            return
        }
        #expect(failure.reason == "it is \(what), not a regular file; give the path of a policy file")
        let source = PolicySource(path: path, origin: .option)
        #expect(throws: PolicyError.unreadable(source, reason: failure.reason)) { try Policy.load(from: source) }
    }

    @Test func aFIFOIsNamedWithoutBlocking() throws {
        let path = "/tmp/ntb-policy-fifo-\(getpid())"
        unlink(path)
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        guard case let .failure(failure) = readPolicyFile(path) else {
            Issue.record("a FIFO was read as a policy")
            return
        }
        #expect(failure.reason.contains("a FIFO, not a regular file"))
    }
}
