import Testing
import CNTBShim
import PCIKit
@testable import NTBHardware

/// The control region layout and BAR maps against docs/hardware-reference.md §3.1 and §3.4.
@Suite struct EPFControlRegionTests {
    /// (name, our offset, docs/hardware-reference.md §3.1 / ntb_hw_epf.c NTB_EPF_*)
    static let offsets: [(String, Int, Int)] = [
        ("command", EPFControl.command, 0x00),
        ("argument", EPFControl.argument, 0x04),
        ("command_status", EPFControl.commandStatus, 0x08),
        ("link_status", EPFControl.linkStatus, 0x0A),
        ("topology", EPFControl.topology, 0x0C),
        ("addr lower", EPFControl.lowerAddress, 0x10),
        ("addr upper", EPFControl.upperAddress, 0x14),
        ("size lower", EPFControl.lowerSize, 0x18),
        ("size upper", EPFControl.upperSize, 0x1C),
        ("num_mws", EPFControl.memoryWindowCount, 0x20),
        ("mw1_offset", EPFControl.mw1Offset, 0x24),
        ("spad_offset", EPFControl.spadOffset, 0x28),
        ("spad_count", EPFControl.spadCount, 0x2C),
        ("db_entry_size", EPFControl.doorbellEntrySize, 0x30),
        ("db_data[0]", EPFControl.doorbellData(0), 0x34),
        ("db_data[31]", EPFControl.doorbellData(31), 0x34 + 31 * 4),
        ("db_offset[0]", EPFControl.doorbellOffset(0), 0xB4),
        ("db_offset[31]", EPFControl.doorbellOffset(31), 0xB4 + 31 * 4),
        ("mw_offset[0] (RFC)", EPFControl.mwOffset(0), 0x134),
        ("mw_size[0] (RFC)", EPFControl.mwSize(0), 0x144),
        ("mw_size[3] (RFC)", EPFControl.mwSize(3), 0x144 + 12),
        ("sizeof v0", EPFControl.sizeVersion0, 0x134),
    ]

    @Test(arguments: offsets.indices)
    func offsetMatchesReference(_ i: Int) {
        let (name, ours, reference) = Self.offsets[i]
        #expect(ours == reference, "\(name)")
    }

    @Test func swiftLayoutOfTheCStructAgrees() {
        #expect(MemoryLayout<ntb_epf_ctrl>.offset(of: \.link_status) == 0x0A)
        #expect(MemoryLayout<ntb_epf_ctrl>.offset(of: \.addr) == 0x10)
        #expect(MemoryLayout<ntb_epf_ctrl>.offset(of: \.db_offset) == 0xB4)
        #expect(MemoryLayout<ntb_epf_ctrl>.size == EPFControl.sizeVersion1)
    }

    @Test func commandsAndConstants() {
        #expect(EPFCommand.configureDoorbell.rawValue == 1)
        #expect(EPFCommand.teardownDoorbell.rawValue == 2)
        #expect(EPFCommand.configureMemoryWindow.rawValue == 3)
        #expect(EPFCommand.teardownMemoryWindow.rawValue == 4)
        #expect(EPFCommand.linkUp.rawValue == 5)
        #expect(EPFCommand.linkDown.rawValue == 6)
        #expect(EPFControl.statusOK == 1 && EPFControl.statusError == 2)
        #expect(EPFControl.msixEnable == 1 << 16)
        #expect(EPFControl.minimumVectors == 4 && EPFControl.maximumVectors == 32)
    }

    @Test func barMapsPerSoC() {
        // hardware-reference §3.4: CONFIG, PEER_SPAD, DB, MW1..MW4
        #expect(EPFBARMap.forDevice(vendor: 0x104C, device: 0xB00D) == EPFBARMap(config: 0, peerScratchpad: 1, doorbell: 2, memoryWindows: [2, 3, 4, 5]))
        #expect(EPFBARMap.forDevice(vendor: 0x1957, device: 0x0809) == EPFBARMap(config: 0, peerScratchpad: 0, doorbell: 2, memoryWindows: [4, 5, nil, nil]))
        #expect(EPFBARMap.forDevice(vendor: 0x1912, device: 0x0030) == EPFBARMap(config: 0, peerScratchpad: 0, doorbell: 4, memoryWindows: [2, 2, nil, nil]))
        #expect(EPFBARMap.forDevice(vendor: 0x8086, device: 0x201C) == nil)
    }
}
