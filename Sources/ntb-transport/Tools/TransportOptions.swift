import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBTransport
import Foundation

extension TransportConfiguration.WaitMode: ExpressibleByArgument {}

/// Transport options shared by `perf`, `pingpong`, `send`, `recv`, `serve`: backend, MTU, queue pairs, waiting.
struct TransportOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The backend that moves the bytes (\(TransportBackends.names.joined(separator: ", "))); default: what the policy file says for the port.", valueName: "name"))
    var backend: String?

    @Option(name: .long, help: ArgumentHelp("The policy file (default: $NTB_TRANSPORT_POLICY, else \(PolicySource.defaultPath)).", valueName: "file"))
    var policy: String?

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
        if let backend, !TransportBackends.names.contains(backend) {
            throw ValidationError("--backend \(backend): not one of \(TransportBackends.names.joined(separator: ", "))")
        }
        guard mtu >= 64 && mtu <= 1 << 24 else { throw ValidationError("--mtu must be 64...16777216") }
        if let qps, qps < 1 || qps > 63 { throw ValidationError("--qps must be 1...63") }
        guard linkTimeout > 0 else { throw ValidationError("--link-timeout must be positive") }
    }

    func configuration(statisticsPath: String?, edmaLocator: EDMALocator = EDMALocator()) -> TransportConfiguration {
        var c = TransportConfiguration()
        c.edmaLocator = edmaLocator
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
        return try withDevice(OpenTransport(options: options, statisticsPath: statisticsPath, policyPort: policyPort, job: job))
    }

    /// The port as a policy file names it (`mock:DIR` or a PCI address), nil for other ports.
    var policyPort: PolicyPort? {
        if let address = pciAddress, case let .success(p) = PolicyPort.parse(address.description) { return p }
        if case let .mock(directory)? = try? target, case let .success(p) = PolicyPort.parse("mock:\(directory)") { return p }
        return nil
    }

    static func run<Device: NTBDevice, B: TransportBackend, J: TransportJob>(
        device: Device, backend: B.Type, options: TransportOptions, statisticsPath: String?,
        edmaLocator: EDMALocator = EDMALocator(), _ job: J
    ) throws -> J.Result {
        let transport = try Transport<Device, B>(device: device, configuration: options.configuration(statisticsPath: statisticsPath, edmaLocator: edmaLocator))
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
    var edmaLocator = EDMALocator()
    let job: J

    init(device: Device, options: TransportOptions, statisticsPath: String?, edmaLocator: EDMALocator = EDMALocator(), job: J) {
        self.device = device
        self.options = options
        self.statisticsPath = statisticsPath
        self.edmaLocator = edmaLocator
        self.job = job
    }

    func visit<Backend: TransportBackend>(_ backend: Backend.Type) throws -> J.Result {
        try PortOptions.run(device: device, backend: backend, options: options, statisticsPath: statisticsPath, edmaLocator: edmaLocator, job)
    }
}

/// The device job behind `withTransport`: picks the backend by name with the concrete device type.
struct OpenTransport<J: TransportJob>: DeviceJob {
    let options: TransportOptions
    let statisticsPath: String?
    let policyPort: PolicyPort?
    let job: J

    func run<Device: NTBDevice>(_ device: Device) throws -> J.Result {
        let name: String
        var locator = EDMALocator()
        if let backend = options.backend {
            name = backend
        } else {
            // The policy decides (hardware-reference §4, the review's per-port choice): its entry for this
            // port, `auto` probing the peer's eDMA window (host side) or publishing it (endpoint).
            (name, locator) = try policyBackend(for: device)
        }
        return try TransportBackends.visit(name, device: Device.self, RunJob(device: device, options: options, statisticsPath: statisticsPath, edmaLocator: locator, job: job))
    }

    private func policyBackend<Device: NTBDevice>(for device: Device) throws -> (String, EDMALocator) {
        let source = PolicySource.locate(option: options.policy, environment: ProcessInfo.processInfo.environment)
        let loaded: LoadedPolicy
        do { loaded = try Policy.load(from: source) } catch { throw ToolError("\(error)") }
        guard let port = policyPort else { return (HostBackend.name, EDMALocator()) }   // a port a policy cannot name (ivshmem)
        var decision = loaded.policy.decide(for: port)
        // auto (undecided) and edma depend on what the port's eDMA looks like now.
        switch decision.outcome {
        case .undecided, .use(.edma): decision = loaded.policy.decide(for: port, edma: edmaProbe(device, locator: decision.locator))
        default: break
        }
        switch decision.backendToOpen() {
        case let .success(kind): return (kind.rawValue, decision.locator)
        case let .failure(why): throw ToolError("\(why)")
        }
    }

    /// Whether edma can run on this port now: the host reads what the peer published; the endpoint
    /// can publish when its device reaches an eDMA.
    private func edmaProbe<Device: NTBDevice>(_ device: Device, locator: EDMALocator) -> EDMAProbe {
        guard let edma = device as? any PeerEDMAAccess else { return .unusable("\(device.name) has no DW eDMA the transport can reach") }
        if edma.edmaSide == .endpoint { return .usable("this side hosts the eDMA and publishes its window") }
        return EDMAProbe(EDMAPeerWindow.probe(device, locator: locator))
    }
}

/// Pins the calling process (all its threads created afterwards, and this one) to `cpu`.
func pinToCPU(_ cpu: Int) throws {
    let bits = MemoryLayout<cpu_set_t>.size * 8
    guard cpu >= 0 && cpu < bits else { throw ToolError("--cpu \(cpu) is out of range") }
    try setAffinity([cpu])
}

/// Lets the calling thread run on every online CPU again (children inherit the CPU set).
func unpinCPU() throws {
    try setAffinity(Array(0..<min(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), MemoryLayout<cpu_set_t>.size * 8)))
}

private func setAffinity(_ cpus: [Int]) throws {
    var set = cpu_set_t()
    for cpu in cpus { withUnsafeMutableBytes(of: &set) { $0[cpu / 8] |= UInt8(1) << UInt8(cpu % 8) } }
    let cpu = cpus.first ?? 0
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
