import ArgumentParser
import NTBTransport
import NTBTools

/// `ntb-transport recv DIR`: receives one file into DIR and checks its CRC-32C.
struct RecvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recv",
        abstract: "Receive one file from the peer's `ntb-transport send` into a directory, verifying its CRC-32C."
    )

    @OptionGroup var port: PortOptions
    @OptionGroup var transport: TransportOptions

    @Argument(help: "The directory to write the file into.")
    var directory: String

    func run() throws {
        try runTool { try runSession(port, transport, Responder(directory: directory, once: true)) }
    }
}

/// `ntb-transport serve`: the responder for perf, pingpong and send.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Answer the peer's perf, pingpong and send sessions until it says bye (files go to --dir)."
    )

    @OptionGroup var port: PortOptions
    @OptionGroup var transport: TransportOptions

    @Option(name: .long, help: "Directory for received files (default: the current directory).")
    var dir: String?

    func run() throws {
        try runTool { try runSession(port, transport, Responder(directory: dir)) }
    }
}
