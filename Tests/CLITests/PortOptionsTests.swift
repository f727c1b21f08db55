import Testing
@testable import ntb_transport
import NTBMock
import NTBPorts

@Suite struct PortOptionsTests {
    @Test func mockWithDirectoryAndRole() throws {
        let o = try PortOptions.parse(["--port", "mock:/dev/shm/x", "--role", "endpoint", "--fast"])
        #expect(try o.address == .mock(directory: "/dev/shm/x"))
        #expect(o.role == .endpoint)
        #expect(o.mockOptions.pollInterval == .microseconds(100))
    }

    @Test func defaultDirectory() throws {
        let o = try PortOptions.parse(["--role", "host", "--poll-us", "250"])
        #expect(try o.address == .mock(directory: MockLink.defaultDirectory))
        #expect(o.mockOptions.pollInterval == .microseconds(250))
    }

    @Test func pciAddressIsTheHostSideOfADevice() throws {
        let o = try PortOptions.parse(["--port", "01:00.0"])
        #expect(try o.address.description == "0000:01:00.0")
        #expect(try !o.address.needsRole)
        #expect(throws: (any Error).self) { _ = try o.open() }
    }

    @Test(arguments: [["--port", "mock"], ["--port", "mock:", "--role", "host"], ["--port", "pci0", "--role", "host"], ["--role", "host", "--poll-us", "-1"], ["--port", "01:00.0", "--role", "endpoint"]])
    func usageErrors(_ args: [String]) {
        #expect(throws: (any Error).self) { _ = try PortOptions.parse(args) }
    }
}
