import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBTransport

extension TransportConfiguration.WaitMode: ExpressibleByArgument {}

/// Transport options shared by `perf`, `pingpong`, `send`, `recv`, `serve`: backend, MTU, queue pairs, waiting.
struct TransportOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The backend that moves the bytes (\(TransportBackends.names.joined(separator: ", "))).", valueName: "name"))
    var backend: String = "host"

    @Option(name: .long, help: ArgumentHelp("Transport MTU in bytes: the largest frame (Linux transport_mtu). Both sides must agree.", valueName: "bytes"))
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
        guard TransportBackends.names.contains(backend) else {
            throw ValidationError("--backend \(backend): not one of \(TransportBackends.names.joined(separator: ", "))")
        }
        guard mtu >= 64 && mtu <= 1 << 24 else { throw ValidationError("--mtu must be 64...16777216") }
        if let qps, qps < 1 || qps > 63 { throw ValidationError("--qps must be 1...63") }
        guard linkTimeout > 0 else { throw ValidationError("--link-timeout must be positive") }
    }

    func configuration(statisticsPath: String?) -> TransportConfiguration {
        var c = TransportConfiguration()
        c.mtu = mtu
        c.queuePairs = qps
        c.waitMode = wait
        c.statisticsPath = statisticsPath
        return c
    }
}

/// Something to do with an open transport; generic so that the data path is specialised for the
/// device and backend chosen at set-up.
protocol TransportJob {
    associatedtype Result
    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> Result
}

extension PortOptions {
    /// Where this port and role publish their counters (read by `stats`).
    var statisticsPath: String? {
        if let address = pciAddress { return "/dev/shm/ntb-transport-\(address).stats" }
        guard let target = try? target else { return nil }
        switch target {
        case let .mock(directory): return "\(directory)/stats.\(role?.rawValue ?? "host")"
        case let .ivshmem(address): return "/dev/shm/ntb-transport-ivshmem-\(address).stats.\(role?.rawValue ?? "host")"
        case let .ivshmemFile(path): return "\(path).stats.\(role?.rawValue ?? "host")"
        }
    }

    /// Opens the device, sets the transport up with the chosen backend, waits for the link, runs `job`.
    func withTransport<J: TransportJob>(_ options: TransportOptions, _ job: J) throws -> J.Result {
        if let cpu = options.cpu { try pinToCPU(cpu) }
        return try withDevice(OpenTransport(options: options, statisticsPath: statisticsPath, job: job))
    }

    static func run<Device: NTBDevice, B: TransportBackend, J: TransportJob>(
        device: Device, backend: B.Type, options: TransportOptions, statisticsPath: String?, _ job: J
    ) throws -> J.Result {
        let transport = try Transport<Device, B>(device: device, configuration: options.configuration(statisticsPath: statisticsPath))
        defer { releaseDMAPorts() }   // after the close below: the peer's ring no longer holds their buffers
        defer { transport.close() }
        try transport.waitForLink(timeout: .milliseconds(Int64(options.linkTimeout * 1000)))
        return try job.run(transport)
    }
}

/// Lets the tools hand a queue pair's port to a worker thread; each port is used by one thread at a time
/// and the hand-over happens at thread start and join.
struct Handoff<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Sets up a transport with the visited backend over `device` and runs `job` (specialised per backend).
struct RunJob<Device: NTBDevice, J: TransportJob>: TransportBackendVisitor {
    let device: Device
    let options: TransportOptions
    let statisticsPath: String?
    let job: J

    func visit<Backend: TransportBackend>(_ backend: Backend.Type) throws -> J.Result {
        try PortOptions.run(device: device, backend: backend, options: options, statisticsPath: statisticsPath, job)
    }
}

/// The device job behind `withTransport`: picks the backend by name with the concrete device type.
struct OpenTransport<J: TransportJob>: DeviceJob {
    let options: TransportOptions
    let statisticsPath: String?
    let job: J

    func run<Device: NTBDevice>(_ device: Device) throws -> J.Result {
        try TransportBackends.visit(options.backend, device: Device.self, RunJob(device: device, options: options, statisticsPath: statisticsPath, job: job))
    }
}

/// Pins the calling process (all its threads created afterwards, and this one) to `cpu`.
func pinToCPU(_ cpu: Int) throws {
    var set = cpu_set_t()
    let bits = MemoryLayout<cpu_set_t>.size * 8
    guard cpu >= 0 && cpu < bits else { throw ToolError("--cpu \(cpu) is out of range") }
    withUnsafeMutableBytes(of: &set) { $0[cpu / 8] |= UInt8(1) << UInt8(cpu % 8) }
    // sched_setaffinity is a GNU extension the Glibc module does not export; look it up in libc.
    typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_setaffinity") else {
        throw ToolError("cannot pin to CPU \(cpu): sched_setaffinity is not available")
    }
    let setAffinity = unsafeBitCast(symbol, to: SetAffinity.self)
    guard withUnsafeBytes(of: &set, { setAffinity(0, MemoryLayout<cpu_set_t>.size, $0.baseAddress!) }) == 0 else {
        throw ToolError("cannot pin to CPU \(cpu): \(String(cString: strerror(errno))); see nproc for the CPUs you may use")
    }
}
