// transport-bench: the host backend's data path in steady state — message rate, and heap allocations
// per message. Both sides of a mock link run in this process (sender on the main thread, receiver on a
// second one), through the same QueuePair API the tools use.
//
//   swift build -c release --product transport-bench
//   .build/release/transport-bench [messages] [size] [batch] [mtu]  (defaults 2000000 64 64 65536)
//
// Allocations per message: run it under valgrind with two message counts and compare the totals
// ("total heap usage: N allocs") — the difference divided by the extra messages is the per-message
// figure (0 means set-up allocates, the data path does not):
//   valgrind .build/release/transport-bench 20000 64 64 2>&1 | grep 'total heap usage'
//   valgrind .build/release/transport-bench 220000 64 64 2>&1 | grep 'total heap usage'
#if canImport(Glibc)
import Glibc
#endif
import BenchSupport
import NTBHardware
import NTBMock
import NTBTransport
import Synchronization

let args = CommandLine.arguments
let messages = args.count > 1 ? Int(args[1]) ?? 2_000_000 : 2_000_000
let size = args.count > 2 ? Int(args[2]) ?? 64 : 64
let batch = args.count > 3 ? Int(args[3]) ?? 64 : 64
let mtu = args.count > 4 ? Int(args[4]) ?? 0x10000 : 0x10000
let warmup = min(100_000, max(messages / 10, 1000))
precondition(messages > 0 && size > 0 && batch > 0)

typealias QP = QueuePair<MockNTBDevice, HostBackend>

final class Shared: @unchecked Sendable {
    let qp: QP; let expected: Int; let done = Atomic<Int>(0)
    init(qp: QP, expected: Int) { self.qp = qp; self.expected = expected }
}

// Both queue pairs linked (polled by this thread until up; then the receiver thread takes one).
let pair = try MockHostPair(name: "transport-bench", mtu: mtu, linkTimeout: .seconds(30))
defer { pair.close() }
let tx = pair.hostQP, rxQP = pair.endpointQP
let clock = ContinuousClock()
precondition(size <= tx.maxPayload, "size must be at most \(tx.maxPayload)")

// Receiver: 256 posted buffers, reposted as they complete.
let buffers = UnsafeMutableRawPointer.allocate(byteCount: 256 * tx.maxPayload, alignment: 4096)
for i in 0..<256 { try rxQP.postReceive(UnsafeMutableRawBufferPointer(start: buffers + i * tx.maxPayload, count: tx.maxPayload), cookie: UInt64(i)) }
let shared = Shared(qp: rxQP, expected: warmup + messages)
let bufferBase = UInt(bitPattern: buffers), stride = tx.maxPayload
let receiver = try TransportThread(name: "bench-rx") {
    let qp = shared.qp
    var received = 0
    while received < shared.expected {
        let n = qp.poll(limit: 256) { c in
            guard c.kind == .receive, c.status == .ok else { return }
            received &+= 1
            let base = UnsafeMutableRawPointer(bitPattern: bufferBase + UInt(c.cookie) * UInt(stride))!
            try? qp.postReceive(UnsafeMutableRawBufferPointer(start: base, count: stride), cookie: c.cookie)
        }
        if n == 0 { _ = qp.wait(timeout: .milliseconds(1)) }
        shared.done.store(received, ordering: .relaxed)
    }
}

let message = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
for i in 0..<size { message[i] = UInt8(truncatingIfNeeded: i) }
let bytes = UnsafeRawBufferPointer(message)

@MainActor func send(_ count: Int) {
    var sent = 0
    while sent < count {
        let n = (try? tx.sendBatch(count: min(batch, count - sent)) { _ in (bytes, 0) }) ?? 0
        sent += n
        if n < batch { if tx.poll(limit: 0, { _ in }) == 0 { _ = tx.wait(timeout: .milliseconds(1)) } }
    }
}

send(warmup)
let cpu0 = TransportThread.processCPUSeconds()
let start = clock.now
send(messages)
while shared.done.load(ordering: .relaxed) < warmup + messages { tx.poll(limit: 0) { _ in } }
let elapsed = clock.now - start
let cpu = TransportThread.processCPUSeconds() - cpu0
receiver.join()
let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
print("host backend, one process, sender + receiver threads, \(size)-byte messages, batches of \(batch), MTU \(mtu):")
let rate: Double = Double(messages) / s / 1e6
let gbps: Double = Double(messages * size) / s / 1e9
let cpuPerGB: Double = cpu / (Double(messages * size) / 1e9)
print("  \(messages) messages in \(s) s: \(rate) M msg/s, \(gbps) GB/s, \(cpuPerGB) CPU s per GB (both threads)")
print("  counters: tx_pkts \(tx.counters[.txPackets]) rx_pkts \(rxQP.counters[.rxPackets]) tx_ring_full \(tx.counters[.txRingFull]) doorbells \(tx.counters[.doorbells])")
message.deallocate()
buffers.deallocate()
