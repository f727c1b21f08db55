public import NTBPorts
public import NTBTransport
public import NTBHardware

/// A session as a transport job: it runs on the ports of a ``PortSet`` of the transport.
public struct SessionJob<S: PortSession>: TransportJob {
    public let session: S
    public init(session: S) { self.session = session }
    public func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> S.Result {
        try session.run(PortSet(transport))
    }
}

/// Opening a port's transport and running a session on it, compiled in this module for each session
/// type, device and backend.
///
/// Why here: a session's loops drive the queue pair's data path per message. Generic code runs
/// specialised only where its concrete types are known when it is compiled; a client module that
/// calls a session through a generic job would run this module's unspecialised copy (metadata
/// look-ups and witness calls per message: 3x the CPU at 64-byte messages). Each session type's
/// ``PortSession/run(on:settings:)`` names itself concretely, and NTBPorts' opening path is
/// inlinable, so the whole chain (device adapter, backend, session, data path) is specialised here.
public enum SessionRunner {
    @inline(__always)
    static func run<S: PortSession>(_ session: S, on port: Port, settings: TransportSettings) throws -> S.Result {
        try port.withTransport(settings, SessionJob(session: session))
    }
}

extension PerfSeries {
    public func run(on port: Port, settings: TransportSettings) throws -> [PerfResult] { try SessionRunner.run(self, on: port, settings: settings) }
}
extension PerfInitiator {
    public func run(on port: Port, settings: TransportSettings) throws -> PerfResult { try SessionRunner.run(self, on: port, settings: settings) }
}
extension PingpongInitiator {
    public func run(on port: Port, settings: TransportSettings) throws -> LatencyResult { try SessionRunner.run(self, on: port, settings: settings) }
}
extension FileSender {
    public func run(on port: Port, settings: TransportSettings) throws -> FileSender.Result { try SessionRunner.run(self, on: port, settings: settings) }
}
extension Responder {
    public func run(on port: Port, settings: TransportSettings) throws { try SessionRunner.run(self, on: port, settings: settings) }
}
extension ByeInitiator {
    public func run(on port: Port, settings: TransportSettings) throws { try SessionRunner.run(self, on: port, settings: settings) }
}
extension DemoLargePhase {
    public func run(on port: Port, settings: TransportSettings) throws -> Result { try SessionRunner.run(self, on: port, settings: settings) }
}
extension DemoSmallPhase {
    public func run(on port: Port, settings: TransportSettings) throws -> PerfResult { try SessionRunner.run(self, on: port, settings: settings) }
}
