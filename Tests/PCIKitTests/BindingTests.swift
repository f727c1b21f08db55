import Foundation
import Testing
@testable import PCIKit

/// Acts as the kernel on a fake sysfs tree: unbind removes the driver link, drivers_probe binds the
/// override driver (if its directory exists and `refuse` does not name it), driver/bind binds.
final class FakePCIKernel {
    let fake: FakeSysfs
    var refuse: Set<String> = []
    var log: [String] = []
    init(_ fake: FakeSysfs) { self.fake = fake }

    func handle(_ path: String, _ value: String) {
        let rel = path.replacingOccurrences(of: fake.root.path + "/", with: "")
        log.append("\(rel) <- \(value.trimmingCharacters(in: .whitespacesAndNewlines))")
        let bdf = value.trimmingCharacters(in: .whitespacesAndNewlines)
        let device = "sys/bus/pci/devices/\(bdf)"
        if rel.hasSuffix("/driver_override") {
            try? fake.write(rel, value)   // the kernel replaces the whole value; a plain file would keep a tail
        } else if rel.hasSuffix("/driver/unbind") {
            let dev = String(rel.dropLast("/driver/unbind".count))
            try? FileManager.default.removeItem(atPath: fake.path(dev + "/driver"))
        } else if rel == "sys/bus/pci/drivers_probe" {
            let override = (try? fake.read(device + "/driver_override"))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if !override.isEmpty, override != "(null)", !refuse.contains(override),
               FileManager.default.fileExists(atPath: fake.path("sys/bus/pci/drivers/\(override)")) {
                try? fake.symlink(device + "/driver", to: "../../drivers/\(override)")
            }
        } else if rel.hasPrefix("sys/bus/pci/drivers/"), rel.hasSuffix("/bind") {
            let driver = rel.split(separator: "/")[4]
            try? fake.symlink(device + "/driver", to: "../../drivers/\(driver)")
        }
    }
}

@Suite struct BindingTests {
    static func machine() throws -> (FakeSysfs, FakePCIKernel, PCIBinder) {
        let fake = try FakeSysfs()
        try fake.addFunction("0000:01:00.0", vendor: 0x1912, device: 0x0030, deviceClass: 0x050000, driver: "ntb_hw_epf", group: 12)
        try fake.addFunction("0000:01:00.1", vendor: 0x1912, device: 0x0031, deviceClass: 0x058000, driver: "nvme", group: 12)
        try fake.addFunction("0000:03:00.0", vendor: 0x1af4, device: 0x1041, deviceClass: 0x020000, driver: "virtio-pci")
        try FileManager.default.createDirectory(atPath: fake.path("sys/bus/pci/devices/0000:03:00.0/virtio2/net/eth0"), withIntermediateDirectories: true)
        try fake.write("sys/bus/pci/devices/0000:03:00.0/virtio2/net/eth0/operstate", "up\n")
        try fake.addDriver("vfio-pci")
        try fake.write("dev/vfio/12", "")
        let kernel = FakePCIKernel(fake)
        var binder = PCIBinder(paths: fake.paths)
        binder.kernel = kernel.handle
        return (fake, kernel, binder)
    }

    @Test func bindsThroughDriverOverrideAndWarnsAboutTheGroup() throws {
        let (fake, kernel, binder) = try Self.machine()
        let a = try PCIAddress(parsing: "01:00.0")
        let outcome = try binder.bind(a, to: "vfio-pci", unixGroup: "root")
        #expect(outcome.previousDriver == "ntb_hw_epf" && outcome.driver == "vfio-pci")
        #expect(PCIDiscovery(paths: fake.paths).driver(of: a) == "vfio-pci")
        #expect(try fake.read("sys/bus/pci/devices/0000:01:00.0/driver_override") == "vfio-pci")
        #expect(kernel.log == ["sys/bus/pci/devices/0000:01:00.0/driver_override <- vfio-pci",
                               "sys/bus/pci/devices/0000:01:00.0/driver/unbind <- 0000:01:00.0",
                               "sys/bus/pci/drivers_probe <- 0000:01:00.0"])
        #expect(outcome.warnings == ["IOMMU group 12 is not viable: 0000:01:00.1 is still bound to nvme; unbind it or bind it to vfio-pci too (`ntb-transport bind 0000:01:00.1`)"])
        #expect(outcome.deviceNode == fake.paths.vfioGroup(12))
        let st = try FileManager.default.attributesOfItem(atPath: fake.path("dev/vfio/12"))
        #expect((st[.posixPermissions] as? Int) == 0o660)
    }

    @Test func rollsBackWhenTheDriverRefuses() throws {
        let (fake, kernel, binder) = try Self.machine()
        kernel.refuse = ["vfio-pci"]
        let a = try PCIAddress(parsing: "01:00.0")
        #expect(throws: PCIKitError.bindFailed(a, driver: "vfio-pci", restored: "ntb_hw_epf")) {
            try binder.bind(a, to: "vfio-pci")
        }
        #expect(PCIDiscovery(paths: fake.paths).driver(of: a) == "ntb_hw_epf")
        #expect(try fake.read("sys/bus/pci/devices/0000:01:00.0/driver_override") == "\n")
        #expect(kernel.log.last == "sys/bus/pci/drivers/ntb_hw_epf/bind <- 0000:01:00.0")
    }

    @Test func refusesAFunctionInUseUnlessForced() throws {
        let (fake, _, binder) = try Self.machine()
        let nic = try PCIAddress(parsing: "03:00.0")
        #expect(throws: PCIKitError.deviceInUse(nic, reason: "network interface eth0 is up, driver virtio-pci")) {
            try binder.bind(nic, to: "vfio-pci")
        }
        #expect(PCIDiscovery(paths: fake.paths).driver(of: nic) == "virtio-pci")
        #expect(PCIKitError.deviceInUse(nic, reason: "network interface eth0 is up, driver virtio-pci").description
                == "0000:03:00.0 is in use (network interface eth0 is up, driver virtio-pci); stop using it first, or pass --force to take it anyway")
        let forced = try binder.bind(nic, to: "vfio-pci", force: true)
        #expect(forced.driver == "vfio-pci")
    }

    @Test func missingDriverUnknownGroupAndMissingDevice() throws {
        let (_, _, binder) = try Self.machine()
        let a = try PCIAddress(parsing: "01:00.0")
        #expect(throws: PCIKitError.driverNotLoaded("uio_pci_generic")) { try binder.bind(a, to: "uio_pci_generic") }
        #expect(throws: PCIKitError.unknownGroup("no-such-group-xyz")) { try binder.bind(a, to: "vfio-pci", unixGroup: "no-such-group-xyz") }
        let missing = try PCIAddress(parsing: "0000:7f:00.0")
        #expect(throws: PCIKitError.deviceNotFound(missing)) { try binder.bind(missing, to: "vfio-pci") }
        #expect(PCIKitError.driverNotLoaded("vfio-pci").description == "the vfio-pci driver is not loaded; run `sudo modprobe vfio-pci`")
    }

    @Test func unbindClearsTheOverrideAndRestoreReprobes() throws {
        let (fake, kernel, binder) = try Self.machine()
        let a = try PCIAddress(parsing: "01:00.0")
        _ = try binder.bind(a, to: "vfio-pci")
        kernel.log.removeAll()
        let outcome = try binder.unbind(a, restore: true)
        #expect(outcome.previousDriver == "vfio-pci" && outcome.driver == nil)
        #expect(kernel.log == ["sys/bus/pci/devices/0000:01:00.0/driver/unbind <- 0000:01:00.0",
                               "sys/bus/pci/devices/0000:01:00.0/driver_override <- ",
                               "sys/bus/pci/drivers_probe <- 0000:01:00.0"])
        #expect(try fake.read("sys/bus/pci/devices/0000:01:00.0/driver_override") == "\n")
    }
}
