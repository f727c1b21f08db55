import ArgumentParser
import NTBHardware
import NTBMock
import PCIKit

extension MockRole: ExpressibleByArgument {}

/// Something to do with an open port, generic over the device so the data path is specialised for it.
protocol DeviceJob {
    associatedtype Result
    func run<Device: NTBDevice>(_ device: Device) throws -> Result
}

/// Which NTB port a command works on: `--port mock[:DIR] --role host|endpoint` (a mock link in DIR, default
/// /dev/shm/ntb-mock), `--port 0000:01:00.0` (an endpoint-function NTB bound to vfio-pci; host side),
/// `--port ivshmem:0000:00:06.0 --role host|endpoint` (an ivshmem-plain device bound to vfio-pci: VM to VM)
/// or `--port ivshmem-file:PATH --role host|endpoint` (the same adapter over a shared file).
/// Shared by `tool`, `perf`, `pingpong` and the other commands that open a port.
struct PortOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The NTB port: mock[:DIR] for a mock link (default DIR: \(MockLink.defaultDirectory)), the PCI address of an EPF NTB bound to vfio-pci, ivshmem:PCI-ADDRESS (ivshmem-plain bound to vfio-pci) or ivshmem-file:PATH.", valueName: "port"))
    var port: String = "mock"

    @Option(name: .long, help: "The side this process plays on a mock link or an ivshmem port: host or endpoint.")
    var role: MockRole?

    @Flag(name: .long, help: "Fast mode: the endpoint polls commands and doorbells every 100 µs instead of 5 ms (as vNTB).")
    var fast = false

    @Option(name: .customLong("poll-us"), help: ArgumentHelp("Endpoint poll interval in microseconds (overrides --fast).", valueName: "us"))
    var pollMicroseconds: Int?

    @Option(name: .customLong("peer-timeout-ms"), help: ArgumentHelp("ivshmem ports: milliseconds without the peer's heartbeat before the link is down.", valueName: "ms"))
    var peerTimeoutMilliseconds: Int = 500

    /// Where the port is (mock links; see ``pciAddress`` for devices).
    enum Target: Equatable {
        case mock(directory: String)
        case ivshmem(PCIAddress)
        case ivshmemFile(path: String)
    }

    /// The PCI address when `--port` names a device (`0000:01:00.0` or `01:00.0`).
    var pciAddress: PCIAddress? {
        port.hasPrefix("mock") || port.hasPrefix("ivshmem") ? nil : try? PCIAddress(parsing: port)
    }

    var target: Target {
        get throws {
            if port == "mock" { return .mock(directory: MockLink.defaultDirectory) }
            if port.hasPrefix("mock:") {
                let dir = String(port.dropFirst(5))
                guard !dir.isEmpty else { throw ValidationError("--port mock: needs a directory, e.g. mock:/dev/shm/ntb0") }
                return .mock(directory: dir)
            }
            if port.hasPrefix("ivshmem:") {
                guard let address = try? PCIAddress(parsing: String(port.dropFirst(8))) else {
                    throw ValidationError("--port \(port): expected ivshmem:PCI-ADDRESS, e.g. ivshmem:0000:00:06.0")
                }
                return .ivshmem(address)
            }
            if port.hasPrefix("ivshmem-file:") {
                let path = String(port.dropFirst(13))
                guard !path.isEmpty else { throw ValidationError("--port ivshmem-file: needs a path, e.g. ivshmem-file:/dev/shm/ntb-ivshmem") }
                return .ivshmemFile(path: path)
            }
            if pciAddress != nil { throw ValidationError("--port \(port) is a PCI device; this command runs on mock ports only") }
            throw ValidationError("--port \(port): expected mock, mock:DIR, ivshmem:PCI-ADDRESS, ivshmem-file:PATH or a PCI address such as 0000:01:00.0")
        }
    }

    mutating func validate() throws {
        if pciAddress != nil {
            guard role == nil || role == .host else { throw ValidationError("--port \(port) is the host side of a PCI device; --role endpoint needs a mock port") }
        } else {
            _ = try target
            guard role != nil else { throw ValidationError("--port \(port) needs --role host or --role endpoint") }
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

    /// Options for opening an ivshmem side.
    var ivshmemOptions: IVSHMEMDevice.Options {
        var o = IVSHMEMDevice.Options()
        o.peerTimeout = .milliseconds(peerTimeoutMilliseconds)
        return o
    }

    /// Opens a mock port.
    func open() throws -> MockNTBDevice {
        switch try target {
        case let .mock(directory):
            return try MockNTBDevice(directory: directory, role: role!, options: mockOptions)
        case .ivshmem, .ivshmemFile:
            throw ValidationError("--port \(port): this command runs on mock ports only")
        }
    }

    /// Opens the port (mock side or VFIO device) and runs `job` on it with the concrete device type.
    func withDevice<J: DeviceJob>(_ job: J) throws -> J.Result {
        if let address = pciAddress {
            return try job.run(try EPFHostDevice.open(vfio: address))
        }
        switch try target {
        case let .ivshmem(address):
            let device = try IVSHMEMDevice.open(vfio: address, side: role == .endpoint ? .b : .a, options: ivshmemOptions)
            defer { device.close() }
            return try job.run(device)
        case let .ivshmemFile(path):
            let device = try IVSHMEMDevice.open(file: path, side: role == .endpoint ? .b : .a, options: ivshmemOptions)
            defer { device.close() }
            return try job.run(device)
        case .mock: break
        }
        let device = try open()
        defer { device.close() }
        return try job.run(device)
    }
}
