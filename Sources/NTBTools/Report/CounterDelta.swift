import NTBTransport

/// What `stats --watch` prints each second: how much every counter grew since the last sample, per
/// queue pair. Gauges (ring positions, link state) are shown as they are now, not as deltas.
public struct CounterDelta: Equatable, Sendable {
    /// Per queue pair, per counter (index = `QueuePairCounter.rawValue`): the delta, or the gauge's value.
    public var values: [[UInt64]]

    /// `current` minus `previous`, queue pair by queue pair. A counter that went backwards (the process
    /// restarted and its counters began again) counts from zero: the delta is its current value.
    public init(previous: [QueuePairStatistics], current: [QueuePairStatistics]) {
        values = current.indices.map { qp in
            let now = current[qp].values
            guard qp < previous.count else { return now }
            let before = previous[qp].values
            return QueuePairCounter.allCases.map { c in
                let i = c.rawValue
                if PrometheusText.isGauge(c) { return now[i] }
                return now[i] >= before[i] ? now[i] - before[i] : now[i]
            }
        }
    }

    /// The counters that changed (gauges always), as `name value` pairs, for a compact line.
    public func changed(queuePair qp: Int) -> [(name: String, value: UInt64)] {
        guard qp < values.count else { return [] }
        return QueuePairCounter.allCases.compactMap { c in
            let v = values[qp][c.rawValue]
            return (v != 0 || c == .linkIsUp) ? (c.name, v) : nil
        }
    }
}
