// edma-transport-bench: CPU time per GB on the SENDING side of the edma backend's data path, against a
// baseline measured in the same run: the CPU copy the host backend does per message (memcpy_toio of
// the payload into a memory window; the mock link's windows are shared memory, as here).
//
//   swift build -c release --product edma-transport-bench
//   .build/release/edma-transport-bench [total-MiB] [message-KiB] [queue-pairs...]
//   e.g. .build/release/edma-transport-bench 1024 64 1 4
//
// Set-up: the DW eDMA engine model (NTBMock) on its own thread stands for the silicon; it is not the
// sender and its CPU is not counted. The sender (this thread: enqueue, flush, poll, notify) and the
// receiver (a second thread: the endpoint's receive rings, reposting buffers) are timed with
// CLOCK_THREAD_CPUTIME_ID. Host → endpoint: the host drives the endpoint's read channels remotely,
// one per queue pair (qp % 4), plus the notify channel, exactly as the edma backend does.
#if canImport(Glibc)
import Glibc
#endif
import DWEDMA
import NTBMock
import NTBTransport
import CNTBShim
import PCIKit
import Synchronization

let args = CommandLine.arguments
let totalMiB = args.count > 1 ? Int(args[1]) ?? 1024 : 1024
let messageKiB = args.count > 2 ? Int(args[2]) ?? 64 : 64
let queuePairCounts = args.count > 3 ? args[3...].compactMap { Int($0) } : [1, 4]
let messageSize = messageKiB * 1024
precondition(messageSize > 0 && messageSize <= 1 << 20 && totalMiB > 0)

func threadCPU() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
}
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

let epBus: UInt64 = 0x1000_0000, hostBus: UInt64 = 0x8_0000_0000
let page = 4096, dataChannels = 4, posted = 127
let perQueuePairBytes = posted * messageSize
let arenaSize = 0x10_0000 + 4 * perQueuePairBytes + 0x10_0000

struct Result { var cpu: Duration; var wall: Duration; var bytes: Int; var receiverCPU: Duration }

func runEDMA(queuePairs: Int) throws -> Result {
    var template = Array("/tmp/edma-transport-bench-XXXXXX".utf8CString)
    _ = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    let dir = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    defer {
        for f in ["ep-mem", "host-mem", EDMAModelFiles.registers, EDMAModelFiles.rings] { unlink(dir + "/" + f) }
        rmdir(dir)
    }
    let ep = try SharedMemoryArena(path: dir + "/ep-mem", busBase: epBus, length: arenaSize)
    let host = try SharedMemoryArena(path: dir + "/host-mem", busBase: hostBus, length: arenaSize)
    let epInterrupt = try EventNotifier()
    let model = try EDMAEngineModel(EDMAModelConfiguration(
        directory: dir, writeChannels: dataChannels, readChannels: dataChannels + 1,
        localSpace: BusAddressSpace([ep.segment]), pcieSpace: BusAddressSpace([host.segment]), localInterrupt: epInterrupt))
    defer { model.stop() }

    // Endpoint publishes the eDMA window at the start of its RAM; the host validates it.
    let layout = EDMAWindowLayout(pageSize: page, registerSize: EDMAModelFiles.registerFileSize, channelCount: dataChannels + 1)
    let window = ep.region.mmio.subregion(offset: 0, length: 0x10000)
    EDMAInfo(registerSize: UInt32(layout.registerSize), notifyAddress: epBus + UInt64(layout.notifyOffset),
             linkedListAddresses: (0...dataChannels).map { epBus + UInt64(layout.linkedListOffset($0)) }).publish(into: window)
    let v = try EDMAInfo.validate(window: window, windowIndex: 1, expecting: EDMAWindowExpectation(pageSize: page, peerWindowBase: epBus))
    let controller = try DWEDMAController(registers: model.registerSpace(.host), mode: .remote, ownership: .channels)

    // QP areas: host copies at host RAM 0x10000 + q·0x2000, endpoint copies at EP RAM 0x20000 + q·0x2000.
    func area(_ m: MMIORegion, _ base: Int, _ q: Int) -> MMIORegion { m.subregion(offset: base + q * 0x2000, length: EDMARing.queuePairAreaSize) }
    func ring(_ a: MMIORegion) -> MMIORegion { a.subregion(offset: EDMARing.ringOffset(0), length: EDMARing.size) }
    typealias Sender = EDMAChannelSender<MMIORegion, MMIORegion, EDMAv0Core<PostedWriteRegisterSpace>, MMIORegion>
    final class Box { var s: Sender; init(_ s: consuming Sender) { self.s = s } }
    var senders: [Box] = []
    for c in 0..<min(dataChannels, queuePairs) {
        let qps = Array(stride(from: c, to: queuePairs, by: dataChannels))
        let rings = qps.map { EDMARingSender(local: ring(area(host.region.mmio, 0x10000, $0)), remote: ring(area(ep.region.mmio, 0x20000, $0))) }
        senders.append(Box(Sender(channel: try controller.channel(.read, c, ll: window.subregion(offset: v.layout.linkedListOffset(c), length: page),
                                                                   llBusAddress: v.info.linkedListAddresses[c]),
                                  core: controller.core, queuePairs: qps, rings: rings, stallBound: .seconds(5))))
    }
    // Sleep on the channels' DONE IMWr (an MSI in the host) instead of spinning.
    let done = try EventNotifier()
    model.registerMSI(address: 0xFEE0_0000, data: nil, notifier: done)
    for (c, box) in senders.enumerated() { box.s.useInterrupt(msiAddress: 0xFEE0_0000, baseData: 0x40, vector: UInt16(c)) }
    host.region.mmio.store32(1, at: 0x8000)
    var notifier = EDMAHostNotifier(page: window.subregion(offset: v.layout.notifyOffset, length: page),
                                    channel: try controller.channel(.read, dataChannels, ll: window.subregion(offset: v.layout.linkedListOffset(dataChannels), length: page),
                                                                    llBusAddress: v.info.linkedListAddresses[dataChannels]),
                                    source: hostBus + 0x8000, target: v.info.notifyAddress)

    // Receiver thread: the endpoint's receive rings (posting its RAM buffers by bus address).
    let total = totalMiB << 20
    let messages = total / messageSize
    let stop = Atomic<Bool>(false)
    let receivedBytes = Atomic<Int>(0)
    let receiverCPU = Atomic<Int64>(0)
    let epMemory = ep.region.mmio, hostMemory = host.region.mmio
    let receiverThread = Thread {
        var receivers = (0..<queuePairs).map { q in
            EDMAQueueReceiver(ring: EDMARingReceiver(local: ring(area(epMemory, 0x20000, q)), remote: ring(area(hostMemory, 0x10000, q))))
        }
        for q in 0..<queuePairs {
            for s in 0..<posted {
                _ = receivers[q].post(busAddress: epBus + UInt64(0x10_0000 + q * perQueuePairBytes + s * messageSize), length: messageSize, cookie: UInt64(s))
            }
            receivers[q].publish()
        }
        let start = threadCPU()
        var got = 0
        while !stop.load(ordering: .relaxed) {
            // Interrupt-driven, as the endpoint would be: sleep until the notify channel completes.
            if epInterrupt.wait(timeout: .microseconds(500)) { epInterrupt.consume(); _ = EDMANotifyPage.collect(epMemory.subregion(offset: layout.notifyOffset, length: page), queuePairs: queuePairs) }
            var any = false
            for q in 0..<queuePairs {
                var slots: [UInt64] = []
                _ = receivers[q].poll { c in got += c.length; slots.append(c.cookie) }
                for s in slots {
                    _ = receivers[q].post(busAddress: epBus + UInt64(0x10_0000 + q * perQueuePairBytes + Int(s) * messageSize), length: messageSize, cookie: s)
                }
                if !slots.isEmpty { receivers[q].publish(); any = true }
            }
            if any { receivedBytes.store(got, ordering: .relaxed) }
        }
        receiverCPU.store(Int64(seconds(threadCPU() - start) * 1e9), ordering: .relaxed)
    }

    // Sender: this thread.
    let clock = ContinuousClock()
    let wallStart = clock.now
    let cpuStart = threadCPU()
    var queued = 0, completed = 0, progressed = false, passes = 0, sleeps = 0
    var next = [Int](repeating: 0, count: queuePairs)
    while completed < messages {
        for box in senders {
            for (r, q) in box.s.queuePairs.enumerated() where queued < messages {
                while queued < messages {
                    let source = hostBus + UInt64(0x10_0000 + q * perQueuePairBytes + next[q] % posted * messageSize)
                    if box.s.enqueue(ring: r, source: source, length: UInt32(messageSize), cookie: 0) != .queued { break }
                    next[q] += 1
                    queued += 1
                }
            }
            box.s.flush()
            let p = box.s.poll(now: clock.now) { _ in completed += 1 }
            if let fault = p.fault { print("edma-transport-bench: \(fault)"); exit(1) }
            if p.notify != 0 { notifier.notify(p.notify) }
            progressed = progressed || p.completed > 0
        }
        // Nothing finished in this pass: sleep until a channel's DONE interrupt.
        if !progressed { sleeps += 1; if done.wait(timeout: .milliseconds(2)) { done.consume() } }
        progressed = false
        passes += 1
    }
    var chains: UInt64 = 0
    for box in senders { chains += box.s.counters.submissions }
    print("  passes \(passes), sleeps \(sleeps), chains \(chains), notify DMAs \(notifier.transfers), messages \(messages)")
    let cpu = threadCPU() - cpuStart
    let wall = clock.now - wallStart
    while receivedBytes.load(ordering: .relaxed) < messages * messageSize && clock.now - wallStart < .seconds(60) { sched_yield() }
    stop.store(true, ordering: .relaxed)
    receiverThread.join()
    return Result(cpu: cpu, wall: wall, bytes: messages * messageSize, receiverCPU: .nanoseconds(receiverCPU.load(ordering: .relaxed)))
}

/// The host backend's per-message CPU work on the sender: copy the payload into the peer's memory
/// window (memcpy_toio into a shared mapping, as on the mock link).
func runCopyBaseline() -> Result {
    // A 64 MiB window and 8 MiB of sources, so the copy is not served from cache.
    let slots = max(1, (64 << 20) / messageSize), sources = max(1, (8 << 20) / messageSize)
    let window = UnsafeMutableRawPointer.allocate(byteCount: slots * messageSize, alignment: 4096)
    let source = UnsafeMutableRawPointer.allocate(byteCount: sources * messageSize, alignment: 4096)
    memset(window, 0, slots * messageSize); memset(source, 0x5A, sources * messageSize)
    defer { window.deallocate(); source.deallocate() }
    let messages = (totalMiB << 20) / messageSize
    let clock = ContinuousClock()
    let wallStart = clock.now
    let cpuStart = threadCPU()
    for m in 0..<messages { ntb_memcpy_toio(window + (m % slots) * messageSize, source + (m % sources) * messageSize, UInt(messageSize)) }
    return Result(cpu: threadCPU() - cpuStart, wall: clock.now - wallStart, bytes: messages * messageSize, receiverCPU: .zero)
}

/// A joinable thread (pthread) for the receiver.
final class Thread {
    var handle = pthread_t()
    init(_ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(BodyBox(body)).toOpaque()
        pthread_create(&handle, nil, { raw in
            let b = Unmanaged<BodyBox>.fromOpaque(raw!).takeRetainedValue()
            b.body()
            return nil
        }, box)
    }
    func join() { pthread_join(handle, nil) }
}
final class BodyBox { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }

func perGB(_ r: Result) -> Double { seconds(r.cpu) / (Double(r.bytes) / 1e9) }

let baseline = runCopyBaseline()
print("message \(messageKiB) KiB, \(totalMiB) MiB per run")
func fmt(_ v: Double, _ digits: Int = 4) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (v * scale).rounded() / scale
    return String(r)
}
let baselinePerGB = perGB(baseline)
let baselineRate = Double(baseline.bytes) / 1e9 / seconds(baseline.wall)
print("copy baseline (host backend's memcpy_toio): sender CPU \(fmt(baselinePerGB)) s/GB, \(fmt(baselineRate, 2)) GB/s")
var single: Double?
for q in queuePairCounts {
    let r = try runEDMA(queuePairs: q)
    let gigabytes: Double = Double(r.bytes) / 1e9
    let gbps: Double = gigabytes / seconds(r.wall)
    if single == nil { single = gbps }
    let senderPerGB: Double = perGB(r)
    let percent: Double = 100 * senderPerGB / baselinePerGB
    let receiverPerGB: Double = seconds(r.receiverCPU) / gigabytes
    let ratio: Double = gbps / single!
    print("edma \(q) QP over \(min(q, dataChannels)) channels: sender CPU \(fmt(senderPerGB)) s/GB (\(fmt(percent, 1)) % of baseline), receiver CPU \(fmt(receiverPerGB)) s/GB, \(fmt(gbps, 2)) GB/s (\(fmt(ratio, 2))x the first row)")
}
