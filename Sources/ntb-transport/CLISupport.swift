import ArgumentParser
import Foundation
import NTBHardware
@_exported import NTBTools
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
    let keeper = PortKeeper()
    defer { keeper.close() }
    return try port.withTransport(options, SessionJob(session: session, keeper: keeper))
}

/// A session as a transport job: its ports come from (and stay with) `keeper`.
struct SessionJob<S: PortSession>: TransportJob {
    let session: S
    let keeper: PortKeeper
    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> S.Result {
        try session.run(keeper.ports(for: transport))
    }
}
