import ArgumentParser
import Foundation
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

    /// The file is checked before the transport waits for the link: a typo fails at once.
    func validate() throws {
        var isDirectory: ObjCBool = false
        guard unsafe FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
            throw ValidationError("cannot send \(file): No such file or directory; check the path")
        }
        guard !isDirectory.boolValue else {
            throw ValidationError("cannot send \(file): not a regular file; give the path of a file")
        }
        guard FileManager.default.isReadableFile(atPath: file) else {
            throw ValidationError("cannot send \(file): Permission denied; make it readable (chmod +r) or run as its owner")
        }
    }

    func run() throws {
        let r = try runTool { try runSession(port, transport, FileSender(path: file)) }
        if json { printJSON(r); return }
        print("sent \(r.name): \(r.bytes) bytes in \(String(format: "%.3f", r.seconds)) s (\(String(format: "%.2f", Double(r.bytes) / max(r.seconds, 1e-9) / 1e9)) GB/s), CRC-32C \(String(r.crc32c, radix: 16)) verified by the peer")
    }
}
