import NTBHardware
import NTBMock
import NTBPorts
import NTBTransport
import PCIKit
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PortAddressTests {
    @Test(arguments: [
        ("mock", PortAddress.mock(directory: MockLink.defaultDirectory)),
        ("mock:/dev/shm/x", .mock(directory: "/dev/shm/x")),
        ("01:00.0", .pci(PCIAddress(bus: 1, device: 0, function: 0))),
        ("0000:5f:00.1", .pci(PCIAddress(bus: 0x5f, device: 0, function: 1))),
        ("ivshmem:0000:00:06.0", .ivshmem(PCIAddress(bus: 0, device: 6, function: 0))),
        ("ivshmem-file:/dev/shm/iv", .ivshmemFile(path: "/dev/shm/iv")),
    ])
    func goodPortsParse(_ text: String, _ expected: PortAddress) throws {
        #expect(try PortAddress.parse(text) == expected)
    }

    @Test(arguments: [
        ("mock:", "a mock port needs a directory"),
        ("ivshmem:", "expected ivshmem:PCI-ADDRESS"),
        ("ivshmem:zz", "expected ivshmem:PCI-ADDRESS"),
        ("ivshmem-file:", "ivshmem-file: needs a path"),
        ("pci0", "expected mock, mock:DIR, a PCI address"),
        ("0000:01:00.8", "expected mock, mock:DIR, a PCI address"),
        ("", "expected mock, mock:DIR, a PCI address"),
    ])
    func badPortsNameTheForm(_ text: String, _ fix: String) {
        #expect { _ = try PortAddress.parse(text) } throws: { error in
            guard let error = error as? PortError, case let .badPort(got, _) = error else { return false }
            return got == text && error.description.contains(fix)
        }
    }

    /// The policy port comes from the typed address: the same port the policy grammar parses.
    @Test(arguments: ["01:00.0", "0000:5f:00.1", "abcd:ff:1f.7", "mock:/dev/shm/x"])
    func policyPortIsTheTypedAddress(_ text: String) throws {
        let viaPolicy = try PolicyPort.parse(text).get()
        #expect(try PortAddress.parse(text).policyPort == viaPolicy)
    }

    @Test func ivshmemPortsHaveNoPolicyName() throws {
        #expect(try PortAddress.parse("ivshmem:00:06.0").policyPort == nil)
        #expect(try PortAddress.parse("ivshmem-file:/x").policyPort == nil)
    }

    @Test func aMockPortNeedsARoleAndAPCIFunctionIsTheHostSide() throws {
        #expect(throws: PortError.roleNeeded(.mock(directory: "/x"))) { _ = try Port("mock:/x", role: nil) }
        #expect(try Port("01:00.0", role: nil).role == .host)
        #expect(try Port("mock:/x", role: .endpoint).statisticsPath == "/x/stats.endpoint")
    }

    @Test func aMissingPCIFunctionIsAPCIErrorNotAString() throws {
        let port = try Port("0000:ee:1f.7", role: nil)
        #expect { _ = try port.adapter() } throws: { error in
            guard case let .pci(pci)? = error as? PortError else { return false }
            return pci == .deviceNotFound(PCIAddress(bus: 0xee, device: 0x1f, function: 7))
        }
    }
}

@Suite struct PortAdapterTableTests {
    /// Every known NTB ID maps to its adapter, or to the clear "no adapter yet".
    @Test func everyKnownIDMapsToAnAdapterOrSaysThereIsNone() {
        for entry in KnownNTBDevices.all {
            let found = PortAdapters.family(of: entry.id, deviceClass: entry.deviceClass ?? 0x0680)
            #expect(found?.0 == PortFamily(entry.family), "\(entry.summary)")
            #expect(found?.1 == entry)
            let adapter = PortAdapters.adapter(for: PortFamily(entry.family))
            switch entry.family {
            case .endpointFunction:
                #expect(adapter == .epfHost)
                #expect(entry.board != nil, "an EPF entry names its board (BAR map)")
            case .intel, .amd:
                #expect(adapter == nil)
                let text = PortError.noAdapter(PCIAddress(bus: 1, device: 0, function: 0), entry).description
                #expect(text.contains(entry.family == .intel ? "Intel NTB: no adapter yet" : "AMD NTB: no adapter yet"), "\(text)")
                #expect(text.contains(entry.linuxDriver))
            }
        }
    }

    @Test func ivshmemAndMockHaveTheirAdapters() {
        #expect(PortAdapters.family(of: PCIID(vendor: 0x1af4, device: 0x1110), deviceClass: 0x0500)?.0 == .ivshmem)
        #expect(PortAdapters.adapter(for: .ivshmem) == .ivshmem)
        #expect(PortAdapters.adapter(for: .mock) == .mock)
        #expect(PortAdapters.family(of: PCIID(vendor: 0x8086, device: 0x0d57), deviceClass: 0x0600) == nil)
        // An EPF ID with another class is not the NTB function.
        #expect(PortAdapters.family(of: PCIID(vendor: 0x104c, device: 0xb00d), deviceClass: 0x0604) == nil)
    }

    @Test func everyFamilyIsInTheTableOnce() {
        for family in PortFamily.allCases {
            #expect(PortAdapters.table.filter { $0.family == family }.count == 1, "\(family)")
        }
    }

    @Test func theConfigHeaderDecodesOrFailsClearly() throws {
        #expect(try PCIID(configHeader: [0x4c, 0x10, 0x0d, 0xb0]) == PCIID(vendor: 0x104c, device: 0xb00d))
        #expect(try PCIID(configHeader: [0x4c, 0x10, 0x0d, 0xb0]).description == "104c:b00d")
        #expect(throws: PCIKitError.self) { try PCIID(configHeader: [0x4c, 0x10]) }
    }
}

@Suite struct PortErrorWrappingTests {
    /// The errno of a failed open reaches the caller: ENOENT and ENOTDIR stay apart.
    @Test(arguments: [("/nonexistent-ntb-dir/iv", ENOENT), ("/etc/hostname/iv", ENOTDIR)])
    func anIvshmemFileErrorKeepsItsErrno(_ path: String, _ code: Int32) throws {
        let port = try Port("ivshmem-file:\(path)", role: .host)
        struct Nothing: DeviceJob { func run<Device: NTBDevice>(_ device: Device) throws {} }
        #expect { try port.withDevice(Nothing()) } throws: { error in
            guard case let .device(.pci(.system(call, errno, _)))? = error as? PortError else { return false }
            return errno == code && call == "open \(path)"
        }
    }
}
