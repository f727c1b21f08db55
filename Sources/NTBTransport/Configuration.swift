/// Set-up parameters of a transport (the Linux module parameters, plus ours), the same for every
/// backend; what one backend needs is its ``TransportBackend/Options``.
public struct TransportConfiguration: Sendable, Equatable {
    /// `transport_mtu`: the largest frame (default 64 KiB). Both sides must use the same value.
    public var mtu: Int = HostWire.defaultMTU
    /// `max_num_clients`: how many queue pairs to run; nil = Linux's default (one per memory window,
    /// at most ilog2(doorbell mask)). More than one per window spreads them as `qp % mw_count`.
    public var queuePairs: Int? = nil
    /// `max_mw_size`: caps the window size we advertise; nil = no cap.
    public var maxMemoryWindowSize: Int? = nil
    /// How many receive buffers a queue pair holds posted at once.
    public var receiveQueueDepth: Int = 512
    /// How ``QueuePair/wait(timeout:)`` waits for work.
    public var waitMode: WaitMode = .adaptive
    /// Where to publish the counters for `ntb-transport stats` (nil: keep them in memory).
    public var statisticsPath: String? = nil
    /// How often the link monitor thread runs the handshake and link checks; nil: call
    /// ``Transport/poll()`` yourself.
    public var linkMonitorInterval: Duration? = .milliseconds(1)
    /// The longest the link monitor sleeps while the link and every queue pair are up and nothing
    /// changes (it backs off from `linkMonitorInterval` by doubling): how late a link loss the device
    /// reports no event for may be noticed. Linux reacts to link events and retries every
    /// `NTB_LINK_DOWN_TIMEOUT` (10 ms); the default matches that.
    public var linkMonitorIdleInterval: Duration = .milliseconds(10)

    public init() {}

    /// How a queue pair waits for completions.
    public enum WaitMode: String, Sendable, CaseIterable {
        /// Spin on the ring; lowest latency, one busy core per waiting thread.
        case polling
        /// Sleep on the doorbell interrupt (eventfd) every time.
        case interrupt
        /// Spin for a while, then sleep on the interrupt; the spin budget adapts to how soon work
        /// arrived after recent sleeps.
        case adaptive
    }
}
