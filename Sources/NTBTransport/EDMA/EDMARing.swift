import CNTBShim

/// The per-queue-pair rings of RFC v3 (hardware-reference §4.3; RFC v3 patch 26 `ntb_transport_edma.c`) as offsets and
/// pure index arithmetic.
///
/// Each queue pair's area starts with two `struct ntb_edma_ring` (128 × 24-byte descriptors, then
/// `head` and `tail`). Each side keeps a local copy in its inbound memory, which the peer writes through
/// its outbound window; reads are therefore always local. Indices are free-running `UInt32` counters
/// masked by 127; 127 entries are usable.
///
/// Who counts what:
/// - receiver: `produced` (buffers posted; written to the peer's `head`), `consumed` (completions taken;
///   the sender reports completions in the receiver's `tail`);
/// - sender: `issued` (transfers started), `completed` (transfers finished; written to the peer's `tail`);
///   the receiver's posts arrive in the sender's `head`.
public enum EDMARing {
    /// Descriptors per ring (`NTB_EDMA_RING_ENTRIES`).
    public static let entries = UInt32(NTB_EDMA_RING_ENTRIES)
    /// Index mask: slot = index & mask.
    public static let mask = entries - 1
    /// Entries that can be outstanding at once (one stays free so that full and empty differ).
    public static let capacity = entries - 1

    /// Bytes of one `struct ntb_edma_ring` (3080).
    public static let size = MemoryLayout<ntb_edma_ring>.size
    /// Bytes of the two rings at the start of each queue pair's area (6160); the area must be at least this.
    public static let queuePairAreaSize = 2 * size
    public static let headOffset = MemoryLayout<ntb_edma_ring>.offset(of: \ntb_edma_ring.head)!
    public static let tailOffset = MemoryLayout<ntb_edma_ring>.offset(of: \ntb_edma_ring.tail)!

    public static let descriptorSize = MemoryLayout<ntb_edma_desc>.size
    public static let lengthOffset = MemoryLayout<ntb_edma_desc>.offset(of: \ntb_edma_desc.len)!
    public static let flagsOffset = MemoryLayout<ntb_edma_desc>.offset(of: \ntb_edma_desc.flags)!
    public static let addressOffset = MemoryLayout<ntb_edma_desc>.offset(of: \ntb_edma_desc.addr)!
    public static let dataOffset = MemoryLayout<ntb_edma_desc>.offset(of: \ntb_edma_desc.data)!

    /// `flags`: the sender finished the transfer into this descriptor's buffer.
    public static let doneFlag = UInt32(NTB_EDMA_DESC_DONE_FLAG)
    /// `flags`: the sender's queue pair went down; the receiver takes its queue pair down.
    public static let linkDownFlag = UInt32(NTB_EDMA_LINK_DOWN_FLAG)

    /// A ring from one side's point of view.
    public enum Direction: Int, Sendable {
        /// The ring this side sends on (n = 0).
        case transmit = 0
        /// The ring this side receives on (n = 1).
        case receive = 1
    }

    /// The ring number in the queue pair area: n XOR is_ep (`ntb_edma_ring_sel`), so ring 0 carries
    /// RC → EP traffic and ring 1 EP → RC on both sides.
    @inlinable
    public static func ringNumber(_ direction: Direction, isEndpoint: Bool) -> Int {
        direction.rawValue ^ (isEndpoint ? 1 : 0)
    }

    /// Offset of ring `number` (0 or 1) in the queue pair area.
    @inlinable
    public static func ringOffset(_ number: Int) -> Int {
        precondition(number == 0 || number == 1, "ring \(number)")
        return number * size
    }

    /// Slot of a free-running index.
    @inlinable
    public static func slot(_ index: UInt32) -> Int { Int(index & mask) }

    /// Offset of the descriptor for free-running `index` within its ring.
    @inlinable
    public static func descriptorOffset(_ index: UInt32) -> Int { slot(index) * descriptorSize }

    /// Entries between two free-running indices (`ahead` - `behind`, modulo 2^32).
    @inlinable
    public static func used(ahead: UInt32, behind: UInt32) -> UInt32 { ahead &- behind }

    /// Receiver: buffers it may still post, from its own counters.
    /// - Precondition: `produced - consumed` ≤ 127 (both are local).
    @inlinable
    public static func postable(produced: UInt32, consumed: UInt32) -> UInt32 {
        let outstanding = used(ahead: produced, behind: consumed)
        precondition(outstanding <= capacity, "receiver has \(outstanding) buffers outstanding")
        return capacity - outstanding
    }

    /// Sender: transfers it may start now, given the peer-written `head` (the receiver's posts).
    /// - Returns: `head - issued`, or nil if `head` is impossible (more than 127 posts beyond what was
    ///   completed, or behind what was already issued): the peer wrote garbage.
    @inlinable
    public static func sendable(head: UInt32, issued: UInt32, completed: UInt32) -> UInt32? {
        let posted = used(ahead: head, behind: completed)
        let inFlight = used(ahead: issued, behind: completed)
        guard posted <= capacity, inFlight <= posted else { return nil }
        return posted - inFlight
    }

    /// Receiver: completions it may take now, given the peer-written `tail` (the sender's completions).
    /// - Returns: `tail - consumed`, or nil if `tail` is impossible (beyond what was posted): the peer
    ///   wrote garbage.
    @inlinable
    public static func completable(tail: UInt32, consumed: UInt32, produced: UInt32) -> UInt32? {
        let done = used(ahead: tail, behind: consumed)
        guard done <= used(ahead: produced, behind: consumed) else { return nil }
        return done
    }
}
