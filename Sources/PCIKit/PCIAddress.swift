/// The address of a PCI function: domain (segment), bus, device and function, written
/// `0000:01:00.0` (Linux sysfs form). `01:00.0` (lspci's short form) means domain 0.
///
/// ```swift
/// let bdf = try PCIAddress(parsing: "01:00.0")
/// print(bdf)   // 0000:01:00.0
/// ```
public struct PCIAddress: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    /// PCI domain (segment group); 16 bits on most machines, up to 32 bits behind Intel VMD.
    public var domain: UInt32
    public var bus: UInt8
    /// Device (slot) number, 0...31.
    public var device: UInt8
    /// Function number, 0...7.
    public var function: UInt8

    public init(domain: UInt32 = 0, bus: UInt8, device: UInt8, function: UInt8) {
        precondition(device < 32 && function < 8, "PCI device \(device) or function \(function) out of range")
        self.domain = domain
        self.bus = bus
        self.device = device
        self.function = function
    }

    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (hexadecimal; device 00–1f, function 0–7).
    /// - Throws: ``PCIKitError/invalidAddress(_:reason:)`` naming what is wrong.
    public init(parsing text: String) throws(PCIKitError) {
        let s = text.trimmingWhitespace()
        func bad(_ reason: String) -> PCIKitError { .invalidAddress(text, reason: reason) }
        guard !s.isEmpty else { throw bad("it is empty") }
        let colon = s.split(separator: ":", omittingEmptySubsequences: false)
        guard colon.count == 2 || colon.count == 3 else { throw bad("expected DDDD:BB:DD.F or BB:DD.F") }
        let devFunc = colon[colon.count - 1].split(separator: ".", omittingEmptySubsequences: false)
        guard devFunc.count == 2 else { throw bad("the device and function must be separated by '.'") }
        func hex(_ part: Substring, _ name: String, maxDigits: Int, max: UInt32) throws(PCIKitError) -> UInt32 {
            guard !part.isEmpty, part.count <= maxDigits, let v = UInt32(part, radix: 16) else {
                throw bad("\(name) '\(part)' is not a hexadecimal number of at most \(maxDigits) digits")
            }
            guard v <= max else { throw bad("\(name) \(part) is larger than \(String(max, radix: 16))") }
            return v
        }
        let domain = colon.count == 3 ? try hex(colon[0], "domain", maxDigits: 8, max: .max) : 0
        let bus = try hex(colon[colon.count - 2], "bus", maxDigits: 2, max: 0xff)
        let device = try hex(devFunc[0], "device", maxDigits: 2, max: 0x1f)
        let function = try hex(devFunc[1], "function", maxDigits: 1, max: 7)
        self.init(domain: domain, bus: UInt8(bus), device: UInt8(device), function: UInt8(function))
    }

    /// `0000:01:00.0`, the form sysfs uses for directory names.
    public var description: String {
        hex(domain, 4) + ":" + hex(bus, 2) + ":" + hex(device, 2) + "." + String(function, radix: 16)
    }

    /// `01:00.0`, the form lspci prints for domain 0.
    public var shortDescription: String {
        domain == 0 ? hex(bus, 2) + ":" + hex(device, 2) + "." + String(function, radix: 16) : description
    }

    public static func < (a: PCIAddress, b: PCIAddress) -> Bool {
        (a.domain, a.bus, a.device, a.function) < (b.domain, b.bus, b.device, b.function)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try PCIAddress(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

@inline(__always)
func hex<T: BinaryInteger>(_ v: T, _ width: Int) -> String {
    let s = String(v, radix: 16)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
