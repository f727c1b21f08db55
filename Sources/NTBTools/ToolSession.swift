import DWEDMA
import NTBHardware
import NTBMock
import NTBTransport
import PCIKit
#if canImport(Glibc)
import Glibc
#endif

/// What `ntb-transport tool` can do on an open port: the operations of Linux ntb_tool (debugfs `link`,
/// `spadN`, `peer_spadN`, `db`, `db_mask`, `peer_db`, `mw_transN`, `mwN`, `peer_mwN`), as text commands.
/// Generic over the device so it runs on any `NTBDevice`.
public final class ToolSession<Device: NTBDevice> {
    public let device: Device
    /// Inbound buffers set up with `mw trans` (ntb_tool mw_transN), by window.
    private var inbound: [Int: DMABuffer] = [:]
    /// Endpoint: the eDMA window published with `edma publish`; host: the one validated by `edma probe`.
    private var published: EDMAPeerWindow.Published?
    private var validated: ValidatedEDMAWindow?
    /// Endpoint: the write channel's LL region for `edma dma`.
    private var localLinkedList: DMABuffer?

    public init(device: Device) { self.device = device }

    /// The inbound buffer `mw trans N` (or `edma publish`) set up for window `window`, if any.
    public func inboundBuffer(_ window: Int) -> DMABuffer? { inbound[window] }
    /// Host: the peer's eDMA window `edma probe` validated, if any.
    public var validatedEDMAWindow: ValidatedEDMAWindow? { validated }
    /// Endpoint: whether `edma publish` published the eDMA window.
    public var publishedEDMAWindow: Bool { published != nil }

    public typealias Failure = ToolFailure

    /// The command language, one line per command.
    public static var help: String { ToolOperation.helpText }

    /// Runs one command line and returns its output (empty for an empty line).
    public func run(_ line: String) throws -> String {
        guard let operation = try ToolOperation.parse(line) else { return "" }
        return try run(operation)
    }

    /// Runs one parsed command and returns its output.
    public func run(_ operation: ToolOperation) throws -> String {
        func index(_ v: UInt64, _ name: String, below limit: Int) throws(ToolFailure) -> Int {
            guard v < UInt64(max(limit, 0)) else { throw ToolFailure("\(name) \(v) is out of range (0...\(limit - 1))") }
            return Int(v)
        }
        func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        func wait(_ ms: UInt64, until done: () -> Bool) -> Bool {
            let deadline = ContinuousClock.now + .milliseconds(Int64(ms))
            while !done() {
                let left = deadline - ContinuousClock.now
                if left <= .zero { return false }
                _ = device.waitForEvents(timeout: min(left, .milliseconds(50)))
            }
            return true
        }

        switch operation {
        case .help:
            return Self.help
        case .linkUp:
            try device.enableLink()
            return "link: \(device.isLinkUp ? "up" : "enabled")"
        case .linkDown:
            try device.disableLink()
            return "link: down"
        case .linkStatus:
            return "link: \(device.isLinkUp ? "up" : "down")"
        case let .linkWait(up, ms):
            let want = up ? "up" : "down"
            guard wait(ms, until: { device.isLinkUp == up }) else {
                throw Failure("link did not go \(want) within \(ms) ms; is the peer running?")
            }
            return "link: \(want)"
        case .spadCount:
            return "spads: \(device.scratchpadCount)"
        case let .spadRead(n, peer):
            let i = try index(n, "scratchpad", below: device.scratchpadCount)
            return peer ? "peer-spad[\(i)] = \(hex(UInt64(device.readPeerScratchpad(i))))" : "spad[\(i)] = \(hex(UInt64(device.readScratchpad(i))))"
        case let .spadWrite(n, v, peer):
            let i = try index(n, "scratchpad", below: device.scratchpadCount)
            if peer { device.writePeerScratchpad(i, v) } else { device.writeScratchpad(i, v) }
            return "\(peer ? "peer-spad" : "spad")[\(i)] = \(hex(UInt64(v)))"
        case .doorbellValid:
            return "db valid: \(hex(device.doorbellValidMask))"
        case .doorbellRead:
            _ = device.pollEvents()
            return "db: \(hex(device.readDoorbell()))"
        case let .doorbellClear(bits):
            device.clearDoorbell(bits)
            return "db: \(hex(device.readDoorbell()))"
        case let .doorbellMask(bits), let .doorbellUnmask(bits):
            guard bits & ~device.doorbellValidMask == 0 else { throw Failure("bits \(hex(bits)) outside the valid mask \(hex(device.doorbellValidMask))") }
            let mask = operation == .doorbellMask(bits)
            if mask { device.setDoorbellMask(bits) } else { device.clearDoorbellMask(bits) }
            return "db \(mask ? "mask" : "unmask"): \(hex(bits))"
        case let .doorbellRing(bits):
            guard bits != 0 && bits & ~device.doorbellValidMask == 0 else {
                throw Failure("bits \(hex(bits)) must be non-zero and inside the valid mask \(hex(device.doorbellValidMask))")
            }
            device.ringPeerDoorbell(bits)
            return "peer db: \(hex(bits))"
        case let .doorbellWait(ms):
            guard wait(ms, until: { device.readDoorbell() != 0 }) else { throw Failure("no doorbell within \(ms) ms") }
            return "db: \(hex(device.readDoorbell()))"
        case .windowInfo:
            var lines: [String] = []
            for n in 0..<device.memoryWindowCount {
                let a = try device.memoryWindowAlignment(n)
                let t = inbound[n].map { " -> \(hex($0.region.busAddress)) + \($0.region.length)" } ?? ""
                lines.append("mw \(n): inbound max \(a.maxSize) bytes, address align \(hex(a.addressAlignment)), size align \(a.sizeAlignment)\(t)")
            }
            for n in 0..<device.peerMemoryWindowCount {
                lines.append("peer-mw \(n): \(try device.peerMemoryWindow(n).length) bytes")
            }
            return lines.joined(separator: "\n")
        case let .windowTranslate(window, size):
            let n = try index(window, "window", below: device.memoryWindowCount)
            let a = try device.memoryWindowAlignment(n)
            guard size > 0 && size <= a.maxSize && size <= UInt64(Int.max) else { throw Failure("window \(n) takes 1...\(a.maxSize) bytes") }
            let buffer = try device.allocateInboundBuffer(length: Int(size), alignment: Int(a.addressAlignment))
            try device.setMemoryWindowTranslation(n, busAddress: buffer.region.busAddress, size: Int(size))
            inbound[n] = buffer
            return "mw \(n): \(hex(buffer.region.busAddress)) + \(size)"
        case let .windowClear(window):
            let n = try index(window, "window", below: device.memoryWindowCount)
            try device.clearMemoryWindowTranslation(n)
            inbound[n] = nil
            return "mw \(n): cleared"
        case let .windowRead(window, off, len, peer):
            let verb = peer ? "peer-mw" : "mw"
            let n = try index(window, "window", below: peer ? device.peerMemoryWindowCount : device.memoryWindowCount)
            let region = try self.region(peer, n)
            guard off <= UInt64(region.length), len <= UInt64(region.length) - off else {
                throw Failure("\(off)+\(len) is outside the \(region.length)-byte window (at most \(ToolOperation.maxReadBytes) bytes per read)")
            }
            var bytes = [UInt8](repeating: 0, count: Int(len))
            unsafe bytes.withUnsafeMutableBytes { unsafe region.copy(fromOffset: Int(off), into: $0) }
            return "\(verb) \(n) @\(hex(off)): " + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        case let .windowWrite(window, off, bytes, peer):
            let verb = peer ? "peer-mw" : "mw"
            let n = try index(window, "window", below: peer ? device.peerMemoryWindowCount : device.memoryWindowCount)
            let region = try self.region(peer, n)
            guard off <= UInt64(region.length), UInt64(bytes.count) <= UInt64(region.length) - off else {
                throw Failure("\(off)+\(bytes.count) is outside the \(region.length)-byte window")
            }
            unsafe bytes.withUnsafeBytes { unsafe region.copy(from: $0, toOffset: Int(off)) }
            return "\(verb) \(n) @\(hex(off)): wrote \(bytes.count) bytes"
        case .edmaPublish:
            guard let mock = device as? any EDMAModelHost else { throw Failure("edma publish needs a mock port: only the mock link hosts the eDMA engine model") }
            let locator = EDMALocator()
            _ = try mock.startEDMAModel(writeChannels: locator.dataChannels, readChannels: locator.publishedChannelCount, localInterrupt: nil)
            let p = try published ?? EDMAPeerWindow.publish(device, locator: locator, registerSize: EDMAModelFiles.registerFileSize)
            published = p
            inbound[p.window] = p.buffer
            return "edma: published in mw \(p.window) at \(hex(p.buffer.region.busAddress)): ch_cnt \(p.info.channelCount), reg_size \(hex(UInt64(p.info.registerSize)))"
        case .edmaRetract:
            guard let p = published else { throw Failure("nothing published; run `edma publish` first") }
            EDMAInfo.retract(from: p.buffer.region.mmio)
            return "edma: retracted"
        case let .edmaInjectAbort(direction, channelNumber, element):
            guard let mock = device as? any EDMAModelHost, mock.isEDMAEndpoint, published != nil else {
                throw Failure("edma inject-abort runs on the endpoint of a mock port after `edma publish`")
            }
            let model = try mock.startEDMAModel()
            let channel = try index(channelNumber, "channel", below: direction == .read ? model.configuration.readChannels : model.configuration.writeChannels)
            model.injectAbort(direction: direction, channel: channel, element: element)
            return "edma: abort armed on \(direction) channel \(channel) at element \(element)"
        case .edmaProbe:
            switch EDMAPeerWindow.probe(device, locator: EDMALocator()) {
            case let .success(window):
                validated = window
                return "edma: valid in peer-mw \(window.window): ch_cnt \(window.info.channelCount), reg_size \(hex(UInt64(window.info.registerSize)))"
            case let .failure(error):
                validated = nil
                return "edma: not usable: \(error)"
            }
        case let .edmaDMA(source, destination, length, count):
            return try dma(source: source, destination: destination, length: length, count: count)
        case .events:
            let e = device.pollEvents()
            return "events:" + (e.contains(.link) ? " link" : "") + (e.contains(.doorbell) ? " doorbell" : "") + (e.isEmpty ? " none" : "")
        case let .sleep(ms):
            usleep(UInt32(min(ms, 60_000) * 1000))
            return "slept \(ms) ms"
        }
    }

    /// `edma dma`: a chain of `count` transfers of `length` bytes at consecutive addresses.
    private func dma(source: UInt64, destination: UInt64, length: UInt32, count: Int) throws -> String {
        guard let mock = device as? any EDMAModelHost else { throw Failure("edma dma needs a mock port") }
        let step = UInt64(length)
        let transfers = (0..<UInt64(count)).map { EDMATransfer(source: source + $0 * step, destination: destination + $0 * step, length: length) }
        let completion: EDMACompletion
        if !mock.isEDMAEndpoint {
            guard let window = validated else { throw Failure("no validated eDMA window; run `edma probe` first") }
            let controller = try DWEDMAController(registers: try mock.peerEDMARegisters(), mode: .remote, ownership: .channels)
            let ll = try device.peerMemoryWindow(window.window).subregion(offset: window.layout.linkedListOffset(0), length: window.layout.pageSize)
            var channel = try controller.channel(.read, 0, ll: ll, llBusAddress: window.info.linkedListAddresses[0])
            _ = try channel.submit(transfers)
            completion = try channel.wait(timeout: .seconds(2))
        } else {
            guard published != nil else { throw Failure("run `edma publish` first (it starts the engine model)") }
            let model = try mock.startEDMAModel()
            let controller = try DWEDMAController(registers: model.registerSpace(.endpoint), mode: .local, ownership: .channels)
            let ll = try localLinkedList ?? device.allocateInboundBuffer(length: 4096, alignment: 4096)
            localLinkedList = ll
            var channel = try controller.channel(.write, 0, ll: ll.region.mmio, llBusAddress: ll.region.busAddress)
            _ = try channel.submit(transfers)
            completion = try channel.wait(timeout: .seconds(2))
        }
        switch completion {
        case .done: return "edma dma: \(step * UInt64(count)) bytes done"
        case let .aborted(abort): throw Failure("edma dma: \(abort)")
        }
    }

    private func region(_ peer: Bool, _ n: Int) throws -> MMIORegion {
        if peer { return try device.peerMemoryWindow(n) }
        guard let buffer = inbound[n] else { throw Failure("window \(n) has no inbound buffer; run `mw trans \(n) SIZE` first") }
        return buffer.region.mmio
    }
}
