import ArgumentParser
import Foundation
import NTBHardware
import NTBTools
import NTBTransport
import PCIKit

/// Parses a BDF argument; a malformed one is a usage error (exit 64) whose message says how to write it.
func parseAddress(_ text: String) throws -> PCIAddress {
    do { return try PCIAddress(parsing: text) } catch { throw ValidationError(error.description) }
}

/// Writes a line to standard error (warnings; errors are thrown and printed by ArgumentParser).
func printWarning(_ line: String) {
    var stderr = StandardError()
    print("warning: " + line, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}

/// Lays out rows as left-aligned columns separated by two spaces.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { c in all.map { $0[c].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { c, cell in c == row.count - 1 ? cell : cell.padding(to: widths[c]) }.joined(separator: "  ")
    }.joined(separator: "\n")
}

extension String {
    func padding(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// Opens the port's transport, runs `session` on its ports, closes the transport, then lets the ports
/// go (a DMA backend's buffers stay offered to the peer's ring until the transport closed).
func runSession<S: PortSession>(_ port: PortOptions, _ options: TransportOptions, _ session: S) throws -> S.Result {
    if let cpu = options.cpu { try pinToCPU(cpu) }
    return try session.run(on: try port.makePort(), settings: options.settings(statisticsPath: port.statisticsPath))
}


/// Refuses a number option outside `range` (NaN and the infinities included) with one line that
/// names the valid range: a usage error (exit 64), checked before the value is used.
func checkRange<T: Comparable>(_ option: String, _ value: T, _ range: ClosedRange<T>, _ unit: String = "") throws {
    let suffix = unit.isEmpty ? "" : " " + unit
    if let v = value as? Double, !v.isFinite {
        throw ValidationError("\(option) \(v) is not a finite number: the range is \(range.lowerBound)...\(range.upperBound)\(suffix)")
    }
    guard range.contains(value) else {
        throw ValidationError("\(option) \(value) is out of range: \(range.lowerBound)...\(range.upperBound)\(suffix)")
    }
}

/// The largest byte count an option takes: 1 PiB.
let maxByteCount: UInt64 = 1 << 50

/// Parses 123, 123B, 4K, 512M, 1G, 2T (powers of 1024; a suffix may end in B or iB, any case); nil for
/// anything else, for 0 unless `allowingZero`, and for a count that does not fit in 64 bits.
func parseByteCount(_ text: String, allowingZero: Bool = false) -> UInt64? {
    var t = Substring(text.uppercased())
    if t.hasSuffix("IB") { t = t.dropLast(2) } else if t.hasSuffix("B") { t = t.dropLast() }
    let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var scale: UInt64 = 1
    if let last = t.last, let u = units[last] { scale = u; t = t.dropLast() }
    guard !t.isEmpty, t.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt64(t) else { return nil }
    let (bytes, overflow) = v.multipliedReportingOverflow(by: scale)
    guard !overflow, bytes > 0 || allowingZero else { return nil }
    return bytes
}

/// Parses a size option's value (`--size 64K`, `--mtu 64KiB`, `--size 4000`) for `@Option(transform:)`:
/// a number with an optional K, M, G or T suffix (KiB, MiB, GiB, TiB, KB… too; powers of 1024).
/// A value that is no size is a usage error (exit 64) saying how to write one; the option checks
/// its own range afterwards.
func sizeArgument(_ text: String) throws -> Int {
    guard let v = parseByteCount(text, allowingZero: true), v <= UInt64(Int.max) else {
        throw ValidationError("'\(text)' is not a size: write a number of bytes with an optional K, M, G or T suffix (KiB, MiB, GiB also), e.g. 64K")
    }
    return Int(v)
}

/// Checks a byte-count option: a number with an optional K, M, G or T suffix, 1 byte to 1 PiB.
func checkByteCount(_ option: String, _ text: String) throws {
    guard let v = parseByteCount(text), v <= maxByteCount else {
        throw ValidationError("\(option) \(text) is out of range: 1...\(maxByteCount >> 40)T bytes, a number with an optional K, M, G or T suffix")
    }
}
