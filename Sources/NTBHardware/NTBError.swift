public import PCIKit

/// Errors of NTB devices. Each message says what went wrong and what to do.
public enum NTBError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The peer wrote a value we cannot accept (e.g. `num_mws` = 1000); `field` names it.
    case invalidPeerValue(field: String, value: UInt64, expected: String)
    /// A command sent to the peer (e.g. CONFIGURE_MW) got no answer in time.
    case commandTimeout(command: String, after: Duration)
    /// The peer answered a command with an error status.
    case commandFailed(command: String, status: UInt32)
    /// The requested thing does not fit the device (window size too big, index out of range, ...).
    case unsupported(String)
    /// A lower layer (PCI, VFIO, memory mapping, eventfds) failed: its error, kept whole so a caller can
    /// still tell `EACCES` from `ENODEV` (``PCIKitError/system(call:errno:remedy:)`` and friends).
    case pci(PCIKitError)
    /// The link is down and the operation needs it up.
    case linkDown

    public var description: String {
        switch self {
        case let .invalidPeerValue(field, value, expected):
            return "the peer published \(field) = \(value), expected \(expected); check that both sides run compatible NTB software and restart the peer"
        case let .commandTimeout(command, after):
            return "the peer did not answer \(command) within \(after); check that the endpoint function is bound and running"
        case let .commandFailed(command, status):
            return "the peer refused \(command) (status \(status)); see the endpoint's kernel log"
        case let .unsupported(what):
            return what
        case let .pci(error):
            return error.description
        case .linkDown:
            return "the NTB link is down; start the peer and check the cable or the endpoint configuration"
        }
    }
}
