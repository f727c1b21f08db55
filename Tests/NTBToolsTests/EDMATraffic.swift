import DWEDMA
import NTBHardware
import NTBMock
import NTBTools
import NTBTransport
import PCIKit
#if canImport(Glibc)
import Glibc
#endif

/// The RFC edma data path assembled from its parts (rings, channel senders, queue receivers) without
/// a queue pair, between the two sides of a mock link, either way (a test fixture: the transport's own
/// data path is `QueuePair` with the `edma` backend): the host sends with the endpoint's read
/// channels driven through the eDMA window, the endpoint with its local write channels; the receiver
/// posts its buffers by bus address and checks every byte.
///
/// Layout of each side's window-0 buffer (`mw trans 0 SIZE`, SIZE ≥ ``EDMATraffic/windowBytes``):
/// queue pair q's ring area at q·0x2000, receive slot s of q at 0x10000 + (q·16 + s)·4 KiB, and on the
/// sender a 64 KiB source pattern at 0x90000. Message m of q has a seeded random length (1-4096) and
/// comes from the pattern at a position derived from (q, m), so both sides know what it must hold.
enum EDMATraffic {
    static let areaStride = 0x2000
    static let slots = 16
    static let slotBytes = 4096
    static let receiveBase = 0x10000
    static let patternBase = 0x90000
    static let patternBytes = 0x10000
    static let windowBytes = patternBase + patternBytes
    static let maxQueuePairs = 8

    static func patternByte(_ i: Int, seed: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: i &* 13 &+ (i >> 8) &+ Int(truncatingIfNeeded: seed)) }
    static func length(_ q: Int, _ m: Int, seed: UInt64) -> Int {
        var x = seed &+ UInt64(q) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(m) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 31)) &* 0x94D0_49BB_1331_11EB
        return Int((x ^ (x >> 29)) % UInt64(slotBytes)) + 1
    }
    static func patternOffset(_ q: Int, _ m: Int) -> Int { (q &* 131 &+ m &* 977) % (patternBytes - slotBytes) }

    final class Box<T: ~Copyable> { var value: T; init(_ v: consuming T) { value = v } }

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Host: sends `count` messages on each of `queuePairs` queue pairs; returns how many completed.
    /// How the sending side reaches its eDMA: the host drives the endpoint's read channels through the
    /// validated window; the endpoint its own write channels, with LL regions in its memory.
    enum Engine {
        case remote(ValidatedEDMAWindow)
        case local(EDMAEngineModel, linkedLists: DMABuffer)
    }

    /// Sends `count` messages on each of `queuePairs` queue pairs (the pattern in `own`, this side's memory).
    static func send<Device: NTBDevice>(device: Device, edma: any EDMAModelHost, engine: Engine, own: DMABuffer, queuePairs: Int, count: Int,
                     seed: UInt64, dataChannels: Int, timeout: Duration) throws -> String {
        let peer = try device.peerMemoryWindow(0)
        let mmio = own.region.mmio
        for i in 0..<patternBytes { mmio.store8(patternByte(i, seed: seed), at: patternBase + i) }
        let controller: DWEDMAController<PostedWriteRegisterSpace>
        switch engine {
        case .remote: controller = try DWEDMAController(registers: try edma.peerEDMARegisters(), mode: .remote, ownership: .channels)
        case let .local(model, _): controller = try DWEDMAController(registers: model.registerSpace(.endpoint), mode: .local, ownership: .channels)
        }
        typealias Sender = EDMAChannelSender<MMIORegion, MMIORegion, EDMAv0Core<PostedWriteRegisterSpace>, MMIORegion>
        let tx = EDMARing.ringNumber(.transmit, isEndpoint: edma.isEDMAEndpoint)
        var senders: [Box<Sender>] = []
        for c in 0..<min(dataChannels, queuePairs) {
            let qps = Array(stride(from: c, to: queuePairs, by: dataChannels))
            let rings = qps.map {
                EDMARingSender(local: mmio.subregion(offset: $0 * areaStride + EDMARing.ringOffset(tx), length: EDMARing.size),
                               remote: peer.subregion(offset: $0 * areaStride + EDMARing.ringOffset(tx), length: EDMARing.size))
            }
            let channel: EDMAChannel<EDMAv0Core<PostedWriteRegisterSpace>, MMIORegion>
            switch engine {
            case let .remote(window):
                let ll = try device.peerMemoryWindow(window.window).subregion(offset: window.layout.linkedListOffset(c), length: window.layout.pageSize)
                channel = try controller.channel(.read, c, ll: ll, llBusAddress: window.info.linkedListAddresses[c])
            case let .local(_, lists):
                channel = try controller.channel(.write, c, ll: lists.region.mmio.subregion(offset: c * 4096, length: 4096),
                                                 llBusAddress: lists.region.busAddress + UInt64(c * 4096))
            }
            senders.append(Box(Sender(channel: channel, core: controller.core, queuePairs: qps, rings: rings, stallBound: .seconds(2))))
        }
        var sent = [Int](repeating: 0, count: queuePairs)
        var done = 0, aborted: [String] = [], bytes = 0
        let start = ContinuousClock.now, cpuStart = threadCPUSeconds()
        let deadline = start + timeout
        while done + aborted.count < queuePairs * count {
            guard ContinuousClock.now < deadline else { throw Failure(description: "edma traffic: timed out with \(done) of \(queuePairs * count) sent; is the endpoint receiving?") }
            for box in senders {
                for (r, q) in box.value.queuePairs.enumerated() {
                    while sent[q] < count {
                        let m = sent[q], n = length(q, m, seed: seed)
                        let result = box.value.enqueue(ring: r, source: own.region.busAddress + UInt64(patternBase + patternOffset(q, m)),
                                                       length: UInt32(n), cookie: UInt64(q) << 32 | UInt64(m))
                        if result == .busy { break }
                        guard result == .queued else { throw Failure(description: "edma traffic: qp \(q) message \(m): \(result)") }
                        sent[q] += 1
                    }
                }
                box.value.flush()
                let poll = box.value.poll(now: .now) { c in
                    if c.status == .ok { done += 1; bytes += c.length } else { aborted.append("\(c.cookie >> 32):\(c.cookie & 0xFFFF_FFFF)") }
                }
                if let fault = poll.fault { throw Failure(description: "edma traffic: link fault: \(fault)") }
            }
        }
        let seconds = Double((ContinuousClock.now - start).components.attoseconds) / 1e18 + Double((ContinuousClock.now - start).components.seconds)
        let cpu = threadCPUSeconds() - cpuStart, gigabytes = Double(bytes) / 1e9
        let figures = "\(formatted(gigabytes / max(seconds, 1e-9), 3)) GB/s, sender CPU \(formatted(cpu / max(gigabytes, 1e-12), 3)) s/GB"
        return "edma traffic: sent \(done) messages (\(bytes) bytes) on \(queuePairs) queue pairs, \(figures), \(aborted.count) aborted" + (aborted.isEmpty ? "" : " (\(aborted.joined(separator: " ")))")
    }

    static func formatted(_ v: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (v * scale).rounded() / scale
        return "\(r)"
    }

    /// Posts receive buffers on `queuePairs` queue pairs and checks `count` messages on each, in order.
    /// - Parameter tolerating: how many messages may be missing (aborted by the sender): a message that
    ///   is not the expected one but is exactly the next one counts the expected one as missing.
    static func receive<Device: NTBDevice>(device: Device, edma: any EDMAModelHost, own: DMABuffer, queuePairs: Int, count: Int, seed: UInt64, tolerating: Int,
                        timeout: Duration) throws -> String {
        let peer = try device.peerMemoryWindow(0)
        let mmio = own.region.mmio
        let rx = EDMARing.ringNumber(.transmit, isEndpoint: !edma.isEDMAEndpoint)   // the peer's transmit ring
        var receivers = (0..<queuePairs).map {
            EDMAQueueReceiver(ring: EDMARingReceiver(local: mmio.subregion(offset: $0 * areaStride + EDMARing.ringOffset(rx), length: EDMARing.size),
                                                     remote: peer.subregion(offset: $0 * areaStride + EDMARing.ringOffset(rx), length: EDMARing.size)))
        }
        func slotOffset(_ q: Int, _ s: Int) -> Int { receiveBase + (q * slots + s) * slotBytes }
        var posted = [Int](repeating: 0, count: queuePairs), received = posted
        func post(_ q: Int, _ n: Int) {
            for _ in 0..<n where posted[q] < count {
                let s = posted[q] % slots
                guard receivers[q].post(busAddress: own.region.busAddress + UInt64(slotOffset(q, s)), length: slotBytes, cookie: UInt64(s)) else { return }
                posted[q] += 1
            }
            receivers[q].publish()
        }
        for q in 0..<queuePairs { post(q, slots - 1) }
        var bytes = 0, missing: [String] = []
        var next = [Int](repeating: 0, count: queuePairs)   // the message expected next (received or missing before it)
        func matches(_ q: Int, _ m: Int, _ slot: Int, _ n: Int) -> Bool {
            guard m < count, n == length(q, m, seed: seed) else { return false }
            let base = patternOffset(q, m)
            for i in 0..<n where mmio.load8(at: slotOffset(q, slot) + i) != patternByte(base + i, seed: seed) { return false }
            return true
        }
        let deadline = ContinuousClock.now + timeout
        while next.reduce(0, +) < queuePairs * count {
            guard ContinuousClock.now < deadline else { throw Failure(description: "edma traffic: timed out with \(received) received") }
            for q in 0..<queuePairs {
                var got: [(Int, Int, EDMAReceiveCompletion.Status)] = []
                if case let .failure(why) = receivers[q].poll({ got.append((Int($0.cookie), $0.length, $0.status)) }) {
                    throw Failure(description: "edma traffic: qp \(q): \(why)")
                }
                for (slot, n, status) in got {
                    let m = next[q]
                    guard status == .ok else { throw Failure(description: "edma traffic: qp \(q) message \(m): \(status)") }
                    if matches(q, m, slot, n) {
                        next[q] = m + 1
                    } else if missing.count < tolerating && matches(q, m + 1, slot, n) {
                        missing.append("\(q):\(m)")
                        next[q] = m + 2
                    } else {
                        throw Failure(description: "edma traffic: qp \(q) message \(m): \(n) bytes, sent \(length(q, m, seed: seed)), or its bytes differ")
                    }
                    received[q] += 1
                    bytes += n
                }
                if !got.isEmpty { post(q, got.count) }
            }
        }
        return "edma traffic: received \(received.reduce(0, +)) messages (\(bytes) bytes) on \(queuePairs) queue pairs, every byte checked" + (missing.isEmpty ? "" : ", missing \(missing.joined(separator: " "))")
    }
}
