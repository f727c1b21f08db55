public import DWEDMA
public import NTBHardware
public import PCIKit

/// Errors of the transport. Each description says what went wrong and what to do next.
public enum TransportError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A send on a queue pair whose link is down (Linux silently drops; we refuse).
    case linkDown(queuePair: Int)
    /// The peer finished the scratchpad handshake with values we cannot accept.
    case handshakeMismatch(field: String, ours: UInt64, peers: UInt64)
    /// No backend with this name is registered.
    case unknownBackend(String, available: [String])
    /// A message longer than the queue pair's frame payload.
    case messageTooLarge(length: Int, maxPayload: Int)
    /// A zero-length message (Linux: -EINVAL).
    case emptyMessage
    /// Every transmit frame is in use; poll for completions and retry (Linux: -EBUSY).
    case ringFull(queuePair: Int)
    /// The receive queue already holds as many posted buffers as it can.
    case receiveQueueFull(queuePair: Int, capacity: Int)
    /// The NTB device failed.
    case device(NTBError)
    /// The configuration or the device cannot work together.
    case invalidConfiguration(String)
    /// Waited too long for something.
    case timeout(String)
    /// A system call failed (stats file).
    case system(String)
    /// A lower layer failed (a thread could not start, ...): its error, kept whole.
    case pci(PCIKitError)
    /// The port's DW eDMA did not open (the device named, the driver's error kept whole).
    case edma(device: String, EDMAError)

    public var description: String {
        switch self {
        case let .linkDown(qp):
            return "queue pair \(qp) is not linked to the peer; start the peer (or wait for its link-up event) and resend"
        case let .handshakeMismatch(field, ours, peers):
            if field == "VERSION" {
                return "the peer speaks ntb_transport version \(peers), we speak version \(ours); run version \(ours) (Linux ntb_transport or ntb-transport) on the peer"
            }
            return "the peer published \(field) = \(peers) but we use \(ours); configure both sides with the same \(field == "NUM_QPS" ? "queue pair count (--qps / max_num_clients)" : "memory window count") and restart"
        case let .unknownBackend(name, available):
            return "no transport backend named '\(name)'; use one of: \(available.joined(separator: ", "))"
        case let .messageTooLarge(length, max):
            return "a \(length)-byte message does not fit a frame of this queue pair (at most \(max) bytes); split it or raise the MTU on both sides"
        case .emptyMessage:
            return "a message must hold at least one byte"
        case let .ringFull(qp):
            return "every transmit frame of queue pair \(qp) is in flight; poll for completions and retry"
        case let .receiveQueueFull(qp, capacity):
            return "queue pair \(qp) already holds \(capacity) posted receive buffers; poll for completions before posting more"
        case let .device(error):
            return error.description
        case let .invalidConfiguration(text):
            return text
        case let .timeout(text):
            return text
        case let .system(text):
            return text
        case let .pci(error):
            return error.description
        case let .edma(device, error):
            return "\(device): no DW eDMA answers (\(error)); on the mock link the endpoint process hosts the engine model"
        }
    }
}
