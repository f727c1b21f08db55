import ArgumentParser

/// The `ntb-transport` tool. One file per subcommand; shared options live in `Options.swift`.
///
/// Exit codes: 0 success, 64 usage error (`ValidationError`), 1 runtime failure (the error's
/// description is printed on one line and names the fix).
@main
struct NTBTransportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ntb-transport",
        abstract: "Userspace NTB transport: queue pairs over a PCIe Non-Transparent Bridge, moved by CPU copy or the endpoint's DW eDMA.",
        version: "0.1.0",
        subcommands: [
            List.self,
            Bind.self,
            Unbind.self,
            Info.self,
            ToolCommand.self,
            MockCommand.self,
            PerfCommand.self,
            PingpongCommand.self,
            SendCommand.self,
            RecvCommand.self,
            ServeCommand.self,
            StatsCommand.self,
            DemoCommand.self,
            EDMACommand.self,
            PolicyCommand.self,
        ]
    )
}
