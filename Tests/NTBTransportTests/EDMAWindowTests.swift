import PCIKit
import Testing
@testable import NTBTransport

/// Zeroed memory standing in for a mapped memory window (the host's view of the peer's eDMA window).
@safe final class TestWindow {
    let region: MMIORegion
    private let raw: UnsafeMutableRawPointer

    init(length: Int) {
        unsafe raw = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 4096)
        unsafe raw.initializeMemory(as: UInt8.self, repeating: 0, count: length)
        region = unsafe MMIORegion(base: raw, length: length)
    }

    deinit { unsafe raw.deallocate() }
}

/// Reference numbers of hardware-reference §4.2 (`ntb_edma_info`, `ntb_edma_db`) and §4.3 (rings).
@Suite struct EDMALayoutTests {
    @Test func infoOffsetsMatchTheReference() {
        #expect(EDMALayout.infoMagic == 0x4544_4D41)
        #expect(EDMALayout.infoMagicOffset == 0)
        #expect(EDMALayout.infoRegisterSizeOffset == 4)
        #expect(EDMALayout.infoChannelCountOffset == 8)
        #expect(EDMALayout.infoNotifyBaseOffset == 16)
        #expect((0..<5).map(EDMALayout.infoLinkedListOffset) == [24, 32, 40, 48, 56])
        #expect(EDMALayout.infoSize == 64)
        #expect(EDMALayout.infoLinkedListSlots == 5)
    }

    @Test func notificationPageOffsetsMatchTheReference() {
        #expect(EDMALayout.notifyTargetOffset == 0)
        #expect(EDMALayout.notifyFlagOffset(queuePair: 0) == 4)
        #expect(EDMALayout.notifyFlagOffset(queuePair: 63) == 4 + 63 * 4)
        #expect(EDMALayout.notifyPageSize == 260)
        #expect(EDMALayout.notifyMaxQueuePairs == 64)
    }

    @Test func ringOffsetsMatchTheReference() {
        #expect(EDMARing.descriptorSize == 24)
        #expect([EDMARing.lengthOffset, EDMARing.flagsOffset, EDMARing.addressOffset, EDMARing.dataOffset] == [0, 4, 8, 16])
        #expect(EDMARing.headOffset == 128 * 24)
        #expect(EDMARing.tailOffset == 128 * 24 + 4)
        #expect(EDMARing.size == 3080)
        #expect(EDMARing.queuePairAreaSize == 6160)
        #expect(EDMARing.entries == 128 && EDMARing.capacity == 127)
        #expect(EDMARing.doneFlag == 1 && EDMARing.linkDownFlag == 2)
    }

    @Test(arguments: [4096, 16384, 65536], [0x1000, 0x10000, 0x100000])
    func windowLayoutIsInfoDbRegsThenLLRegions(page: Int, regs: Int) {
        let layout = EDMAWindowLayout(pageSize: page, registerSize: regs, channelCount: 5)
        #expect(layout.infoOffset == 0)
        #expect(layout.notifyOffset == page)
        #expect(layout.registerOffset == 2 * page)
        for i in 0..<5 { #expect(layout.linkedListOffset(i) == 2 * page + regs + i * page) }
        #expect(layout.requiredSize == 7 * page + regs)
    }

    @Test func rfcLayoutWithFourKPagesAnd64KRegisters() {
        let layout = EDMAWindowLayout(pageSize: 4096, registerSize: 0x10000, channelCount: 5)
        #expect(layout.linkedListOffset(0) == 0x12000)
        #expect(layout.linkedListOffset(4) == 0x16000)
        #expect(layout.requiredSize == 0x17000)
        // Fewer channels (policy channels=2 → ch_cnt 3) shrink the window.
        #expect(EDMAWindowLayout(pageSize: 4096, registerSize: 0x10000, channelCount: 3).requiredSize == 0x15000)
    }

    @Test func readChannelRegistersNeeded() {
        // Read channel n at 0x300 + n·0x200, 0x24 bytes (hardware-reference §1.3).
        #expect(EDMAWindowLayout.registerBytesNeeded(readChannels: 5) == 0xB24)
        #expect(EDMAWindowLayout.registerBytesNeeded(readChannels: 2) == 0x524)
    }
}

/// One field of the published page changed before validation.
enum Corruption: Sendable {
    case store32(Int, UInt32)
    case store16(Int, UInt16)
    case store64(Int, UInt64)

    func apply(to window: MMIORegion) {
        switch self {
        case let .store32(offset, value): window.store32(value, at: offset)
        case let .store16(offset, value): window.store16(value, at: offset)
        case let .store64(offset, value): window.store64(value, at: offset)
        }
    }
}

struct CorruptInfoCase: CustomTestStringConvertible, Sendable {
    let name: String
    let corruption: [Corruption]
    var expectation = EDMAWindowExpectation()
    var windowLength = EDMAWindowTests.windowLength
    let problem: EDMAWindowError.Problem
    var testDescription: String { name }
}

@Suite struct EDMAWindowTests {
    static let page = 4096
    static let regs: UInt32 = 0x10000
    static let windowLength = 0x20000
    /// The endpoint-local address of window offset 0 in these tests.
    static let base: UInt64 = 0x8000_0000
    static let layout = EDMAWindowLayout(pageSize: page, registerSize: Int(regs), channelCount: 5)
    static func ll(_ i: Int) -> UInt64 { base + UInt64(layout.linkedListOffset(i)) }
    static let info = EDMAInfo(registerSize: regs, notifyAddress: base + UInt64(page),
                               linkedListAddresses: (0..<5).map(ll))

    static func published(length: Int = windowLength) -> TestWindow {
        let w = TestWindow(length: length)
        if length >= EDMALayout.infoSize { info.publish(into: w.region) }
        return w
    }

    @Test func publishedInfoValidatesWithAndWithoutTheWindowBase() throws {
        let w = Self.published()
        for base in [nil, Self.base] {
            let v = try EDMAInfo.validate(window: w.region, windowIndex: 3,
                                          expecting: EDMAWindowExpectation(peerWindowBase: base))
            #expect(v.info == Self.info)
            #expect(v.layout == Self.layout)
            #expect(v.description == "the peer published ntb_edma_info in window 3: 5 read channels (4 data + notify), reg_size 64K, layout needs 92K of 128K")
        }
    }

    @Test func publishWritesTheReferenceOffsets() {
        let w = Self.published()
        #expect(w.region.load32(at: 0) == 0x4544_4D41)
        #expect(w.region.load32(at: 4) == 0x10000)
        #expect(w.region.load16(at: 8) == 5)
        #expect(w.region.load64(at: 16) == Self.base + 4096)
        #expect(w.region.load64(at: 24) == Self.base + 0x12000)
        #expect(w.region.load64(at: 56) == Self.base + 0x16000)
        EDMAInfo.retract(from: w.region)
        #expect(w.region.load32(at: 0) == 0)
    }

    @Test func publishingFewerChannelsZeroesTheUnusedSlots() throws {
        let w = Self.published()
        let small = EDMAInfo(registerSize: Self.regs, notifyAddress: Self.base + 4096,
                             linkedListAddresses: [Self.ll(0), Self.ll(1), Self.ll(2)])
        small.publish(into: w.region)
        #expect(w.region.load64(at: 48) == 0 && w.region.load64(at: 56) == 0)
        var locator = EDMALocator()
        locator.dataChannels = 2
        let v = try EDMAInfo.validate(window: w.region, windowIndex: 1, expecting: EDMAWindowExpectation(locator))
        #expect(v.info == small)
    }

    static let corrupt: [CorruptInfoCase] = [
        CorruptInfoCase(name: "nothing published", corruption: [.store32(0, 0)], problem: .badMagic(found: 0)),
        CorruptInfoCase(name: "byte-swapped magic", corruption: [.store32(0, 0x414D_4445)], problem: .badMagic(found: 0x414D_4445)),
        CorruptInfoCase(name: "ch_cnt 200", corruption: [.store16(8, 200)], problem: .channelCountOutOfRange(found: 200)),
        CorruptInfoCase(name: "ch_cnt 1 (no data channel)", corruption: [.store16(8, 1)], problem: .channelCountOutOfRange(found: 1)),
        CorruptInfoCase(name: "ch_cnt 0", corruption: [.store16(8, 0)], problem: .channelCountOutOfRange(found: 0)),
        CorruptInfoCase(name: "ch_cnt differs from the policy", corruption: [.store16(8, 3)],
                        problem: .channelCountMismatch(published: 3, expected: 5)),
        CorruptInfoCase(name: "reg_size not a power of two", corruption: [.store32(4, 0x3000)],
                        problem: .registerSizeNotPowerOfTwo(found: 0x3000)),
        CorruptInfoCase(name: "reg_size zero", corruption: [.store32(4, 0)], problem: .registerSizeNotPowerOfTwo(found: 0)),
        CorruptInfoCase(name: "reg_size too small for the read channels", corruption: [.store32(4, 0x800)],
                        problem: .registerSizeTooSmall(found: 0x800, needed: 0xB24)),
        CorruptInfoCase(name: "reg_size beyond the window", corruption: [.store32(4, 0x10_0000)],
                        problem: .windowTooSmall(length: 0x20000, required: 7 * 4096 + 0x10_0000)),
        CorruptInfoCase(name: "reg_size differs from regs=", corruption: [],
                        expectation: EDMAWindowExpectation(registerSize: 0x8000),
                        problem: .registerSizeMismatch(published: 0x10000, expected: 0x8000)),
        CorruptInfoCase(name: "window smaller than the layout", corruption: [], windowLength: 0x16000,
                        problem: .windowTooSmall(length: 0x16000, required: 0x17000)),
        CorruptInfoCase(name: "window smaller than the info page", corruption: [], windowLength: 2048,
                        problem: .windowTooSmall(length: 2048, required: 4096)),
        CorruptInfoCase(name: "db_base zero", corruption: [.store64(16, 0)], problem: .badNotifyAddress(0)),
        CorruptInfoCase(name: "db_base misaligned", corruption: [.store64(16, base + 4096 + 2)], problem: .badNotifyAddress(base + 4098)),
        CorruptInfoCase(name: "db_base outside its page (base known)", corruption: [.store64(16, base + 0x2000)],
                        expectation: EDMAWindowExpectation(peerWindowBase: base),
                        problem: .notifyAddressOutsideWindow(found: base + 0x2000, expected: base + 0x1000)),
        CorruptInfoCase(name: "LL address zero", corruption: [.store64(40, 0)], problem: .linkedListAddressZero(channel: 2)),
        CorruptInfoCase(name: "LL address misaligned", corruption: [.store64(32, ll(1) + 0x800)],
                        problem: .linkedListAddressMisaligned(channel: 1, address: ll(1) + 0x800, pageSize: 4096)),
        CorruptInfoCase(name: "two channels share an LL region", corruption: [.store64(48, ll(0))],
                        problem: .linkedListOverlap(channel: 3, address: ll(0), with: "ll_rd_phys[0]")),
        CorruptInfoCase(name: "LL region on the notification page", corruption: [.store64(24, base + 4096)],
                        problem: .linkedListOverlap(channel: 0, address: base + 4096, with: "the notification page at db_base")),
        CorruptInfoCase(name: "LL address outside the window (base known)", corruption: [.store64(56, base + 0x10_0000)],
                        expectation: EDMAWindowExpectation(peerWindowBase: base),
                        problem: .linkedListOutsideWindow(channel: 4, address: base + 0x10_0000, expected: base + 0x16000)),
        CorruptInfoCase(name: "LL address below the window (base known)", corruption: [.store64(24, base - 4096)],
                        expectation: EDMAWindowExpectation(peerWindowBase: base),
                        problem: .linkedListOutsideWindow(channel: 0, address: base - 4096, expected: base + 0x12000)),
    ]

    @Test(arguments: corrupt)
    func corruptInfoIsRefused(_ c: CorruptInfoCase) {
        let w = Self.published(length: c.windowLength)
        for corruption in c.corruption { corruption.apply(to: w.region) }
        #expect(throws: EDMAWindowError(window: 2, c.problem)) {
            try EDMAInfo.validate(window: w.region, windowIndex: 2, expecting: c.expectation)
        }
    }

    @Test func errorMessagesNameTheFieldAndTheFix() {
        #expect(EDMAWindowError(window: 3, .badMagic(found: 0)).description
            == "the peer's eDMA window is not usable: bad magic 0x00000000 at offset 0 of window 3 (expected 0x45444d41 \"EDMA\"); the endpoint has not published its eDMA window: run it with the edma (or auto) backend, or use host for this port")
        #expect(EDMAWindowError(window: 1, .channelCountOutOfRange(found: 200)).description
            == "the peer's eDMA window is not usable: ch_cnt 200 in window 1 is out of range (2-5: data channels plus the notify channel); the endpoint published a corrupt eDMA window; restart it, and check that both sides use the same page= size")
        #expect(EDMAWindowError(window: 1, .registerSizeMismatch(published: 0x10000, expected: 0x8000)).description
            == "the peer's eDMA window is not usable: the peer published reg_size 64K in window 1, the policy says regs=32K; set regs= in the policy to the endpoint's register window size, or remove it")
    }

    /// `auto` picks edma when the peer published a valid info, host when it did not — from what the
    /// validator actually read, not from a canned probe.
    @Test func autoPicksEDMAOnlyWithAValidPublishedInfo() throws {
        let policy = try #require(Policy.parse("auto@0000:01:00.0", file: "policy.conf").policy)
        guard case let .success(port) = PolicyPort.parse("01:00.0") else { Issue.record("port"); return }
        let locator = policy.decide(for: port).locator
        func probe(_ w: TestWindow) -> EDMAProbe {
            EDMAProbe(Result { () throws(EDMAWindowError) in
                try EDMAInfo.validate(window: w.region, windowIndex: 1, expecting: EDMAWindowExpectation(locator))
            })
        }

        let valid = Self.published()
        let withInfo = policy.decide(for: port, edma: probe(valid))
        #expect(withInfo.outcome == .use(.edma))
        #expect(withInfo.reasons.last == "edma is usable: the peer published ntb_edma_info in window 1: 5 read channels (4 data + notify), reg_size 64K, layout needs 92K of 128K")

        let empty = TestWindow(length: Self.windowLength)
        let without = policy.decide(for: port, edma: probe(empty))
        #expect(without.outcome == .use(.host))
        #expect(without.reasons.contains("edma is not usable: bad magic 0x00000000 at offset 0 of window 1 (expected 0x45444d41 \"EDMA\"); trying host as the order allows"))

        let corrupt = Self.published()
        corrupt.region.store16(200, at: 8)
        #expect(policy.decide(for: port, edma: probe(corrupt)).outcome == .use(.host))
    }
}

@Suite struct EDMARingTests {
    @Test func ringSelectionIsNXorIsEP() {
        // Ring 0 carries RC → EP, ring 1 EP → RC, on both sides.
        #expect(EDMARing.ringNumber(.transmit, isEndpoint: false) == 0)
        #expect(EDMARing.ringNumber(.receive, isEndpoint: false) == 1)
        #expect(EDMARing.ringNumber(.transmit, isEndpoint: true) == 1)
        #expect(EDMARing.ringNumber(.receive, isEndpoint: true) == 0)
        #expect(EDMARing.ringOffset(1) == 3080)
    }

    @Test(arguments: [(UInt32(0), 0), (127, 127), (128, 0), (129, 1), (UInt32.max, 127)])
    func indicesAreMaskedBy127(_ index: UInt32, _ slot: Int) {
        #expect(EDMARing.slot(index) == slot)
        #expect(EDMARing.descriptorOffset(index) == slot * 24)
    }

    @Test func usedWrapsAround() {
        #expect(EDMARing.used(ahead: 5, behind: UInt32.max - 2) == 8)
        #expect(EDMARing.used(ahead: 7, behind: 7) == 0)
    }

    @Test func receiverPostsAtMost127() {
        #expect(EDMARing.postable(produced: 0, consumed: 0) == 127)
        #expect(EDMARing.postable(produced: 10, consumed: 5) == 122)
        #expect(EDMARing.postable(produced: 127, consumed: 0) == 0)
        #expect(EDMARing.postable(produced: 3, consumed: UInt32.max - 10) == 113)
    }

    @Test func senderMaySendWhatWasPostedAndNotIssued() {
        #expect(EDMARing.sendable(head: 10, issued: 4, completed: 2) == 6)
        #expect(EDMARing.sendable(head: 4, issued: 4, completed: 2) == 0)
        #expect(EDMARing.sendable(head: 3, issued: UInt32.max, completed: UInt32.max - 5) == 4)
        #expect(EDMARing.sendable(head: 127, issued: 0, completed: 0) == 127)
        // Impossible peer values: more than 127 posted, or head behind what was issued.
        #expect(EDMARing.sendable(head: 128, issued: 0, completed: 0) == nil)
        #expect(EDMARing.sendable(head: 3, issued: 4, completed: 2) == nil)
        #expect(EDMARing.sendable(head: 0xDEAD_BEEF, issued: 4, completed: 2) == nil)
    }

    @Test func receiverTakesWhatWasCompleted() {
        #expect(EDMARing.completable(tail: 5, consumed: 2, produced: 10) == 3)
        #expect(EDMARing.completable(tail: 10, consumed: 2, produced: 10) == 8)
        #expect(EDMARing.completable(tail: 1, consumed: UInt32.max - 1, produced: 4) == 3)
        #expect(EDMARing.completable(tail: 11, consumed: 2, produced: 10) == nil)
        #expect(EDMARing.completable(tail: 1, consumed: 2, produced: 10) == nil)
    }
}
