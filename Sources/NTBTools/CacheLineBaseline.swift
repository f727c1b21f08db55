#if canImport(Glibc)
import Glibc
#endif
import NTBTransport
import Synchronization

/// The latency floor of this machine for a two-process pingpong: one cache line bounced between CPU 0
/// and CPU 1 (two threads, pinned like the demo's two sides), in nanoseconds per round trip. A pingpong
/// round trip moves several lines each way, so its p50 is a small multiple of this; on a VM the figure
/// moves with where the hypervisor runs the two vCPUs, hence measured in the same run as the pingpong.
public struct CacheLineBaseline: Codable, Sendable {
    public var roundTripNanoseconds: Double

    private final class Shared: @unchecked Sendable {
        let ping = Atomic<Int>(0)
        let padding = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)   // keep pong on another line
        let pong = Atomic<Int>(0)
        let ready = Atomic<Int>(0)
        let failed = Atomic<Bool>(false)
        let nanoseconds = Atomic<Int>(0)
    }

    /// Nil when the machine has fewer than two CPUs or pinning fails. `pin` pins the calling thread
    /// to a CPU (the caller's way of doing it: the CLI's is `--cpu`'s).
    public static func measure(roundTrips: Int = 200_000, pin: @escaping @Sendable (Int) throws -> Void) -> CacheLineBaseline? {
        guard sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2 else { return nil }
        let s = Shared()
        let echo = try? TransportThread(name: "line-echo") {
            if (try? pin(1)) == nil { s.failed.store(true, ordering: .relaxed) }
            s.ready.add(1, ordering: .releasing)
            for i in 1...roundTrips {
                while s.ping.load(ordering: .acquiring) != i { if s.failed.load(ordering: .relaxed) { return } }
                s.pong.store(i, ordering: .releasing)
            }
        }
        guard let echo else { return nil }
        let initiator = try? TransportThread(name: "line-ping") {
            if (try? pin(0)) == nil { s.failed.store(true, ordering: .relaxed) }
            while s.ready.load(ordering: .acquiring) == 0 {}
            let clock = ContinuousClock()
            let start = clock.now
            for i in 1...roundTrips {
                s.ping.store(i, ordering: .releasing)
                while s.pong.load(ordering: .acquiring) != i { if s.failed.load(ordering: .relaxed) { return } }
            }
            let (seconds, attoseconds) = (clock.now - start).components
            s.nanoseconds.store(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000), ordering: .releasing)
        }
        if initiator == nil { s.failed.store(true, ordering: .relaxed) }
        initiator?.join()
        echo.join()
        let ns = s.nanoseconds.load(ordering: .acquiring)
        guard !s.failed.load(ordering: .relaxed), ns > 0 else { return nil }
        return CacheLineBaseline(roundTripNanoseconds: Double(ns) / Double(roundTrips))
    }
}
