import Testing
import CNTBShim
@testable import NTBTransport

/// The v4 layout against docs/hardware-reference.md §2.2–2.3 (numbers written out here, not taken from the code).
@Suite struct HostLayoutTests {
    @Test func payloadHeaderAndRxInfoMatchTheKernelStructs() {
        // struct ntb_payload_header { unsigned int ver; unsigned int len; unsigned int flags; }
        #expect(HostWire.headerSize == 12)
        #expect(HostWire.headerVersionOffset == 0)
        #expect(HostWire.headerLengthOffset == 4)
        #expect(HostWire.headerFlagsOffset == 8)
        // struct ntb_rx_info { unsigned int entry; }
        #expect(HostWire.rxInfoSize == 4)
        // DESC_DONE_FLAG = BIT(0), LINK_DOWN_FLAG = BIT(1); NTB_TRANSPORT_VERSION = 4
        #expect(HostWire.doneFlag == 1)
        #expect(HostWire.linkDownFlag == 2)
        #expect(HostWire.version == 4)
        #expect(HostWire.defaultMTU == 0x10000)
        #expect(HostWire.minimumScratchpads == 6)
        #expect(HostWire.linkRetry == .milliseconds(10))
    }

    @Test(arguments: [
        // (name, index): VERSION 0, QP_LINKS 1, NUM_QPS 2, NUM_MWS 3, MW0_SZ_HIGH 4, MW0_SZ_LOW 5
        ("VERSION", 0), ("QP_LINKS", 1), ("NUM_QPS", 2), ("NUM_MWS", 3),
        ("MW0_SZ_HIGH", 4), ("MW0_SZ_LOW", 5), ("MW1_SZ_HIGH", 6), ("MW1_SZ_LOW", 7), ("MW2_SZ_HIGH", 8),
    ])
    func scratchpadIndices(name: String, index: Int) {
        let actual: Int = switch name {
        case "VERSION": HostWire.Scratchpad.version
        case "QP_LINKS": HostWire.Scratchpad.queuePairLinks
        case "NUM_QPS": HostWire.Scratchpad.queuePairCount
        case "NUM_MWS": HostWire.Scratchpad.memoryWindowCount
        case "MW0_SZ_HIGH": HostWire.Scratchpad.sizeHigh(0)
        case "MW0_SZ_LOW": HostWire.Scratchpad.sizeLow(0)
        case "MW1_SZ_HIGH": HostWire.Scratchpad.sizeHigh(1)
        case "MW1_SZ_LOW": HostWire.Scratchpad.sizeLow(1)
        default: HostWire.Scratchpad.sizeHigh(2)
        }
        #expect(actual == index)
    }

    @Test(arguments: [
        // (S, mtu, F, N): F = min(mtu, (S-4)/2), N = (S-4)/F
        (1 << 20, 0x10000, 0x10000, 15),
        (1 << 16, 0x10000, 32766, 2),
        (1 << 22, 0x10000, 0x10000, 63),
        (1 << 20, 4096, 4096, 255),
        (100, 0x10000, 48, 2),
    ])
    func framesOfAnArea(area: Int, mtu: Int, frame: Int, entries: Int) throws {
        let l = try #require(HostQueueLayout(areaSize: area, mtu: mtu))
        #expect(l.frameSize == frame)
        #expect(l.entryCount == entries)
        #expect(l.maxPayload == frame - 12)
        #expect(l.rxInfoOffset == area - 4)
        #expect(l.frameOffset(3) == 3 * frame)
        #expect(l.headerOffset(0) == frame - 12)
        #expect(l.headerOffset(entries - 1) == entries * frame - 12)
        #expect(l.headerOffset(entries - 1) + 12 <= area - 4)
    }

    @Test func tooSmallAreasAreRefused() {
        #expect(HostQueueLayout(areaSize: 4, mtu: 0x10000) == nil)
        #expect(HostQueueLayout(areaSize: 28, mtu: 0x10000) == nil)   // (28-4)/2 = 12: no payload byte
        #expect(HostQueueLayout(areaSize: 1 << 20, mtu: 12) == nil)
    }

    @Test func queuePairsSpreadOverWindowsAsLinuxDoes() {
        // 4 QPs over 2 MWs of 1 MiB: QP_TO_MW = qp % 2, two per window, area = 512 KiB.
        let p = (0..<4).map { QueuePairPlacement(queuePair: $0, queuePairCount: 4, windowCount: 2, windowSize: 1 << 20) }
        #expect(p.map(\.window) == [0, 1, 0, 1])
        #expect(p.map(\.offset) == [0, 0, 1 << 19, 1 << 19])
        #expect(p.allSatisfy { $0.size == 1 << 19 })
        // 3 QPs over 2 MWs: MW0 carries qp0 and qp2 (qp_count % mw_count = 1 window gets one more).
        let q = (0..<3).map { QueuePairPlacement(queuePair: $0, queuePairCount: 3, windowCount: 2, windowSize: 1 << 20) }
        #expect(q.map(\.size) == [1 << 19, 1 << 20, 1 << 19])
        #expect(q.map(\.offset) == [0, 0, 1 << 19])
        // One QP per window by default.
        #expect(QueuePairPlacement(queuePair: 0, queuePairCount: 1, windowCount: 1, windowSize: 1 << 22).size == 1 << 22)
    }
}
