import ArgumentParser
import NTBHardware
import NTBMock

/// `ntb-transport mock`: create, remove and inspect a mock NTB link for two processes (docs/mock-device.md).
struct MockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock",
        abstract: "Create, remove and inspect a mock NTB link (shared-memory files for two processes).",
        subcommands: [MockUpCommand.self, MockDownCommand.self, MockStatusCommand.self, MockLatencyCommand.self]
    )
}

/// A byte count such as 4096, 64K, 4M or 1G.
struct ByteCount: ExpressibleByArgument {
    let value: Int
    init?(argument: String) {
        guard let v = parseByteCount(argument, allowingZero: true), v <= UInt64(Int.max) else { return nil }
        value = Int(v)
    }
}

struct MockUpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Create (or re-create) a mock link in a directory.",
        discussion: "Refuses while a process holds a side of the link in that directory."
    )

    @Option(help: "The link directory.") var dir: String = MockLink.defaultDirectory
    @Option(help: "Endpoint SoC to imitate: rcar (R-Car S4, MWs in BAR2 at RFC offsets) or imx8.") var profile: String = "rcar"
    @Option(help: "Memory windows (1...2).") var mws: Int = 2
    @Option(name: .customLong("mw-size"), help: "Size of each memory window.") var mwSize: ByteCount = ByteCount(argument: "4M")!
    @Option(help: "Scratchpads per side.") var spads: Int = 64
    @Option(help: "Doorbell slots the endpoint serves (db_count).") var doorbells: Int = 16
    @Option(help: "MSI vectors of the endpoint function.") var msi: Int = 16
    @Option(name: .customLong("host-ram"), help: "Host RAM for inbound buffers.") var hostRAM: ByteCount = ByteCount(argument: "64M")!
    @Option(name: .customLong("ep-ram"), help: "Endpoint RAM.") var endpointRAM: ByteCount = ByteCount(argument: "64M")!
    @Option(name: .customLong("heartbeat-ms"), help: "Heartbeat period; a hung side is declared gone after 10 missed beats (at least 500 ms).") var heartbeat: Int = 50
    @Flag(name: .customLong("msi-doorbell"), help: "Host doorbell writes also interrupt the endpoint (vNTB msi_doorbell).") var msiDoorbell = false

    func validate() throws {
        guard MockLinkProfile(name: profile) != nil else { throw ValidationError("--profile must be rcar or imx8") }
        do { try configuration.validate() } catch { throw ValidationError("\(error)") }
    }

    var configuration: MockLinkConfiguration {
        var c = MockLinkConfiguration()
        c.profile = MockLinkProfile(name: profile) ?? .rcarS4
        c.memoryWindowCount = mws
        c.memoryWindowSize = mwSize.value
        c.scratchpadCount = spads
        c.doorbellSlots = doorbells
        c.msiVectors = msi
        c.hostRAMSize = hostRAM.value
        c.endpointRAMSize = endpointRAM.value
        c.heartbeatMilliseconds = heartbeat
        c.msiDoorbell = msiDoorbell
        return c
    }

    func run() throws {
        try MockLink.create(at: dir, configuration: configuration)
        print("mock link up in \(dir): \(configuration.profile), \(mws) MW × \(mwSize.value) bytes, \(spads) spads, \(msi) MSI vectors")
    }
}

struct MockDownCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "Remove a mock link's files and directory.")
    @Option(help: "The link directory.") var dir: String = MockLink.defaultDirectory
    @Flag(help: "Remove it even while a process holds a side.") var force = false

    func run() throws {
        try MockLink.remove(at: dir, force: force)
        print("mock link in \(dir) removed")
    }
}

struct MockStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a mock link's geometry and which sides are in use.")
    @Option(help: "The link directory.") var dir: String = MockLink.defaultDirectory

    func run() throws {
        let c = try MockLink.configuration(at: dir)
        let live = MockLink.liveSides(at: dir)
        print("mock link \(dir)")
        print("  profile \(c.profile) (\(String(c.profile.pciID.vendor, radix: 16)):\(String(c.profile.pciID.device, radix: 16))), \(c.memoryWindowCount) MW × \(c.memoryWindowSize) bytes")
        print("  \(c.scratchpadCount) spads, \(c.doorbellSlots) doorbell slots, \(c.msiVectors) MSI vectors\(c.msiDoorbell ? ", MSI doorbell" : "")")
        print("  host RAM 0x\(String(MockLinkConfiguration.hostRAMBus, radix: 16)) + \(c.hostRAMSize), endpoint RAM 0x\(String(MockLinkConfiguration.endpointRAMBus, radix: 16)) + \(c.endpointRAMSize)")
        for role in MockRole.allCases { print("  \(role): \(live.contains(role) ? "in use" : "free")") }
    }
}
