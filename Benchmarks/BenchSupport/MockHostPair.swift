// Set-up shared by the host-backend benchmarks (transport-bench, roundtrip-bench).
#if canImport(Glibc)
import Glibc
#endif
public import NTBMock
public import NTBTransport

/// Both sides of a one-window mock link in this process, over the host backend with one polling
/// queue pair each, linked up: the benchmarks then drive `host` and `endpoint` from their own threads.
/// ``close()`` closes both transports and removes the link.
public final class MockHostPair {
    public typealias QP = QueuePair<MockNTBDevice, HostBackend>
    public let directory: String
    public let host: Transport<MockNTBDevice, HostBackend>
    public let endpoint: Transport<MockNTBDevice, HostBackend>
    /// The queue pair of each side.
    public var hostQP: QP { host.queuePairs[0] }
    public var endpointQP: QP { endpoint.queuePairs[0] }

    /// - Parameters:
    ///   - name: the link's directory is `/dev/shm/<name>-<pid>`.
    ///   - mtu: `transport_mtu` of both sides.
    ///   - linkTimeout: how long both queue pairs may take to link (polled by the calling thread).
    public init(name: String, mtu: Int = HostWire.defaultMTU, linkTimeout: Duration) throws {
        directory = "/dev/shm/\(name)-\(getpid())"
        var link = MockLinkConfiguration()
        link.memoryWindowCount = 1
        try MockLink.create(at: directory, configuration: link)
        var config = TransportConfiguration()
        config.queuePairs = 1
        config.waitMode = .polling
        config.mtu = mtu
        do {
            endpoint = try Transport(device: MockNTBDevice(directory: directory, role: .endpoint, options: .fast), configuration: config)
            host = try Transport(device: MockNTBDevice(directory: directory, role: .host, options: .fast), configuration: config)
        } catch {
            try? MockLink.remove(at: directory, force: true)
            throw error
        }
        let a = host.queuePairs[0], b = endpoint.queuePairs[0]
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: linkTimeout)
        while !(a.isLinkUp && b.isLinkUp) {
            a.poll { _ in }; b.poll { _ in }
            guard clock.now < deadline else { fatalError("the mock link did not come up") }
        }
    }

    public func close() {
        host.close()
        endpoint.close()
        try? MockLink.remove(at: directory, force: true)
    }
}
