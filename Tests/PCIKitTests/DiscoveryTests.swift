import Foundation
import Testing
@testable import PCIKit

@Suite struct DiscoveryTests {
    /// Two NTB functions, a non-NTB function with a known NTB device ID but the wrong class, and a NIC.
    static func fakeMachine() throws -> FakeSysfs {
        let fake = try FakeSysfs()
        let msi: [UInt8] = [0x05, 0, 0x86, 0x00] + [UInt8](repeating: 0, count: 20)   // MMC = 3 -> 8 vectors, 64-bit
        let msix: [UInt8] = [0x11, 0, 0x1f, 0x00] + [UInt8](repeating: 0, count: 8)   // table size 32
        try fake.addFunction("0000:01:00.0", vendor: 0x1912, device: 0x0030, deviceClass: 0x050000, driver: "vfio-pci", group: 12,
                             bars: [(0xfe00_0000, 0x10_0000, 0x0004_0200), (0, 0, 0), (0x80_0000_0000, 0x100_0000, 0x0014_220c)],
                             capabilities: [msi, msix], wc: [2])
        try fake.addFunction("0000:01:00.1", vendor: 0x1912, device: 0x0030, deviceClass: 0x058000, driver: "nvme", group: 12)
        try fake.addFunction("0000:02:00.0", vendor: 0x8086, device: 0x347e, deviceClass: 0x068000, group: 13)
        try fake.addFunction("0000:03:00.0", vendor: 0x1af4, device: 0x1041, deviceClass: 0x020000, driver: "virtio-pci")
        return fake
    }

    @Test func scansAFakeTreeWithDriversGroupsAndNames() throws {
        let fake = try Self.fakeMachine()
        let d = PCIDiscovery(paths: fake.paths)
        let all = try d.functions()
        #expect(all.map(\.address.description) == ["0000:01:00.0", "0000:01:00.1", "0000:02:00.0", "0000:03:00.0"])
        let nic = try #require(all.last)
        #expect(nic.vendorName == "Red Hat, Inc.")
        #expect(nic.deviceName == "Virtio 1.0 network device")
        #expect(nic.className == "Ethernet controller")
        #expect(nic.driver == "virtio-pci" && nic.iommuGroup == nil && nic.ntb == nil)
        #expect(all[0].driver == "vfio-pci" && all[0].iommuGroup == 12 && all[0].ntb?.family == .endpointFunction)
        // 1912:0030 with class 0x0580 is not the EPF NTB function (ntb_hw_epf matches class 0x0500 only).
        #expect(all[1].ntb == nil)
        #expect(try d.ntbFunctions().map(\.address.description) == ["0000:01:00.0", "0000:02:00.0"])
    }

    @Test func findsOneFunctionOrSaysItIsMissing() throws {
        let fake = try Self.fakeMachine()
        let d = PCIDiscovery(paths: fake.paths)
        #expect(try d.function(at: PCIAddress(parsing: "02:00.0")).ntb?.family == .intel)
        let missing = try PCIAddress(parsing: "0000:09:00.0")
        #expect(throws: PCIKitError.deviceNotFound(missing)) { try d.function(at: missing) }
    }

    @Test func groupMembersAndViability() throws {
        let fake = try Self.fakeMachine()
        let d = PCIDiscovery(paths: fake.paths)
        let members = try d.groupMembers(12)
        #expect(members.map(\.description) == ["0000:01:00.0 (vfio-pci)", "0000:01:00.1 (nvme)"])
        let offenders = try d.nonViableMembers(ofGroup: 12)
        #expect(offenders.map(\.address.description) == ["0000:01:00.1"])
        let e = PCIKitError.groupNotViable(group: 12, offenders: offenders)
        #expect(e.description == "IOMMU group 12 is not viable: 0000:01:00.1 is still bound to nvme; unbind it or bind it to vfio-pci too (`ntb-transport bind 0000:01:00.1`)")
    }

    @Test func barsFromSysfsResource() throws {
        let fake = try Self.fakeMachine()
        let bars = try PCIDiscovery(paths: fake.paths).bars(of: PCIAddress(parsing: "01:00.0"))
        #expect(bars.count == 2)
        #expect(bars[0] == BARInfo(index: 0, start: 0xfe00_0000, size: 0x10_0000, isIO: false, is64Bit: false,
                                   isPrefetchable: false, writeCombiningPossible: false))
        #expect(bars[1] == BARInfo(index: 2, start: 0x80_0000_0000, size: 0x100_0000, isIO: false, is64Bit: true,
                                   isPrefetchable: true, writeCombiningPossible: true))
    }

    @Test func interruptCountsFromConfigSpaceThroughLibpci() throws {
        let fake = try Self.fakeMachine()
        let caps = try PCIDiscovery(paths: fake.paths).interrupts(of: PCIAddress(parsing: "01:00.0"))
        #expect(caps == InterruptCapabilities(msiVectors: 8, msixVectors: 32, intxPin: 1))
    }

    @Test func malformedResourceIsReported() {
        #expect(throws: PCIKitError.malformed(what: "sysfs resource", detail: "line 1: 'garbage'")) {
            try BARInfo.parse(resource: "garbage\n", wcFiles: [])
        }
    }

    @Test func knownTableHasTheIssueIDs() {
        let ids = Set(KnownNTBDevices.all.map { String(format: "%04x:%04x", $0.vendor, $0.device) })
        #expect(ids == ["104c:b00d", "1957:0809", "1912:0030", "8086:201c", "8086:347e", "8086:0db4", "1022:14c0", "1022:14c3"])
        #expect(KnownNTBDevices.all.filter { $0.family == .endpointFunction }.allSatisfy { $0.deviceClass == 0x0500 })
    }

    /// On this machine: the names equal what `lspci -mm` prints (same libpci, same pci.ids).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/lspci")))
    func namesMatchLspciOnThisMachine() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/lspci")
        p.arguments = ["-mm", "-D"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        var expected: [String: (String, String, String)] = [:]
        for line in out.split(separator: "\n") {
            // 0000:00:03.0 "Ethernet controller" "Red Hat, Inc." "Virtio 1.0 network device" -r01 ...
            let addr = String(line.prefix { $0 != " " })
            let quoted = line.split(separator: "\"", omittingEmptySubsequences: false)
            guard quoted.count >= 6 else { continue }
            expected[addr] = (String(quoted[1]), String(quoted[3]), String(quoted[5]))
        }
        let functions = try PCIDiscovery().functions()
        #expect(functions.count == expected.count)
        for f in functions {
            let e = try #require(expected[f.address.description])
            #expect(f.className == e.0, "class of \(f.address)")
            #expect(f.vendorName == e.1, "vendor of \(f.address)")
            #expect(f.deviceName == e.2, "device of \(f.address)")
        }
    }
}
