import ArgumentParser
import Foundation
import PCIKit

extension NTBTransportCommand {
    /// `ntb-transport list [--all] [--json]`: NTB-capable functions, or every function like lspci.
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List NTB-capable PCI functions (or, with --all, every PCI function) with driver and IOMMU group.",
            discussion: """
                Known NTB IDs: \(KnownNTBDevices.all.map { e in String(format: "%04x:%04x", e.vendor, e.device) }.joined(separator: ", ")). \
                Names come from pci.ids through libpci, as lspci prints them.

                Examples:
                  ntb-transport list
                  ntb-transport list --all --json
                """)

        @Flag(name: .long, help: "List every PCI function, not only NTB-capable ones.")
        var all = false

        @Flag(name: .long, help: "Print JSON (an array of objects) instead of text.")
        var json = false

        func run() throws {
            let discovery = PCIDiscovery()
            let functions = all ? try discovery.functions() : try discovery.ntbFunctions()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(functions.map(ListEntry.init)), as: UTF8.self))
                return
            }
            if all {
                for f in functions { print(f.lspciLine) }
                return
            }
            if functions.isEmpty {
                print("no NTB-capable PCI function found (run `ntb-transport list --all` to see every function)")
                return
            }
            print(table(["BDF", "ID", "CLASS", "DRIVER", "IOMMU", "NAME"], functions.map { f in
                [f.address.description, f.idText, String(format: "%04x", f.deviceClass), f.driver ?? "-",
                 f.iommuGroup.map(String.init) ?? "-", "\(f.vendorName) \(f.deviceName)"]
            }))
        }
    }
}

/// The JSON shape of `list --json` (stable keys; IDs as 4-digit hex strings).
struct ListEntry: Encodable {
    var address: String
    var vendorID: String
    var deviceID: String
    var `class`: String
    var revision: String
    var vendorName: String
    var deviceName: String
    var className: String
    var driver: String?
    var iommuGroup: Int?
    var ntbFamily: String?

    init(_ f: PCIFunction) {
        address = f.address.description
        vendorID = String(format: "%04x", f.vendorID)
        deviceID = String(format: "%04x", f.deviceID)
        `class` = String(format: "%04x", f.deviceClass)
        revision = String(format: "%02x", f.revision)
        vendorName = f.vendorName
        deviceName = f.deviceName
        className = f.className
        driver = f.driver
        iommuGroup = f.iommuGroup
        ntbFamily = f.ntb?.family.rawValue
    }

    func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case address, vendorID, deviceID, `class`, revision, vendorName, deviceName, className, driver, iommuGroup, ntbFamily }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(address, forKey: .address)
        try c.encode(vendorID, forKey: .vendorID)
        try c.encode(deviceID, forKey: .deviceID)
        try c.encode(`class`, forKey: .class)
        try c.encode(revision, forKey: .revision)
        try c.encode(vendorName, forKey: .vendorName)
        try c.encode(deviceName, forKey: .deviceName)
        try c.encode(className, forKey: .className)
        try c.encode(driver, forKey: .driver)          // null when unbound
        try c.encode(iommuGroup, forKey: .iommuGroup)  // null without an IOMMU group
        try c.encode(ntbFamily, forKey: .ntbFamily)
    }
}
