public import NTBHardware
public import NTBMock
public import PCIKit

/// Something to do with an open port, generic over the device so the data path is specialised for it.
public protocol DeviceJob {
    associatedtype Result
    func run<Device: NTBDevice>(_ device: Device) throws -> Result
}

/// How the adapters open devices (each adapter reads its own part).
public struct PortDeviceOptions: Sendable {
    /// Mock links: the endpoint's poll interval and the rest of ``MockNTBDevice/Options``.
    public var mock = MockNTBDevice.Options()
    /// ivshmem ports: the peer heartbeat timeout.
    public var ivshmem = IVSHMEMDevice.Options()
    /// Endpoint-function NTBs: how long a command to the endpoint may take.
    public var epfCommandTimeout: Duration = .seconds(1)
    public init() {}
}

/// An NTB port: where it is, which side this process plays, and how to open its device.
///
/// `Port("mock:/dev/shm/ntb0", role: .host).withDevice(job)` opens the device with the adapter the
/// port's family maps to (``PortAdapters``), runs `job` with the device's concrete type, and closes it.
public struct Port: Sendable, CustomStringConvertible {
    public let address: PortAddress
    /// The side this process plays (host for a PCI NTB function).
    public let role: PortRole
    public var options: PortDeviceOptions

    /// A port at `address`. A mock or ivshmem port needs `role`; a PCI function is the host side.
    public init(_ address: PortAddress, role: PortRole?, options: PortDeviceOptions = PortDeviceOptions()) throws(PortError) {
        if address.needsRole, role == nil { throw .roleNeeded(address) }
        self.address = address
        self.role = role ?? .host
        self.options = options
    }

    /// Parses `text` (``PortAddress/parse(_:)``) and makes the port.
    public init(_ text: String, role: PortRole?, options: PortDeviceOptions = PortDeviceOptions()) throws(PortError) {
        try self.init(try PortAddress.parse(text), role: role, options: options)
    }

    public var description: String { "\(address) (\(role))" }

    /// Where a transport on this port publishes its counters.
    public var statisticsPath: String { address.statisticsPath(role: role) }

    /// The family of the port and, for PCI functions, the known-ID entry (read from sysfs).
    public func family(discovery: PCIDiscovery = PCIDiscovery()) throws(PortError) -> (PortFamily, KnownNTBDevices.Entry?) {
        switch address {
        case .mock: return (.mock, nil)
        case .ivshmem, .ivshmemFile: return (.ivshmem, nil)
        case let .pci(pci):
            let function: PCIFunction
            do throws(PCIKitError) { function = try discovery.function(at: pci) } catch { throw .pci(error) }
            let id = PCIID(vendor: function.vendorID, device: function.deviceID)
            guard let found = PortAdapters.family(of: id, deviceClass: function.deviceClass) else {
                throw .unknownFunction(pci, id, deviceClass: function.deviceClass)
            }
            return found
        }
    }

    /// The adapter that opens this port, or why there is none.
    public func adapter(discovery: PCIDiscovery = PCIDiscovery()) throws(PortError) -> PortAdapter {
        let (family, entry) = try family(discovery: discovery)
        guard let adapter = PortAdapters.adapter(for: family) else {
            if case let .pci(pci) = address, let entry { throw .noAdapter(pci, entry) }
            throw .badPort(address.description, "\(family): no adapter")
        }
        if !adapter.playsBothSides, role == .endpoint { throw .hostSideOnly(address, adapter: adapter) }
        return adapter
    }

    /// Opens the device with the port's adapter, runs `job` with its concrete type, closes the device.
    /// Inlinable, like everything down to `job.run`: the caller's module specialises the job for the
    /// concrete device and backend (through a module boundary a generic job runs unspecialised, with
    /// metadata look-ups and witness calls per message).
    @inlinable
    public func withDevice<J: DeviceJob>(_ job: J) throws -> J.Result {
        switch try adapter() {
        case .mock:
            guard case let .mock(directory) = address else { preconditionFailure("the mock adapter serves mock ports") }
            let device = try open { () throws(NTBError) in try MockNTBDevice(directory: directory, role: role == .endpoint ? .endpoint : .host, options: options.mock) }
            defer { device.close() }
            return try job.run(device)
        case .ivshmem:
            let side: IVSHMEMSide = role == .endpoint ? .b : .a
            let device: IVSHMEMDevice
            switch address {
            case let .ivshmemFile(path):
                device = try open { () throws(NTBError) in try IVSHMEMDevice.open(file: path, side: side, options: options.ivshmem) }
            case let .ivshmem(pci), let .pci(pci):
                device = try open { () throws(NTBError) in try IVSHMEMDevice.open(vfio: pci, side: side, options: options.ivshmem) }
            case .mock:
                preconditionFailure("the ivshmem adapter serves ivshmem ports")
            }
            defer { device.close() }
            return try job.run(device)
        case .epfHost:
            guard case let .pci(pci) = address else { preconditionFailure("the EPF adapter serves PCI ports") }
            let device = try open { () throws(NTBError) in try EPFHostDevice.open(vfio: pci, commandTimeout: options.epfCommandTimeout) }
            return try job.run(device)
        }
    }

    /// Opens a mock port's device (tools that drive the mock link itself).
    public func openMock() throws(PortError) -> MockNTBDevice {
        guard case let .mock(directory) = address else { throw .badPort(address.description, "this command runs on mock ports only (mock or mock:DIR)") }
        return try open { () throws(NTBError) in try MockNTBDevice(directory: directory, role: role == .endpoint ? .endpoint : .host, options: options.mock) }
    }

    @usableFromInline
    func open<D>(_ body: () throws(NTBError) -> D) throws(PortError) -> D {
        do throws(NTBError) { return try body() } catch { throw .device(error) }
    }
}
