import Testing
import Foundation
import NTBHardware
@testable import NTBMock
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14 F9: `mock down --dir DIR` (``MockLink/remove(at:force:)``) and `mock up` (``MockLink/create(at:configuration:)``)
/// touch files only in a directory that is a mock link: files named `link`, `host.ram`, `config.bar`,
/// `mw0.bar`, `stats.*` elsewhere are someone else's.
@Suite struct MockDirectorySafetyTests {
    static let lookalikes = ["link", "host.ram", "config.bar", "mw0.bar", "stats.host", "notes.txt", "a.lock"]

    func makeDirectory(_ files: [String], contents: String = "precious") throws -> String {
        let dir = "/dev/shm/ntb-test-notalink-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in files { try contents.write(toFile: "\(dir)/\(f)", atomically: false, encoding: .utf8) }
        return dir
    }

    @Test(arguments: [false, true])
    func downRefusesADirectoryThatIsNotAMockLink(force: Bool) throws {
        let dir = try makeDirectory(Self.lookalikes)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            try MockLink.remove(at: dir, force: force)
            Issue.record("removed files of a directory that is not a mock link")
        } catch {
            #expect(error.description.contains("not a mock link") && error.description.contains("mock up"))
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(left == Self.lookalikes.sorted())
        #expect(try String(contentsOfFile: "\(dir)/link", encoding: .utf8) == "precious")
    }

    @Test func upRefusesToOverwriteADirectoryThatIsNotAMockLink() throws {
        let dir = try makeDirectory(Self.lookalikes)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = MockLinkConfiguration()
        c.hostRAMSize = 8 << 20; c.endpointRAMSize = 8 << 20; c.memoryWindowSize = 1 << 20
        #expect(throws: NTBError.self) { try MockLink.create(at: dir, configuration: c) }
        #expect(try String(contentsOfFile: "\(dir)/host.ram", encoding: .utf8) == "precious")
    }

    @Test func downRemovesARealLinkAndAnUnfinishedOne() throws {
        var c = MockLinkConfiguration()
        c.hostRAMSize = 8 << 20; c.endpointRAMSize = 8 << 20; c.memoryWindowSize = 1 << 20
        let dir = "/dev/shm/ntb-test-reallink-\(getpid())"
        try MockLink.create(at: dir, configuration: c)
        try MockLink.remove(at: dir)
        #expect(!FileManager.default.fileExists(atPath: dir))
        // A `mock up` that stopped before writing the page: locks and BARs, no page.
        let half = try makeDirectory(["host.lock", "endpoint.lock", "config.bar", "mw0.bar"], contents: "")
        try MockLink.remove(at: half)
        #expect(!FileManager.default.fileExists(atPath: half))
    }
}
