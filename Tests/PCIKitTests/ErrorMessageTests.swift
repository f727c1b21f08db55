import Testing
@testable import PCIKit

@Suite struct ErrorMessageTests {
    static let a = PCIAddress(bus: 1, device: 0, function: 0)

    @Test(arguments: [
        (PCIKitError.noIOMMUGroup(a),
         "0000:01:00.0 has no IOMMU group; enable the IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line, VT-d/AMD-Vi in firmware) or bind it to uio_pci_generic instead"),
        (PCIKitError.vfioUnavailable(path: "/dev/vfio/vfio"),
         "/dev/vfio/vfio does not exist; load VFIO with `sudo modprobe vfio-pci` and bind the device with `ntb-transport bind <BDF>`"),
        (PCIKitError.wrongDriver(a, bound: "ntb_hw_epf", needed: "vfio-pci"),
         "0000:01:00.0 is bound to ntb_hw_epf, not vfio-pci; run `sudo ntb-transport bind 0000:01:00.0 --driver vfio-pci`"),
        (PCIKitError.notPermitted(path: "/sys/bus/pci/drivers_probe"),
         "no permission to write /sys/bus/pci/drivers_probe; run the command as root (sudo)"),
        (PCIKitError.ioctl(name: "VFIO_DEVICE_RESET", errno: 25, remedy: "0000:01:00.0 offers no reset method"),
         "VFIO_DEVICE_RESET failed: Inappropriate ioctl for device (errno 25); 0000:01:00.0 offers no reset method"),
    ])
    func messagesNameTheFix(error: PCIKitError, expected: String) {
        #expect(error.description == expected)
    }

    @Test func everyMessageIsOneLine() {
        let all: [PCIKitError] = [
            .system(call: "x", errno: 1, remedy: "y"), .invalidAddress("q", reason: "r"), .deviceNotFound(Self.a),
            .noIOMMUGroup(Self.a), .groupNotViable(group: 1, offenders: [.init(address: Self.a, driver: nil)]),
            .vfioPermissionDenied(path: "/dev/vfio/1"), .vfioUnavailable(path: "/dev/vfio/vfio"),
            .wrongDriver(Self.a, bound: nil, needed: "vfio-pci"), .ioctl(name: "X", errno: 16, remedy: "r"),
            .deviceBusy(Self.a), .notMappable(Self.a, region: 1, reason: "r"), .writeCombiningUnavailable(Self.a, bar: 0),
            .libpci("m"), .driverNotLoaded("vfio-pci"), .bindFailed(Self.a, driver: "vfio-pci", restored: nil),
            .deviceInUse(Self.a, reason: "r"), .unknownGroup("g"), .notPermitted(path: "/p"), .iovaExhausted(length: 1),
            .notPhysicallyContiguous(length: 1), .malformed(what: "w", detail: "d"),
            .noSuchInterrupt(Self.a, index: "MSI", count: 2, available: 1),
        ]
        for e in all {
            #expect(!e.description.contains("\n"), "\(e)")
            #expect(e.description.contains(";") || e.description.contains("run ") || e.description.contains("ask for"), "no remedy in: \(e)")
        }
    }
}
