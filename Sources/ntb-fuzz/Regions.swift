import CNTBShim

/// Classes of peer-controlled memory the fuzzer writes (`--targets`). docs/fuzzing.md lists what each covers.
enum FuzzTarget: String, CaseIterable, Sendable {
    case spads, doorbells, ctrl, rings
    case edmaInfo = "edma-info"
    case notify, ll
    case edmaRegs = "edma-regs"
}

/// The side the fuzzer impersonates. `host`: a hostile host, whose victim is the endpoint process (`serve`);
/// `endpoint`: a hostile endpoint, whose victim is the host process (`send`, `perf`).
enum FuzzRole: String, CaseIterable, Sendable { case host, endpoint }

enum FuzzBackend: String, CaseIterable, Sendable { case host, edma }

/// How a write reaches the victim.
enum WriteKind: Equatable, Sendable {
    /// A plain store into a shared file (a BAR, a window, RAM seen through a window).
    case memory
    /// A store into the doorbell BAR, then the endpoint's doorbell interrupt (`ep-doorbell.fifo`).
    case doorbell
    /// An MSI vector of the endpoint function raised at the host (pending word + `msiV.fifo`); the offset is the vector.
    case msi
    /// A posted write into the eDMA engine model's register space through the host accessor's ring.
    case postedWrite
}

/// One field of a region: offset relative to the region and natural width.
struct FuzzField: Equatable, Sendable {
    var offset: Int
    var width: Int
}

/// A peer-controlled byte range of one mock link file.
struct FuzzRegion: Equatable, Sendable {
    var target: FuzzTarget
    var name: String
    /// The file in the link directory (`edma-rings` for posted writes, `link` for MSI raises).
    var file: String
    var kind: WriteKind
    var offset: Int
    var length: Int
    /// Known fields; writes also go to random offsets inside and just outside the region.
    var fields: [FuzzField]
    var end: Int { offset + length }
}

/// What the `link` page says about the link (struct ntb_mock_link, docs/mock-device.md "Files").
struct LinkGeometry: Equatable, Sendable {
    var windows: Int
    var windowSizes: [Int]
    var spadCount: Int
    var doorbellSlots: Int
    var msiVectors: Int
    var rfcOffsets: Bool
    var hostRAMBus: UInt64
    var hostRAMSize: Int
    var endpointRAMBus: UInt64
    var inboundBus: [UInt64]

    static let magic = UInt32(NTB_MOCK_MAGIC)

    /// Reads the page; nil when it is not a mock link page this fuzzer knows.
    static func read(page: UnsafeRawPointer, length: Int) -> LinkGeometry? {
        guard length >= MemoryLayout<ntb_mock_link>.size else { return nil }
        func u32(_ k: KeyPath<ntb_mock_link, UInt32>) -> UInt32 { page.loadUnaligned(fromByteOffset: MemoryLayout<ntb_mock_link>.offset(of: k)!, as: UInt32.self) }
        func u64(_ k: KeyPath<ntb_mock_link, UInt64>) -> UInt64 { page.loadUnaligned(fromByteOffset: MemoryLayout<ntb_mock_link>.offset(of: k)!, as: UInt64.self) }
        guard u32(\.magic) == magic else { return nil }
        let windows = Int(min(u32(\.num_mws), UInt32(NTB_EPF_MAX_MW)))
        let sizesAt = MemoryLayout<ntb_mock_link>.offset(of: \.mw_size)!
        let inboundAt = MemoryLayout<ntb_mock_link>.offset(of: \.mw_inbound_bus)!
        let sizes = (0..<windows).map { Int(clamping: page.loadUnaligned(fromByteOffset: sizesAt + 8 * $0, as: UInt64.self)) }
        let inbound = (0..<windows).map { page.loadUnaligned(fromByteOffset: inboundAt + 8 * $0, as: UInt64.self) }
        return LinkGeometry(
            windows: windows, windowSizes: sizes, spadCount: Int(u32(\.spad_count)), doorbellSlots: Int(u32(\.db_count)),
            msiVectors: Int(u32(\.msi_vectors)), rfcOffsets: u32(\.flags) & UInt32(NTB_MOCK_FLAG_RFC_OFFSETS) != 0,
            hostRAMBus: u64(\.host_ram_bus), hostRAMSize: Int(clamping: u64(\.host_ram_size)),
            endpointRAMBus: u64(\.ep_ram_bus), inboundBus: inbound)
    }

    var controlSize: Int { rfcOffsets ? Int(NTB_EPF_CTRL_SIZE_V1) : Int(NTB_EPF_CTRL_SIZE_V0) }
}

/// Where the eDMA window (the last memory window, RFC v3) keeps its pages, as far as the fuzzer can tell: read
/// from the published `ntb_edma_info` when it looks sane, else the policy defaults (P = 4 KiB, R = 4 KiB, 5 channels).
struct EDMAWindowGuess: Equatable, Sendable {
    var notifyOffset: Int
    var linkedListOffsets: [Int]
    var pageSize: Int

    static let defaults = EDMAWindowGuess(notifyOffset: 4096, linkedListOffsets: (0..<5).map { 3 * 4096 + $0 * 4096 }, pageSize: 4096)

    /// `window` is the start of the eDMA window's file, `translation` the endpoint bus address it maps (link page).
    static func read(window: UnsafeRawPointer, length: Int, translation: UInt64) -> EDMAWindowGuess {
        guard length >= MemoryLayout<ntb_edma_info>.size,
              window.loadUnaligned(as: UInt32.self) == NTB_EDMA_INFO_MAGIC else { return defaults }
        func local(_ at: Int) -> Int? {
            let a = window.loadUnaligned(fromByteOffset: at, as: UInt64.self)
            guard a >= translation, a - translation < UInt64(length) else { return nil }
            return Int(a - translation)
        }
        let channels = Int(window.loadUnaligned(fromByteOffset: MemoryLayout<ntb_edma_info>.offset(of: \.ch_cnt)!, as: UInt16.self))
        guard let notify = local(MemoryLayout<ntb_edma_info>.offset(of: \.db_base)!), channels >= 1,
              channels <= Int(NTB_EDMA_INFO_LL_SLOTS) else { return defaults }
        let llAt = MemoryLayout<ntb_edma_info>.offset(of: \.ll_rd_phys)!
        let lls = (0..<channels).compactMap { local(llAt + 8 * $0) }
        guard lls.count == channels else { return defaults }
        return EDMAWindowGuess(notifyOffset: notify, linkedListOffsets: lls, pageSize: 4096)
    }
}

/// The region table: every byte range a peer of `role`'s victim controls, for one backend.
struct RegionTable {
    static let ringSize = MemoryLayout<ntb_edma_ring>.size
    static let registerFileSize = 0x2000

    var geometry: LinkGeometry
    var backend: FuzzBackend
    var role: FuzzRole
    /// Transport queue pairs (default: one per transport window, as the CLI's default).
    var queuePairs: Int?
    var mtu = Int(NTB_TRANSPORT_DEFAULT_MTU)
    /// Offsets in `host.ram` where the host's inbound buffers (its memory windows' backing) start.
    var hostBufferOffsets: [Int] = []
    var edmaWindow = EDMAWindowGuess.defaults

    var transportWindows: Int { backend == .edma ? max(geometry.windows - 1, 0) : geometry.windows }

    /// The host's inbound buffers are handed out first-fit from offset 0 of `host.ram` in window order
    /// (RAMArena), so buffer n starts near the sum of the earlier windows' sizes; offsets seen in the
    /// control region's addr field (CONFIGURE_MW) are added by the caller.
    static func defaultHostBufferOffsets(_ g: LinkGeometry, windows: Int) -> [Int] {
        var at = 0, out: [Int] = []
        for n in 0..<windows {
            out.append(at)
            at += (g.windowSizes[n] + 4095) / 4096 * 4096
        }
        return out
    }

    func regions() -> [FuzzRegion] {
        var out: [FuzzRegion] = []
        let g = geometry
        // Scratchpads: both halves (the host's own and the endpoint's), u32 each.
        let spadOffset = g.controlSize
        let spadBytes = 2 * g.spadCount * 4
        out.append(FuzzRegion(target: .spads, name: "scratchpads", file: "config.bar", kind: .memory, offset: spadOffset,
                              length: spadBytes, fields: (0..<(2 * g.spadCount)).map { FuzzField(offset: 4 * $0, width: 4) }))
        // The control region (struct epf_ntb_ctrl + RFC tail).
        var ctrl: [FuzzField] = [
            .init(offset: Int(NTB_EPF_COMMAND), width: 4), .init(offset: Int(NTB_EPF_ARGUMENT), width: 4),
            .init(offset: Int(NTB_EPF_CMD_STATUS), width: 2), .init(offset: Int(NTB_EPF_LINK_STATUS), width: 2),
            .init(offset: Int(NTB_EPF_TOPOLOGY), width: 4), .init(offset: Int(NTB_EPF_LOWER_ADDR), width: 8),
            .init(offset: Int(NTB_EPF_LOWER_SIZE), width: 8), .init(offset: Int(NTB_EPF_MW_COUNT), width: 4),
            .init(offset: Int(NTB_EPF_MW1_OFFSET), width: 4), .init(offset: Int(NTB_EPF_SPAD_OFFSET), width: 4),
            .init(offset: Int(NTB_EPF_SPAD_COUNT), width: 4), .init(offset: Int(NTB_EPF_DB_ENTRY_SIZE), width: 4),
        ]
        for n in 0..<Int(NTB_EPF_DB_SLOTS) {
            ctrl.append(.init(offset: Int(NTB_EPF_DB_DATA0) + 4 * n, width: 4))
            ctrl.append(.init(offset: Int(NTB_EPF_DB_OFFSET0) + 4 * n, width: 4))
        }
        if g.rfcOffsets {
            for n in 0..<Int(NTB_EPF_MAX_MW) {
                ctrl.append(.init(offset: Int(NTB_EPF_MW_OFFSET0) + 4 * n, width: 4))
                ctrl.append(.init(offset: Int(NTB_EPF_MW_SIZE0) + 4 * n, width: 4))
            }
        }
        out.append(FuzzRegion(target: .ctrl, name: "control region", file: "config.bar", kind: .memory, offset: 0,
                              length: g.controlSize, fields: ctrl))
        // Doorbells: the host rings slots of the doorbell BAR; the endpoint raises MSI vectors at the host.
        switch role {
        case .host:
            let slots = max(min(g.doorbellSlots, Int(NTB_EPF_DB_SLOTS)), 1)
            out.append(FuzzRegion(target: .doorbells, name: "doorbell BAR", file: "doorbell.bar", kind: .doorbell, offset: 0,
                                  length: 4 * slots, fields: (0..<slots).map { FuzzField(offset: 4 * $0, width: 4) }))
        case .endpoint:
            out.append(FuzzRegion(target: .doorbells, name: "MSI vectors", file: "link", kind: .msi, offset: 0,
                                  length: max(g.msiVectors, 1), fields: (0..<max(g.msiVectors, 1)).map { FuzzField(offset: $0, width: 1) }))
        }
        // Transport rings: the victim's receive side, written by the peer through a window.
        let qps = max(queuePairs ?? transportWindows, 1)
        for n in 0..<transportWindows {
            let size = g.windowSizes[n]
            let (file, base): (String, Int) = role == .host
                ? ("mw\(n).bar", 0)
                : ("host.ram", n < hostBufferOffsets.count ? hostBufferOffsets[n] : 0)
            let qpsHere = backend == .edma ? (n == 0 ? qps : 0) : (qps / transportWindows + (n < qps % transportWindows ? 1 : 0))
            guard qpsHere > 0 else { continue }
            let area = size / qpsHere
            for q in 0..<qpsHere {
                let fields = backend == .host ? hostAreaFields(area) : edmaAreaFields()
                out.append(FuzzRegion(target: .rings, name: "\(backend.rawValue) ring mw\(n) qp\(q)", file: file, kind: .memory,
                                      offset: base + q * area, length: area, fields: fields))
            }
        }
        guard backend == .edma, g.windows >= 1 else { return out }
        let last = "mw\(g.windows - 1).bar"
        let w = edmaWindow
        if role == .endpoint {
            var info: [FuzzField] = [.init(offset: 0, width: 4), .init(offset: 4, width: 4), .init(offset: 8, width: 2), .init(offset: 16, width: 8)]
            for i in 0..<Int(NTB_EDMA_INFO_LL_SLOTS) { info.append(.init(offset: 24 + 8 * i, width: 8)) }
            out.append(FuzzRegion(target: .edmaInfo, name: "eDMA info page", file: last, kind: .memory, offset: 0,
                                  length: MemoryLayout<ntb_edma_info>.size, fields: info))
        }
        out.append(FuzzRegion(target: .notify, name: "eDMA notification page", file: last, kind: .memory, offset: w.notifyOffset,
                              length: MemoryLayout<ntb_edma_db>.size,
                              fields: [.init(offset: 0, width: 4)] + (0..<Int(NTB_EDMA_NOTIFY_MAX_QP)).map { .init(offset: 4 + 4 * $0, width: 4) }))
        for (i, at) in w.linkedListOffsets.enumerated() {
            var ll: [FuzzField] = []
            for s in 0..<(w.pageSize / Int(NTB_EDMA_LL_SZ)) {
                let e = s * Int(NTB_EDMA_LL_SZ)
                ll += [.init(offset: e, width: 4), .init(offset: e + 4, width: 4), .init(offset: e + 8, width: 8), .init(offset: e + 16, width: 8)]
            }
            out.append(FuzzRegion(target: .ll, name: "LL region of read channel \(i)", file: last, kind: .memory, offset: at,
                                  length: w.pageSize, fields: ll))
        }
        // The eDMA register file: a hostile host programs it through the posted-write ring (the register block at 2P
        // of the window on silicon); a hostile endpoint is the device, so it controls what the host reads back.
        var regs: [FuzzField] = (0..<(0x100 / 4)).map { .init(offset: 4 * $0, width: 4) }
        for ch in 0..<8 {
            for r in stride(from: 0, to: 0x24, by: 4) {
                regs.append(.init(offset: 0x200 + ch * 0x200 + r, width: 4))
                regs.append(.init(offset: 0x300 + ch * 0x200 + r, width: 4))
            }
        }
        out.append(FuzzRegion(target: .edmaRegs, name: "eDMA registers", file: role == .host ? "edma-rings" : "edma-regs",
                              kind: role == .host ? .postedWrite : .memory, offset: 0, length: Self.registerFileSize, fields: regs))
        return out
    }

    /// ntb_transport v4 area of `area` bytes (docs/hardware-reference.md §2.3): frame headers, payload starts, rx_info.
    func hostAreaFields(_ area: Int) -> [FuzzField] {
        guard area >= 16 else { return [] }
        let frame = max(min(mtu, (area - 4) / 2), 12)
        let frames = min((area - 4) / frame, 512)
        var f: [FuzzField] = []
        for k in 0..<frames {
            let h = k * frame + frame - 12
            f += [.init(offset: k * frame, width: 8), .init(offset: h, width: 4), .init(offset: h + 4, width: 4), .init(offset: h + 8, width: 4)]
        }
        f.append(.init(offset: area - 4, width: 4))
        return f
    }

    /// Both RFC rings of one queue pair (hardware-reference §4.3): descriptors, head, tail.
    func edmaAreaFields() -> [FuzzField] {
        var f: [FuzzField] = []
        for r in 0..<2 {
            let base = r * Self.ringSize
            for d in 0..<Int(NTB_EDMA_RING_ENTRIES) {
                let e = base + d * MemoryLayout<ntb_edma_desc>.size
                f += [.init(offset: e, width: 4), .init(offset: e + 4, width: 4), .init(offset: e + 8, width: 8)]
            }
            f += [.init(offset: base + MemoryLayout<ntb_edma_ring>.offset(of: \.head)!, width: 4),
                  .init(offset: base + MemoryLayout<ntb_edma_ring>.offset(of: \.tail)!, width: 4)]
        }
        return f
    }
}
