#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBMock
import NTBPorts
import NTBTransport
import Synchronization
import Testing

/// Sends one message on queue pair 0 and waits for its completion.
struct SendOne: TransportJob {
    let message: [UInt8]
    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> String {
        let qp = transport.queuePairs[0]
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: message.count, alignment: 64)
        defer { unsafe payload.deallocate() }
        unsafe payload.copyBytes(from: message)
        try unsafe qp.send(UnsafeRawBufferPointer(payload), cookie: 1)
        var sent = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !sent && ContinuousClock.now < deadline {
            if qp.poll({ if $0.kind == .send { sent = true } }) == 0 { usleep(100) }
        }
        #expect(sent)
        return Backend.name
    }
}

/// Receives one message on queue pair 0.
struct ReceiveOne: TransportJob {
    func run<Device: NTBDevice, Backend: TransportBackend>(_ transport: Transport<Device, Backend>) throws -> [UInt8] {
        let qp = transport.queuePairs[0]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { unsafe buffer.deallocate() }
        try unsafe qp.postReceive(buffer, cookie: 7)
        var length: Int?
        let deadline = ContinuousClock.now + .seconds(10)
        while length == nil && ContinuousClock.now < deadline {
            if qp.poll({ if $0.kind == .receive && $0.status == .ok { length = $0.length } }) == 0 { usleep(100) }
        }
        guard let length else { return [] }
        return unsafe Array(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
    }
}

@Suite(.serialized) struct EndToEndTests {
    /// Both sides open the same mock port by string; the policy gives it host; a message crosses.
    @Test func aMockPortPairMovesAMessage() throws {
        let link = try MockPortLink("e2e")
        var settings = TransportSettings()
        settings.policy = try link.policy("host@PORT\n")
        settings.configuration.queuePairs = 1
        settings.configuration.mtu = 4096
        settings.linkTimeout = .seconds(10)
        var options = PortDeviceOptions()
        options.mock = .fast
        let endpoint = try Port("mock:\(link.dir)", role: .endpoint, options: options)
        let host = try Port("mock:\(link.dir)", role: .host, options: options)
        let message = Array("hello over NTBPorts".utf8)

        let shared = settings
        let received = Mutex<Result<[UInt8], PortTestError>?>(nil)
        let receiver = try TransportThread(name: "e2e-endpoint") {
            let result: Result<[UInt8], PortTestError>
            do { result = .success(try endpoint.withTransport(shared, ReceiveOne())) } catch { result = .failure(PortTestError(text: "\(error)")) }
            received.withLock { $0 = result }
        }
        let backend = try host.withTransport(shared, SendOne(message: message))
        receiver.join()
        #expect(backend == "host")
        #expect(try received.withLock { try $0?.get() } == message)
    }
}

struct PortTestError: Error, CustomStringConvertible {
    let text: String
    var description: String { text }
}
