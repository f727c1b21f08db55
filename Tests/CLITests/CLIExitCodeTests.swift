import Foundation
import Testing

/// Runs the built `ntb-transport` (next to the test bundle in .build/<config>/) and checks exit codes and
/// the one-line error messages.
struct CLI {
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ntb-transport")
    }

    static func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

@Suite struct CLIExitCodeTests {
    @Test func listAllPrintsEveryFunctionAndExitsZero() throws {
        let r = try CLI.run(["list", "--all"])
        #expect(r.status == 0)
        let lines = r.out.split(separator: "\n")
        let sysfs = try FileManager.default.contentsOfDirectory(atPath: "/sys/bus/pci/devices")
        #expect(lines.count == sysfs.count)
        for line in lines { #expect(line.contains(" driver=") && line.contains(" iommu_group=")) }
    }

    @Test func listJSONIsAnArrayWithStableKeys() throws {
        let r = try CLI.run(["list", "--all", "--json"])
        #expect(r.status == 0)
        let array = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]])
        #expect(!array.isEmpty)
        for entry in array {
            #expect(Set(entry.keys) == ["address", "vendorID", "deviceID", "class", "revision", "vendorName", "deviceName",
                                        "className", "driver", "iommuGroup", "ntbFamily"])
        }
    }

    @Test func unknownOptionIsAUsageError() throws {
        let r = try CLI.run(["list", "--bogus"])
        #expect(r.status == 64)
    }
}

@Suite struct CLIErrorTests {
    @Test(arguments: [["info", "zz:00"], ["bind", "0000:01:00.8"], ["unbind", ""], ["bind", "00:03.0", "--driver", "nvme"]])
    func malformedInputIsAUsageErrorOnOneLine(args: [String]) throws {
        let r = try CLI.run(args)
        #expect(r.status == 64)
        let first = try #require(r.err.split(separator: "\n").first)
        #expect(first.hasPrefix("Error: "))
        #expect(first.contains("0000:01:00.0 or 01:00.0") || first.contains("--driver must be one of"))
    }

    @Test(arguments: [["info", "0000:7f:1f.7"], ["bind", "7f:1f.7"], ["unbind", "7f:1f.7", "--restore"]])
    func aMissingDeviceIsARuntimeErrorNamingTheFix(args: [String]) throws {
        let r = try CLI.run(args)
        #expect(r.status == 1)
        #expect(r.err == "Error: no PCI function 0000:7f:1f.7 on this machine; run `ntb-transport list --all` to see the functions present\n")
    }

    @Test func infoOnARealFunctionShowsBarsAndGroup() throws {
        let first = try #require(try FileManager.default.contentsOfDirectory(atPath: "/sys/bus/pci/devices").sorted().first)
        let r = try CLI.run(["info", first])
        #expect(r.status == 0)
        #expect(r.out.hasPrefix(first + " "))
        #expect(r.out.contains("IOMMU group"))
    }
}
