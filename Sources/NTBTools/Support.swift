public import NTBPorts
#if canImport(Glibc)
import Glibc
#endif
import DWEDMA
import NTBHardware
import NTBMock
import NTBTransport
import PCIKit

/// Errors of the tools' sessions: one line that says what went wrong and what to do.
public struct ToolError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ text: String) { description = text }
}

/// Hands a value to a worker thread; each port is used by one thread at a time and the hand-over
/// happens at thread start and join.
struct Handoff<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A terminal progress line on stderr (only when stderr is a terminal).
public struct Progress {
    let enabled = isatty(2) != 0
    var last = ContinuousClock.now
    public init() {}
    public mutating func update(_ text: @autoclosure () -> String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        guard now - last >= .milliseconds(200) else { return }
        last = now
        writeStderr("\r\u{1B}[K" + text())
    }
    public func finish() { if enabled { writeStderr("\r\u{1B}[K") } }
}

extension Duration {
    /// The duration in seconds.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// The duration in nanoseconds (0 if negative).
    public var nanoseconds: UInt64 { UInt64(max(0, components.seconds)) * 1_000_000_000 + UInt64(max(0, components.attoseconds) / 1_000_000_000) }
}

/// A time limit for messages: "10 s", "0.25 s".
func formatSeconds(_ d: Duration) -> String {
    let s = d.seconds
    return s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
}

/// Writes to standard error without buffering.
public func writeStderr(_ text: String) {
    var t = text
    t.withUTF8 { b in _ = unsafe write(2, b.baseAddress, b.count) }
}

/// CPU time of the calling thread.
public func threadCPUSeconds() -> Double {
    var t = timespec()
    _ = unsafe clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// A device that can host the DW eDMA engine model (the silicon's stand-in) in this process: the
/// mock link's. The tools ask for this capability instead of naming the mock device: `edma publish`,
/// `edma inject-abort` and `edma dma` of the tool language, and perf's engine CPU.
public protocol EDMAModelHost: AnyObject {
    /// Whether this side is the link's endpoint (it hosts the engine) or its host (it drives it remotely).
    var isEDMAEndpoint: Bool { get }
    /// Endpoint: starts the engine model (once; later calls return the same engine).
    func startEDMAModel(writeChannels: Int, readChannels: Int, localInterrupt: EventNotifier?) throws(NTBError) -> EDMAEngineModel
    /// The engine model this process runs, if it was started.
    var runningEDMAModel: EDMAEngineModel? { get }
    /// Host: the endpoint's eDMA registers as this side reaches them.
    func peerEDMARegisters() throws(NTBError) -> PostedWriteRegisterSpace
}

extension EDMAModelHost {
    /// Endpoint: the running engine model, or a new one with the default channels.
    func startEDMAModel() throws(NTBError) -> EDMAEngineModel {
        try startEDMAModel(writeChannels: 4, readChannels: 5, localInterrupt: nil)
    }
}

extension MockNTBDevice: EDMAModelHost {
    public var isEDMAEndpoint: Bool { role == .endpoint }
}

/// CPU seconds of the DMA engine model this process hosts (the mock endpoint's eDMA), 0 without one:
/// the model stands for the silicon, so perf counts it apart from the transport's CPU.
public func engineCPUSeconds<Device: NTBDevice>(_ device: Device) -> Double {
    (device as? any EDMAModelHost)?.runningEDMAModel?.threadCPUSeconds ?? 0
}

/// A session the tools run on the ports of one transport (perf, pingpong, file, bye, the responder):
/// generic over the device and backend, so its data path is specialised for both.
public protocol PortSession {
    associatedtype Result
    func run<Device: NTBDevice, Backend: TransportBackend>(_ ports: PortSet<Device, Backend>) throws -> Result
    /// Opens `port`'s transport (NTBPorts decides the backend) and runs the session on it. Each session
    /// type implements it concretely (``SessionRunner``), so the data path is specialised in this module.
    func run(on port: Port, settings: TransportSettings) throws -> Result
}

/// `v` with `digits` digits after the point (as `%.Nf` prints it, without Foundation).
func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "\(v)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(v) * scale).rounded()
    guard scaled < 9e18 else { return "\(v)" }
    let n = UInt64(scaled), whole = n / UInt64(scale), frac = n % UInt64(scale)
    var f = String(frac)
    while f.count < digits { f = "0" + f }
    return (v < 0 && n != 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + f : "")
}
