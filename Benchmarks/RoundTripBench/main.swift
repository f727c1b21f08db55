// roundtrip-bench: the cost of one 64-byte round trip through the host backend's data path, without
// any waiting: both sides of a mock link live in this process and ONE thread plays both, in lock step
// (host send → endpoint poll (receive) → endpoint send (echo) → host poll (receive + send completion)).
// What it measures is the work the data path does per round trip (QueuePair.send + poll on each side,
// the copies, barriers and doorbells), which the two-process pingpong adds its wake-up latency to.
//
//   swift build -c release --product roundtrip-bench
//   .build/release/roundtrip-bench [roundTrips] [size]        (defaults 1000000 64)
//
// Instructions per round trip (load-independent): run it under callgrind with two counts, one thread
// per output file, and divide the difference of the main thread's totals by the extra round trips:
//   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=cg.%p.a .build/release/roundtrip-bench 20000
//   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=cg.%p.b .build/release/roundtrip-bench 120000
//   grep -h '^summary' cg.*.a-01 cg.*.b-01      # thread 1 = this loop; (b − a) / 100000
#if canImport(Glibc)
import Glibc
#endif
import BenchSupport
import NTBHardware
import NTBMock
import NTBTransport

let args = CommandLine.arguments
let roundTrips = args.count > 1 ? Int(args[1]) ?? 1_000_000 : 1_000_000
let size = args.count > 2 ? Int(args[2]) ?? 64 : 64
precondition(roundTrips > 0 && size > 0)

let pair = try MockHostPair(name: "roundtrip-bench", linkTimeout: .seconds(60))
let a = pair.hostQP, b = pair.endpointQP
let clock = ContinuousClock()
precondition(size <= a.maxPayload, "size must be at most \(a.maxPayload)")

let slots = 64
let bufA = UnsafeMutableRawPointer.allocate(byteCount: slots * size, alignment: 64)
let bufB = UnsafeMutableRawPointer.allocate(byteCount: slots * size, alignment: 64)
for i in 0..<slots {
    try a.postReceive(UnsafeMutableRawBufferPointer(start: bufA + i * size, count: size), cookie: UInt64(i))
    try b.postReceive(UnsafeMutableRawBufferPointer(start: bufB + i * size, count: size), cookie: UInt64(i))
}
let message = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
for i in 0..<size { message[i] = UInt8(truncatingIfNeeded: i) }

/// One side's half: poll until one message arrived (reposting its buffer), return its length.
@MainActor @inline(__always)
func receiveOne(_ qp: QueuePair<MockNTBDevice, HostBackend>, _ base: UnsafeMutableRawPointer) -> Int {
    var got = -1
    while got < 0 {
        qp.poll { c in
            guard c.kind == .receive, c.status == .ok else { return }
            got = c.length
            try? qp.postReceive(UnsafeMutableRawBufferPointer(start: base + Int(c.cookie) * size, count: size), cookie: c.cookie)
        }
    }
    return got
}

@MainActor @inline(never)
func run(_ n: Int) -> Int {
    var bytes = 0
    let m = UnsafeRawBufferPointer(message)
    for _ in 0..<n {
        try! a.send(m, cookie: 0)
        let l = receiveOne(b, bufB)
        try! b.send(UnsafeRawBufferPointer(start: bufB, count: l), cookie: 0)
        bytes &+= receiveOne(a, bufA)
    }
    return bytes
}

_ = run(min(10_000, roundTrips))
let start = clock.now
let bytes = run(roundTrips)
let elapsed = clock.now - start
precondition(bytes == roundTrips * size)
let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
print("host backend, one thread playing both sides of a mock link, \(size)-byte round trips (no waiting):")
print("  \(roundTrips) round trips in \(ns / 1e9) s: \(ns / Double(roundTrips)) ns per round trip")
print("  counters: host tx_pkts \(a.counters[.txPackets]) rx_pkts \(a.counters[.rxPackets]) doorbells \(a.counters[.doorbells])")
message.deallocate()
pair.close()
bufA.deallocate()
bufB.deallocate()
