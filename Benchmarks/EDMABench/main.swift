// edma-bench: CPU cost of the DW eDMA driver per submitted LL element, against a baseline measured in
// the same run, and a steady-state loop for allocation counting under valgrind.
//
//   swift build -c release --product edma-bench
//   .build/release/edma-bench [iterations] [elements-per-submission]
//   valgrind .build/release/edma-bench 1000 16   vs   valgrind .build/release/edma-bench 2000 16
//     → equal "total heap usage: N allocs" means zero allocations per submission.
//   valgrind --tool=callgrind … edma-bench N 16 driver  (and baseline): instructions per element from the
//     difference between two iteration counts. (Valgrind needs a stripped copy: it cannot read Swift's DWARF 5.)
//
// The driver runs against plain memory standing in for the register BAR and the LL region (the
// hardware path: MMIORegion, one volatile access per register or LL field); completion is simulated by
// setting the channel's DONE bit, so the loop measures submit + poll + W1C and nothing else.
#if canImport(Glibc)
import Glibc
#endif
import DWEDMA
import PCIKit

let args = CommandLine.arguments
let iterations = args.count > 1 ? Int(args[1]) ?? 200_000 : 200_000
let elements = args.count > 2 ? Int(args[2]) ?? 16 : 16
let which = args.count > 3 ? args[3] : "both"   // both | driver | baseline (for callgrind deltas)
precondition(elements >= 1 && elements <= 169)

let regsMemory = UnsafeMutableRawPointer.allocate(byteCount: 0x2000, alignment: 4096)
let llMemory = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
memset(regsMemory, 0, 0x2000); memset(llMemory, 0, 4096)
let regs = MMIORegion(base: regsMemory, length: 0x2000)
regs.store32(ControlRegister(writeChannels: 1, readChannels: 1).rawValue, at: EDMARegisters.ctrl)
let edma = try DWEDMAController(registers: regs, mode: .remote, ownership: .engine)
var channel = try edma.channel(.write, 0, ll: MMIORegion(base: llMemory, length: 4096), llBusAddress: 0x1_0000_0000)
let transfers = UnsafeMutableBufferPointer<EDMATransfer>.allocate(capacity: elements)
for i in 0..<elements {
    transfers[i] = EDMATransfer(source: 0x2000_0000 + UInt64(i * 4096), destination: 0x8_0000_0000 + UInt64(i * 4096), length: 4096)
}
let statusOffset = EDMARegisters.intStatus(.write)

@inline(never)
@MainActor func submitAndComplete(_ ch: inout EDMAChannel<EDMAv0Core<MMIORegion>, MMIORegion>) -> Bool {
    guard (try? ch.submit(UnsafeBufferPointer(transfers))) != nil else { return false }
    regs.store32(InterruptBits.done(0), at: statusOffset)   // the engine finished
    guard case .done = ch.poll() else { return false }
    regs.store32(0, at: statusOffset)
    return true
}

/// Baseline: the same descriptor bytes written with memcpy, plus the doorbell and the status read and
/// clear as plain stores: what any driver must at least do.
@inline(never)
@MainActor func baseline() {
    var offset = 0
    for i in 0..<elements {
        let t = transfers[i]
        var lli = (UInt32(1), t.length, t.source, t.destination)
        memcpy(llMemory + offset, &lli, 24)
        offset += 24
    }
    var link = (UInt32(6), UInt32(0), UInt64(0x1_0000_0000))
    memcpy(llMemory + offset, &link, 16)
    regsMemory.storeBytes(of: UInt32(0), toByteOffset: 0x10, as: UInt32.self)
    let s = regsMemory.load(fromByteOffset: statusOffset, as: UInt32.self)
    regsMemory.storeBytes(of: s, toByteOffset: 0x58, as: UInt32.self)
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

for _ in 0..<1000 { precondition(submitAndComplete(&channel)) }   // warm-up, first start done
let clock = ContinuousClock()
var t0 = clock.now
if which != "baseline" { for _ in 0..<iterations { if !submitAndComplete(&channel) { fatalError("submission failed") } } }
let driverTime = seconds(t0.duration(to: clock.now))
t0 = clock.now
if which != "driver" { for _ in 0..<iterations { baseline() } }
let baseTime = seconds(t0.duration(to: clock.now))
let perElementDriver = driverTime / Double(iterations * elements) * 1e9
let perElementBase = baseTime / Double(iterations * elements) * 1e9
print("elements/submission \(elements), submissions \(iterations)")
print("driver   : \(perElementDriver) ns/element, \(driverTime / Double(iterations) * 1e9) ns/submission")
print("baseline : \(perElementBase) ns/element (memcpy of descriptors + doorbell + status clear)")
print("ratio    : \(perElementDriver / perElementBase)")
print("counters : \(channel.counters.submissions) submissions, \(channel.counters.completions) completions")
