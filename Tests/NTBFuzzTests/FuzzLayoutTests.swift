import CNTBShim
import Glibc
import NTBMock
import Testing
@testable import ntb_fuzz

/// A fresh mock link directory under /dev/shm (as `ntb-transport mock up` makes it), removed at the end.
private func withLink<T>(rfc: Bool = true, _ body: (String) throws -> T) throws -> T {
    let dir = "/dev/shm/ntb-fuzztest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    var c = MockLinkConfiguration()
    c.hostRAMSize = 8 << 20
    c.endpointRAMSize = 8 << 20
    c.memoryWindowSize = 1 << 20
    if !rfc { c.profile = .imx8 }
    try MockLink.create(at: dir, configuration: c)
    defer { try? MockLink.remove(at: dir, force: true) }
    return try body(dir)
}

@Suite struct FuzzLayoutTests {
    @Test func sameSeedSameSequenceOtherSeedAnother() {
        var a = FuzzRandom(seed: 42), b = FuzzRandom(seed: 42), c = FuzzRandom(seed: 43)
        let xs = (0..<1000).map { _ in a.next() }
        #expect(xs == (0..<1000).map { _ in b.next() })
        #expect(xs != (0..<1000).map { _ in c.next() })
        #expect(Set(xs).count == 1000)  // no short cycle
    }

    @Test func sameSeedSameWrites() throws {
        try withLink { dir in
            func writes(_ seed: UInt64) -> [FuzzWrite] {
                let f = Fuzzer(directory: dir, role: .endpoint, backend: .host, targets: Set(FuzzTarget.allCases), seed: seed,
                               queuePairs: nil, mtu: 0x10000, trace: nil)
                f.refresh()
                var c = f.chooser
                return (0..<2000).compactMap { _ in c.choose(regions: f.table, candidates: f.candidates, fileSize: f.fileSize, windowSize: f.windowSize) }
            }
            let first = writes(7)
            #expect(first.count > 1900)
            #expect(first == writes(7))
            #expect(first != writes(8))
        }
    }

    /// Every region and every field of the table lies inside the file the fuzzer maps, for both backends and roles
    /// and both control-region versions; and the table covers every target class each role has.
    @Test(arguments: [true, false])
    func regionsLieInsideTheMappedFiles(rfc: Bool) throws {
        try withLink(rfc: rfc) { dir in
            for backend in FuzzBackend.allCases {
                for role in FuzzRole.allCases {
                    let f = Fuzzer(directory: dir, role: role, backend: backend, targets: Set(FuzzTarget.allCases), seed: 1,
                                   queuePairs: nil, mtu: 0x10000, trace: nil)
                    #expect(f.refresh())
                    var classes = Set<FuzzTarget>()
                    for r in f.table {
                        classes.insert(r.target)
                        // The engine model's register file exists only while an endpoint hosts the model: 8 KiB.
                        let modelFile = r.file == "edma-regs"
                        let size = r.kind == .msi ? Int(NTB_MOCK_FIFO_SLOTS) : modelFile ? RegionTable.registerFileSize : f.fileSize(r)
                        if (r.kind == .memory || r.kind == .doorbell) && !modelFile { #expect(f.files[r.file] != nil, "\(r.name): \(r.file) not mapped") }
                        #expect(r.offset >= 0 && r.end <= size, "\(backend) \(role) \(r.name): \(r.offset)..<\(r.end) in \(size)")
                        for field in r.fields {
                            #expect(field.offset >= 0 && field.offset + field.width <= r.length, "\(r.name) field at \(field.offset)")
                        }
                    }
                    var expected: Set<FuzzTarget> = [.spads, .ctrl, .doorbells, .rings]
                    if backend == .edma { expected.formUnion([.notify, .ll, .edmaRegs]); if role == .endpoint { expected.insert(.edmaInfo) } }
                    #expect(classes == expected, "\(backend) \(role)")
                }
            }
        }
    }

    /// The scratchpads start right after the control region the link advertises and hold both sides' halves.
    @Test func scratchpadsFollowTheControlRegion() throws {
        try withLink(rfc: true) { dir in
            let f = Fuzzer(directory: dir, role: .host, backend: .host, targets: [.spads], seed: 1, queuePairs: nil, mtu: 0x10000, trace: nil)
            f.refresh()
            let spads = try #require(f.table.first { $0.target == .spads })
            #expect(spads.offset == Int(NTB_EPF_CTRL_SIZE_V1))
            #expect(spads.length == 2 * 64 * 4)
            #expect(f.candidates.allSatisfy { f.table[$0].target == .spads })
        }
    }

    /// Writes chosen near and just outside every region stay inside the mapped file (the fuzzer never faults itself),
    /// and the writes really land in the files.
    @Test func writesStayInsideTheFiles() throws {
        try withLink { dir in
            for role in FuzzRole.allCases {
                let f = Fuzzer(directory: dir, role: role, backend: .edma, targets: Set(FuzzTarget.allCases), seed: 99,
                               queuePairs: nil, mtu: 0x10000, trace: nil)
                f.refresh()
                var outside = 0
                for _ in 0..<20_000 {
                    guard let w = f.chooser.choose(regions: f.table, candidates: f.candidates, fileSize: f.fileSize, windowSize: f.windowSize) else { continue }
                    let r = f.table[w.region]
                    if w.how == "outside" { outside += 1 }
                    if r.kind == .msi { #expect(w.offset < r.length); continue }
                    #expect(w.offset >= 0 && w.offset + w.width <= f.fileSize(r), "\(r.name) +\(w.offset) w\(w.width)")
                }
                #expect(outside > 500)
                let before = f.counts.values.reduce(0, +)
                for n in 0..<5000 { f.step(number: n, elapsedMs: 0) }
                #expect(f.counts.values.reduce(0, +) - before + f.skipped == 5000)
                #expect(f.counts[.spads, default: 0] > 0 && f.counts[.rings, default: 0] > 0)
            }
        }
    }

    /// `--undo-ms`: nothing is put back before its time; afterwards every byte the writes changed is back.
    @Test func undoPutsTheOldBytesBack() throws {
        try withLink { dir in
            let f = Fuzzer(directory: dir, role: .host, backend: .host, targets: [.spads], seed: 5, queuePairs: nil, mtu: 0x10000, trace: nil)
            f.undoAfterMs = 10
            f.refresh()
            let config = try #require(f.files["config.bar"])
            for i in 0..<config.size { config.base.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7), toByteOffset: i, as: UInt8.self) }
            let before = (0..<config.size).map { config.base.load(fromByteOffset: $0, as: UInt8.self) }
            for n in 0..<500 { f.step(number: n, elapsedMs: 0) }
            let during = (0..<config.size).map { config.base.load(fromByteOffset: $0, as: UInt8.self) }
            #expect(during != before)
            f.undo(nowMs: 9)
            #expect(f.undone == 0)
            f.undo(nowMs: 10)
            #expect(f.undone > 0 && f.pendingUndo.isEmpty)
            #expect((0..<config.size).map { config.base.load(fromByteOffset: $0, as: UInt8.self) } == before)
        }
    }
}
