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
    /// Whether `edma traffic` ran on the current window-0 buffer: its rings hold that run's indices.
    private var trafficAreaUsed = false
    /// Endpoint: the write channels' LL regions for `edma traffic send`.
    private var localLinkedLists: DMABuffer?
    /// Endpoint: the write channel's LL region for `edma dma`.
    private var localLinkedList: DMABuffer?

    public init(device: Device) { self.device = device }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ text: String) { description = text }
    }

    public static var help: String {
        """
        link up|down|status              enable, disable or show the link (ntb_tool: link)
        link wait up|down [ms]           wait for the link state (default 5000 ms)
        spad count | spad read N | spad write N V              own scratchpads
        peer-spad read N | peer-spad write N V                 the peer's scratchpads
        db valid|read|mask-show | db clear|mask|unmask BITS    own doorbells (ntb_tool: db, db_mask)
        db ring BITS                     ring the peer's doorbells (ntb_tool: peer_db)
        db wait [ms]                     wait for a doorbell event, print the pending bits
        mw info                          inbound and outbound window sizes and alignment
        mw trans N SIZE | mw clear N     allocate an inbound buffer and translate window N to it (mw_transN)
        mw read N OFF LEN | mw write N OFF HEX      own inbound buffer of window N (ntb_tool: mwN)
        peer-mw read N OFF LEN | peer-mw write N OFF HEX   the peer's memory through outbound window N
        edma publish | edma retract      endpoint (mock link): start the DW eDMA engine model, publish the eDMA window
        edma probe                       host: read and validate the eDMA window the peer published
        edma dma SRC DST LEN [COUNT]     a chain of COUNT DMAs of LEN bytes (consecutive addresses): endpoint with
                                         local write channel 0, host with remote read channel 0 through the window
        edma inject-abort read|write CH ELEMENT   endpoint: the model aborts that channel at that element once
        edma traffic send|receive QPS COUNT SEED [ABORTS]   the RFC data path (after `mw trans 0 SIZE` on both sides):
                                         one side sends COUNT messages per queue pair, the other checks them
                                         (receive: up to ABORTS messages may be missing, each named)
                                         (once per window-0 buffer: the rings keep that run's indices)
        events | sleep MS | help
        Numbers are decimal or 0x-prefixed hex; HEX data is a string of hex digit pairs.
        """
    }

    /// Runs one command line and returns its output.
    public func run(_ line: String) throws -> String {
        let w = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let verb = w.first else { return "" }
        func arg(_ i: Int, _ name: String) throws -> String {
            guard i < w.count else { throw Failure("`\(w.prefix(2).joined(separator: " "))` needs \(name); try `help`") }
            return w[i]
        }
        func num(_ i: Int, _ name: String) throws -> UInt64 {
            let s = try arg(i, name)
            let v = s.hasPrefix("0x") || s.hasPrefix("0X") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
            guard let v else { throw Failure("\(name) `\(s)` is not a number (decimal or 0x hex)") }
            return v
        }
        func index(_ i: Int, _ name: String, below limit: Int) throws -> Int {
            let v = try num(i, name)
            guard v < UInt64(limit) else { throw Failure("\(name) \(v) is out of range (0...\(limit - 1))") }
            return Int(v)
        }
        func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        func wait(_ ms: UInt64, until done: () -> Bool) -> Bool {
            let deadline = ContinuousClock.now + .milliseconds(Int(ms))
            while !done() {
                let left = deadline - ContinuousClock.now
                if left <= .zero { return false }
                _ = device.waitForEvents(timeout: min(left, .milliseconds(50)))
            }
            return true
        }

        switch (verb, w.count > 1 ? w[1] : "") {
        case ("help", _):
            return Self.help
        case ("link", "up"):
            try device.enableLink()
            return "link: \(device.isLinkUp ? "up" : "enabled")"
        case ("link", "down"):
            try device.disableLink()
            return "link: down"
        case ("link", "status"):
            return "link: \(device.isLinkUp ? "up" : "down")"
        case ("link", "wait"):
            let want = try arg(2, "up or down")
            guard want == "up" || want == "down" else { throw Failure("link wait: expected up or down") }
            let ms = w.count > 3 ? try num(3, "milliseconds") : 5000
            guard wait(ms, until: { device.isLinkUp == (want == "up") }) else {
                throw Failure("link did not go \(want) within \(ms) ms; is the peer running?")
            }
            return "link: \(want)"
        case ("spad", "count"):
            return "spads: \(device.scratchpadCount)"
        case ("spad", "read"):
            let i = try index(2, "scratchpad", below: device.scratchpadCount)
            return "spad[\(i)] = \(hex(UInt64(device.readScratchpad(i))))"
        case ("spad", "write"):
            let i = try index(2, "scratchpad", below: device.scratchpadCount)
            let v = try num(3, "value")
            guard v <= UInt64(UInt32.max) else { throw Failure("scratchpads hold 32 bits; \(hex(v)) is too big") }
            device.writeScratchpad(i, UInt32(v))
            return "spad[\(i)] = \(hex(v))"
        case ("peer-spad", "read"):
            let i = try index(2, "scratchpad", below: device.scratchpadCount)
            return "peer-spad[\(i)] = \(hex(UInt64(device.readPeerScratchpad(i))))"
        case ("peer-spad", "write"):
            let i = try index(2, "scratchpad", below: device.scratchpadCount)
            let v = try num(3, "value")
            guard v <= UInt64(UInt32.max) else { throw Failure("scratchpads hold 32 bits; \(hex(v)) is too big") }
            device.writePeerScratchpad(i, UInt32(v))
            return "peer-spad[\(i)] = \(hex(v))"
        case ("db", "valid"):
            return "db valid: \(hex(device.doorbellValidMask))"
        case ("db", "read"):
            _ = device.pollEvents()
            return "db: \(hex(device.readDoorbell()))"
        case ("db", "clear"):
            device.clearDoorbell(try num(2, "bits"))
            return "db: \(hex(device.readDoorbell()))"
        case ("db", "mask"), ("db", "unmask"):
            let bits = try num(2, "bits")
            guard bits & ~device.doorbellValidMask == 0 else { throw Failure("bits \(hex(bits)) outside the valid mask \(hex(device.doorbellValidMask))") }
            if w[1] == "mask" { device.setDoorbellMask(bits) } else { device.clearDoorbellMask(bits) }
            return "db \(w[1]): \(hex(bits))"
        case ("db", "ring"):
            let bits = try num(2, "bits")
            guard bits != 0 && bits & ~device.doorbellValidMask == 0 else {
                throw Failure("bits \(hex(bits)) must be non-zero and inside the valid mask \(hex(device.doorbellValidMask))")
            }
            device.ringPeerDoorbell(bits)
            return "peer db: \(hex(bits))"
        case ("db", "wait"):
            let ms = w.count > 2 ? try num(2, "milliseconds") : 5000
            guard wait(ms, until: { device.readDoorbell() != 0 }) else { throw Failure("no doorbell within \(ms) ms") }
            return "db: \(hex(device.readDoorbell()))"
        case ("mw", "info"):
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
        case ("mw", "trans"):
            let n = try index(2, "window", below: device.memoryWindowCount)
            let size = try num(3, "size")
            let a = try device.memoryWindowAlignment(n)
            guard size > 0 && size <= a.maxSize else { throw Failure("window \(n) takes 1...\(a.maxSize) bytes") }
            let buffer = try device.allocateInboundBuffer(length: Int(size), alignment: Int(a.addressAlignment))
            try device.setMemoryWindowTranslation(n, busAddress: buffer.region.busAddress, size: Int(size))
            inbound[n] = buffer
            if n == 0 { trafficAreaUsed = false }   // a new, zeroed buffer
            return "mw \(n): \(hex(buffer.region.busAddress)) + \(size)"
        case ("mw", "clear"):
            let n = try index(2, "window", below: device.memoryWindowCount)
            try device.clearMemoryWindowTranslation(n)
            inbound[n] = nil
            return "mw \(n): cleared"
        case ("mw", "read"), ("peer-mw", "read"):
            let n = try index(2, "window", below: verb == "mw" ? device.memoryWindowCount : device.peerMemoryWindowCount)
            let region = try self.region(verb, n)
            let off = try num(3, "offset"), len = try num(4, "length")
            guard off <= UInt64(region.length), len <= UInt64(region.length) - off, len <= 4096 else {
                throw Failure("\(off)+\(len) is outside the \(region.length)-byte window (at most 4096 bytes per read)")
            }
            var bytes = [UInt8](repeating: 0, count: Int(len))
            unsafe bytes.withUnsafeMutableBytes { unsafe region.copy(fromOffset: Int(off), into: $0) }
            return "\(verb) \(n) @\(hex(off)): " + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        case ("mw", "write"), ("peer-mw", "write"):
            let n = try index(2, "window", below: verb == "mw" ? device.memoryWindowCount : device.peerMemoryWindowCount)
            let region = try self.region(verb, n)
            let off = try num(3, "offset")
            let text = try arg(4, "hex data")
            var bytes: [UInt8] = []
            var i = text.startIndex
            while i < text.endIndex {
                let j = text.index(i, offsetBy: 2, limitedBy: text.endIndex) ?? text.endIndex
                guard let b = UInt8(text[i..<j], radix: 16), text.distance(from: i, to: j) == 2 else { throw Failure("hex data must be pairs of hex digits") }
                bytes.append(b)
                i = j
            }
            guard off <= UInt64(region.length), UInt64(bytes.count) <= UInt64(region.length) - off else {
                throw Failure("\(off)+\(bytes.count) is outside the \(region.length)-byte window")
            }
            unsafe bytes.withUnsafeBytes { unsafe region.copy(from: $0, toOffset: Int(off)) }
            return "\(verb) \(n) @\(hex(off)): wrote \(bytes.count) bytes"
        case ("edma", "publish"):
            guard let mock = device as? any EDMAModelHost else { throw Failure("edma publish needs a mock port: only the mock link hosts the eDMA engine model") }
            let locator = EDMALocator()
            _ = try mock.startEDMAModel(writeChannels: locator.dataChannels, readChannels: locator.publishedChannelCount, localInterrupt: nil)
            let p = try published ?? EDMAPeerWindow.publish(device, locator: locator, registerSize: EDMAModelFiles.registerFileSize)
            published = p
            inbound[p.window] = p.buffer
            return "edma: published in mw \(p.window) at \(hex(p.buffer.region.busAddress)): ch_cnt \(p.info.channelCount), reg_size \(hex(UInt64(p.info.registerSize)))"
        case ("edma", "retract"):
            guard let p = published else { throw Failure("nothing published; run `edma publish` first") }
            EDMAInfo.retract(from: p.buffer.region.mmio)
            return "edma: retracted"
        case ("edma", "inject-abort"):
            guard let mock = device as? any EDMAModelHost, mock.isEDMAEndpoint, published != nil else {
                throw Failure("edma inject-abort runs on the endpoint of a mock port after `edma publish`")
            }
            let name = try arg(2, "read or write")
            guard let direction = EDMADirection.allCases.first(where: { "\($0)" == name }) else { throw Failure("edma inject-abort: expected read or write, not `\(name)`") }
            let model = try mock.startEDMAModel()
            let channel = try index(3, "channel", below: direction == .read ? model.configuration.readChannels : model.configuration.writeChannels)
            let element = try num(4, "element")
            model.injectAbort(direction: direction, channel: channel, element: Int(element))
            return "edma: abort armed on \(name) channel \(channel) at element \(element)"
        case ("edma", "traffic"):
            guard let mock = device as? any EDMAModelHost else { throw Failure("edma traffic needs a mock port") }
            let way = try arg(2, "send or receive")
            guard way == "send" || way == "receive" else { throw Failure("edma traffic: expected send or receive, not `\(way)`") }
            let qps = Int(try num(3, "queue pairs")), count = Int(try num(4, "messages per queue pair")), seed = try num(5, "seed")
            guard (1...EDMATraffic.maxQueuePairs).contains(qps), (1...100_000).contains(count) else {
                throw Failure("edma traffic: 1...\(EDMATraffic.maxQueuePairs) queue pairs and 1...100000 messages")
            }
            guard let own = inbound[0], own.region.length >= EDMATraffic.windowBytes else {
                throw Failure("edma traffic: run `mw trans 0 \(EDMATraffic.windowBytes)` (or more) on both sides first")
            }
            // The rings keep free-running indices: a second run needs fresh (zeroed) areas on both sides.
            guard !trafficAreaUsed else {
                throw Failure("edma traffic: this window-0 buffer's rings were used by the last run; run `mw trans 0 SIZE` on both sides first")
            }
            trafficAreaUsed = true
            if way == "receive" {
                let tolerating = w.count > 6 ? Int(try num(6, "aborted messages to tolerate")) : 0
                return try EDMATraffic.receive(device: device, edma: mock, own: own, queuePairs: qps, count: count, seed: seed, tolerating: tolerating,
                                               timeout: .seconds(30))
            }
            if !mock.isEDMAEndpoint {
                guard let window = validated else { throw Failure("no validated eDMA window; run `edma probe` first") }
                return try EDMATraffic.send(device: device, edma: mock, engine: .remote(window), own: own, queuePairs: qps, count: count, seed: seed,
                                            dataChannels: window.info.channelCount - 1, timeout: .seconds(30))
            }
            guard published != nil else { throw Failure("run `edma publish` first (it starts the engine model)") }
            let dataChannels = EDMALocator().dataChannels
            let lists = try localLinkedLists ?? device.allocateInboundBuffer(length: dataChannels * 4096, alignment: 4096)
            localLinkedLists = lists
            return try EDMATraffic.send(device: device, edma: mock, engine: .local(try mock.startEDMAModel(), linkedLists: lists), own: own,
                                        queuePairs: qps, count: count, seed: seed, dataChannels: dataChannels, timeout: .seconds(30))
        case ("edma", "probe"):
            switch EDMAPeerWindow.probe(device, locator: EDMALocator()) {
            case let .success(window):
                validated = window
                return "edma: valid in peer-mw \(window.window): ch_cnt \(window.info.channelCount), reg_size \(hex(UInt64(window.info.registerSize)))"
            case let .failure(error):
                validated = nil
                return "edma: not usable: \(error)"
            }
        case ("edma", "dma"):
            guard let mock = device as? any EDMAModelHost else { throw Failure("edma dma needs a mock port") }
            let source = try num(2, "source bus address"), destination = try num(3, "destination bus address")
            let length = try num(4, "length"), count = w.count > 5 ? try num(5, "count") : 1
            guard length > 0 && length <= UInt64(UInt32.max) else { throw Failure("edma dma: the length must be 1...\(UInt32.max)") }
            guard count > 0 && count <= 64 else { throw Failure("edma dma: the count must be 1...64 (one LL page)") }
            let transfers = (0..<count).map { EDMATransfer(source: source + $0 * length, destination: destination + $0 * length, length: UInt32(length)) }
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
            case .done: return "edma dma: \(length * count) bytes done"
            case let .aborted(abort): throw Failure("edma dma: \(abort)")
            }
        case ("events", _):
            let e = device.pollEvents()
            return "events:" + (e.contains(.link) ? " link" : "") + (e.contains(.doorbell) ? " doorbell" : "") + (e.isEmpty ? " none" : "")
        case ("sleep", _):
            let ms = try num(1, "milliseconds")
            usleep(UInt32(min(ms, 60_000) * 1000))
            return "slept \(ms) ms"
        default:
            throw Failure("unknown tool command `\(line)`; try `help`")
        }
    }

    private func region(_ verb: String, _ n: Int) throws -> MMIORegion {
        if verb == "peer-mw" { return try device.peerMemoryWindow(n) }
        guard let buffer = inbound[n] else { throw Failure("window \(n) has no inbound buffer; run `mw trans \(n) SIZE` first") }
        return buffer.region.mmio
    }
}
