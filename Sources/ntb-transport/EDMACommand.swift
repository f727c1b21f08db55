#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import DWEDMA
import NTBMock
import PCIKit

/// `ntb-transport edma …`: the DesignWare eDMA driver on its own.
struct EDMACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edma",
        abstract: "Exercise a DesignWare eDMA directly (driver self-test against the engine model).",
        subcommands: [EDMASelftest.self]
    )
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

    @Option(help: "Bytes per transfer (1 to 4 MiB).")
    var size: Int = 256 * 1024

    @Option(help: "Submissions per channel in the throughput loop.")
    var iterations: Int = 32

    @Flag(help: "Inject an abort into one chain per channel and check that it is reported and the channel recovers.")
    var injectAbort = false

    @Flag(help: "Keep the model directory afterwards for inspection.")
    var keep = false

    func validate() throws {
        guard (1...8).contains(channels) else { throw ValidationError("--channels must be 1 to 8") }
        guard format == "unroll" || format == "legacy" else { throw ValidationError("--format must be unroll or legacy") }
        guard mode == "local" || mode == "remote" else { throw ValidationError("--mode must be local or remote") }
        guard (1...(4 << 20)).contains(size) else { throw ValidationError("--size must be 1 byte to 4 MiB") }
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
    }

    func run() throws {
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
        let epBus: UInt64 = 0x1000_0000, hostBus: UInt64 = 0x8_0000_0000
        let ep = try SharedMemoryArena(path: dir + "/ep-mem", busBase: epBus, length: layout.arenaSize)
        let host = try SharedMemoryArena(path: dir + "/host-mem", busBase: hostBus, length: layout.arenaSize)
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
}

/// Where the self-test puts LL regions and data in the two arenas.
struct SelftestLayout {
    static let llBytes = 4096
    let transferSize: Int
    /// Per (direction, channel) slot: LL region (EP arena) and data buffers of `slotBytes`.
    var slotBytes: Int { max(transferSize, 169 * 4096) }
    var llArea: Int { 16 * Self.llBytes }
    var arenaSize: Int { llArea + 16 * slotBytes }
    func llOffset(_ d: EDMADirection, _ c: Int) -> Int { (d.rawValue * 8 + c) * Self.llBytes }
    func dataOffset(_ d: EDMADirection, _ c: Int) -> Int { llArea + (d.rawValue * 8 + c) * slotBytes }
}

/// The self-test proper, generic over the register space (model or hardware).
struct SelftestRunner<Space: RegisterSpace> {
    let edma: DWEDMAController<Space>
    let layout: SelftestLayout
    let ep: DMARegion
    let host: DMARegion
    let iterations: Int
    var inject: ((EDMADirection, Int, Int) -> Void)?
    var rng = SystemRandomNumberGenerator()

    /// Runs every check on every channel; returns the number of failures.
    mutating func runAll() -> Int {
        var failures = 0
        for d in EDMADirection.allCases {
            for c in 0..<edma.channels(d) {
                failures += runChannel(d, c)
            }
        }
        return failures
    }

    /// Source and destination regions of channel (d, c): WRITE = EP → host, READ = host → EP (§1.8).
    func buffers(_ d: EDMADirection, _ c: Int) -> (src: DMARegion, dst: DMARegion) {
        let off = layout.dataOffset(d, c)
        let e = ep.slice(offset: off, length: layout.slotBytes), h = host.slice(offset: off, length: layout.slotBytes)
        return d == .write ? (e, h) : (h, e)
    }

    mutating func fill(_ r: DMARegion) {
        let p = unsafe r.address.assumingMemoryBound(to: UInt8.self)
        var x = rng.next()
        for i in 0..<r.length {
            if i & 7 == 0 { x = rng.next() }
            unsafe p[i] = UInt8(truncatingIfNeeded: x >> UInt64((i & 7) * 8))
        }
    }

    func same(_ a: DMARegion, _ aOff: Int, _ b: DMARegion, _ bOff: Int, _ n: Int) -> Bool {
        unsafe memcmp(a.address + aOff, b.address + bOff, n) == 0
    }

    mutating func runChannel(_ d: EDMADirection, _ c: Int) -> Int {
        let name = "\(d) ch\(c)"
        let llOff = layout.llOffset(d, c)
        let llMemory = ep.slice(offset: llOff, length: SelftestLayout.llBytes)
        var ch: EDMAChannel<EDMAv0Core<Space>, MMIORegion>
        do {
            ch = try edma.channel(d, c, ll: llMemory.mmio, llBusAddress: llMemory.busAddress)
        } catch {
            print("FAIL \(name): \(error)")
            return 1
        }
        var failures = 0
        let (src, dst) = buffers(d, c)
        let n = layout.transferSize
        func check(_ what: String, _ ok: Bool, _ detail: String = "") {
            if !ok { failures += 1; print("FAIL \(name) \(what)\(detail.isEmpty ? "" : ": " + detail)") }
        }
        func run(_ t: [EDMATransfer]) -> EDMACompletion? {
            do {
                let id = try ch.submit(t)
                let r = try ch.wait(timeout: .seconds(10))
                if case .aborted(let a) = r { print("ABORT \(name): \(a)") } else if r != .done(submission: id) { return nil }
                return r
            } catch {
                print("FAIL \(name): \(error)")
                return nil
            }
        }
        // Single: one element.
        fill(src)
        let single = run([EDMATransfer(source: src.busAddress, destination: dst.busAddress, length: UInt32(n))])
        check("single", single.map { if case .done = $0 { true } else { false } } ?? false && same(src, 0, dst, 0, n), " data mismatch")
        // Chained: consecutive submissions on the running channel (cycle bit flips, no re-init).
        fill(src)
        let piece = max(1, n / 8)
        var chainedOK = true
        for i in 0..<8 where (i + 1) * piece <= n {
            let r = run([EDMATransfer(source: src.busAddress + UInt64(i * piece), destination: dst.busAddress + UInt64(i * piece),
                                      length: UInt32(piece))])
            if case .done = r {} else { chainedOK = false }
        }
        check("chained", chainedOK && same(src, 0, dst, 0, min(n, 8 * piece)), " data mismatch")
        // Scatter-gather: scattered 4 KiB pieces (reversed order) gathered into one contiguous buffer.
        fill(src)
        let sgPiece = 4096
        let sgCount = min(ch.capacity, max(1, layout.slotBytes / sgPiece))
        let sg = (0..<sgCount).map { i -> EDMATransfer in
            let s = (sgCount - 1 - i) * sgPiece
            return EDMATransfer(source: src.busAddress + UInt64(s), destination: dst.busAddress + UInt64(i * sgPiece), length: UInt32(sgPiece))
        }
        var sgOK = false
        if case .done = run(sg) {
            sgOK = (0..<sgCount).allSatisfy { i in same(src, (sgCount - 1 - i) * sgPiece, dst, i * sgPiece, sgPiece) }
        }
        check("scatter-gather (\(sgCount) elements)", sgOK, " data mismatch")
        // Abort injection: reported at the right element, then the channel recovers.
        if let inject {
            let k = sgCount / 2
            inject(d, c, k)
            if case .aborted(let a) = run(sg) {
                check("abort report", a.element == k, " reported element \(a.element.map(String.init) ?? "?"), injected \(k)")
            } else {
                check("abort report", false, " injected abort at element \(k) was not reported")
            }
            fill(src)
            let again = run([EDMATransfer(source: src.busAddress, destination: dst.busAddress, length: UInt32(n))])
            check("recovery after abort", again.map { if case .done = $0 { true } else { false } } ?? false && same(src, 0, dst, 0, n))
        }
        // Throughput.
        let clock = ContinuousClock()
        let start = clock.now
        var bytes = 0
        for _ in 0..<iterations {
            guard case .done = run([EDMATransfer(source: src.busAddress, destination: dst.busAddress, length: UInt32(n))]) else {
                check("throughput loop", false); break
            }
            bytes += n
        }
        let elapsed = start.duration(to: clock.now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let mibs = seconds > 0 ? Double(bytes) / seconds / 1_048_576 : 0
        let k = ch.counters
        let status = failures == 0 ? "ok" : "FAILED"
        print("\(name): \(status)  single+chained+sg verified, \(k.completions) completions, \(k.aborts) aborts, \(Int(mibs.rounded())) MiB/s (\(iterations) x \(n) B)")
        return failures
    }
}
