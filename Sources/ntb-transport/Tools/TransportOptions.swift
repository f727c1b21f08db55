import ArgumentParser
#if canImport(Glibc)
import Glibc
import PCIKit
#endif
import NTBHardware
import NTBPorts
import NTBTransport
import Foundation
import NTBTools

extension TransportConfiguration.WaitMode: ExpressibleByArgument {}
extension TransportBackendKind: ExpressibleByArgument {}

/// Transport options shared by `perf`, `pingpong`, `send`, `recv`, `serve`: backend, MTU, queue pairs, waiting.
/// Only parses: NTBPorts (``Port/withTransport(_:_:)``) decides the backend and opens the transport.
struct TransportOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The backend that moves the bytes (\(TransportBackends.names.joined(separator: ", "))); default: what the policy file says for the port.", valueName: "name"))
    var backend: TransportBackendKind?

    @Option(name: .long, help: ArgumentHelp("The policy file (default: $NTB_TRANSPORT_POLICY, else \(PolicySource.defaultPath)).", valueName: "file"))
    var policy: String?

    @Option(name: .long, help: ArgumentHelp("Transport MTU in bytes (K, M suffixes): the largest frame (Linux transport_mtu). Both sides must agree.", valueName: "bytes"), transform: sizeArgument)
    var mtu: Int = 0x10000

    @Option(name: .long, help: ArgumentHelp("Queue pairs (Linux max_num_clients); default: one per memory window. Both sides must agree.", valueName: "n"))
    var qps: Int?

    @Option(name: .long, help: "How queue pairs wait for work: polling, interrupt or adaptive.")
    var wait: TransportConfiguration.WaitMode = .adaptive

    @Option(name: .long, help: ArgumentHelp("Pin this process to one CPU (benchmarks: keep the two sides on different cores).", valueName: "n"))
    var cpu: Int?

    @Option(name: .customLong("link-timeout"), help: ArgumentHelp("Seconds to wait for the peer.", valueName: "s"))
    var linkTimeout: Double = 30

    func validate() throws {
        guard mtu >= 64 && mtu <= 1 << 24 else { throw ValidationError("--mtu must be 64...16777216") }
        if let qps, qps < 1 || qps > 63 { throw ValidationError("--qps must be 1...63") }
        // NaN, infinities and huge values would pass a plain `> 0` and trap converting to a Duration.
        guard linkTimeout.isFinite, Self.linkTimeoutRange.contains(linkTimeout) else {
            throw ValidationError("--link-timeout must be \(Self.linkTimeoutRange.lowerBound)...\(Int(Self.linkTimeoutRange.upperBound)) seconds")
        }
        if let cpu {
            let cpus = Self.onlineCPUs
            guard cpu >= 0 && cpu < cpus else { throw ValidationError("--cpu must be 0...\(cpus - 1) (the CPUs online; see nproc)") }
        }
    }

    /// Seconds `--link-timeout` accepts: a millisecond to a day.
    static let linkTimeoutRange = 0.001...86_400.0

    /// CPUs `--cpu` may name (online CPUs, at most what a cpu_set_t holds).
    static var onlineCPUs: Int {
        min(max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))), MemoryLayout<cpu_set_t>.size * 8)
    }

    /// What NTBPorts needs to set the transport up.
    func settings(statisticsPath: String?) -> TransportSettings {
        var s = TransportSettings()
        s.configuration.mtu = mtu
        s.configuration.queuePairs = qps
        s.configuration.waitMode = wait
        s.configuration.statisticsPath = statisticsPath
        s.backend = backend
        s.policy = PolicySource.locate(option: policy, environment: ProcessInfo.processInfo.environment)
        s.linkTimeout = .milliseconds(Int64(linkTimeout * 1000))
        return s
    }
}

extension PortOptions {
    /// Opens the port and a transport on it (NTBPorts decides the backend), waits for the link, runs `job`.
    func withTransport<J: TransportJob>(_ options: TransportOptions, _ job: J) throws -> J.Result {
        if let cpu = options.cpu { try pinToCPU(cpu) }
        return try makePort().withTransport(options.settings(statisticsPath: statisticsPath), job)
    }
}

/// Lets the tools hand a queue pair's port to a worker thread; each port is used by one thread at a time
/// and the hand-over happens at thread start and join.
struct Handoff<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Pins the calling thread (and every thread it creates afterwards) to `cpu`.
func pinToCPU(_ cpu: Int) throws {
    guard cpu >= 0 && cpu < SystemThread.cpuSetCapacity else { throw ToolError("--cpu \(cpu) is out of range (0..<\(SystemThread.cpuSetCapacity))") }
    do { try SystemThread.pin(toCPU: cpu) } catch { throw ToolError("cannot pin to CPU \(cpu): \(error)") }
}

/// Lets the calling thread run on every online CPU again (children inherit the CPU set).
func unpinCPU() throws {
    do { try SystemThread.unpin() } catch { throw ToolError("cannot unpin: \(error)") }
}
