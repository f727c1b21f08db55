/// A port a policy entry names: one NTB device, by PCI address or as a mock link directory.
///
/// The policy grammar (docs/policy.md) accepts `0000:01:00.0` (domain:bus:device.function, hex) and
/// the short form `01:00.0` (domain 0000), as `lspci` and `dpdk-devbind.py` do, with the digit limits
/// of PCIKit's `PCIAddress` (domain up to 8 hex digits, as behind Intel VMD), and `mock:DIR` for a
/// mock NTB link directory. Two spellings of one PCI address are the same port; ports print in the
/// full form.
public struct PolicyPort: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// A PCI function: domain (16 bits), bus (8), device (5), function (3).
        case pci(domain: UInt32, bus: UInt8, device: UInt8, function: UInt8)
        /// A mock NTB link directory (NTBMock), as written in the policy.
        case mock(directory: String)
    }

    public let kind: Kind

    public init(_ kind: Kind) {
        if case let .pci(_, _, device, function) = kind {
            precondition(device < 32 && function < 8, "PCI device \(device) / function \(function) out of range")
        }
        if case let .mock(directory) = kind { precondition(!directory.isEmpty, "empty mock directory") }
        self.kind = kind
    }

    /// Parses a port as written in a policy or on the command line.
    /// - Returns: the port, or a ``Failure`` whose `offset` is the character (0-based) the problem is at.
    public static func parse(_ text: some StringProtocol) -> Result<PolicyPort, Failure> {
        let chars = Array(text)
        if text.hasPrefix("mock:") {
            let directory = String(chars.dropFirst(5))
            if directory.isEmpty {
                return .failure(Failure(offset: 5, message: "a mock port needs a directory, e.g. mock:/run/ntb-mock0"))
            }
            return .success(PolicyPort(.mock(directory: directory)))
        }
        // [dddd:]bb:dd.f — split on ':' and '.', remembering where each field starts for messages.
        let colons = chars.indices.filter { chars[$0] == ":" }
        guard colons.count == 1 || colons.count == 2,
              let dot = chars.lastIndex(of: "."), dot > colons.last!,
              chars.filter({ $0 == "." }).count == 1
        else {
            return .failure(Failure(offset: 0, message: "invalid port '\(text)'; expected a PCI address like 0000:01:00.0 or 01:00.0, or mock:DIR"))
        }
        var fields: [(start: Int, text: String, digits: Int, name: String, limit: UInt32)] = []
        var start = 0
        if colons.count == 2 {
            fields.append((0, String(chars[0..<colons[0]]), 8, "domain", .max))
            start = colons[0] + 1
        }
        let busEnd = colons.last!
        fields.append((start, String(chars[start..<busEnd]), 2, "bus", 0xFF))
        fields.append((busEnd + 1, String(chars[(busEnd + 1)..<dot]), 2, "device", 0x1F))
        fields.append((dot + 1, String(chars[(dot + 1)...]), 1, "function", 7))
        var values: [UInt32] = []
        for field in fields {
            guard !field.text.isEmpty, field.text.count <= field.digits, field.text.allSatisfy(\.isHexDigit), let value = UInt32(field.text, radix: 16) else {
                let digits = field.digits == 1 ? "1 digit" : "1-\(field.digits) hex digits"
                return .failure(Failure(offset: field.start,
                                        message: "invalid PCI \(field.name) '\(field.text)' in '\(text)'; expected \(digits), e.g. 0000:01:00.0"))
            }
            guard value <= field.limit else {
                let limit = String(field.limit, radix: 16)
                return .failure(Failure(offset: field.start,
                                        message: "PCI \(field.name) \(field.text) is out of range (0-\(limit)) in '\(text)'"))
            }
            values.append(value)
        }
        if values.count == 3 { values.insert(0, at: 0) }
        return .success(PolicyPort(.pci(domain: values[0], bus: UInt8(values[1]),
                                        device: UInt8(values[2]), function: UInt8(values[3]))))
    }

    /// Why a port did not parse, and where.
    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// Offset (in characters) into the parsed text.
        public let offset: Int
        public let message: String
        public var description: String { message }
    }

    public var description: String {
        switch kind {
        case let .pci(domain, bus, device, function):
            return hex(Int(domain), 4) + ":" + hex(Int(bus), 2) + ":" + hex(Int(device), 2) + "." + String(function)
        case let .mock(directory):
            return "mock:" + directory
        }
    }

    /// PCI ports first (by address), then mock ports (by directory).
    public static func < (a: PolicyPort, b: PolicyPort) -> Bool {
        switch (a.kind, b.kind) {
        case let (.pci(d1, b1, v1, f1), .pci(d2, b2, v2, f2)):
            return (d1, b1, v1, f1) < (d2, b2, v2, f2)
        case (.pci, .mock): return true
        case (.mock, .pci): return false
        case let (.mock(x), .mock(y)): return x < y
        }
    }
}

private func hex(_ value: Int, _ width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}
