/// What a queue pair reports from ``QueuePair/poll(limit:_:)``: a finished send or receive, or a
/// change of the queue pair's link (Linux `tx_handler`, `rx_handler`, `event_handler`).
public struct Completion: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        /// A sent message was consumed by the peer (or failed; see ``Completion/status``).
        case send
        /// A posted receive buffer was filled (or returned with an error).
        case receive
        /// The queue pair's link came up: sends are accepted.
        case linkUp
        /// The queue pair's link went down: every in-flight buffer was returned before this event.
        case linkDown
    }

    public enum Status: UInt8, Sendable {
        case ok
        /// The link went down before the buffer was used; nothing was transferred.
        case linkDown
        /// The received message was longer than the posted buffer (Linux: rx_err_oflow, len −EIO).
        case overflow
        /// The peer wrote a frame we could not accept (length beyond the frame); the frame was skipped.
        case invalidFrame
        /// The DMA engine aborted the transfer of this send; nothing was delivered for it. The
        /// channel recovered: later sends go on (`edma`).
        case aborted
    }

    public var kind: Kind
    public var status: Status
    /// The client's cookie given to `send` or `postReceive`; 0 for link events.
    public var cookie: UInt64
    /// Bytes sent or received (0 on error).
    public var length: Int

    @inlinable
    public init(kind: Kind, status: Status, cookie: UInt64, length: Int) {
        self.kind = kind
        self.status = status
        self.cookie = cookie
        self.length = length
    }
}
