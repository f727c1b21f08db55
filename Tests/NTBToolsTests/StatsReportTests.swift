import Foundation
import NTBTools
import NTBTransport
import Testing

/// The stats reader: the counters a transport publishes, as the `stats` command prints them.
@Suite struct StatsReportTests {
    @Test func theReportShowsEachQueuePairsCountersByTheirLinuxNames() throws {
        let path = NSTemporaryDirectory() + "ntb-tools-stats-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let storage = try StatisticsStorage(queuePairs: 2, publishingTo: path)
        storage.counters(1).add(.rxBytes, 1234)
        let report = try StatsReport(path: path)
        #expect(report.queuePairs.count == 2)
        #expect(report.records[1]["qp"] == 1 && report.records[1]["rx_bytes"] == 1234 && report.records[0]["rx_bytes"] == 0)
        #expect(report.lines.first == "NTB QP 0 stats:")
        #expect(report.lines.contains("  rx_bytes -           1234"))
        #expect(report.lines.count == 2 * (1 + QueuePairCounter.allCases.count))
        withExtendedLifetime(storage) {}
    }

    @Test func aFileThatIsNotAStatisticsFileIsRefused() throws {
        let path = NSTemporaryDirectory() + "ntb-tools-notstats-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("not counters".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: TransportError.self) { try StatsReport(path: path) }
        #expect(throws: TransportError.self) { try StatsReport(path: path + ".missing") }
    }
}
