import Testing
import NTBHardware
import NTBMock
import PCIKit
@testable import NTBTransport

/// Interrupt and adaptive waits batch like NAPI: a sender stuck on a full ring is rung back by the
/// drain that frees it, and a busy queue pair keeps polling instead of sleeping per message.
@Suite(.serialized) struct WaitBatchingTests {
    func pair(_ f: LinkFixture, _ mode: TransportConfiguration.WaitMode) throws -> (HostTransport, HostTransport) {
        var c = LinkFixture.configuration()
        c.waitMode = mode
        let ep = try HostTransport(device: try f.open(.endpoint), configuration: c)
        let host = try HostTransport(device: try f.open(.host), configuration: c)
        let all = host.queuePairs + ep.queuePairs
        #expect(drive(all) { all.allSatisfy(\.isLinkUp) }, "queue pairs did not link")
        return (host, ep)
    }

    /// Fills `qp`'s transmit ring; returns how many frames it took.
    func fill(_ qp: QueuePair<MockNTBDevice, HostBackend>) -> Int {
        var n = 0
        while true {
            do throws(TransportError) { try send(qp, [1, 2, 3, 4], cookie: UInt64(n)); n += 1 } catch { return n }
        }
    }

    /// Drains every frame waiting at `qp` in place; returns how many.
    func drain(_ qp: QueuePair<MockNTBDevice, HostBackend>) -> Int {
        var frames = 0
        while true {
            let n = unsafe qp.poll(limit: 1024, inPlace: { _ in frames += 1 }) { _ in }
            if n == 0 { return frames }
        }
    }

    @Test(arguments: [TransportConfiguration.WaitMode.interrupt, .adaptive])
    func aDrainThatFreesTheRingRingsTheSleepingSenderBack(mode: TransportConfiguration.WaitMode) throws {
        let f = try LinkFixture("ringback-\(mode)")
        let (host, ep) = try pair(f, mode)
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        _ = e.removeReceives()
        let sent = fill(h)
        #expect(sent >= h.transmitEntries - 1 && sent > 2)
        #expect(h.wait(timeout: .milliseconds(5)) == false, "a full ring nobody drains gives the sender nothing to do")
        let rungBefore = e.counters[.doorbells], receivedBefore = h.counters[.doorbellsReceived], wakesBefore = h.counters[.wakes]
        let receiver = UncheckedSendableBox(e)
        let t = try TransportThread(name: "late-drain") {
            TransportThread.sleep(.milliseconds(20))
            _ = self.drain(receiver.value)
        }
        #expect(h.wait(timeout: .seconds(5)))
        t.join()
        // The drain freed the whole ring: one doorbell back, taken by the sender's sleep that it ended.
        #expect(e.counters[.doorbells] - rungBefore >= 1)
        #expect(h.counters[.doorbellsReceived] - receivedBefore >= 1)
        #expect(h.counters[.wakes] - wakesBefore >= 1)
        var completed = 0
        #expect(drive([h]) { h.poll { if $0.kind == .send { completed += 1 } } > 0 || completed == sent })
        #expect(completed == sent)
    }

    @Test func aPollingReceiverRingsNothingBack() throws {
        let f = try LinkFixture("ringback-polling")
        let (host, ep) = try pair(f, .polling)
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        _ = e.removeReceives()
        let sent = fill(h)
        let rungBefore = e.counters[.doorbells]
        #expect(drain(e) == sent)
        #expect(e.counters[.doorbells] == rungBefore, "a polling peer needs no doorbell for ring space")
    }

    /// After a wake found work, an interrupt-mode queue pair polls for a while before it sleeps again:
    /// in a stream, most gaps are caught spinning, and a wait after an idle one sleeps at once.
    @Test func interruptModeKeepsPollingAfterAWake() throws {
        let f = try LinkFixture("busypoll")
        let (host, ep) = try pair(f, .interrupt)
        defer { host.close(); ep.close() }
        let h = host.queuePairs[0], e = ep.queuePairs[0]
        _ = e.removeReceives()
        let total = 20_000
        let sender = UncheckedSendableBox(h)
        let t = try TransportThread(name: "stream") {
            var sent = 0
            while sent < total {
                do throws(TransportError) { try send(sender.value, [7], cookie: 0); sent += 1 } catch {
                    _ = sender.value.poll { _ in }
                }
            }
            while sender.value.sendsInFlight > 0 { _ = sender.value.poll { _ in } }
        }
        var received = 0
        while received < total {
            received += drain(e)
            if received < total { #expect(e.wait(timeout: .seconds(5)), "the stream stalled at \(received)") }
        }
        t.join()
        #expect(e.counters[.spins] >= 1, "no gap of the stream was caught polling")
        #expect(e.counters[.wakes] <= e.counters[.interruptWaits])
        // Idle: a wait that times out sleeps, and the next one sleeps at once (no busy poll).
        #expect(e.wait(timeout: .milliseconds(5)) == false)
        let sleeps = e.counters[.interruptWaits], spins = e.counters[.spins]
        #expect(e.wait(timeout: .milliseconds(5)) == false)
        #expect(e.counters[.interruptWaits] == sleeps + 1 && e.counters[.spins] == spins)
    }
}
