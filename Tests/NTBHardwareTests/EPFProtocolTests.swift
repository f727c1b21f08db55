import Testing
import PCIKit
import Synchronization
@testable import NTBHardware
#if canImport(Glibc)
import Glibc
#endif

/// Plain memory standing in for BARs, so the EPF host adapter and the vNTB endpoint meet without the mock link.
@safe
final class TestMemory: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int
    init(_ length: Int) {
        self.length = length
        unsafe base = .allocate(byteCount: length, alignment: 4096)
        unsafe base.initializeMemory(as: UInt8.self, repeating: 0, count: length)
    }
    deinit { unsafe base.deallocate() }
    var region: MMIORegion { unsafe MMIORegion(base: base, length: length) }
}

/// An endpoint controller over plain memory that records what the endpoint function asked of it.
final class RecordingController: EndpointController, @unchecked Sendable {
    let config = TestMemory(4096)
    let doorbells = TestMemory(256)
    let windows = [TestMemory(1 << 16), TestMemory(1 << 16)]
    var configSpace: MMIORegion { config.region }
    var doorbellSpace: MMIORegion { doorbells.region }
    let memoryWindowSizes = [1 << 16, 1 << 16]
    let memoryWindowOffsets: [Int]?
    let msiVectorCount = 16
    let log = Mutex<[String]>([])
    let msis = Mutex<[Int]>([])

    init(offsets: Bool) { memoryWindowOffsets = offsets ? [0, 1 << 16] : nil }

    func setInboundTranslation(window: Int, busAddress: UInt64, size: Int) throws(NTBError) { log.withLock { $0.append("inbound \(window) \(busAddress) \(size)") } }
    func clearInboundTranslation(window: Int) { log.withLock { $0.append("clear inbound \(window)") } }
    func mapOutbound(window: Int, hostAddress: UInt64, size: Int) throws(NTBError) {
        guard hostAddress != 0xBAD000 else { throw .unsupported("refused") }
        log.withLock { $0.append("map \(window) 0x\(String(hostAddress, radix: 16)) \(size)") }
    }
    func unmapOutbound(window: Int) { log.withLock { $0.append("unmap \(window)") } }
    func outboundWindow(_ window: Int) -> MMIORegion { windows[window].region }
    func raiseMSI(_ number: Int) { msis.withLock { $0.append(number) } }
    func enableMSI(vectors: Int, msix: Bool) { log.withLock { $0.append("msi \(vectors) \(msix)") } }
    func allocate(length: Int, alignment: Int) throws(NTBError) -> DMABuffer { throw .unsupported("no memory in this test") }
}

/// The host's BARs over the controller's memory, R-Car S4 layout (config 0, MWs in 2, doorbells 4).
func hostBARs(_ c: RecordingController, mwBAR: TestMemory) -> [MMIORegion?] {
    var bars = [MMIORegion?](repeating: nil, count: 6)
    bars[0] = c.configSpace
    bars[2] = mwBAR.region
    bars[4] = c.doorbellSpace
    return bars
}

func vectors(_ n: Int) throws -> [EventNotifier] { try (0..<n).map { _ in try EventNotifier() } }

func noMemory(_: Int, _: Int) throws(NTBError) -> DMABuffer { throw .unsupported("no memory") }

@Suite struct EPFProtocolTests {
    @Test func hostAndEndpoint_runTheCommandProtocol() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, doorbellSlots: 16, pollInterval: .microseconds(50))
        defer { ep.stop() }
        // What vNTB publishes (epf_ntb_config_spad_bar_alloc).
        let ctrl = c.configSpace
        #expect(ctrl.load32(at: 0x20) == 2)                       // num_mws
        #expect(ctrl.load32(at: 0x28) == UInt32(EPFControl.sizeVersion1))  // spad_offset after the ctrl
        #expect(ctrl.load32(at: 0x2C) == 16)                      // spad_count
        #expect(ctrl.load32(at: 0x30) == 4)                       // db_entry_size
        #expect(ctrl.load32(at: 0x34 + 4 * 5) == 6)               // db_data[5] = 6
        #expect(ctrl.load32(at: 0x0C) == 1)                       // version 1: per-MW offsets
        #expect(ctrl.load32(at: 0x138) == 1 << 16)                // mw_offset[1]

        let mwBAR = TestMemory(1 << 17)
        let v = try vectors(16)
        let host = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: mwBAR), map: .rcarS4, vectors: v, msix: true, allocator: noMemory)
        #expect(host.configuration.memoryWindows.map(\.offset) == [0, 1 << 16])
        #expect(host.memoryWindowCount == 2 && host.scratchpadCount == 16)
        #expect(!host.isLinkUp)

        try host.setMemoryWindowTranslation(1, busAddress: 0x1_0000_2000, size: 8192)   // remembered until configured
        try host.enableLink()
        #expect(host.isLinkUp && ep.isLinkUp)
        #expect(c.log.withLock { $0 } == ["msi 16 true", "map 1 0x100002000 8192"])
        #expect(ctrl.load16(at: 0x08) == 0, "the host writes 0 to command_status after each command")
        #expect(ctrl.load32(at: 0x00) == 0 && ctrl.load32(at: 0x04) == 0, "the endpoint takes command and argument")
        #expect(ep.commandsServed == 3)

        // Scratchpad split (hardware-reference §3.3).
        host.writeScratchpad(2, 0xAA)
        #expect(ctrl.load32(at: EPFControl.sizeVersion1 + 8) == 0xAA)
        #expect(ep.readPeerScratchpad(2) == 0xAA)
        ep.writeScratchpad(1, 0xBB)
        #expect(ctrl.load32(at: EPFControl.sizeVersion1 + 16 * 4 + 4) == 0xBB)
        #expect(host.readPeerScratchpad(1) == 0xBB)

        // Host doorbell bit b -> db_data[b+2] in slot b+2 of the doorbell BAR.
        host.ringPeerDoorbell(1 << 3)
        let deadline = ContinuousClock.now + .seconds(2)
        while ep.readDoorbell() == 0 && ContinuousClock.now < deadline { _ = ep.pollEvents() }
        #expect(ep.readDoorbell() == 1 << 3)
        #expect(c.doorbells.region.load32(at: 5 * 4) == 0, "the endpoint clears the slot it took")

        // Endpoint bit b -> MSI b+3 (1-based), host vector b+2 -> host bit b.
        ep.ringPeerDoorbell(1 << 0 | 1 << 6)
        #expect(c.msis.withLock { $0 } == [3, 9])
        v[2].signal()
        v[8].signal()
        #expect(host.pollEvents().contains(.doorbell))
        #expect(host.readDoorbell() == 1 << 0 | 1 << 6)
        v[0].signal()
        #expect(host.pollEvents().contains(.link), "vector 0 is the link event")

        try host.clearMemoryWindowTranslation(1)
        try host.disableLink()
        #expect(!host.isLinkUp && !ep.isLinkUp)
        #expect(c.log.withLock { $0 }.suffix(1) == ["unmap 1"])

        // The endpoint refuses a translation: COMMAND_STATUS_ERROR becomes a typed error.
        try host.enableLink()
        #expect(throws: NTBError.commandFailed(command: "CONFIGURE_MW", status: 2)) {
            try host.setMemoryWindowTranslation(0, busAddress: 0xBAD000, size: 4096)
        }
        #expect(throws: NTBError.self) { try host.setMemoryWindowTranslation(0, busAddress: 0x1000, size: (1 << 16) + 1) }
        #expect(throws: NTBError.self) { try host.setMemoryWindowTranslation(0, busAddress: 0x1001, size: 4096) }
    }

    @Test func aCommandNobodyServes_timesOut_andIsWithdrawn() throws {
        let c = RecordingController(offsets: false)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 8, pollInterval: .milliseconds(1))
        ep.stop()   // the endpoint function is gone, its control region stays
        let mw0 = TestMemory(1 << 16), mw1 = TestMemory(1 << 16)
        var bars = [MMIORegion?](repeating: nil, count: 6)
        bars[0] = c.configSpace; bars[2] = c.doorbellSpace; bars[4] = mw0.region; bars[5] = mw1.region
        let host = try EPFHostDevice(name: "host", bars: bars, map: .imx8, vectors: try vectors(4), msix: false,
                                     commandTimeout: .milliseconds(50), allocator: noMemory)
        let start = ContinuousClock.now
        #expect(throws: NTBError.commandTimeout(command: "CONFIGURE_DOORBELL", after: .milliseconds(50))) { try host.enableLink() }
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        #expect(c.configSpace.load32(at: EPFControl.command) == 0, "a timed-out command is withdrawn")
        #expect(NTBError.commandTimeout(command: "LINK_UP", after: .seconds(1)).description.contains("endpoint function is bound"))
    }

    /// A peer that wrote garbage: each field, the value, and what we expect to hear.
    static let garbage: [(field: String, offset: Int, value: UInt32)] = [
        ("num_mws", EPFControl.memoryWindowCount, 1000),
        ("num_mws", EPFControl.memoryWindowCount, 0),
        ("spad_offset", EPFControl.spadOffset, 0x10_0000),
        ("spad_offset", EPFControl.spadOffset, 0x135),
        ("spad_offset", EPFControl.spadOffset, 8),
        ("spad_count", EPFControl.spadCount, 0xFFFF_FFFF),
        ("db_entry_size", EPFControl.doorbellEntrySize, 0),
        ("db_entry_size", EPFControl.doorbellEntrySize, 6),
        ("topology/version", EPFControl.topology, 7),
        ("mw_offset[1]", EPFControl.mwOffset(1), 0x3_0000),
        ("mw_size[0]", EPFControl.mwSize(0), 0x4_0000),
    ]

    @Test(arguments: garbage.indices)
    func garbageInTheControlRegion_isAnError(_ i: Int) throws {
        let g = Self.garbage[i]
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .milliseconds(1))
        ep.stop()
        c.configSpace.store32(g.value, at: g.offset)
        let mwBAR = TestMemory(1 << 17)
        do {
            _ = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: mwBAR), map: .rcarS4, vectors: try vectors(4), msix: false, allocator: noMemory)
            Issue.record("accepted \(g.field) = \(g.value)")
        } catch let error as NTBError {
            guard case let .invalidPeerValue(field, value, _) = error else { Issue.record("wrong error \(error)"); return }
            #expect(field == g.field)
            #expect(value == UInt64(g.value))
        }
    }

    @Test func garbageDoorbellOffsets_areRefusedAtLinkUp() throws {
        let c = RecordingController(offsets: true)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 16, pollInterval: .microseconds(50))
        defer { ep.stop() }
        // The garbage stands for a broken endpoint: vNTB itself re-publishes its fields on every service pass
        // (VNTBOwnedFieldsTests), so stop it and answer CONFIGURE_DOORBELL by hand, publishing the garbage.
        ep.stop()
        let ctrl = SendableBox(c.configSpace)
        let broken = spawnThread {
            let region = ctrl.value
            for _ in 0..<200_000 where region.load32(at: EPFControl.command) == 0 { usleep(10) }
            region.store32(0, at: EPFControl.command)
            region.store32(0x1000, at: EPFControl.doorbellOffset(3))   // slot 3 past the 256-byte BAR4
            Barrier.write()
            region.store16(EPFControl.statusOK, at: EPFControl.commandStatus)
        }
        defer { pthread_join(broken, nil) }
        let host = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: TestMemory(1 << 17)), map: .rcarS4, vectors: try vectors(8), msix: false, allocator: noMemory)
        #expect(throws: NTBError.invalidPeerValue(field: "db_offset[3]", value: 0x1000, expected: "a 4-byte aligned offset that keeps slot 3 inside the 256-byte doorbell BAR")) {
            try host.enableLink()
        }
    }

    @Test func aVanishedDevice_readsAllOnes_andIsNotUp() throws {
        let c = RecordingController(offsets: false)
        let ep = try VNTBEndpointDevice(name: "ep", controller: c, scratchpadCount: 8, pollInterval: .milliseconds(1))
        ep.stop()
        let m = c.configSpace
        for off in stride(from: 0, to: 4096, by: 4) { m.store32(0xFFFF_FFFF, at: off) }
        #expect(!EPFHostDevice.linkBit(m))
        var bars = [MMIORegion?](repeating: nil, count: 6)
        bars[0] = m; bars[2] = c.doorbellSpace; bars[4] = TestMemory(4096).region; bars[5] = TestMemory(4096).region
        #expect(throws: NTBError.self) {
            _ = try EPFHostDevice(name: "host", bars: bars, map: .imx8, vectors: try vectors(4), msix: false, allocator: noMemory)
        }
    }

    @Test func tooFewVectors_isRefused() throws {
        let c = RecordingController(offsets: true)
        #expect(throws: NTBError.self) {
            _ = try EPFHostDevice(name: "host", bars: hostBARs(c, mwBAR: TestMemory(1 << 17)), map: .rcarS4, vectors: try vectors(3), msix: false, allocator: noMemory)
        }
    }
}
