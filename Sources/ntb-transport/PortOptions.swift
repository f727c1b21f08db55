import ArgumentParser
import NTBHardware
import NTBMock
import NTBPorts
import PCIKit

extension MockRole: ExpressibleByArgument {}
extension PortRole: ExpressibleByArgument {}

/// The job protocols live in NTBPorts; the commands name them as before.
typealias DeviceJob = NTBPorts.DeviceJob
typealias TransportJob = NTBPorts.TransportJob

/// Which NTB port a command works on: `--port mock[:DIR] --role host|endpoint` (a mock link in DIR, default
/// /dev/shm/ntb-mock), `--port 0000:01:00.0` (an NTB function bound to vfio-pci; host side),
/// `--port ivshmem:0000:00:06.0 --role host|endpoint` (an ivshmem-plain device bound to vfio-pci: VM to VM)
/// or `--port ivshmem-file:PATH --role host|endpoint` (the same adapter over a shared file).
/// Only parses: NTBPorts (``Port``) picks the adapter and opens the device.
struct PortOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The NTB port: mock[:DIR] for a mock link (default DIR: \(MockLink.defaultDirectory)), the PCI address of an EPF NTB bound to vfio-pci, ivshmem:PCI-ADDRESS (ivshmem-plain bound to vfio-pci) or ivshmem-file:PATH.", valueName: "port"))
    var port: String = "mock"

    @Option(name: .long, help: "The side this process plays on a mock link or an ivshmem port: host or endpoint.")
    var role: PortRole?

    @Flag(name: .long, help: "Fast mode: the endpoint polls commands and doorbells every 100 µs instead of 5 ms (as vNTB).")
    var fast = false

    @Option(name: .customLong("poll-us"), help: ArgumentHelp("Endpoint poll interval in microseconds (overrides --fast).", valueName: "us"))
    var pollMicroseconds: Int?

    @Option(name: .customLong("peer-timeout-ms"), help: ArgumentHelp("ivshmem ports: milliseconds without the peer's heartbeat before the link is down.", valueName: "ms"))
    var peerTimeoutMilliseconds: Int = 500

    /// The port, parsed.
    var address: PortAddress {
        get throws(ValidationError) {
            do throws(PortError) { return try PortAddress.parse(port) } catch {
                if case let .badPort(text, expected) = error { throw ValidationError("--port \(text): \(expected)") }
                throw ValidationError("--port \(port): \(error)")
            }
        }
    }

    mutating func validate() throws {
        let address = try self.address
        if address.needsRole {
            guard role != nil else { throw ValidationError("--port \(port) needs --role host or --role endpoint") }
        } else if role == .endpoint {
            throw ValidationError("--port \(port) is the host side of a PCI device; --role endpoint needs a mock or ivshmem port")
        }
        guard peerTimeoutMilliseconds >= 50 && peerTimeoutMilliseconds <= 600_000 else {
            throw ValidationError("--peer-timeout-ms must be 50...600000")
        }
        if let us = pollMicroseconds, us < 0 || us > 1_000_000 {
            throw ValidationError("--poll-us must be 0...1000000")
        }
    }

    /// Options for opening a mock side.
    var mockOptions: MockNTBDevice.Options {
        var o: MockNTBDevice.Options = fast ? .fast : .init()
        if let us = pollMicroseconds { o.pollInterval = .microseconds(us) }
        return o
    }

    /// How the adapters open the device.
    var deviceOptions: PortDeviceOptions {
        var o = PortDeviceOptions()
        o.mock = mockOptions
        o.ivshmem.peerTimeout = .milliseconds(peerTimeoutMilliseconds)
        return o
    }

    /// The port to open.
    func makePort() throws -> Port {
        try Port(try address, role: role, options: deviceOptions)
    }

    /// Where this port and role publish their counters (read by `stats`).
    var statisticsPath: String? { (try? address)?.statisticsPath(role: role) }

    /// Opens a mock port (commands that drive the mock link itself).
    func open() throws -> MockNTBDevice { try makePort().openMock() }

    /// Opens the port and runs `job` on it with the concrete device type.
    func withDevice<J: DeviceJob>(_ job: J) throws -> J.Result { try makePort().withDevice(job) }
}
