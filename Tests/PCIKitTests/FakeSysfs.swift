import Foundation
@testable import PCIKit

/// A fake sysfs + /dev tree in a temporary directory, shaped like the kernel's (the files libpci's
/// sysfs method and PCIKit read, and the control files binding writes).
final class FakeSysfs {
    let root: URL
    var paths: SystemPaths { SystemPaths(sysfs: root.path + "/sys", dev: root.path + "/dev", proc: root.path + "/proc") }
    private let fm = FileManager.default

    init() throws {
        root = fm.temporaryDirectory.appendingPathComponent("pcikit-fake-\(UUID().uuidString)")
        for d in ["sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/kernel/iommu_groups", "sys/class/uio", "dev/vfio", "proc"] {
            try fm.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true)
        }
        try write("sys/bus/pci/drivers_probe", "")
    }

    deinit { try? fm.removeItem(at: root) }

    func path(_ rel: String) -> String { root.appendingPathComponent(rel).path }

    func write(_ rel: String, _ text: String) throws {
        try Data(text.utf8).write(to: root.appendingPathComponent(rel))
    }

    func write(_ rel: String, bytes: [UInt8]) throws {
        try Data(bytes).write(to: root.appendingPathComponent(rel))
    }

    func read(_ rel: String) throws -> String {
        String(decoding: try Data(contentsOf: root.appendingPathComponent(rel)), as: UTF8.self)
    }

    func symlink(_ rel: String, to target: String) throws {
        try? fm.removeItem(atPath: path(rel))
        try fm.createSymbolicLink(atPath: path(rel), withDestinationPath: target)
    }

    /// Adds a driver directory with bind/unbind/new_id files.
    func addDriver(_ name: String) throws {
        try fm.createDirectory(atPath: path("sys/bus/pci/drivers/\(name)"), withIntermediateDirectories: true)
        for f in ["bind", "unbind", "new_id", "remove_id"] { try write("sys/bus/pci/drivers/\(name)/\(f)", "") }
    }

    /// Adds a PCI function with a 256-byte configuration space.
    /// - Parameters:
    ///   - bars: (start, size, IORESOURCE flags) of BARs 0...
    ///   - capabilities: raw capability structures (id, next filled in) placed from 0x40 on.
    func addFunction(_ bdf: String, vendor: UInt16, device: UInt16, deviceClass: UInt32, revision: UInt8 = 1,
                     driver: String? = nil, group: Int? = nil,
                     bars: [(UInt64, UInt64, UInt64)] = [], capabilities: [[UInt8]] = [],
                     wc: [Int] = []) throws {
        let dir = "sys/bus/pci/devices/\(bdf)"
        try fm.createDirectory(atPath: path(dir), withIntermediateDirectories: true)
        func hex(_ v: UInt64, _ w: Int) -> String { "0x" + String(String(v, radix: 16).reversed()).padding(toLength: w, withPad: "0", startingAt: 0).reversed() }
        try write(dir + "/vendor", hex(UInt64(vendor), 4) + "\n")
        try write(dir + "/device", hex(UInt64(device), 4) + "\n")
        try write(dir + "/subsystem_vendor", hex(UInt64(vendor), 4) + "\n")
        try write(dir + "/subsystem_device", "0x0001\n")
        try write(dir + "/class", hex(UInt64(deviceClass), 6) + "\n")
        try write(dir + "/revision", hex(UInt64(revision), 2) + "\n")
        try write(dir + "/irq", "11\n")
        try write(dir + "/driver_override", "(null)\n")
        var lines: [String] = []
        for i in 0..<13 {
            if i < bars.count, bars[i].1 > 0 {
                let (start, size, flags) = bars[i]
                lines.append("\(hex(start, 16)) \(hex(start + size - 1, 16)) \(hex(flags, 16))")
            } else {
                lines.append("0x0000000000000000 0x0000000000000000 0x0000000000000000")
            }
        }
        try write(dir + "/resource", lines.joined(separator: "\n") + "\n")
        for i in bars.indices where bars[i].1 > 0 { try write(dir + "/resource\(i)", "") }
        for i in wc { try write(dir + "/resource\(i)_wc", "") }
        var config = [UInt8](repeating: 0, count: 256)
        config[0] = UInt8(vendor & 0xff); config[1] = UInt8(vendor >> 8)
        config[2] = UInt8(device & 0xff); config[3] = UInt8(device >> 8)
        config[8] = revision
        config[9] = UInt8(deviceClass & 0xff); config[10] = UInt8((deviceClass >> 8) & 0xff); config[11] = UInt8(deviceClass >> 16)
        config[0x3d] = 1
        if !capabilities.isEmpty {
            config[6] = 0x10
            config[0x34] = 0x40
            var at = 0x40
            for (n, cap) in capabilities.enumerated() {
                for (k, byte) in cap.enumerated() { config[at + k] = byte }
                let next = at + ((cap.count + 3) & ~3)
                config[at + 1] = n == capabilities.count - 1 ? 0 : UInt8(next)
                at = next
            }
        }
        try write(dir + "/config", bytes: config)
        if let driver {
            try addDriver(driver)
            try symlink(dir + "/driver", to: "../../drivers/\(driver)")
        }
        if let group {
            try fm.createDirectory(atPath: path("sys/kernel/iommu_groups/\(group)/devices"), withIntermediateDirectories: true)
            try symlink(dir + "/iommu_group", to: "../../../../kernel/iommu_groups/\(group)")
            try symlink("sys/kernel/iommu_groups/\(group)/devices/\(bdf)", to: "../../../../bus/pci/devices/\(bdf)")
        }
    }
}
