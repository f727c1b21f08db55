import NTBTransport
import PCIKit
import Synchronization

/// What one sleep on an interrupt costs the sleeper on this machine: a thread blocks in poll(2) on
/// an eventfd, as a queue pair in interrupt mode sleeps on its doorbell vector, and another thread
/// wakes it. The figure is the sleeping thread's own CPU time (its thread CPU clock) per sleep/wake
/// cycle: the system calls, the switch out and the switch back in. A DMA sender sleeps about once per
/// chain, so its CPU per GB is at least this times its sleeps per GB. On a VM a wake-up goes through
/// the hypervisor and costs several times what it does on bare metal, hence measured in the same run.
public struct WakeBaseline: Codable, Sendable {
    public var cpuMicrosecondsPerWake: Double

    private final class Result: Sendable {
        let nanoseconds = Atomic<Int>(0)   // the sleeper's CPU over every wake
    }

    /// Nil when an eventfd or a thread cannot be made.
    public static func measure(wakes: Int = 10_000) -> WakeBaseline? {
        guard let ping = try? EventNotifier(), let pong = try? EventNotifier() else { return nil }
        let cpu = Result()
        let waker = try? TransportThread(name: "wake-waker") {
            for _ in 0..<wakes {
                guard Self.sleep(on: ping) else { return }
                pong.signal()
            }
        }
        guard let waker else { return nil }
        let sleeper = try? TransportThread(name: "wake-sleeper") {
            let t0 = threadCPUSeconds()
            for _ in 0..<wakes {
                ping.signal()
                guard Self.sleep(on: pong) else { return }
            }
            cpu.nanoseconds.store(Int((threadCPUSeconds() - t0) * 1e9), ordering: .releasing)
        }
        guard let sleeper else { ping.signal(); waker.join(); return nil }
        sleeper.join()
        waker.join()
        let ns = cpu.nanoseconds.load(ordering: .acquiring)
        guard ns > 0 else { return nil }
        return WakeBaseline(cpuMicrosecondsPerWake: Double(ns) / 1e3 / Double(wakes))
    }

    /// Blocks until `notifier` is signalled (at most 1 s), then consumes it; false on a timeout.
    private static func sleep(on notifier: EventNotifier) -> Bool {
        while notifier.wait(timeout: .seconds(1)) {
            if notifier.consume() > 0 { return true }
        }
        return false
    }
}
