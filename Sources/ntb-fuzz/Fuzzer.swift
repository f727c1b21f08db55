import CNTBShim
import Glibc
import NTBMock

/// One shared file of the link directory, mapped read-write.
final class MappedFile {
    let name: String
    let base: UnsafeMutableRawPointer
    let size: Int
    let inode: UInt64

    init?(directory: String, name: String) {
        let fd = open("\(directory)/\(name)", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0,
              let p = mmap(nil, Int(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else { return nil }
        self.name = name
        base = p
        size = Int(st.st_size)
        inode = UInt64(st.st_ino)
    }

    deinit { munmap(base, size) }

    static func inode(directory: String, name: String) -> UInt64? {
        var st = stat()
        return stat("\(directory)/\(name)", &st) == 0 ? UInt64(st.st_ino) : nil
    }

    func load(_ at: Int, _ width: Int) -> UInt64 {
        switch width {
        case 1: UInt64(base.load(fromByteOffset: at, as: UInt8.self))
        case 2: UInt64(base.loadUnaligned(fromByteOffset: at, as: UInt16.self))
        case 4: UInt64(base.loadUnaligned(fromByteOffset: at, as: UInt32.self))
        default: base.loadUnaligned(fromByteOffset: at, as: UInt64.self)
        }
    }

    func store(_ at: Int, _ width: Int, _ v: UInt64) {
        switch width {
        case 1: base.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: at, as: UInt8.self)
        case 2: base.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: at, as: UInt16.self)
        case 4: base.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: at, as: UInt32.self)
        default: base.storeBytes(of: v, toByteOffset: at, as: UInt64.self)
        }
    }
}

/// One write, as the trace prints it.
struct FuzzWrite: Equatable {
    var region: Int
    var offset: Int
    var width: Int
    var value: UInt64
    /// How the offset was chosen: field, inside, outside.
    var how: String
}

/// Chooses writes: region, offset, width and value, from the PRNG only (plus stale values it read back), so a
/// seed and a link geometry give the same sequence.
struct WriteChooser {
    var random: FuzzRandom
    /// Values read from the places written before, for "stale value" writes.
    var stale: [UInt64] = []
    var staleNext = 0

    init(seed: UInt64) { random = FuzzRandom(seed: seed) }

    mutating func remember(_ v: UInt64) {
        if stale.count < 64 { stale.append(v) } else { stale[staleNext] = v; staleNext = (staleNext + 1) % 64 }
    }

    /// Edge values for a region of `length` bytes in a link whose windows are `windowSize` bytes.
    static func edges(length: Int, windowSize: Int) -> [UInt64] {
        let l = UInt64(length), w = UInt64(windowSize)
        return [0, 1, 2, 3, 4, 7, 11, 12, 13, 127, 128, 129, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                0xFFFF_F000, 4095, 4096, 4097, 0xFFFF, 0x10000, 0x10001, 1 << 32, (1 << 32) + 1, 1 << 62, 1 << 63,
                UInt64.max, UInt64.max - 1, UInt64.max - 3, UInt64.max - 4095,
                l &- 1, l, l + 1, w &- 1, w, w + 1, w &* 2, w / 2 + 1]
    }

    /// Picks a write into one of `regions` (indices into the table) whose file is `fileSize` bytes.
    mutating func choose(regions: [FuzzRegion], candidates: [Int], fileSize: (FuzzRegion) -> Int, windowSize: Int) -> FuzzWrite? {
        guard !candidates.isEmpty else { _ = random.next(); return nil }
        let index = candidates[random.below(candidates.count)]
        let r = regions[index]
        let size = fileSize(r)
        var width = [1, 2, 4, 4, 4, 8][random.below(6)]
        var offset: Int
        var how: String
        let roll = random.below(100)
        if r.kind == .msi {
            offset = random.below(max(r.length, 1)); width = 1; how = "vector"
        } else if roll < 60 && !r.fields.isEmpty {
            let f = r.fields[random.below(r.fields.count)]
            offset = r.offset + f.offset; width = f.width; how = "field"
        } else if roll < 88 || r.kind == .postedWrite {
            offset = r.offset + random.below(max(r.length, 1))
            how = "inside"
            if r.kind == .postedWrite || random.chance(50) { offset &= ~(width - 1) }  // registers take aligned accesses only
        } else {
            // Just outside: the bytes before the region, or the bytes after it.
            offset = random.chance(50) ? r.offset - width - random.below(8) : r.end + random.below(8)
            how = "outside"
        }
        let value = chooseValue(width: width, length: r.length, windowSize: windowSize)
        if r.kind == .postedWrite {
            guard offset >= 0, offset + width <= r.length else { return nil }
        } else if r.kind != .msi {
            guard size >= width else { return nil }
            offset = min(max(offset, 0), size - width)
        }
        return FuzzWrite(region: index, offset: offset, width: width, value: value, how: how)
    }

    mutating func chooseValue(width: Int, length: Int, windowSize: Int) -> UInt64 {
        let roll = random.below(100)
        var v: UInt64
        if roll < 45 {
            let e = Self.edges(length: length, windowSize: windowSize)
            v = e[random.below(e.count)]
        } else if roll < 60 && !stale.isEmpty {
            v = stale[random.below(stale.count)]
        } else if roll < 70 && !stale.isEmpty {
            v = stale[random.below(stale.count)] &+ UInt64(bitPattern: Int64(random.below(7) - 3))  // near a live value (indices ±3)
        } else if roll < 80 {
            v = random.next() | 1  // unaligned
        } else {
            v = random.next()
        }
        return width == 8 ? v : v & ((1 << UInt64(8 * width)) - 1)
    }
}

/// Runs the writes against a mock link directory.
final class Fuzzer {
    let directory: String
    let role: FuzzRole
    let backend: FuzzBackend
    let targets: Set<FuzzTarget>
    let queuePairs: Int?
    let mtu: Int
    var chooser: WriteChooser
    var files: [String: MappedFile] = [:]
    var registers: EDMARegisterMapping?
    var registersInode: UInt64?
    var table: [FuzzRegion] = []
    var candidates: [Int] = []
    var geometry: LinkGeometry?
    var windowSize = 4096
    var hostBases: Set<Int> = []
    var fifos: [String: Int32] = [:]
    var counts: [FuzzTarget: Int] = [:]
    var skipped = 0
    var trace: UnsafeMutablePointer<FILE>?
    var recent: [String] = []
    /// `--undo-ms`: memory writes to put back after this long (0: writes stay). A transient hostile value lets the
    /// victim get past a check that a permanent one would fail at once, so deeper code sees the next values.
    var undoAfterMs = 0
    var pendingUndo: [(file: MappedFile, offset: Int, width: Int, old: UInt64, new: UInt64, dueMs: Int)] = []
    var undone = 0

    init(directory: String, role: FuzzRole, backend: FuzzBackend, targets: Set<FuzzTarget>, seed: UInt64,
         queuePairs: Int?, mtu: Int, trace: UnsafeMutablePointer<FILE>?) {
        self.directory = directory
        self.role = role
        self.backend = backend
        self.targets = targets
        self.queuePairs = queuePairs
        self.mtu = mtu
        self.trace = trace
        chooser = WriteChooser(seed: seed)
    }

    /// (Re)maps the files that changed and rebuilds the region table. Returns false without a link page.
    @discardableResult
    func refresh() -> Bool {
        let names = ["link", "config.bar", "doorbell.bar", "host.ram", "edma-regs"] + (0..<Int(NTB_EPF_MAX_MW)).map { "mw\($0).bar" }
        for n in names {
            let ino = MappedFile.inode(directory: directory, name: n)
            if ino == nil { files[n] = nil; continue }
            if files[n]?.inode != ino { files[n] = MappedFile(directory: directory, name: n) }
        }
        if role == .host && backend == .edma {
            let ino = MappedFile.inode(directory: directory, name: "edma-rings")
            if ino != registersInode {
                registers = ino == nil ? nil : try? EDMARegisterMapping.attach(directory: directory)
                registersInode = registers == nil ? nil : ino
            }
        }
        guard let page = files["link"], let g = LinkGeometry.read(page: page.base, length: page.size) else {
            table = []; candidates = []; return false
        }
        geometry = g
        windowSize = g.windowSizes.first ?? 4096
        // Learn where the host's window buffers are: the control region's addr field after CONFIGURE_MW.
        if let c = files["config.bar"], c.size >= Int(NTB_EPF_LOWER_ADDR) + 8 {
            let addr = c.load(Int(NTB_EPF_LOWER_ADDR), 8)
            if addr >= g.hostRAMBus, addr - g.hostRAMBus < UInt64(g.hostRAMSize), hostBases.count < 8 {
                hostBases.insert(Int(addr - g.hostRAMBus))
            }
        }
        var t = RegionTable(geometry: g, backend: backend, role: role, queuePairs: queuePairs, mtu: mtu)
        let windows = t.transportWindows
        t.hostBufferOffsets = RegionTable.defaultHostBufferOffsets(g, windows: windows)
        if backend == .edma, g.windows >= 1, let w = files["mw\(g.windows - 1).bar"] {
            t.edmaWindow = EDMAWindowGuess.read(window: w.base, length: w.size, translation: g.inboundBus[g.windows - 1])
        }
        var regions = t.regions()
        // Buffers seen in the control region that are not a default base get ring regions of their own.
        for base in hostBases.sorted() where role == .endpoint && !t.hostBufferOffsets.contains(base) {
            if let ring = regions.first(where: { $0.target == .rings }) {
                var r = ring; r.offset = base; r.name += " (seen at host.ram+\(base))"; regions.append(r)
            }
        }
        table = regions
        candidates = []
        for (i, r) in regions.enumerated() where targets.contains(r.target) {
            if r.kind == .postedWrite ? registers != nil : files[r.file] != nil { candidates.append(i) }
        }
        return true
    }

    func fileSize(_ r: FuzzRegion) -> Int {
        r.kind == .postedWrite ? RegionTable.registerFileSize : (files[r.file]?.size ?? 0)
    }

    /// One write. Returns false if it was skipped (its file is missing).
    @discardableResult
    func step(number: Int, elapsedMs: Int) -> Bool {
        guard let w = chooser.choose(regions: table, candidates: candidates, fileSize: fileSize, windowSize: windowSize) else {
            skipped += 1; return false
        }
        let r = table[w.region]
        switch r.kind {
        case .memory, .doorbell:
            guard let f = files[r.file] else { skipped += 1; return false }
            let old = f.load(w.offset, w.width)
            chooser.remember(old)
            f.store(w.offset, w.width, w.value)
            if undoAfterMs > 0 { pendingUndo.append((f, w.offset, w.width, old, w.value, elapsedMs + undoAfterMs)) }
            if r.kind == .doorbell { kick("ep-doorbell.fifo") }
        case .msi:
            guard let page = files["link"] else { skipped += 1; return false }
            let slot = w.offset % Int(NTB_MOCK_FIFO_SLOTS)
            let word = (page.base + MemoryLayout<ntb_mock_link>.offset(of: \.fifo_pending)! + 4 * slot).assumingMemoryBound(to: UInt32.self)
            if ntb_xchg32(word, 1) == 0 { kick("msi\(w.offset).fifo") }
        case .postedWrite:
            guard let regs = registers else { skipped += 1; return false }
            let space = regs.space(.host)
            if w.width == 8 { space.store64(w.value, at: w.offset) }
            else if w.width == 4 { space.store32(UInt32(truncatingIfNeeded: w.value), at: w.offset) }
            else if w.width == 2 { space.store16(UInt16(truncatingIfNeeded: w.value), at: w.offset) }
            else { space.store8(UInt8(truncatingIfNeeded: w.value), at: w.offset) }
        }
        counts[r.target, default: 0] += 1
        let line = "\(number) t=\(elapsedMs)ms \(r.target.rawValue) \(r.file)+0x\(String(w.offset, radix: 16)) w\(w.width) = 0x\(String(w.value, radix: 16)) (\(w.how), \(r.name))"
        if let trace { fputs(line + "\n", trace) }
        if recent.count >= 16 { recent.removeFirst() }
        recent.append(line)
        return true
    }

    /// Once the oldest pending memory write is `--undo-ms` old, puts back every pending write, newest first (so
    /// overlapping writes unwind exactly); a place the victim wrote since keeps the victim's value. Hostile values
    /// thus live for at most `--undo-ms`.
    func undo(nowMs: Int, all: Bool = false) {
        guard let oldest = pendingUndo.first, all || oldest.dueMs <= nowMs else { return }
        for u in pendingUndo.reversed() where u.file.load(u.offset, u.width) == u.new {
            u.file.store(u.offset, u.width, u.old)
            undone += 1
        }
        pendingUndo.removeAll(keepingCapacity: true)
    }

    /// Raises an interrupt FIFO without blocking (no reader: nobody to interrupt).
    func kick(_ name: String) {
        var fd = fifos[name] ?? -1
        if fd < 0 {
            fd = open("\(directory)/\(name)", O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd < 0 { return }
            fifos[name] = fd
        }
        var b: UInt8 = 1
        if write(fd, &b, 1) < 0 && errno != EAGAIN { close(fd); fifos[name] = -1 }
    }
}
