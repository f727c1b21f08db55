import PCIKit
import Testing
@testable import NTBTransport

/// The two sides of one queue pair: each has its own QP area (two rings) that the other writes.
struct RingPair {
    let hostArea = TestWindow(length: EDMARing.queuePairAreaSize)
    let epArea = TestWindow(length: EDMARing.queuePairAreaSize)

    func ring(_ area: TestWindow, _ number: Int) -> MMIORegion {
        area.region.subregion(offset: EDMARing.ringOffset(number), length: EDMARing.size)
    }

    /// Host → endpoint: the host's transmit ring and the endpoint's receive ring are both ring 0.
    func hostSender() -> EDMARingSender<MMIORegion, MMIORegion> {
        let n = EDMARing.ringNumber(.transmit, isEndpoint: false)
        return EDMARingSender(local: ring(hostArea, n), remote: ring(epArea, n))
    }
    func epReceiver() -> EDMARingReceiver<MMIORegion, MMIORegion> {
        let n = EDMARing.ringNumber(.receive, isEndpoint: true)
        return EDMARingReceiver(local: ring(epArea, n), remote: ring(hostArea, n))
    }
    /// Endpoint → host: ring 1.
    func epSender() -> EDMARingSender<MMIORegion, MMIORegion> {
        let n = EDMARing.ringNumber(.transmit, isEndpoint: true)
        return EDMARingSender(local: ring(epArea, n), remote: ring(hostArea, n))
    }
    func hostReceiver() -> EDMARingReceiver<MMIORegion, MMIORegion> {
        let n = EDMARing.ringNumber(.receive, isEndpoint: false)
        return EDMARingReceiver(local: ring(hostArea, n), remote: ring(epArea, n))
    }
}

@Suite struct EDMARingProtocolTests {
    @Test func postSendCompleteReceiveInBothDirections() throws {
        let pair = RingPair()
        for (var tx, var rx, ringNumber) in [(pair.hostSender(), pair.epReceiver(), 0), (pair.epSender(), pair.hostReceiver(), 1)] {
            do { let r = try tx.reserve().get(); #expect(r == nil) }
            rx.post(busAddress: 0x10_0000, length: 100)
            rx.post(busAddress: 0x20_0000, length: 200)
            // Not visible before publish.
            #expect(tx.available() == 0)
            rx.publish()
            #expect(tx.available() == 2)
            let first = try #require(try tx.reserve().get())
            #expect(first == EDMAPostedBuffer(index: 0, busAddress: 0x10_0000, capacity: 100))
            tx.setLength(60, of: first)
            do { let e = rx.next(); #expect(e == .none) }
            tx.complete()
            do { let e = rx.next(); #expect(e == .received(index: 0, length: 60)) }
            do { let e = rx.next(); #expect(e == .none) }
            let second = try #require(try tx.reserve().get())
            tx.setLength(200, of: second)
            tx.complete()
            do { let e = rx.next(); #expect(e == .received(index: 1, length: 200)) }
            #expect(rx.outstanding == 0 && tx.inFlight == 0)
            // The wire format: the receiver's head and the sender's tail are in the other side's copy.
            let senderLocal = ringNumber == 0 ? pair.hostArea : pair.epArea
            let receiverLocal = ringNumber == 0 ? pair.epArea : pair.hostArea
            let base = EDMARing.ringOffset(ringNumber)
            #expect(senderLocal.region.load32(at: base + EDMARing.headOffset) == 2)
            #expect(receiverLocal.region.load32(at: base + EDMARing.tailOffset) == 2)
            #expect(receiverLocal.region.load32(at: base + 24 + EDMARing.flagsOffset) == EDMARing.doneFlag)
            #expect(senderLocal.region.load64(at: base + 24 + EDMARing.addressOffset) == 0x20_0000)
        }
    }

    @Test func indicesRunPastTheRingSizeAndWrap() throws {
        let pair = RingPair()
        var tx = pair.hostSender(), rx = pair.epReceiver()
        var received = 0
        for round in 0..<1000 {
            while rx.postable > 0 { rx.post(busAddress: 0x1000 * UInt64(round + 1), length: 512) }
            rx.publish()
            #expect(tx.available() == 127 - UInt32(tx.inFlight))
            for _ in 0..<(1 + round % 127) {
                guard let b = try tx.reserve().get() else { break }
                tx.setLength(UInt32(1 + Int(b.index) % 512), of: b)
                tx.complete()
            }
            while case let .received(index, length) = rx.next() {
                #expect(length == 1 + Int(index) % 512)
                received += 1
            }
        }
        #expect(UInt32(received) == tx.completed)
        #expect(received > 2 * 128)
    }

    @Test func linkDownFlagEndsTheQueuePair() throws {
        let pair = RingPair()
        var tx = pair.epSender(), rx = pair.hostReceiver()
        rx.post(busAddress: 0x4000, length: 64)
        rx.publish()
        _ = try #require(try tx.reserve().get())
        tx.complete(flags: EDMARing.linkDownFlag)
        do { let e = rx.next(); #expect(e == .linkDown(index: 0)) }
    }

    @Test func impossiblePeerValuesAreReportedNotTrusted() throws {
        let pair = RingPair()
        var tx = pair.hostSender(), rx = pair.epReceiver()
        rx.post(busAddress: 0x4000, length: 64)
        rx.publish()
        let epRing0 = pair.ring(pair.epArea, 0), hostRing0 = pair.ring(pair.hostArea, 0)

        // Tail beyond the posts.
        epRing0.store32(5, at: EDMARing.tailOffset)
        guard case .corrupt = rx.next() else { Issue.record("tail beyond posts accepted"); return }
        // Tail right, but no DONE flag.
        epRing0.store32(1, at: EDMARing.tailOffset)
        guard case .corrupt = rx.next() else { Issue.record("descriptor without DONE accepted"); return }
        // DONE, but longer than the posted buffer.
        epRing0.store32(EDMARing.doneFlag, at: EDMARing.flagsOffset)
        epRing0.store32(65, at: EDMARing.lengthOffset)
        do { let e = rx.next(); #expect(e == .corrupt("descriptor 0 reports 65 bytes for a buffer of 64")) }
        epRing0.store32(64, at: EDMARing.lengthOffset)
        do { let e = rx.next(); #expect(e == .received(index: 0, length: 64)) }

        // Head claiming 200 posts.
        hostRing0.store32(200, at: EDMARing.headOffset)
        #expect(tx.available() == nil)
        guard case .failure = tx.reserve() else { Issue.record("impossible head accepted"); return }
        // A posted descriptor with length 0.
        hostRing0.store32(1, at: EDMARing.headOffset)
        hostRing0.store32(0, at: EDMARing.lengthOffset)
        do { let r = tx.reserve(); #expect(r == .failure(EDMARingCorruption("the peer posted descriptor 0 with length 0 at 0x4000"))) }
    }

    @Test func notificationPageRaisesAndCollects() {
        let page = TestWindow(length: 4096)
        EDMANotifyPage.raise(page.region, queuePair: 0)
        EDMANotifyPage.raise(page.region, queuePair: 5)
        EDMANotifyPage.raise(page.region, queuePair: 63)
        #expect(page.region.load32(at: 4 + 5 * 4) == 1)
        #expect(EDMANotifyPage.collect(page.region, queuePairs: 8) == 0b10_0001)
        #expect(EDMANotifyPage.collect(page.region, queuePairs: 8) == 0)
        #expect(EDMANotifyPage.collect(page.region, queuePairs: 64) == 1 << 63)
        #expect(page.region.load32(at: 0) == 0, "target is untouched")
    }

    @Test func queuePairsSpreadOverDataChannels() {
        #expect((0..<9).map { EDMAChannelMap.dataChannel(queuePair: $0, dataChannels: 4) } == [0, 1, 2, 3, 0, 1, 2, 3, 0])
        #expect(EDMAChannelMap.notifyChannel(dataChannels: 4) == 4)
        #expect(EDMAChannelMap.dataChannel(queuePair: 3, dataChannels: 1) == 0)
    }

    @Test func progressWatchReportsAStallOnlyWithWorkPending() {
        var watch = EDMAProgressWatch(bound: .milliseconds(100))
        let t0 = ContinuousClock.now
        do { let stalled = watch.observe(pending: false, progressed: false, now: t0); #expect(!stalled) }
        do { let stalled = watch.observe(pending: true, progressed: false, now: t0); #expect(!stalled) }
        do { let stalled = watch.observe(pending: true, progressed: false, now: t0 + .milliseconds(99)); #expect(!stalled) }
        do { let stalled = watch.observe(pending: true, progressed: true, now: t0 + .milliseconds(150)); #expect(!stalled) }
        do { let stalled = watch.observe(pending: true, progressed: false, now: t0 + .milliseconds(200)); #expect(!stalled) }
        do { let stalled = watch.observe(pending: true, progressed: false, now: t0 + .milliseconds(250)); #expect(stalled) }
        // Idle resets it.
        do { let stalled = watch.observe(pending: false, progressed: false, now: t0 + .seconds(10)); #expect(!stalled) }
        do { let stalled = watch.observe(pending: true, progressed: false, now: t0 + .seconds(10) + .milliseconds(50)); #expect(!stalled) }
    }
}
