import CNTBShim
public import PCIKit

/// Offsets, commands and limits of the endpoint-function NTB control region (`struct epf_ntb_ctrl`,
/// docs/hardware-reference.md §3.1), taken from the one declaration in `CNTBShim/include/ntb_epf.h`.
public enum EPFControl {
    public static let command = Int(NTB_EPF_COMMAND)
    public static let argument = Int(NTB_EPF_ARGUMENT)
    public static let commandStatus = Int(NTB_EPF_CMD_STATUS)
    public static let linkStatus = Int(NTB_EPF_LINK_STATUS)
    /// `topology`; the RFC (RFC v3 patch 02) reuses it as the control-region version (1 = per-MW offsets present).
    public static let topology = Int(NTB_EPF_TOPOLOGY)
    public static let lowerAddress = Int(NTB_EPF_LOWER_ADDR)
    public static let upperAddress = Int(NTB_EPF_UPPER_ADDR)
    public static let lowerSize = Int(NTB_EPF_LOWER_SIZE)
    public static let upperSize = Int(NTB_EPF_UPPER_SIZE)
    public static let memoryWindowCount = Int(NTB_EPF_MW_COUNT)
    /// `mw1_offset` (pci-epf-ntb; reserved on vNTB): offset of MW index 0 inside its BAR.
    public static let mw1Offset = Int(NTB_EPF_MW1_OFFSET)
    public static let spadOffset = Int(NTB_EPF_SPAD_OFFSET)
    public static let spadCount = Int(NTB_EPF_SPAD_COUNT)
    public static let doorbellEntrySize = Int(NTB_EPF_DB_ENTRY_SIZE)
    public static func doorbellData(_ n: Int) -> Int { precondition(n >= 0 && n < slots); return Int(NTB_EPF_DB_DATA0) + 4 * n }
    public static func doorbellOffset(_ n: Int) -> Int { precondition(n >= 0 && n < slots); return Int(NTB_EPF_DB_OFFSET0) + 4 * n }
    /// RFC (RFC v3 patch 02, proposed, not mainline): offset of MW `n` inside its BAR.
    public static func mwOffset(_ n: Int) -> Int { precondition(n >= 0 && n < maxMemoryWindows); return Int(NTB_EPF_MW_OFFSET0) + 4 * n }
    /// RFC (RFC v3 patch 02, proposed, not mainline): size of MW `n`.
    public static func mwSize(_ n: Int) -> Int { precondition(n >= 0 && n < maxMemoryWindows); return Int(NTB_EPF_MW_SIZE0) + 4 * n }
    /// `sizeof(struct epf_ntb_ctrl)` upstream, and with the RFC tail.
    public static let sizeVersion0 = Int(NTB_EPF_CTRL_SIZE_V0)
    public static let sizeVersion1 = Int(NTB_EPF_CTRL_SIZE_V1)

    public static let slots = Int(NTB_EPF_DB_SLOTS)
    public static let maxMemoryWindows = Int(NTB_EPF_MAX_MW)
    public static let statusOK: UInt16 = UInt16(NTB_EPF_STATUS_OK)
    public static let statusError: UInt16 = UInt16(NTB_EPF_STATUS_ERROR)
    public static let linkUpBit: UInt16 = UInt16(NTB_EPF_LINK_UP_BIT)
    public static let msixEnable: UInt32 = UInt32(NTB_EPF_MSIX_ENABLE)
    /// Vectors the host allocates: one link vector plus 3...31 doorbell vectors (`ntb_epf_init_dev`).
    public static let minimumVectors = Int(NTB_EPF_MIN_DB_COUNT) + 1
    public static let maximumVectors = Int(NTB_EPF_MAX_DB_COUNT) + 1
    /// The scratchpad count we accept from a peer (vNTB configfs allows any u32; Linux ntb_transport
    /// needs 6 + 2 per MW). Larger values are treated as garbage.
    public static let maximumScratchpads = 256
    /// Address alignment of a translation (`ntb_epf_mw_get_align`, `vntb_epf_mw_get_align`: SZ_4K).
    public static let translationAlignment: UInt64 = 4096
}

/// The endpoint-function commands (`CMD_*` in ntb_hw_epf.c, docs/hardware-reference.md §3.1).
public enum EPFCommand: UInt32, Sendable, CustomStringConvertible {
    case configureDoorbell = 1
    case teardownDoorbell = 2
    case configureMemoryWindow = 3
    case teardownMemoryWindow = 4
    case linkUp = 5
    case linkDown = 6

    public var description: String {
        switch self {
        case .configureDoorbell: "CONFIGURE_DOORBELL"
        case .teardownDoorbell: "TEARDOWN_DOORBELL"
        case .configureMemoryWindow: "CONFIGURE_MW"
        case .teardownMemoryWindow: "TEARDOWN_MW"
        case .linkUp: "LINK_UP"
        case .linkDown: "LINK_DOWN"
        }
    }
}

/// Which BAR holds what, per endpoint SoC (the `barno_map` tables of ntb_hw_epf.c, docs/hardware-reference.md §3.4).
public struct EPFBARMap: Sendable, Equatable {
    /// BAR of the control region and the host's own scratchpads.
    public var config: Int
    /// BAR of the peer (endpoint-owned) scratchpads; equal to `config` when they follow the host's own.
    public var peerScratchpad: Int
    /// BAR of the doorbell array.
    public var doorbell: Int
    /// BAR of memory windows 1...4 (nil: not available on this SoC).
    public var memoryWindows: [Int?]

    public init(config: Int, peerScratchpad: Int, doorbell: Int, memoryWindows: [Int?]) {
        precondition([config, peerScratchpad, doorbell].allSatisfy { (0..<6).contains($0) })
        precondition(memoryWindows.count <= EPFControl.maxMemoryWindows)
        self.config = config
        self.peerScratchpad = peerScratchpad
        self.doorbell = doorbell
        self.memoryWindows = memoryWindows
    }

    /// TI J721E, 104c:b00d: CONFIG 0, PEER_SPAD 1, DB 2, MW1 2, MW2 3, MW3 4, MW4 5.
    public static let tiJ721E = EPFBARMap(config: 0, peerScratchpad: 1, doorbell: 2, memoryWindows: [2, 3, 4, 5])
    /// NXP i.MX8, 1957:0809: CONFIG 0, PEER_SPAD 0, DB 2, MW1 4, MW2 5.
    public static let imx8 = EPFBARMap(config: 0, peerScratchpad: 0, doorbell: 2, memoryWindows: [4, 5, nil, nil])
    /// Renesas R-Car S4, 1912:0030: CONFIG 0, PEER_SPAD 0, DB 4, MW1 2; the RFC (RFC v3 patch 33) puts MW2 in BAR2
    /// too, which needs the version-1 per-MW offsets.
    public static let rcarS4 = EPFBARMap(config: 0, peerScratchpad: 0, doorbell: 4, memoryWindows: [2, 2, nil, nil])

    /// The map of an endpoint SoC (KnownNTBDevices holds the PCI IDs; this only maps board to BARs).
    public static func forBoard(_ board: KnownNTBDevices.EPFBoard) -> EPFBARMap {
        switch board {
        case .tiJ721E: .tiJ721E
        case .imx8: .imx8
        case .rcarS4: .rcarS4
        }
    }

    /// The map for a PCI vendor:device pair that ntb_hw_epf binds, or nil (looked up in KnownNTBDevices).
    public static func forDevice(vendor: UInt16, device: UInt16) -> EPFBARMap? {
        KnownNTBDevices.entries(for: PCIID(vendor: vendor, device: device)).lazy.compactMap(\.board).first.map(forBoard)
    }
}

/// What the endpoint published in the control region, validated (`ntb_epf_init_dev`, `ntb_epf_init_pci`).
public struct EPFConfiguration: Sendable, Equatable {
    /// Control-region version (`topology`; RFC: 1 = per-MW offsets and sizes present).
    public var version: UInt32
    public var memoryWindowCount: Int
    public var scratchpadOffset: Int
    public var scratchpadCount: Int
    public var doorbellEntrySize: Int
    /// Where each memory window sits: (BAR, offset inside it, size).
    public var memoryWindows: [(bar: Int, offset: Int, size: Int)]

    public static func == (a: EPFConfiguration, b: EPFConfiguration) -> Bool {
        a.version == b.version && a.memoryWindowCount == b.memoryWindowCount && a.scratchpadOffset == b.scratchpadOffset
            && a.scratchpadCount == b.scratchpadCount && a.doorbellEntrySize == b.doorbellEntrySize
            && a.memoryWindows.elementsEqual(b.memoryWindows) { $0 == $1 }
    }

    /// Reads and checks everything the peer wrote; anything out of range becomes ``NTBError/invalidPeerValue``.
    /// - Parameters:
    ///   - ctrl: the config BAR; `barLengths[n]` the length of BAR n (0 = not mapped).
    public static func read(ctrl: MMIORegion, map: EPFBARMap, barLengths: [Int]) throws(NTBError) -> EPFConfiguration {
        guard ctrl.length >= EPFControl.sizeVersion0 else {
            throw .unsupported("the config BAR \(map.config) is \(ctrl.length) bytes, smaller than the \(EPFControl.sizeVersion0)-byte control region; check the BAR map for this device")
        }
        // A device that fell off the bus reads all-ones.
        let status = ctrl.load32(at: EPFControl.command)
        if status == 0xFFFF_FFFF && ctrl.load32(at: EPFControl.memoryWindowCount) == 0xFFFF_FFFF {
            throw .invalidPeerValue(field: "control region", value: 0xFFFF_FFFF, expected: "a running endpoint function (all-ones reads mean the device is gone)")
        }
        let version = ctrl.load32(at: EPFControl.topology)
        guard version <= 1 else {
            throw .invalidPeerValue(field: "topology/version", value: UInt64(version), expected: "0 or 1")
        }
        if version == 1 && ctrl.length < EPFControl.sizeVersion1 {
            throw .invalidPeerValue(field: "topology/version", value: 1, expected: "0: the config BAR is too small for the version-1 control region")
        }
        let mwCount = ctrl.load32(at: EPFControl.memoryWindowCount)
        let usable = map.memoryWindows.count
        guard mwCount >= 1 && mwCount <= UInt32(usable) else {
            throw .invalidPeerValue(field: "num_mws", value: UInt64(mwCount), expected: "1...\(usable) for this device's BAR map")
        }
        let spadCount = ctrl.load32(at: EPFControl.spadCount)
        guard spadCount <= UInt32(EPFControl.maximumScratchpads) else {
            throw .invalidPeerValue(field: "spad_count", value: UInt64(spadCount), expected: "at most \(EPFControl.maximumScratchpads)")
        }
        let spadOffset = ctrl.load32(at: EPFControl.spadOffset)
        let spadBytes = UInt64(spadCount) * 4 * (map.peerScratchpad == map.config ? 2 : 1)
        guard spadOffset % 4 == 0, spadOffset >= UInt32(EPFControl.sizeVersion0) || spadCount == 0,
              UInt64(spadOffset) + spadBytes <= UInt64(ctrl.length)
        else {
            throw .invalidPeerValue(field: "spad_offset", value: UInt64(spadOffset), expected: "a 4-byte aligned offset past the control region with \(spadBytes) bytes of scratchpads inside the \(ctrl.length)-byte config BAR")
        }
        if map.peerScratchpad != map.config && barLengths[map.peerScratchpad] < Int(spadCount) * 4 {
            throw .invalidPeerValue(field: "spad_count", value: UInt64(spadCount), expected: "at most \(barLengths[map.peerScratchpad] / 4) (the peer scratchpad BAR \(map.peerScratchpad) size)")
        }
        let entrySize = ctrl.load32(at: EPFControl.doorbellEntrySize)
        guard entrySize >= 4 && entrySize <= 4096 && entrySize % 4 == 0 else {
            throw .invalidPeerValue(field: "db_entry_size", value: UInt64(entrySize), expected: "a multiple of 4 in 4...4096")
        }
        var windows: [(bar: Int, offset: Int, size: Int)] = []
        for n in 0..<Int(mwCount) {
            guard let bar = map.memoryWindows[n] else {
                throw .invalidPeerValue(field: "num_mws", value: UInt64(mwCount), expected: "at most \(n): this device has no BAR for MW\(n + 1)")
            }
            let barLength = barLengths[bar]
            guard barLength > 0 else {
                throw .unsupported("BAR \(bar) (MW\(n + 1)) is not mapped; map every BAR of the device before opening it")
            }
            var offset = 0
            var size = barLength
            if version == 1 {
                let o = ctrl.load32(at: EPFControl.mwOffset(n))
                let s = ctrl.load32(at: EPFControl.mwSize(n))
                guard UInt64(o) % EPFControl.translationAlignment == 0, UInt64(o) < UInt64(barLength) else {
                    throw .invalidPeerValue(field: "mw_offset[\(n)]", value: UInt64(o), expected: "a 4 KiB aligned offset inside the \(barLength)-byte BAR \(bar)")
                }
                guard s > 0, UInt64(o) + UInt64(s) <= UInt64(barLength) else {
                    throw .invalidPeerValue(field: "mw_size[\(n)]", value: UInt64(s), expected: "1...\(barLength - Int(o)) (BAR \(bar) ends there)")
                }
                offset = Int(o)
                size = Int(s)
            } else {
                // Without per-MW offsets two windows cannot share a BAR.
                if windows.contains(where: { $0.bar == bar }) {
                    throw .invalidPeerValue(field: "num_mws", value: UInt64(mwCount), expected: "at most \(n): MW\(n + 1) shares BAR \(bar) and the peer publishes no per-MW offsets (version 0)")
                }
                if n == 0 {
                    // ntb_epf_peer_mw_get_addr: MW index 0 starts at mw1_offset.
                    let o = ctrl.load32(at: EPFControl.mw1Offset)
                    guard UInt64(o) < UInt64(barLength) else {
                        throw .invalidPeerValue(field: "mw1_offset", value: UInt64(o), expected: "less than the \(barLength)-byte BAR \(bar)")
                    }
                    offset = Int(o)
                    size = barLength - offset
                }
            }
            windows.append((bar, offset, size))
        }
        return EPFConfiguration(
            version: version, memoryWindowCount: Int(mwCount), scratchpadOffset: Int(spadOffset),
            scratchpadCount: Int(spadCount), doorbellEntrySize: Int(entrySize), memoryWindows: windows)
    }
}
