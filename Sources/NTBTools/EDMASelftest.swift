#if canImport(Glibc)
import Glibc
#endif
import DWEDMA
import PCIKit

/// Where the self-test puts LL regions and data in the two arenas.
public struct SelftestLayout: Sendable {
    public static let llBytes = 4096
    public static let epBus: UInt64 = 0x1000_0000
    public static let hostBus: UInt64 = 0x8_0000_0000
    /// Model arenas: per (direction, channel) slot the largest transfer (the files are sparse).
    public static let modelSlotBytes = 4 << 20
    public static let llArea = 16 * llBytes
    /// Each model arena: 16 LL regions (used in the EP arena) and 16 slots.
    public static let arenaSize = llArea + 16 * modelSlotBytes
    public var transferSize: Int
    public var slotBytes: Int = Self.modelSlotBytes
    public var llArea: Int { Self.llArea }
    public init(transferSize: Int) { self.transferSize = transferSize }
    public func llOffset(_ d: EDMADirection, _ c: Int) -> Int { (d.rawValue * 8 + c) * Self.llBytes }
    public func dataOffset(_ d: EDMADirection, _ c: Int) -> Int { llArea + (d.rawValue * 8 + c) * slotBytes }
}

/// The self-test proper, generic over the register space (model or hardware).
public struct SelftestRunner<Space: RegisterSpace> {
    let edma: DWEDMAController<Space>
    let layout: SelftestLayout
    let ep: DMARegion
    let host: DMARegion
    let iterations: Int
    /// Arms an abort in the engine at (direction, channel, element), for the abort check (model only).
    public var inject: ((EDMADirection, Int, Int) -> Void)?
    /// Where the per-channel results and failures go (one line each).
    public var say: (String) -> Void = { print($0) }
    var rng = SystemRandomNumberGenerator()
    var deviceGone = false

    /// Runs every check on every channel; returns the number of failures.
    public init(edma: DWEDMAController<Space>, layout: SelftestLayout, ep: DMARegion, host: DMARegion, iterations: Int) {
        self.edma = edma; self.layout = layout; self.ep = ep; self.host = host; self.iterations = iterations
    }

    public mutating func runAll() -> Int {
        var failures = 0
        for d in EDMADirection.allCases {
            for c in 0..<edma.channels(d) {
                failures += runChannel(d, c)
                if deviceGone { say("FAIL: the eDMA stopped answering; remaining channels skipped"); return failures }
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

    /// Random bytes in the first `count` bytes of `r` (the part the checks use).
    mutating func fill(_ r: DMARegion, _ count: Int) {
        let p = unsafe r.address.assumingMemoryBound(to: UInt64.self)
        for i in 0..<((min(count, r.length) + 7) / 8) { unsafe p[i] = rng.next() }
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
            say("FAIL \(name): \(error)")
            return 1
        }
        var failures = 0
        let (src, dst) = buffers(d, c)
        let n = layout.transferSize
        let sgPiece = 4096
        let sgCount = min(ch.capacity, max(1, layout.slotBytes / sgPiece))
        let used = max(n, sgCount * sgPiece)
        func check(_ what: String, _ ok: Bool, _ detail: String = "") {
            if !ok { failures += 1; say("FAIL \(name) \(what)\(detail.isEmpty ? "" : ": " + detail)") }
        }
        func run(_ t: [EDMATransfer]) -> EDMACompletion? {
            do {
                let id = try ch.submit(t)
                let r = try ch.wait(timeout: .seconds(10))
                if case .aborted(let a) = r { say("ABORT \(name): \(a)") } else if r != .done(submission: id) { return nil }
                return r
            } catch {
                say("FAIL \(name): \(error)")
                return nil
            }
        }
        // Once the device stops answering every later check would fail the same way.
        func gone() -> Bool { if ch.lastPollHadNoResponse { deviceGone = true }; return deviceGone }
        // Single: one element.
        fill(src, used)
        let single = run([EDMATransfer(source: src.busAddress, destination: dst.busAddress, length: UInt32(n))])
        check("single", single.map { if case .done = $0 { true } else { false } } ?? false && same(src, 0, dst, 0, n), " data mismatch")
        if gone() { return failures }
        // Chained: consecutive submissions on the running channel (cycle bit flips, no re-init).
        fill(src, used)
        let piece = max(1, n / 8)
        var chainedOK = true
        for i in 0..<8 where (i + 1) * piece <= n {
            let r = run([EDMATransfer(source: src.busAddress + UInt64(i * piece), destination: dst.busAddress + UInt64(i * piece),
                                      length: UInt32(piece))])
            if case .done = r {} else { chainedOK = false }
        }
        check("chained", chainedOK && same(src, 0, dst, 0, min(n, 8 * piece)), " data mismatch")
        if gone() { return failures }
        // Scatter-gather: scattered 4 KiB pieces (reversed order) gathered into one contiguous buffer.
        fill(src, used)
        let sg = (0..<sgCount).map { i -> EDMATransfer in
            let s = (sgCount - 1 - i) * sgPiece
            return EDMATransfer(source: src.busAddress + UInt64(s), destination: dst.busAddress + UInt64(i * sgPiece), length: UInt32(sgPiece))
        }
        var sgOK = false
        if case .done = run(sg) {
            sgOK = (0..<sgCount).allSatisfy { i in same(src, (sgCount - 1 - i) * sgPiece, dst, i * sgPiece, sgPiece) }
        }
        check("scatter-gather (\(sgCount) elements)", sgOK, " data mismatch")
        if gone() { return failures }
        // Abort injection: reported at the right element, then the channel recovers.
        if let inject {
            let k = sgCount / 2
            inject(d, c, k)
            if case .aborted(let a) = run(sg) {
                check("abort report", a.element == k, " reported element \(a.element.map(String.init) ?? "?"), injected \(k)")
            } else {
                check("abort report", false, " injected abort at element \(k) was not reported")
            }
            fill(src, used)
            let again = run([EDMATransfer(source: src.busAddress, destination: dst.busAddress, length: UInt32(n))])
            check("recovery after abort", again.map { if case .done = $0 { true } else { false } } ?? false && same(src, 0, dst, 0, n))
        }
        if gone() { return failures }
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
        say("\(name): \(status)  single+chained+sg verified, \(k.completions) completions, \(k.aborts) aborts, \(Int(mibs.rounded())) MiB/s (\(iterations) x \(n) B)")
        return failures
    }
}
