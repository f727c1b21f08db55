import ArgumentParser
import NTBTransport
import NTBTools

/// `ntb-transport send FILE`: file transfer with an end-to-end CRC-32C (the peer runs `recv DIR` or `serve`).
struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a file to the peer (which runs `ntb-transport recv DIR`); the peer verifies a CRC-32C."
    )

    @OptionGroup var port: PortOptions
    @OptionGroup var transport: TransportOptions

    @Argument(help: "The file to send.")
    var file: String

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() throws {
        let r = try runTool { try runSession(port, transport, FileSender(path: file)) }
        if json { printJSON(r); return }
        print("sent \(r.name): \(r.bytes) bytes in \(String(format: "%.3f", r.seconds)) s (\(String(format: "%.2f", Double(r.bytes) / max(r.seconds, 1e-9) / 1e9)) GB/s), CRC-32C \(String(r.crc32c, radix: 16)) verified by the peer")
    }
}
