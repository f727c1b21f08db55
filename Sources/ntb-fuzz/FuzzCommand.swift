import ArgumentParser
import Glibc

/// `ntb-fuzz`: a hostile peer on a mock NTB link. It maps the link's shared files, as a peer process does, and writes
/// random and edge values into the regions a peer controls while the real host and endpoint move data
/// (docs/fuzzing.md). `tools/fuzz/run.sh` drives it and checks the victims.
@main
struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ntb-fuzz",
        abstract: "Write random and edge values into the peer-controlled regions of a mock NTB link (a hostile peer)."
    )

    @Option(name: .long, help: "The mock link directory (`ntb-transport mock up --dir`).")
    var dir: String = "/dev/shm/ntb-mock"

    @Option(name: .long, help: "The side the fuzzer plays: host (victim: the endpoint process) or endpoint (victim: the host process).")
    var role: String = "host"

    @Option(name: .long, help: "The backend whose memory-window layout to target: host or edma.")
    var backend: String = "host"

    @Option(name: .long, help: ArgumentHelp("Comma-separated target classes (default: all): \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ",")).", valueName: "list"))
    var targets: String?

    @Option(name: .long, help: "PRNG seed (default: random, printed); the same seed and link geometry give the same writes.")
    var seed: UInt64?

    @Option(name: .long, help: "Writes to make (default 100000).")
    var writes: Int = 100_000

    @Option(name: .long, help: "Spread the writes over this many seconds (0: as fast as possible).")
    var seconds: Double = 10

    @Option(name: .customLong("queue-pairs"), help: "Queue pairs of the transport under test (default: one per transport window).")
    var queuePairs: Int?

    @Option(name: .long, help: "Transport MTU of the transport under test.")
    var mtu: Int = 0x10000

    @Option(name: .long, help: "Append every write to this file (one line each, flushed every millisecond).")
    var trace: String?

    @Option(name: .customLong("undo-ms"), help: "Put each memory write's old value back after this many milliseconds (0: writes stay).")
    var undoMs: Int = 0

    @Flag(name: .long, help: "Print the region table of the link and exit.")
    var list = false

    func validate() throws {
        guard FuzzRole(rawValue: role) != nil else { throw ValidationError("--role must be host or endpoint, not '\(role)'") }
        guard FuzzBackend(rawValue: backend) != nil else { throw ValidationError("--backend must be host or edma, not '\(backend)'") }
        guard writes >= 0 else { throw ValidationError("--writes must be 0 or more") }
        guard seconds >= 0 && seconds.isFinite else { throw ValidationError("--seconds must be 0 or more") }
        guard (queuePairs ?? 1) >= 1 else { throw ValidationError("--queue-pairs must be at least 1") }
        guard undoMs >= 0 else { throw ValidationError("--undo-ms must be 0 or more") }
        guard mtu >= 64 else { throw ValidationError("--mtu must be at least 64") }
        _ = try parsedTargets()
    }

    func parsedTargets() throws -> Set<FuzzTarget> {
        guard let targets else { return Set(FuzzTarget.allCases) }
        var out = Set<FuzzTarget>()
        for name in targets.split(separator: ",") {
            guard let t = FuzzTarget(rawValue: String(name)) else {
                throw ValidationError("unknown target '\(name)'; use some of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ","))")
            }
            out.insert(t)
        }
        return out
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)  // a FIFO whose reader left
        var system = SystemRandomNumberGenerator()
        let seed = self.seed ?? system.next()
        var traceFile: UnsafeMutablePointer<FILE>?
        if let trace {
            traceFile = fopen(trace, "a")
            guard traceFile != nil else { throw ValidationError("cannot open --trace \(trace): \(String(cString: strerror(errno)))") }
        }
        let fuzzer = Fuzzer(directory: dir, role: FuzzRole(rawValue: role)!, backend: FuzzBackend(rawValue: backend)!,
                            targets: try parsedTargets(), seed: seed, queuePairs: queuePairs, mtu: mtu, trace: traceFile)
        fuzzer.undoAfterMs = undoMs
        guard fuzzer.refresh() else {
            throw ValidationError("\(dir) is not a mock link (no valid `link` page); create it with `ntb-transport mock up --dir \(dir)`")
        }
        if list {
            for r in fuzzer.table {
                print("\(r.target.rawValue)\t\(r.file)+0x\(String(r.offset, radix: 16))\t\(r.length) bytes\t\(r.fields.count) fields\t\(r.name)")
            }
            return
        }
        print("ntb-fuzz: seed=\(seed) role=\(role) backend=\(backend) writes=\(writes) seconds=\(seconds) dir=\(dir)")
        fflush(nil)
        let start = ContinuousClock.now
        let budget = Duration.milliseconds(Int64(seconds * 1000))
        var lastRefresh = start
        var done = 0
        while done < writes {
            let now = ContinuousClock.now
            if now - lastRefresh > .milliseconds(200) { fuzzer.refresh(); lastRefresh = now }
            // Pace: by now, done should be writes × elapsed / budget.
            let elapsed = now - start
            if undoMs > 0 { fuzzer.undo(nowMs: Int(elapsed / .milliseconds(1))) }
            let due = budget == .zero ? writes : min(writes, Int(Double(writes) * (elapsed / budget)) + 1)
            if done >= due {
                if let traceFile { fflush(traceFile) }
                usleep(1000)
                continue
            }
            while done < due {
                fuzzer.step(number: done, elapsedMs: Int((elapsed / .milliseconds(1)).rounded()))
                done += 1
            }
        }
        fuzzer.undo(nowMs: 0, all: true)
        if let traceFile { fflush(traceFile); fclose(traceFile) }
        let elapsed = ContinuousClock.now - start
        let perTarget = FuzzTarget.allCases.compactMap { t in fuzzer.counts[t].map { "\(t.rawValue)=\($0)" } }.joined(separator: " ")
        print("ntb-fuzz: last writes:")
        for line in fuzzer.recent { print("  \(line)") }
        print("ntb-fuzz: done seed=\(seed) writes=\(writes - fuzzer.skipped) skipped=\(fuzzer.skipped) undone=\(fuzzer.undone) in \(elapsed) [\(perTarget)]")
    }
}
