import Foundation
import Testing
@testable import PCIKit

/// udev/70-ntb-transport.rules and KnownNTBDevices list the same functions (vendor, device, class).
@Suite struct UdevRulesTests {
    static var rulesText: String {
        get throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            return try String(contentsOf: root.appendingPathComponent("udev/70-ntb-transport.rules"), encoding: .utf8)
        }
    }

    struct ID: Hashable, CustomStringConvertible {
        var vendor: UInt16, device: UInt16, deviceClass: UInt16?
        var description: String { String(format: "%04x:%04x", vendor, device) + (deviceClass.map { String(format: " class %04x", $0) } ?? "") }
    }

    /// The IDs on rule lines containing `marker`.
    static func ids(in text: String, linesContaining marker: String) -> [ID] {
        func value(_ key: String, _ line: Substring) -> String? {
            guard let r = line.range(of: "ATTR{\(key)}==\"") else { return nil }
            return String(line[r.upperBound...].prefix { $0 != "\"" })
        }
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains(marker) }.compactMap { line in
            guard let v = value("vendor", line), let d = value("device", line),
                  let vendor = UInt16(v.dropFirst(2), radix: 16), let device = UInt16(d.dropFirst(2), radix: 16) else { return nil }
            let cls = value("class", line).flatMap { UInt16($0.dropFirst(2).prefix(4), radix: 16) }
            return ID(vendor: vendor, device: device, deviceClass: cls)
        }
    }

    static var table: [ID] { KnownNTBDevices.all.map { ID(vendor: $0.vendor, device: $0.device, deviceClass: $0.deviceClass) } }

    @Test func driverOverrideRulesMatchTheTable() throws {
        let rules = Self.ids(in: try Self.rulesText, linesContaining: "ATTR{driver_override}=\"vfio-pci\"")
        #expect(rules == Self.table)
    }

    @Test func groupOwnershipRulesMatchTheTable() throws {
        let rules = Self.ids(in: try Self.rulesText, linesContaining: "GOTO=\"ntb_transport_group\"")
        #expect(rules == Self.table)
    }

    @Test func classPatternsMatchSysfsClassValues() throws {
        // sysfs "class" is 0xBBSSPP; the rules match 0xBBSS?? so every programming interface matches.
        for line in try Self.rulesText.split(separator: "\n") where line.contains("ATTR{class}") {
            #expect(line.contains("ATTR{class}==\"0x0500??\""))
        }
    }
}
