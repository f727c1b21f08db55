import Testing
@testable import PCIKit

@Suite struct PCIAddressTests {
    @Test(arguments: [
        ("0000:01:00.0", PCIAddress(domain: 0, bus: 1, device: 0, function: 0)),
        ("01:00.0", PCIAddress(domain: 0, bus: 1, device: 0, function: 0)),
        ("0001:ff:1f.7", PCIAddress(domain: 1, bus: 0xff, device: 0x1f, function: 7)),
        ("10000:3a:02.1", PCIAddress(domain: 0x10000, bus: 0x3a, device: 2, function: 1)),
        (" 0000:00:03.0\n", PCIAddress(domain: 0, bus: 0, device: 3, function: 0)),
        ("AB:0C.3", PCIAddress(domain: 0, bus: 0xab, device: 0x0c, function: 3)),
    ])
    func parsesLongAndShortForms(text: String, expected: PCIAddress) throws {
        #expect(try PCIAddress(parsing: text) == expected)
    }

    @Test(arguments: [
        ("", "it is empty"),
        ("01:00", "the device and function must be separated by '.'"),
        ("1.2.3", "expected DDDD:BB:DD.F or BB:DD.F"),
        ("0000:01:20.0", "device 20 is larger than 1f"),
        ("0000:01:00.8", "function 8 is larger than 7"),
        ("0000:1g:00.0", "bus '1g' is not a hexadecimal number of at most 2 digits"),
        ("0000:100:00.0", "bus '100' is not a hexadecimal number of at most 2 digits"),
        ("a:b:c:d.0", "expected DDDD:BB:DD.F or BB:DD.F"),
    ])
    func rejectsMalformedWithTheReason(text: String, reason: String) {
        #expect(throws: PCIKitError.invalidAddress(text, reason: reason)) { try PCIAddress(parsing: text) }
    }

    @Test func printsSysfsAndLspciForms() throws {
        let a = PCIAddress(domain: 0, bus: 0x3a, device: 0x1f, function: 2)
        #expect(a.description == "0000:3a:1f.2")
        #expect(a.shortDescription == "3a:1f.2")
        #expect(PCIAddress(domain: 0x10, bus: 1, device: 2, function: 3).shortDescription == "0010:01:02.3")
        #expect(try PCIAddress(parsing: a.description) == a)
    }

    @Test func ordersByDomainBusDeviceFunction() {
        let list = [PCIAddress(domain: 1, bus: 0, device: 0, function: 0), PCIAddress(bus: 2, device: 0, function: 1),
                    PCIAddress(bus: 2, device: 0, function: 0), PCIAddress(bus: 1, device: 5, function: 0)]
        #expect(list.sorted().map(\.description) == ["0000:01:05.0", "0000:02:00.0", "0000:02:00.1", "0001:00:00.0"])
    }

    @Test func malformedMessageIsOneLineNamingTheForm() {
        let e = PCIKitError.invalidAddress("zz", reason: "expected DDDD:BB:DD.F or BB:DD.F")
        #expect(!e.description.contains("\n"))
        #expect(e.description.contains("write it as 0000:01:00.0 or 01:00.0"))
    }
}
