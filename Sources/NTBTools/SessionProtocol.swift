import CNTBShim
import NTBTransport

/// The tools' control messages, carried on queue pair 0 between an initiator (`perf`, `pingpong`,
/// `send`, `demo`) and a responder (`serve`, `recv`, the demo's second process).
///
/// A control message is exactly 64 bytes: magic (u64), type (u32), status (u32), six u64 arguments,
/// little-endian. Anything else on the queue pair is data.
public struct ControlMessage: Equatable, Sendable {
    public static let size = 64
    public static let magic: UInt64 = 0x3130_4C54_4342_544E  // "NTBCTL01"

    public enum Kind: UInt32, Sendable {
        /// a0 = message size, a1 = messages per queue pair (0: until END), a2 = queue pairs, a3 = batch.
        case startPerf = 1
        /// Sent on every queue pair after its last data message.
        case endPerf = 2
        /// a0 = bytes received, a1 = messages, a2 = CPU ns of the responder, a3 = elapsed ns; status 0 = ok.
        case result = 3
        /// a0 = message size, a1 = round trips; the responder echoes until END.
        case startPingpong = 4
        case endPingpong = 5
        /// a0 = file size, a1 = name length; the name follows as the next message.
        case startFile = 6
        /// a0 = CRC-32C of the content.
        case endFile = 7
        /// The initiator is done; the responder exits.
        case bye = 8
    }

    public var kind: Kind
    public var status: UInt32 = 0
    public var a: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)

    public init(_ kind: Kind, status: UInt32 = 0, _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0) {
        self.kind = kind
        self.status = status
        a = (a0, a1, a2, a3, 0, 0)
    }

    public static func == (l: ControlMessage, r: ControlMessage) -> Bool {
        l.kind == r.kind && l.status == r.status && l.a.0 == r.a.0 && l.a.1 == r.a.1 && l.a.2 == r.a.2 && l.a.3 == r.a.3
    }

    /// Writes the message into `buffer` (at least 64 bytes).
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size)
        func put(_ v: UInt64, _ at: Int) { unsafe buffer.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self) }
        put(Self.magic, 0)
        unsafe buffer.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 8, as: UInt32.self)
        unsafe buffer.storeBytes(of: status.littleEndian, toByteOffset: 12, as: UInt32.self)
        put(a.0, 16); put(a.1, 24); put(a.2, 32); put(a.3, 40); put(a.4, 48); put(a.5, 56)
    }

    /// Parses a control message; nil for data.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.size else { return nil }
        func get(_ at: Int) -> UInt64 { UInt64(littleEndian: unsafe bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        guard get(0) == Self.magic,
              let kind = Kind(rawValue: UInt32(littleEndian: unsafe bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        else { return nil }
        self.kind = kind
        status = UInt32(littleEndian: unsafe bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        a = (get(16), get(24), get(32), get(40), get(48), get(56))
    }
}

/// CRC-32C (Castagnoli), the end-to-end checksum of file transfers: the C shim's `ntb_crc32c`
/// (the CPU's CRC instruction, SSE4.2 or ARMv8, chosen at run time; a table where there is none).
public struct CRC32C: Sendable {
    public init() {}
    /// The CRC register (before the final XOR).
    public private(set) var value: UInt32 = 0xFFFF_FFFF

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        // ntb_crc32c takes and returns the finished CRC (register XOR 0xFFFFFFFF).
        value = unsafe ntb_crc32c(value ^ 0xFFFF_FFFF, bytes.baseAddress, bytes.count) ^ 0xFFFF_FFFF
    }

    public var checksum: UInt32 { value ^ 0xFFFF_FFFF }
}
