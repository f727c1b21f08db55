import ArgumentParser
import Foundation
import NTBHardware
import NTBTools
#if canImport(Glibc)
import Glibc
#endif

/// `ntb-transport tool`: what Linux ntb_tool offers, on a port.
///
/// The side stays open while the command runs: a process is one machine of the link. With commands as
/// arguments they run in order and the tool exits (first failure: exit 1); without, it reads one
/// command per line from standard input (exit 1 at the end if any failed) and answers each with one or more lines (failures as `Error: …`, the prefix of every error)
/// until end of input.
struct ToolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tool",
        abstract: "Link, scratchpad, doorbell and memory-window operations on an NTB port (like Linux ntb_tool).",
        discussion: ToolOperation.helpText + """


            Examples:
              ntb-transport mock up --dir /dev/shm/ntb0
              ntb-transport tool --port mock:/dev/shm/ntb0 --role endpoint          # interactive, keep it running
              ntb-transport tool --port mock:/dev/shm/ntb0 --role host "link up" "peer-spad write 0 42" "db ring 0x1"
              ntb-transport tool --port 0000:01:00.0 "link up" "link status"            # EPF NTB bound to vfio-pci
              ntb-transport tool --port ivshmem:0000:00:06.0 --role host "link up" "link wait up"   # VM to VM
            """
    )

    @OptionGroup var port: PortOptions

    @Argument(help: "Commands to run, each one argument (e.g. \"spad read 0\"). None: read commands from standard input.")
    var commands: [String] = []

    func run() throws {
        try port.withDevice(Job(commands: commands))
    }

    private struct Job: DeviceJob {
        let commands: [String]
        func run<Device: NTBDevice>(_ device: Device) throws {
            let session = ToolSession(device: device)
            if commands.isEmpty {
                var failed = false
                defer { fflush(nil) }
                while let line = readLine() {
                    let trimmed = line.trimmingCharacters(in: .whitespaces)
                    if trimmed == "quit" || trimmed == "exit" { break }
                    do {
                        guard let operation = try ToolOperation.parse(trimmed) else { continue }   // empty or a comment
                        print(try session.run(operation))
                    } catch {
                        print("Error: \(error)")
                        failed = true
                    }
                    fflush(nil)   // answer at once when stdout is a pipe
                }
                // A script piped in learns from the exit status that a command failed.
                if failed { throw ExitCode.failure }
            } else {
                for command in commands {
                    print(try session.run(command))
                }
            }
        }
    }
}
