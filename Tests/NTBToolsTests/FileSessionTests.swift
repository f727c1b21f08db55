import Foundation
import NTBHardware
import NTBMock
import NTBTools
import NTBTransport
import Testing

/// Both sides of a one-window mock link in this process over the host backend, linked up.
final class ToolsLink {
    let directory = "/dev/shm/ntb-tools-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let host: Transport<MockNTBDevice, HostBackend>
    let endpoint: Transport<MockNTBDevice, HostBackend>

    init() throws {
        var link = MockLinkConfiguration()
        link.memoryWindowCount = 1
        try MockLink.create(at: directory, configuration: link)
        var config = TransportConfiguration()
        config.queuePairs = 1
        config.waitMode = .polling
        do {
            endpoint = try Transport(device: MockNTBDevice(directory: directory, role: .endpoint, options: .fast), configuration: config)
            host = try Transport(device: MockNTBDevice(directory: directory, role: .host, options: .fast), configuration: config)
        } catch {
            try? MockLink.remove(at: directory, force: true)
            throw error
        }
        let a = host.queuePairs[0], b = endpoint.queuePairs[0]
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        while !(a.isLinkUp && b.isLinkUp) {
            _ = a.poll { _ in }; _ = b.poll { _ in }
            guard ContinuousClock.now < deadline else { throw ToolError("the mock link did not come up") }
        }
    }

    func close() {
        host.close()
        endpoint.close()
        try? MockLink.remove(at: directory, force: true)
    }
}

/// The files under `directory` this process holds open (other tests run in parallel: only these count).
func openDescriptors(under directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { fd in
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")).flatMap { $0.hasPrefix(directory + "/") ? $0 : nil }
    }
}

/// A new empty directory under /tmp.
func temporaryDirectory(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "ntb-tools-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

@Suite(.serialized) struct FileSessionTests {
    /// F6: a transfer whose peer stops mid-file (killed `send`) fails the receive; every such failure
    /// used to leak the `.NAME.partial` descriptor (and leave the file). After twenty failures the
    /// process holds no descriptor of the directory and the directory is empty.
    @Test func aReceiveThatFailsMidFileClosesAndRemovesThePartialFile() throws {
        let link = try ToolsLink()
        defer { link.close() }
        let dir = try temporaryDirectory("f6")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let senders = PortSet(link.host), receivers = PortSet(link.endpoint)
        let sender = try senders.port(0), receiver = try receivers.port(0)
        let name = Array("victim.bin".utf8)
        let data = [UInt8](repeating: 0xA5, count: 1000)
        var logged: [String] = []
        // The path works: a first message arrives (the link just came up).
        try sender.send(ControlMessage(.bye))
        #expect(try receiver.receiveControl(timeout: .seconds(10)).kind == .bye)
        let rx0 = link.endpoint.queuePairs[0].counters[.rxPackets]
        for _ in 0..<20 {
            try unsafe name.withUnsafeBytes { try unsafe sender.send($0) }
            try unsafe data.withUnsafeBytes { try unsafe sender.send($0) }   // then nothing more: the sender was killed
            let r = FileReceiver(directory: dir, timeout: .milliseconds(100), log: { logged.append($0) })
            #expect(throws: ToolError.self) { try r.receive(receiver, size: 1_000_000, nameLength: UInt64(name.count)) }
        }
        // Each time the name and the first chunk were taken (the file was open) before the peer fell silent.
        #expect(link.endpoint.queuePairs[0].counters[.rxPackets] - rx0 == 40)
        #expect(logged.isEmpty, "\(logged)")
        #expect(try openDescriptors(under: dir) == [])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    /// A complete transfer through the responder: the file arrives under its name with its bytes, for
    /// names of 1, 63, 64 (the control message size: refused before), 65 and 246 (the longest) bytes.
    @Test(arguments: [1, 63, 64, 65, 246])
    func aFileArrivesWhole_whateverTheLengthOfItsName(nameLength: Int) throws {
        let link = try ToolsLink()
        defer { link.close() }
        let from = try temporaryDirectory("from"), to = try temporaryDirectory("to")
        defer { try? FileManager.default.removeItem(atPath: from); try? FileManager.default.removeItem(atPath: to) }
        let name = String(repeating: "n", count: nameLength)
        let content = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try content.write(to: URL(fileURLWithPath: "\(from)/\(name)"))
        nonisolated(unsafe) let endpointPorts = PortSet(link.endpoint)   // used by the responder thread alone
        let responder = Thread {
            unsafe try? Responder(directory: to, once: true, sessionTimeout: .seconds(20), log: { _ in }).run(endpointPorts)
        }
        responder.start()
        let result = try FileSender(path: "\(from)/\(name)").run(PortSet(link.host))
        while !responder.isFinished { usleep(1000) }
        #expect(result.name == name && result.bytes == UInt64(content.count))
        #expect(FileManager.default.contents(atPath: "\(to)/\(name)") == content)
    }

    /// A name longer than the receiver can store (its `.NAME.partial` must fit NAME_MAX) is refused by
    /// the sender before anything is sent, naming the limit.
    @Test func aNameOverTheLimitIsRefusedWithTheLimit() throws {
        let link = try ToolsLink()
        defer { link.close() }
        let from = try temporaryDirectory("long")
        defer { try? FileManager.default.removeItem(atPath: from) }
        let name = String(repeating: "x", count: 247)
        #expect(FileManager.default.createFile(atPath: "\(from)/\(name)", contents: Data([1])))
        #expect(FileTransfer.maxNameBytes(65524) == 246)
        #expect(FileTransfer.maxNameBytes(100) == 100)
        let error = #expect(throws: ToolError.self) { try FileSender(path: "\(from)/\(name)").run(PortSet(link.host)) }
        #expect(error?.description.contains("1...246 bytes") == true, "\(String(describing: error))")
        #expect(link.host.queuePairs[0].counters[.txBytes] == 0)
    }
}
