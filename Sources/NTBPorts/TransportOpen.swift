public import NTBHardware
public import NTBTransport

/// Something to do with an open transport; generic so that the data path is specialised for the
/// device and backend chosen at set-up.
public protocol TransportJob {
    associatedtype Result
    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> Result
}

/// How ``Port/withTransport(_:_:)`` sets a transport up.
public struct TransportSettings: Sendable {
    /// The generic knobs (MTU, queue pairs, waiting, statistics path).
    public var configuration = TransportConfiguration()
    /// The backend; nil: the policy decides (``BackendSelector``).
    public var backend: TransportBackendKind?
    /// The policy file read when ``backend`` is nil.
    public var policy = PolicySource(path: PolicySource.defaultPath, origin: .defaultPath)
    /// How long to wait for the peer.
    public var linkTimeout: Duration = .seconds(30)
    public init() {}
}

/// The backend a port gets, decided once, with what the backend needs to open without asking again.
public struct BackendSelection: Sendable, Equatable {
    public let kind: TransportBackendKind
    /// The edma backend's options: the policy entry's locator, and the window the probe validated.
    public let edma: EDMABackendOptions
    /// The policy's decision with every reason; nil when `--backend` chose.
    public let decision: BackendDecision?
    /// How often the peer's eDMA window was read (0 or 1).
    public let probes: Int
}

/// Decides a port's backend: `--backend` if given, else the policy entry for the typed port, probing
/// the peer's eDMA window at most once when `auto` or `edma` depends on it.
public enum BackendSelector {
    /// Reads the peer's eDMA window (host side); tests count the calls.
    public typealias Probe<Device: NTBDevice> = (Device, EDMALocator) -> Result<ValidatedEDMAWindow, EDMAWindowError>

    public static func select<Device: NTBDevice>(
        for device: Device, port: PortAddress, settings: TransportSettings,
        probe: Probe<Device> = { EDMAPeerWindow.probe($0, locator: $1) }
    ) throws(PortError) -> BackendSelection {
        if let kind = settings.backend {
            return BackendSelection(kind: kind, edma: EDMABackendOptions(), decision: nil, probes: 0)
        }
        let loaded: LoadedPolicy
        do throws(PolicyError) { loaded = try Policy.load(from: settings.policy) } catch { throw .policy(error) }
        // A port a policy cannot name (ivshmem) gets the built-in default.
        guard let policyPort = port.policyPort else {
            return BackendSelection(kind: .host, edma: EDMABackendOptions(), decision: nil, probes: 0)
        }
        var decision = loaded.policy.decide(for: policyPort)
        var options = EDMABackendOptions(locator: decision.locator)
        var probes = 0
        switch decision.outcome {
        case .undecided, .use(.edma):
            // auto and edma depend on what the port's eDMA looks like now: look once.
            let found: EDMAProbe
            if let access = device as? any PeerEDMAAccess, access.edmaSide == .endpoint {
                found = .usable("this side hosts the eDMA and publishes its window")
            } else if !(device is any PeerEDMAAccess) {
                found = .unusable("\(device.name) has no DW eDMA the transport can reach")
            } else {
                probes += 1
                let result = probe(device, decision.locator)
                if case let .success(window) = result { options.validatedWindow = window }
                found = EDMAProbe(result)
            }
            decision = loaded.policy.decide(for: policyPort, edma: found)
        default:
            break
        }
        switch decision.backendToOpen() {
        case let .success(kind): return BackendSelection(kind: kind, edma: options, decision: decision, probes: probes)
        case let .failure(why): throw .notOpened(why)
        }
    }
}

extension Port {
    /// Opens the device, decides the backend once (``BackendSelector``), sets the transport up with
    /// the backend's concrete type, waits for the link, runs `job`, and closes everything.
    @inlinable
    public func withTransport<J: TransportJob>(_ settings: TransportSettings, _ job: J) throws -> J.Result {
        try withDevice(OpenTransport(port: address, settings: settings, job: job))
    }

    /// Sets a transport up with backend `kind` on a device already open, waits for the link, runs
    /// `job` and closes the transport (the caller closes the device).
    @inlinable
    public static func runTransport<Device: NTBDevice, J: TransportJob>(
        on device: Device, backend kind: TransportBackendKind, edma: EDMABackendOptions = EDMABackendOptions(),
        settings: TransportSettings, _ job: J
    ) throws -> J.Result {
        try TransportBackends.visit(kind, device: Device.self, edma: edma, RunJob(device: device, settings: settings, job: job))
    }
}

/// The device job behind ``Port/withTransport(_:_:)``.
@usableFromInline
struct OpenTransport<J: TransportJob>: DeviceJob {
    @usableFromInline let port: PortAddress
    @usableFromInline let settings: TransportSettings
    @usableFromInline let job: J

    @inlinable
    init(port: PortAddress, settings: TransportSettings, job: J) {
        self.port = port
        self.settings = settings
        self.job = job
    }

    @inlinable
    func run<Device: NTBDevice>(_ device: Device) throws -> J.Result {
        let selection = try BackendSelector.select(for: device, port: port, settings: settings)
        return try Port.runTransport(on: device, backend: selection.kind, edma: selection.edma, settings: settings, job)
    }
}

/// Sets up a transport with the visited backend over `device` and runs `job` (specialised per backend).
@usableFromInline
struct RunJob<Device: NTBDevice, J: TransportJob>: TransportBackendVisitor {
    @usableFromInline typealias Result = J.Result
    @usableFromInline let device: Device
    @usableFromInline let settings: TransportSettings
    @usableFromInline let job: J

    @inlinable
    init(device: Device, settings: TransportSettings, job: J) {
        self.device = device
        self.settings = settings
        self.job = job
    }

    @inlinable
    func visit<Backend: TransportBackend>(_ backend: Backend.Type, options: Backend.Options) throws -> J.Result {
        let transport: Transport<Device, Backend>
        do throws(TransportError) {
            transport = try Transport<Device, Backend>(device: device, configuration: settings.configuration, backendOptions: options)
        } catch { throw PortError.transport(error) }
        defer { transport.close() }
        do throws(TransportError) { try transport.waitForLink(timeout: settings.linkTimeout) } catch { throw PortError.transport(error) }
        return try job.run(transport)
    }
}
