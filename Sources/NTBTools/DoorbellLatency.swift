import Histogram
import NTBHardware

/// Doorbell round-trip latency between the two sides of a link (`mock latency`): the endpoint answers
/// every doorbell with one back; the host rings doorbell bit 0, waits for the answer and records the
/// round trip. Modes:
/// - `poll`: both sides spin on `pollEvents()`; the host then also measures the baseline, a scratchpad
///   write the endpoint echoes back (shared memory, both spinning).
/// - `interrupt`: both sides block in `waitForEvents`.
public struct DoorbellLatency: Sendable {
    public enum Mode: String, CaseIterable, Sendable { case poll, interrupt }

    /// Scratchpad 0 value the host leaves in the endpoint's scratchpad when it is done.
    public static let doneMagic: UInt32 = 0xD0E_D0E

    public var mode: Mode
    /// Round trips measured, after `warmup` unmeasured ones.
    public var count: Int
    public var warmup: Int

    public init(mode: Mode, count: Int, warmup: Int) {
        self.mode = mode; self.count = count; self.warmup = warmup
    }

    /// Round trips in nanoseconds: the doorbell's, and in poll mode the scratchpad baseline's.
    public struct Report {
        public var doorbell: Histogram<UInt64>
        public var baseline: Histogram<UInt64>?
    }

    private func waitDoorbell<Device: NTBDevice>(_ device: Device, deadline: ContinuousClock.Instant) -> Bool {
        while device.readDoorbell() & 1 == 0 {
            switch mode {
            case .poll: _ = device.pollEvents()
            case .interrupt: _ = device.waitForEvents(timeout: .milliseconds(100))
            }
            if ContinuousClock.now > deadline { return false }
        }
        return true
    }

    /// Endpoint: answers every doorbell until the host says it is done or goes away (in poll mode it
    /// also echoes scratchpad 1 into the host's scratchpad 2); returns how many it answered.
    public func respond<Device: NTBDevice>(_ device: Device) -> Int {
        device.writeScratchpad(0, 0)
        var answered = 0
        var seenUp = false
        var echoed = device.readScratchpad(1)
        while true {
            if device.isLinkUp { seenUp = true } else if seenUp { break }
            if device.readScratchpad(0) == Self.doneMagic { break }
            switch mode {
            case .poll:
                let v = device.readScratchpad(1)
                if v != echoed { device.writePeerScratchpad(2, v); echoed = v }
                _ = device.pollEvents()
            case .interrupt:
                _ = device.waitForEvents(timeout: .milliseconds(100))
            }
            if device.readDoorbell() & 1 != 0 {
                device.clearDoorbell(1)
                device.ringPeerDoorbell(1)
                answered += 1
            }
        }
        return answered
    }

    /// Host: rings, waits for the answer, records the round trip; in poll mode then the scratchpad
    /// baseline. `peerPresent` tells whether the endpoint runs (waited for up to 10 s first).
    public func measure<Device: NTBDevice>(_ device: Device, peerPresent: () -> Bool) throws -> Report {
        let deadline = ContinuousClock.now + .seconds(10)
        while !peerPresent() && ContinuousClock.now < deadline { _ = device.waitForEvents(timeout: .milliseconds(50)) }
        try device.enableLink()
        device.clearDoorbell(device.readDoorbell())
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        let clock = ContinuousClock()
        for i in 0..<(warmup + count) {
            let start = clock.now
            device.ringPeerDoorbell(1)
            guard waitDoorbell(device, deadline: start + .seconds(2)) else {
                throw ToolError("no answer to doorbell \(i) within 2 s; is `mock latency --role endpoint` running on this link?")
            }
            let elapsed = clock.now - start
            device.clearDoorbell(1)
            if i >= warmup { histogram.record(elapsed.nanoseconds) }
        }
        var baseline: Histogram<UInt64>?
        if mode == .poll {
            // Baseline in the same run: a scratchpad write the endpoint echoes back, both sides spinning on
            // shared memory. The doorbell path costs this plus slot/MSI handling.
            var echo = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
            var value = device.readPeerScratchpad(1)
            for i in 0..<(warmup + count) {
                value = value &+ 1 == 0 ? 1 : value &+ 1
                let start = clock.now
                device.writePeerScratchpad(1, value)
                while device.readScratchpad(2) != value {
                    if clock.now - start > .seconds(2) { throw ToolError("no scratchpad echo \(i) within 2 s") }
                }
                if i >= warmup { echo.record((clock.now - start).nanoseconds) }
            }
            baseline = echo
        }
        device.writePeerScratchpad(0, Self.doneMagic)
        return Report(doorbell: histogram, baseline: baseline)
    }
}
