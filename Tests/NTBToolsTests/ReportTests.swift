import Foundation
import Histogram
import NTBTransport
import Testing
@testable import NTBTools

@Suite struct UnitsTests {
    @Test(arguments: [
        (0.0, "0 B"), (512.0, "512 B"), (999.0, "999 B"), (1000.0, "1.00 KB"), (1536.0, "1.54 KB"),
        (12_345_678.0, "12.3 MB"), (1.5e9, "1.50 GB"), (123.4e9, "123 GB"), (2e12, "2.00 TB"),
    ])
    func bytesScale(value: Double, text: String) {
        #expect(Units.bytes(value) == text)
    }

    @Test func ratesAndMessageRates() {
        #expect(Units.rate(bytesPerSecond: 20.6e9) == "20.6 GB/s")
        #expect(Units.rate(bytesPerSecond: 850e6) == "850 MB/s")
        #expect(Units.messageRate(17.6e6) == "17.6 M msg/s")
        #expect(Units.messageRate(950) == "950 msg/s")
    }

    @Test(arguments: [
        (5.0, "5.00 ns"), (850.0, "850 ns"), (1520.0, "1.52 µs"), (3_400_000.0, "3.40 ms"),
        (2e9, "2.00 s"), (999_999.0, "1000 µs"),
    ])
    func durationsScale(ns: Double, text: String) {
        #expect(Units.duration(nanoseconds: ns) == text)
    }

    @Test func nonFiniteValuesPrintADash() {
        #expect(Units.duration(nanoseconds: .nan) == "-")
        #expect(Units.bytes(.infinity) == "- B")
    }
}

@Suite struct ReportDocumentTests {
    struct Results: Encodable { var bytes: UInt64; var crc32c: String }

    @Test func everyKeyIsPresentAndTheCRCIsHex() throws {
        let doc = ReportDocument(command: "send", port: "mock:/dev/shm/x", backend: "host", role: nil,
                                 started: Date(timeIntervalSince1970: 0),
                                 results: Results(bytes: 42, crc32c: ReportJSON.crc(0xE306_9283)))
        let text = ReportJSON.document(doc)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["version", "command", "port", "backend", "role", "timestamp", "results"])
        #expect(object["role"] is NSNull)
        #expect(object["timestamp"] as? String == "1970-01-01T00:00:00Z")
        #expect(object["version"] as? Int == 1)
        let results = try #require(object["results"] as? [String: Any])
        #expect(results["crc32c"] as? String == "0xe3069283")
    }

    @Test func ndjsonLinesHaveNoNewline() {
        let line = ReportJSON.line(IntervalRecord(event: "interval", start: 0, end: 1, bytes: 10, messages: 1))
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix("{") && line.hasSuffix("}"))
    }

    @Test func crcIsAlwaysEightDigits() {
        #expect(ReportJSON.crc(0) == "0x00000000")
        #expect(ReportJSON.crc(0xABC) == "0x00000abc")
    }
}

@Suite struct IntervalReporterTests {
    @Test func linesComeOncePerIntervalWithTheDeltas() {
        var lines: [String] = []
        var r = IntervalReporter(interval: 1, format: .ndjson) { lines.append($0) }
        r.observe(elapsed: 0.5, bytes: 100, messages: 1)     // not due
        r.observe(elapsed: 1.0, bytes: 1000, messages: 10)   // due
        r.observe(elapsed: 1.2, bytes: 1500, messages: 15)   // not due
        r.observe(elapsed: 2.5, bytes: 4000, messages: 40)   // due (late)
        r.observe(elapsed: 3.0, bytes: 4100, messages: 41)   // not due: next is 3.5
        #expect(r.emitted.count == 2)
        #expect(r.emitted[0] == IntervalRecord(event: "interval", start: 0, end: 1, bytes: 1000, messages: 10))
        #expect(r.emitted[1].start == 1 && r.emitted[1].end == 2.5 && r.emitted[1].bytes == 3000)
        #expect(r.emitted[1].bytesPerSecond == 2000)
        let summary = r.summary(elapsed: 3.2, bytes: 4200, messages: 42, interrupted: true)
        #expect(summary.interrupted == true)
        #expect(lines.count == 3)
        #expect(lines.last!.contains("\"event\":\"summary\""))
    }

    @Test func noIntervalMeansOnlyTheSummary() {
        var lines: [String] = []
        var r = IntervalReporter(interval: nil, format: .text) { lines.append($0) }
        for t in 1...100 { r.observe(elapsed: Double(t), bytes: UInt64(t) * 1000, messages: UInt64(t)) }
        r.summary(elapsed: 100, bytes: 100_000, messages: 100)
        #expect(lines.count == 1)
        #expect(lines[0].hasSuffix("total"))
        #expect(lines[0].contains("1.00 KB/s"))
    }
}

@Suite struct PrometheusTextTests {
    @Test func countersAndGaugesAreTypedAndLabelled() {
        var values = [UInt64](repeating: 0, count: QueuePairCounter.allCases.count)
        values[QueuePairCounter.txBytes.rawValue] = 4096
        values[QueuePairCounter.linkIsUp.rawValue] = 1
        let text = PrometheusText.render(port: "mock:/dev/shm/a\"b", role: "host",
                                         queuePairs: [QueuePairStatistics(values: values), QueuePairStatistics(values: values)])
        #expect(text.contains("# TYPE ntb_transport_tx_bytes_total counter\n"))
        #expect(text.contains("# TYPE ntb_transport_qp_link_up gauge\n"))
        #expect(text.contains("ntb_transport_tx_bytes_total{port=\"mock:/dev/shm/a\\\"b\",role=\"host\",qp=\"1\"} 4096\n"))
        // Every sample line is name{labels} value: a scraper parses each.
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.range(of: #"^[a-z_][a-z0-9_]*\{[^}]*\} [0-9]+$"#, options: .regularExpression) != nil, "\(line)")
        }
    }

    @Test func writeIsAtomicAndSaysWhatIsWrong() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prom-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try PrometheusText.write("a 1\n", to: dir + "/m.prom")
        #expect(try String(contentsOfFile: dir + "/m.prom", encoding: .utf8) == "a 1\n")
        #expect(!FileManager.default.fileExists(atPath: dir + "/m.prom.tmp"))
        #expect(throws: ReportFileError.self) { try PrometheusText.write("x", to: dir + "/missing/m.prom") }
    }
}

@Suite struct LatencyReportTests {
    @Test func histogramRowsCoverEverySample() {
        var h = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for _ in 0..<900 { h.record(800) }
        for _ in 0..<90 { h.record(2_000) }
        for _ in 0..<10 { h.record(50_000) }
        let rows = LatencyReport.terminalHistogram(h, rows: 8, width: 20)
        #expect(rows.count <= 8 && rows.count >= 2)
        let shares = rows.compactMap { row -> Double? in
            Double(row.split(separator: "|").last!.replacingOccurrences(of: "%", with: "").trimmingCharacters(in: .whitespaces))
        }
        #expect(abs(shares.reduce(0, +) - 100) < 0.5)
        #expect(rows.first!.contains("####################"))   // the 800 ns bucket is the peak
    }

    @Test func oneValueStillPrints() {
        var h = Histogram<UInt64>(highestTrackableValue: 1_000_000, numberOfSignificantValueDigits: .three)
        h.record(1000)
        #expect(LatencyReport.terminalHistogram(h).count == 1)
        #expect(LatencyReport.terminalHistogram(Histogram<UInt64>(highestTrackableValue: 1000)) == ["(no samples)"])
    }

    @Test func hgrmIsHdrHistogramsPercentileTableInMicroseconds() {
        var h = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for v in 1...1000 { h.record(UInt64(v) * 1000) }
        let text = LatencyReport.hgrm(h)
        #expect(text.contains("Value     Percentile TotalCount 1/(1-Percentile)"))
        #expect(text.contains("#[Max     =     1000.447, Total count    =         1000]"))   // µs, not ns
    }
}

@Suite struct CounterDeltaTests {
    @Test func deltasCountersAndKeepsGauges() {
        func stats(_ tx: UInt64, _ index: UInt64) -> QueuePairStatistics {
            var v = [UInt64](repeating: 0, count: QueuePairCounter.allCases.count)
            v[QueuePairCounter.txPackets.rawValue] = tx
            v[QueuePairCounter.txIndex.rawValue] = index
            return QueuePairStatistics(values: v)
        }
        let d = CounterDelta(previous: [stats(100, 5)], current: [stats(150, 7)])
        #expect(d.values[0][QueuePairCounter.txPackets.rawValue] == 50)
        #expect(d.values[0][QueuePairCounter.txIndex.rawValue] == 7)
        // A restarted process: counters start again from zero.
        let restarted = CounterDelta(previous: [stats(100, 5)], current: [stats(3, 1)])
        #expect(restarted.values[0][QueuePairCounter.txPackets.rawValue] == 3)
        #expect(d.changed(queuePair: 0).contains { $0.name == "tx_pkts" && $0.value == 50 })
        #expect(d.changed(queuePair: 5).isEmpty)
    }
}
