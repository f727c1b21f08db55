import ArgumentParser
import Foundation
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
