import Foundation
import NTBHardware
import NTBMock
import NTBTools
import NTBTransport
import Synchronization
import Testing

/// Both sides of a mock link in this process, each with a tool session, set up as the RFC wants:
/// the endpoint hosts the engine model and publishes the eDMA window, the host validates it, both
/// have a window-0 buffer for the ring areas.
final class EDMATrafficLink {
    let directory = "/dev/shm/ntb-traffic-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let host: ToolSession<MockNTBDevice>
    let endpoint: ToolSession<MockNTBDevice>

    init() throws {
        var c = MockLinkConfiguration()
        c.heartbeatMilliseconds = 10
        c.hostRAMSize = 8 << 20
        c.endpointRAMSize = 8 << 20
        c.memoryWindowSize = 1 << 20
        try MockLink.create(at: directory, configuration: c)
        endpoint = ToolSession(device: try MockNTBDevice(directory: directory, role: .endpoint, options: .fast))
        host = ToolSession(device: try MockNTBDevice(directory: directory, role: .host, options: .fast))
        #expect(try endpoint.run("edma publish").hasPrefix("edma: published in mw 1"))
        #expect(try host.run("link up") == "link: up")
        #expect(try endpoint.run("link wait up 3000") == "link: up")
        #expect(try host.run("edma probe").hasPrefix("edma: valid in peer-mw 1"))
        #expect(try host.run("mw trans 0 \(EDMATraffic.windowBytes)").hasPrefix("mw 0: 0x"))
        #expect(try endpoint.run("mw trans 0 \(EDMATraffic.windowBytes)").hasPrefix("mw 0: 0x"))
    }

    /// Sends `count` messages per queue pair from one side while the other receives and checks them.
    func run(hostSends: Bool, queuePairs: Int, count: Int, seed: UInt64, tolerating: Int = 0) throws -> (sent: String, received: String) {
        let (sender, receiver) = hostSends ? (host, endpoint) : (endpoint, host)
        let own = try #require(sender.inboundBuffer(0)), theirs = try #require(receiver.inboundBuffer(0))
        let engine: EDMATraffic.Engine, channels: Int
        if hostSends {
            let window = try #require(host.validatedEDMAWindow)
            engine = .remote(window)
            channels = window.info.channelCount - 1
        } else {
            channels = EDMALocator().dataChannels
            let lists = try endpoint.device.allocateInboundBuffer(length: channels * 4096, alignment: 4096)
            engine = .local(try endpoint.device.startEDMAModel(), linkedLists: lists)
        }
        let received = Mutex<Result<String, EDMATraffic.Failure>?>(nil)
        let receiving = (receiver.device, theirs)
        let thread = Thread {
            let r = Result { () throws(EDMATraffic.Failure) -> String in
                do { return try EDMATraffic.receive(device: receiving.0, edma: receiving.0, own: receiving.1, queuePairs: queuePairs, count: count,
                                                           seed: seed, tolerating: tolerating, timeout: .seconds(40)) }
                catch let e as EDMATraffic.Failure { throw e } catch { throw EDMATraffic.Failure(description: "\(error)") }
            }
            received.withLock { $0 = r }
        }
        thread.start()
        let sent = try EDMATraffic.send(device: sender.device, edma: sender.device, engine: engine, own: own, queuePairs: queuePairs, count: count,
                                        seed: seed, dataChannels: channels, timeout: .seconds(40))
        while received.withLock({ $0 == nil }) { usleep(1000) }
        return (sent, try received.withLock { $0! }.get())
    }

    func close() {
        host.device.close()
        endpoint.device.close()
        try? MockLink.remove(at: directory, force: true)
    }
}

/// The RFC data path (rings, channel senders sharing channels by qp % 4, queue receivers posting by
/// bus address) between the two sides of a mock link, both ways: the host through the endpoint's read
/// channels, the endpoint with its write channels; the receiver checks every byte.
@Suite(.serialized) struct EDMATrafficTests {
    @Test(arguments: [(true, 1, 300, UInt64(1)), (true, 3, 200, 2), (true, 4, 150, 3), (false, 1, 300, 4), (false, 4, 150, 5), (false, 6, 100, 6)])
    func randomSizesAndQueuePairCountsArriveIntact(hostSends: Bool, queuePairs: Int, count: Int, seed: UInt64) throws {
        let link = try EDMATrafficLink()
        defer { link.close() }
        let (sent, received) = try link.run(hostSends: hostSends, queuePairs: queuePairs, count: count, seed: seed)
        let total = queuePairs * count
        #expect(sent.hasPrefix("edma traffic: sent \(total) messages") && sent.hasSuffix(" s/GB, 0 aborted"), "\(sent)")
        #expect(received.hasPrefix("edma traffic: received \(total) messages"), "\(received)")
        #expect(received.hasSuffix("every byte checked"))
    }

    /// An abort injected in the model fails exactly one message: the sender reports it as aborted, the
    /// receiver finds exactly that one missing and everything else intact, in order; the channel and
    /// the queue pair go on.
    @Test(arguments: [true, false])
    func anInjectedAbortFailsExactlyTheAffectedMessage(hostSends: Bool) throws {
        let link = try EDMATrafficLink()
        defer { link.close() }
        let direction = hostSends ? "read" : "write"
        #expect(try link.endpoint.run("edma inject-abort \(direction) 0 5") == "edma: abort armed on \(direction) channel 0 at element 5")
        let (sent, got) = try link.run(hostSends: hostSends, queuePairs: 1, count: 60, seed: 9, tolerating: 1)
        #expect(sent.hasPrefix("edma traffic: sent 59 messages") && sent.contains(", 1 aborted (0:"), "\(sent)")
        #expect(got.hasPrefix("edma traffic: received 59 messages") && got.contains("every byte checked, missing 0:"), "\(got)")
        // The same message on both sides.
        let abortedMessage = sent.split(separator: "(").last.map { $0.dropLast() }
        let missingMessage = got.split(separator: " ").last
        #expect(abortedMessage != nil && abortedMessage.map(String.init) == missingMessage.map(String.init), "\(sent) / \(got)")
    }
}
