/// Errors of the eDMA driver. Each description names what to change.
public enum EDMAError: Error, Equatable, CustomStringConvertible, Sendable {
    /// `ctrl` reads back no channels, or all ones (no eDMA at this offset, or the link is down).
    case noEngine(ctrl: UInt32)
    /// The channel does not exist on this engine.
    case noSuchChannel(EDMADirection, Int, available: Int)
    /// The channel is already claimed by another user in this process.
    case channelClaimed(EDMADirection, Int)
    /// The LL region cannot hold a single data element and the link, or is misaligned.
    case badLinkedListRegion(size: Int, busAddress: UInt64)
    /// More elements than the LL region holds.
    case tooManyElements(requested: Int, capacity: Int)
    /// An element has length 0 (the engine would abort it).
    case zeroLength(element: Int)
    /// A submission is still in flight on this channel.
    case channelBusy(EDMADirection, Int)
    /// An empty submission.
    case emptySubmission
    /// The engine is shared (partial ownership) and this side may not power it off.
    case notEngineOwner
    /// Waiting for a completion timed out.
    case timeout(EDMADirection, Int)
    /// `int_status` read all ones: the device (or the model) no longer answers.
    case noResponse(EDMADirection, Int)
    /// Before this claim's first start the channel was still running a chain somebody else started (a
    /// previous owner that died), and it did not stop within the bound.
    case staleChainRunning(EDMADirection, Int, waited: Duration)

    public var description: String {
        switch self {
        case .noEngine(let ctrl):
            return "no DW eDMA found: ctrl (0x008) reads \(hex(UInt64(ctrl))); check the register BAR and offset (unroll base is usually DBI + 0x80000) and that the link is up"
        case .noSuchChannel(let d, let ch, let n):
            return "\(d) channel \(ch) does not exist (the engine has \(n)); pick a channel below \(n)"
        case .channelClaimed(let d, let ch):
            return "\(d) channel \(ch) is already in use in this process; close the other user or pick another channel"
        case .badLinkedListRegion(let size, let bus):
            return "LL region of \(size) bytes at bus \(hex(bus)) is unusable: it needs at least 48 bytes and 8-byte alignment; enlarge or realign it"
        case .tooManyElements(let n, let cap):
            return "\(n) elements do not fit the LL region (capacity \(cap)); split the batch or give the channel a larger LL region"
        case .zeroLength(let e):
            return "element \(e) has length 0; drop empty buffers before submitting"
        case .channelBusy(let d, let ch):
            return "\(d) channel \(ch) still runs a submission; poll or wait for its completion first"
        case .emptySubmission:
            return "nothing to submit; pass at least one transfer"
        case .notEngineOwner:
            return "this side only owns some channels of a remotely driven engine and must not power it off; let the owner do it"
        case .noResponse(let d, let ch):
            return "\(d) channel \(ch): int_status reads all ones, the eDMA no longer answers; check the PCIe link, that the endpoint is powered, or that the engine model still runs"
        case .staleChainRunning(let d, let ch, let waited):
            return "\(d) channel \(ch) still runs a chain started by its previous owner (ch_status = running after \(waited) and a stop request); wait for it to end or reset the endpoint's eDMA before reusing the channel"
        case .timeout(let d, let ch):
            return "\(d) channel \(ch) did not complete in time; check that the engine is powered and the addresses are mapped (see ch_control1 status)"
        }
    }
}

/// `0x…` for messages.
func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
