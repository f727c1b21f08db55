#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import DWEDMA
import NTBMock
import PCIKit
import NTBTools

/// `ntb-transport edma …`: the DesignWare eDMA driver on its own.
struct EDMACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edma",
        abstract: "Exercise a DesignWare eDMA directly (driver self-test against the engine model).",
        subcommands: [EDMASelftest.self, EDMAModelServe.self]
    )
}

/// Parses a decimal or 0x-prefixed hexadecimal number.
func parseNumber(_ text: String) throws -> Int {
    let v = text.hasPrefix("0x") || text.hasPrefix("0X") ? Int(text.dropFirst(2), radix: 16) : Int(text)
    guard let v, v >= 0 else { throw ValidationError("'\(text)' is not a number (decimal or 0x hex)") }
    return v
}

/// A self-test failure: the description says what went wrong and what to check.
struct EDMASelftestFailure: Error, CustomStringConvertible {
    var description: String
}

/// `ntb-transport edma selftest`: enumerate channels, run single, chained and scatter-gather transfers
/// in both directions, verify the data, report throughput per channel and aborts.
struct EDMASelftest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Run the eDMA driver self-test against the in-process engine model.",
        discussion: """
            Starts a DW eDMA engine model on its own thread (register file, posted-write rings and the \
            endpoint/host RAM arenas are files in --directory, see docs/mock-device.md) and drives it with \
            the same driver code that runs on hardware. Every channel of both directions runs a single \
            transfer, a run of chained submissions (the cycle bit flips each time), and a scatter-gather \
            chain, each verified byte for byte, then a throughput loop; --inject-abort also checks that an \
            abort is reported at the right element and the channel recovers.
            """
    )

    @Option(help: "Directory for the model's files (default: a new temporary directory, removed afterwards).")
    var directory: String?

    @Option(help: "Channels per direction in the model (1-8).")
    var channels: Int = 4

    @Option(help: "Register map of the model: unroll or legacy.")
    var format: String = "unroll"

    @Option(help: "Drive the engine as the endpoint (local) or as the host through a BAR (remote).")
    var mode: String = "remote"

    @Option(help: "Bytes per transfer (1 to 4 MiB; K, M suffixes).", transform: sizeArgument)
    var size: Int = 256 * 1024

    @Option(help: "Submissions per channel in the throughput loop.")
    var iterations: Int = 32

    @Flag(help: "Inject an abort into one chain per channel and check that it is reported and the channel recovers.")
    var injectAbort = false

    @Flag(help: "Keep the model directory afterwards for inspection.")
    var keep = false

    @Argument(help: "Hardware: the PCI function (vfio-pci bound) whose BAR holds the eDMA registers, e.g. 0000:01:00.0. Without it the self-test runs against the engine model.")
    var device: String?

    @Option(help: "Hardware: BAR holding the eDMA register block.")
    var bar: Int?

    @Option(help: "Hardware: offset of the eDMA register block in --bar (hex with 0x).", transform: parseNumber)
    var offset: Int?

    @Option(help: "Hardware: BAR holding endpoint memory for the LL regions and endpoint-side buffers (without it: enumerate channels only).")
    var llBar: Int?

    @Option(name: .customLong("ll-offset"), help: "Hardware: offset of that memory in --ll-bar.", transform: parseNumber)
    var llOffset: Int = 0

    @Option(name: .customLong("ll-address"), help: "Hardware: address the eDMA uses for that memory (default: the BAR's bus address + --ll-offset, as dw-edma-pcie does).", transform: parseNumber)
    var llAddress: Int?

    @Option(help: "Drive a model served by another process ('ntb-transport edma model') in this directory instead of starting one.")
    var attach: String?

    func validate() throws {
        guard (1...8).contains(channels) else { throw ValidationError("--channels must be 1 to 8") }
        guard format == "unroll" || format == "legacy" else { throw ValidationError("--format must be unroll or legacy") }
        guard mode == "local" || mode == "remote" else { throw ValidationError("--mode must be local or remote") }
        guard (1...(4 << 20)).contains(size) else { throw ValidationError("--size must be 1 byte to 4 MiB") }
        try checkRange("--iterations", iterations, 1...1_000_000)
        if let bar { try checkRange("--bar", bar, 0...5) }
        if let llBar { try checkRange("--ll-bar", llBar, 0...5) }
        if device != nil {
            guard bar != nil, offset != nil else { throw ValidationError("hardware self-test needs --bar N --offset X (the eDMA register block)") }
            guard attach == nil, directory == nil, !injectAbort else {
                throw ValidationError("--attach, --directory and --inject-abort apply to the engine model, not to hardware")
            }
            guard mode == "remote" else { throw ValidationError("the hardware self-test drives the eDMA through a BAR: --mode remote") }
        } else if bar != nil || offset != nil || llBar != nil {
            throw ValidationError("--bar, --offset and --ll-bar need the PCI function (e.g. 0000:01:00.0)")
        }
        if attach != nil && (injectAbort || directory != nil) {
            throw ValidationError("--attach drives another process's model: --inject-abort and --directory do not apply")
        }
    }

    func run() throws {
        if let device { return try runHardware(device) }
        if let attach { return try runAttached(attach) }
        let dir: String
        var made = false
        if let directory { dir = directory } else {
            var template = Array("/tmp/ntb-edma-selftest-XXXXXX".utf8CString)
            guard unsafe template.withUnsafeMutableBufferPointer({ unsafe mkdtemp($0.baseAddress!) }) != nil else {
                throw EDMASelftestFailure(description: "cannot create a temporary directory in /tmp; pass --directory")
            }
            dir = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            made = true
        }
        defer {
            if !keep && made {
                for f in ["ep-mem", "host-mem", EDMAModelFiles.registers, EDMAModelFiles.rings] { _ = unsafe unlink(dir + "/" + f) }
                _ = unsafe rmdir(dir)
            }
        }
        let layout = SelftestLayout(transferSize: size)
        let ep = try SharedMemoryArena(path: dir + "/ep-mem", busBase: SelftestLayout.epBus, length: SelftestLayout.arenaSize)
        let host = try SharedMemoryArena(path: dir + "/host-mem", busBase: SelftestLayout.hostBus, length: SelftestLayout.arenaSize)
        let mapFormat: EDMAMapFormat = format == "legacy" ? .legacy : .unroll
        let model = try EDMAEngineModel(EDMAModelConfiguration(
            directory: dir, writeChannels: channels, readChannels: channels, format: mapFormat,
            localSpace: BusAddressSpace([ep.segment]), pcieSpace: BusAddressSpace([host.segment])))
        defer { model.stop() }
        let driveMode: EDMAMode = mode == "local" ? .local : .remote
        let space = model.registerSpace(driveMode == .local ? .endpoint : .host)
        let edma = try DWEDMAController(registers: space, format: mapFormat, mode: driveMode,
                                        ownership: driveMode == .local ? .engine : .channels)
        print("eDMA model at \(dir): \(mapFormat) map, \(edma.writeChannels) write + \(edma.readChannels) read channels, driven \(driveMode == .local ? "locally (endpoint)" : "remotely (host)")")
        var runner = SelftestRunner(edma: edma, layout: layout, ep: ep.region, host: host.region, iterations: iterations)
        runner.inject = injectAbort ? { d, c, k in model.injectAbort(direction: d, channel: c, element: k) } : nil
        let failures = runner.runAll()
        let m = model.counters
        print("model: \(m.doorbells) doorbells, \(m.elements) elements, \(m.bytes) bytes, \(m.aborts) aborts, \(m.storesApplied) register writes applied")
        if keep || !made { print("model files kept in \(dir) (layout: docs/mock-device.md)") }
        if failures > 0 {
            throw EDMASelftestFailure(description: "\(failures) eDMA self-test check(s) failed; see the lines marked FAIL above")
        }
        print("eDMA self-test passed")
    }

    /// Drives a real eDMA through VFIO: registers in `--bar` at `--offset`; with `--ll-bar`, LL regions and
    /// endpoint-side buffers in that BAR window and host buffers in IOMMU-mapped memory. Polling only.
    /// Not exercised here (no hardware): see the report of issue 3.
    func runHardware(_ text: String) throws {
        let address = try PCIAddress(parsing: text)
        let device = try VFIODevice.open(address)
        try device.enableBusMaster()
        let regsBAR = try device.mapBAR(bar!)
        let needed = format == "legacy" ? 0x124 : EDMARegisters.unrollEnd
        guard offset! >= 0, offset! <= regsBAR.length - needed else {
            throw EDMASelftestFailure(description: "BAR \(bar!) is \(regsBAR.length) bytes: no \(format) eDMA register block (\(needed) bytes) fits at offset \(offset!); check --bar/--offset")
        }
        let regs = regsBAR.mmio.subregion(offset: offset!, length: min(EDMAModelFiles.registerFileSize, regsBAR.length - offset!))
        let mapFormat: EDMAMapFormat = format == "legacy" ? .legacy : .unroll
        let edma = try DWEDMAController(registers: regs, format: mapFormat, mode: .remote, ownership: .channels)
        print("eDMA at \(address) BAR \(bar!) + 0x\(String(offset!, radix: 16)): \(mapFormat) map, \(edma.writeChannels) write + \(edma.readChannels) read channels")
        for d in EDMADirection.allCases {
            for c in 0..<edma.channels(d) {
                print("  \(d) ch\(c): status \(edma.core.channelStatus(d, channel: c).rawValue)")
            }
        }
        guard let llBar else {
            print("channels enumerated; pass --ll-bar/--ll-offset (endpoint memory the eDMA can reach) to run transfers")
            return
        }
        let window = try llBar == bar! ? regsBAR : device.mapBAR(llBar)
        let avail = window.length - llOffset
        let slot = ((avail - SelftestLayout.llArea) / 16) & ~4095
        guard llOffset >= 0, avail > 0, slot >= 4096 else {
            throw EDMASelftestFailure(description: "BAR \(llBar) from offset \(llOffset) is too small for 16 LL regions and 16 buffers of 4 KiB (needs \(SelftestLayout.llArea + 16 * 4096) bytes); pick a larger window")
        }
        let llBus: UInt64
        if let llAddress { llBus = UInt64(llAddress) } else {
            let bars = try PCIDiscovery().bars(of: address)
            guard let info = bars.first(where: { $0.index == llBar }) else {
                throw EDMASelftestFailure(description: "no BAR \(llBar) in \(address)'s resources; pass --ll-address")
            }
            llBus = info.start + UInt64(llOffset)
        }
        let windowBytes = SelftestLayout.llArea + 16 * slot
        let epRegion = unsafe DMARegion(address: window.mmio.baseAddress + llOffset, busAddress: llBus, length: windowBytes)
        let hostBuffer = try device.container.allocateDMA(length: windowBytes)
        var layout = SelftestLayout(transferSize: min(size, slot))
        layout.slotBytes = slot
        print("LL regions and endpoint buffers at eDMA address 0x\(String(llBus, radix: 16)) (\(slot) B per channel), host buffers at IOVA 0x\(String(hostBuffer.region.busAddress, radix: 16))")
        var runner = SelftestRunner(edma: edma, layout: layout, ep: epRegion, host: hostBuffer.region, iterations: iterations)
        let failures = runner.runAll()
        withExtendedLifetime((window, regsBAR, hostBuffer, device)) {}
        if failures > 0 {
            throw EDMASelftestFailure(description: "\(failures) eDMA self-test check(s) failed; see the lines marked FAIL above")
        }
        print("eDMA self-test passed")
    }

    /// Drives a model served by another process: the register file and rings, and the arenas, are
    /// mapped from its directory.
    func runAttached(_ dir: String) throws {
        for f in [EDMAModelFiles.registers, EDMAModelFiles.rings, "ep-mem", "host-mem"] where unsafe access(dir + "/" + f, R_OK | W_OK) != 0 {
            throw EDMASelftestFailure(description: "\(dir)/\(f) is missing or not writable; start 'ntb-transport edma model --directory \(dir)' first")
        }
        let mapping = try EDMARegisterMapping.attach(directory: dir)
        let ep = try SharedMemoryArena(path: dir + "/ep-mem", busBase: SelftestLayout.epBus, length: SelftestLayout.arenaSize)
        let host = try SharedMemoryArena(path: dir + "/host-mem", busBase: SelftestLayout.hostBus, length: SelftestLayout.arenaSize)
        let mapFormat: EDMAMapFormat = format == "legacy" ? .legacy : .unroll
        let driveMode: EDMAMode = mode == "local" ? .local : .remote
        let edma = try DWEDMAController(registers: mapping.space(driveMode == .local ? .endpoint : .host), format: mapFormat,
                                        mode: driveMode, ownership: .channels)
        print("eDMA model served from \(dir): \(mapFormat) map, \(edma.writeChannels) write + \(edma.readChannels) read channels, driven from process \(getpid())")
        var runner = SelftestRunner(edma: edma, layout: SelftestLayout(transferSize: size), ep: ep.region, host: host.region, iterations: iterations)
        let failures = runner.runAll()
        if failures > 0 {
            throw EDMASelftestFailure(description: "\(failures) eDMA self-test check(s) failed; see the lines marked FAIL above")
        }
        print("eDMA self-test passed")
    }
}

/// `ntb-transport edma model`: serve an eDMA engine model (and self-test RAM arenas) from a directory,
/// so a driver in another process can attach ('edma selftest --attach DIR').
struct EDMAModelServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Serve a DW eDMA engine model from a directory for drivers in other processes.",
        discussion: "Creates edma-regs, edma-rings, ep-mem and host-mem in --directory (see docs/mock-device.md) and applies register writes until --seconds pass or the process is killed."
    )

    @Option(help: "Directory for the model's files (created if missing).")
    var directory: String

    @Option(help: "Channels per direction (1-8).")
    var channels: Int = 4

    @Option(help: "Register map: unroll or legacy.")
    var format: String = "unroll"

    @Option(help: "Serve for this many seconds (0: until killed).")
    var seconds: Int = 0

    func validate() throws {
        guard (1...8).contains(channels) else { throw ValidationError("--channels must be 1 to 8") }
        guard format == "unroll" || format == "legacy" else { throw ValidationError("--format must be unroll or legacy") }
        try checkRange("--seconds", seconds, 0...31_536_000)
    }

    func run() throws {
        _ = unsafe mkdir(directory, 0o700)
        let ep = try SharedMemoryArena(path: directory + "/ep-mem", busBase: SelftestLayout.epBus, length: SelftestLayout.arenaSize)
        let host = try SharedMemoryArena(path: directory + "/host-mem", busBase: SelftestLayout.hostBus, length: SelftestLayout.arenaSize)
        let model = try EDMAEngineModel(EDMAModelConfiguration(
            directory: directory, writeChannels: channels, readChannels: channels, format: format == "legacy" ? .legacy : .unroll,
            localSpace: BusAddressSpace([ep.segment]), pcieSpace: BusAddressSpace([host.segment])))
        print("eDMA model serving \(directory) (pid \(getpid())): \(channels) write + \(channels) read channels, \(format) map")
        fflush(nil)
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: .seconds(seconds))
        while seconds == 0 || clock.now < end { usleep(100_000) }
        model.stop()
        let m = model.counters
        print("model: \(m.doorbells) doorbells, \(m.elements) elements, \(m.bytes) bytes, \(m.aborts) aborts")
    }
}
