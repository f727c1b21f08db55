import CNTBShim
import Foundation
import SystemPackage
import Testing
@testable import PCIKit

/// A scripted VFIO kernel for the syscall mock: /dev/vfio nodes get fake descriptors (1003 container,
/// 1004 group, 1005 device); the fake sysfs tree is read for real (passthrough).
@safe final class FakeVFIOKernel {
    let fake: FakeSysfs
    var viable = true
    var sparse = false
    /// errno to answer the n-th occurrence of an ioctl with: [name: [(occurrence, errno)]].
    var failures: [String: [Int: Errno]] = [:]
    private var seen: [String: Int] = [:]
    var deviceName = ""
    let bar: UnsafeMutableRawPointer
    var barSize = 0x4000

    init(fake: FakeSysfs) {
        self.fake = fake
        unsafe bar = UnsafeMutableRawPointer.allocate(byteCount: 0x4000, alignment: 4096)
    }

    deinit { unsafe bar.deallocate() }

    func respond(_ call: Syscall, _ arg: UnsafeMutableRawPointer?) -> SyscallMock.Response {
        switch call {
        case .open(let path, _):
            if path == fake.paths.vfioContainer { return .success(1003) }
            if path == fake.paths.vfioGroup(12) { return .success(1004) }
            return .passthrough
        case .close(let fd), .read(let fd, _):
            return fd >= 1003 && fd <= 1006 ? .success(0) : .passthrough
        case .ioctl(_, let name):
            let n = seen[name, default: 0]
            seen[name] = n + 1
            if let e = failures[name]?[n] { return .failure(e) }
            switch name {
            case "VFIO_GET_API_VERSION": return .success(0)
            case "VFIO_CHECK_EXTENSION": return .success(1)
            case "VFIO_GROUP_GET_STATUS":
                unsafe arg!.storeBytes(of: viable ? NTB_VFIO_GROUP_FLAGS_VIABLE : 0, toByteOffset: 4, as: UInt32.self)
                return .success(0)
            case "VFIO_GROUP_GET_DEVICE_FD":
                deviceName = unsafe String(cString: arg!.assumingMemoryBound(to: CChar.self))
                return .success(1005)
            case "VFIO_DEVICE_GET_INFO":
                unsafe arg!.storeBytes(of: NTB_VFIO_DEVICE_FLAGS_PCI | NTB_VFIO_DEVICE_FLAGS_RESET, toByteOffset: 4, as: UInt32.self)
                unsafe arg!.storeBytes(of: 9, toByteOffset: 8, as: UInt32.self)
                unsafe arg!.storeBytes(of: 5, toByteOffset: 12, as: UInt32.self)
                return .success(0)
            case "VFIO_DEVICE_GET_REGION_INFO":
                let argsz = unsafe arg!.load(fromByteOffset: 0, as: UInt32.self)
                let index = unsafe arg!.load(fromByteOffset: 8, as: UInt32.self)
                let need: UInt32 = sparse && index == 0 ? 32 + 16 + 32 : 32
                var flags = NTB_VFIO_REGION_INFO_FLAG_READ | NTB_VFIO_REGION_INFO_FLAG_WRITE | NTB_VFIO_REGION_INFO_FLAG_MMAP
                if need > 32 { flags |= NTB_VFIO_REGION_INFO_FLAG_CAPS }
                unsafe arg!.storeBytes(of: need, toByteOffset: 0, as: UInt32.self)
                unsafe arg!.storeBytes(of: flags, toByteOffset: 4, as: UInt32.self)
                unsafe arg!.storeBytes(of: UInt64(index == 7 ? 256 : barSize), toByteOffset: 16, as: UInt64.self)
                unsafe arg!.storeBytes(of: UInt64(index) << 40, toByteOffset: 24, as: UInt64.self)
                if need > 32 && argsz >= need {
                    // Sparse mmap: two areas, the middle page (an MSI-X table) left out.
                    unsafe arg!.storeBytes(of: UInt32(32), toByteOffset: 12, as: UInt32.self)
                    unsafe arg!.storeBytes(of: UInt16(1), toByteOffset: 32, as: UInt16.self)
                    unsafe arg!.storeBytes(of: UInt32(0), toByteOffset: 36, as: UInt32.self)
                    unsafe arg!.storeBytes(of: UInt32(2), toByteOffset: 40, as: UInt32.self)
                    unsafe arg!.storeBytes(of: UInt64(0), toByteOffset: 48, as: UInt64.self)
                    unsafe arg!.storeBytes(of: UInt64(0x1000), toByteOffset: 56, as: UInt64.self)
                    unsafe arg!.storeBytes(of: UInt64(0x2000), toByteOffset: 64, as: UInt64.self)
                    unsafe arg!.storeBytes(of: UInt64(0x2000), toByteOffset: 72, as: UInt64.self)
                }
                return .success(0)
            case "VFIO_DEVICE_GET_IRQ_INFO":
                unsafe arg!.storeBytes(of: NTB_VFIO_IRQ_INFO_EVENTFD, toByteOffset: 4, as: UInt32.self)
                unsafe arg!.storeBytes(of: 4, toByteOffset: 12, as: UInt32.self)
                return .success(0)
            default: return .success(0)
            }
        case .mmap(let fd, _, let offset):
            if fd == -1 { return unsafe .memory(bar) }
            return unsafe .memory(bar + Int(offset & 0xffff_ffff))
        case .munmap, .eventfd, .epollCreate, .epollAdd, .mlock, .munlock:
            return .success(call == .eventfd ? 1006 : 0)
        case .pread(_, let count, _):
            unsafe arg!.initializeMemory(as: UInt8.self, repeating: 0x01, count: count)
            return .success(count)
        case .pwrite(_, let count, _):
            return .success(count)
        default:
            return .passthrough
        }
    }
}

@Suite struct VFIOSyscallTests {
    static func machine() throws -> FakeSysfs {
        let fake = try FakeSysfs()
        try fake.addFunction("0000:01:00.0", vendor: 0x1912, device: 0x0030, deviceClass: 0x050000, driver: "vfio-pci", group: 12)
        try fake.addFunction("0000:01:00.1", vendor: 0x1912, device: 0x0031, deviceClass: 0x058000, driver: "nvme", group: 12)
        return fake
    }

    /// The calls that are not sysfs reads.
    static func vfioCalls(_ mock: SyscallMock, _ fake: FakeSysfs) -> [String] {
        mock.calls.filter { c in
            switch c {
            case .readlink, .listDirectory, .stat: return false
            case .open(let p, _): return !p.hasPrefix(fake.paths.sysfs)
            case .close(let fd), .read(let fd, _): return fd >= 1003
            default: return true
            }
        }.map { $0.description.replacingOccurrences(of: fake.root.path, with: "") }
    }

    @Test func openMapsABarInTheOrderVFIODocuments() throws {
        let fake = try Self.machine()
        let kernel = FakeVFIOKernel(fake: fake)
        let mock = unsafe SyscallMock(respond: kernel.respond)
        try mock.run { () throws(PCIKitError) in
            let device = try VFIODevice.open(PCIAddress(parsing: "01:00.0"), paths: fake.paths)
            let bar = try device.mapBAR(0)
            #expect(bar.length == 0x4000)
            #expect(device.regionCount == 9 && device.canReset)
            bar.mmio.store32(0xfeed_f00d, at: 0x10)
            #expect(unsafe kernel.bar.load(fromByteOffset: 0x10, as: UInt32.self) == 0xfeed_f00d)
        }
        #expect(kernel.deviceName == "0000:01:00.0")
        #expect(Self.vfioCalls(mock, fake) == [
            "open /dev/vfio/vfio",
            "ioctl 1003 VFIO_GET_API_VERSION",
            "ioctl 1003 VFIO_CHECK_EXTENSION",
            "open /dev/vfio/12",
            "ioctl 1004 VFIO_GROUP_GET_STATUS",
            "ioctl 1004 VFIO_GROUP_SET_CONTAINER",
            "ioctl 1003 VFIO_SET_IOMMU",
            "ioctl 1004 VFIO_GROUP_GET_DEVICE_FD",
            "ioctl 1005 VFIO_DEVICE_GET_INFO",
            "ioctl 1005 VFIO_DEVICE_GET_REGION_INFO",
            "mmap 1005 len=16384 off=0",
            // released in order: unmap, then device, group, container
            "munmap len=16384",
            "close 1005",
            "close 1004",
            "close 1003",
        ])
    }

    @Test func anInterruptedIoctlIsRetried() throws {
        let fake = try Self.machine()
        let kernel = FakeVFIOKernel(fake: fake)
        kernel.failures["VFIO_GROUP_GET_STATUS"] = [0: .interrupted]
        let mock = unsafe SyscallMock(respond: kernel.respond)
        _ = try mock.run { () throws(PCIKitError) in try VFIODevice.open(PCIAddress(parsing: "01:00.0"), paths: fake.paths) }
        let calls = Self.vfioCalls(mock, fake)
        #expect(calls.filter { $0 == "ioctl 1004 VFIO_GROUP_GET_STATUS" }.count == 2)
        #expect(calls.contains("ioctl 1005 VFIO_DEVICE_GET_INFO"))
    }

    @Test func aBusyDeviceIsReportedAndEverythingOpenedIsClosed() throws {
        let fake = try Self.machine()
        let kernel = FakeVFIOKernel(fake: fake)
        kernel.failures["VFIO_GROUP_GET_DEVICE_FD"] = [0: .resourceBusy]
        let mock = unsafe SyscallMock(respond: kernel.respond)
        let address = try PCIAddress(parsing: "0000:01:00.0")
        #expect(throws: PCIKitError.deviceBusy(address)) {
            try mock.run { () throws(PCIKitError) in _ = try VFIODevice.open(address, paths: fake.paths) }
        }
        #expect(Array(Self.vfioCalls(mock, fake).suffix(3)) == ["ioctl 1004 VFIO_GROUP_GET_DEVICE_FD", "close 1004", "close 1003"])
        #expect(PCIKitError.deviceBusy(address).description == "0000:01:00.0 is busy: another process (or container) has it open; stop that process and try again")
    }

    @Test func aGroupThatIsNotViableNamesTheDeviceAndDriver() throws {
        let fake = try Self.machine()
        let kernel = FakeVFIOKernel(fake: fake)
        kernel.viable = false
        let mock = unsafe SyscallMock(respond: kernel.respond)
        let expected = PCIKitError.groupNotViable(group: 12, offenders: [.init(address: try PCIAddress(parsing: "01:00.1"), driver: "nvme")])
        #expect(throws: expected) {
            try mock.run { () throws(PCIKitError) in _ = try VFIODevice.open(PCIAddress(parsing: "01:00.0"), paths: fake.paths) }
        }
        #expect(Array(Self.vfioCalls(mock, fake).suffix(3)) == ["ioctl 1004 VFIO_GROUP_GET_STATUS", "close 1004", "close 1003"])
    }

    @Test func noPermissionOnTheGroupNodeSaysHowToGetIt() throws {
        let fake = try Self.machine()
        let kernel = FakeVFIOKernel(fake: fake)
        let mock = unsafe SyscallMock { call, arg in
            if case .open(let p, _) = call, p.hasSuffix("/vfio/12") { return .failure(.permissionDenied) }
            return unsafe kernel.respond(call, arg)
        }
        let path = fake.paths.vfioGroup(12)
        #expect(throws: PCIKitError.vfioPermissionDenied(path: path)) {
            try mock.run { () throws(PCIKitError) in _ = try VFIODevice.open(PCIAddress(parsing: "01:00.0"), paths: fake.paths) }
        }
        #expect(PCIKitError.vfioPermissionDenied(path: "/dev/vfio/12").description
                == "no permission to open /dev/vfio/12; run `sudo ntb-transport bind <BDF> --group $(id -gn)` to give it to your group, or run as root")
    }

    @Test func wrongDriverAndMissingGroupAreCaughtBeforeAnyIoctl() throws {
        let fake = try FakeSysfs()
        try fake.addFunction("0000:02:00.0", vendor: 0x8086, device: 0x347e, deviceClass: 0x068000, driver: "ntb_hw_intel", group: 3)
        try fake.addFunction("0000:03:00.0", vendor: 0x8086, device: 0x347e, deviceClass: 0x068000)
        let mock = unsafe SyscallMock { _, _ in .passthrough }
        let a = try PCIAddress(parsing: "02:00.0"), b = try PCIAddress(parsing: "03:00.0"), c = try PCIAddress(parsing: "04:00.0")
        #expect(throws: PCIKitError.wrongDriver(a, bound: "ntb_hw_intel", needed: "vfio-pci")) {
            try mock.run { () throws(PCIKitError) in _ = try VFIODevice.open(a, paths: fake.paths) }
        }
        #expect(throws: PCIKitError.noIOMMUGroup(b)) { try mock.run { () throws(PCIKitError) in _ = try VFIODevice.open(b, paths: fake.paths) } }
        #expect(throws: PCIKitError.deviceNotFound(c)) { try mock.run { () throws(PCIKitError) in _ = try VFIODevice.open(c, paths: fake.paths) } }
        #expect(!mock.calls.contains { if case .ioctl = $0 { return true }; return false })
    }

    @Test func sparseRegionIsReservedThenMappedByArea() throws {
        let fake = try Self.machine()
        let kernel = FakeVFIOKernel(fake: fake)
        kernel.sparse = true
        let mock = unsafe SyscallMock(respond: kernel.respond)
        try mock.run { () throws(PCIKitError) in
            let device = try VFIODevice.open(PCIAddress(parsing: "01:00.0"), paths: fake.paths)
            let info = try device.regionInfo(0)
            #expect(info.sparseAreas == [.init(offset: 0, size: 0x1000), .init(offset: 0x2000, size: 0x2000)])
            let bar = try device.mapBAR(0)
            #expect(bar.areas.map(\.offset) == [0, 0x2000])
        }
        let calls = Self.vfioCalls(mock, fake)
        let first = try #require(calls.firstIndex(of: "mmap -1 len=16384 off=0"))
        #expect(Array(calls[first...].prefix(3)) == ["mmap -1 len=16384 off=0", "mmap 1005 len=4096 off=0", "mmap 1005 len=8192 off=8192"])
        // the first region-info call was too small for the capability chain, so it was asked again
        #expect(calls.filter { $0 == "ioctl 1005 VFIO_DEVICE_GET_REGION_INFO" }.count == 4)
    }

    @Test func msiVectorsGoToEventfdsAndBusMasterIsSet() throws {
        let fake = try Self.machine()
        let kernel = FakeVFIOKernel(fake: fake)
        var setIRQs: [UInt32] = []
        let mock = unsafe SyscallMock { call, arg in
            if case .ioctl(_, "VFIO_DEVICE_SET_IRQS") = call {
                for i in 0..<7 { setIRQs.append(unsafe arg!.load(fromByteOffset: i * 4, as: UInt32.self)) }
            }
            return unsafe kernel.respond(call, arg)
        }
        try mock.run { () throws(PCIKitError) in
            let device = try VFIODevice.open(PCIAddress(parsing: "01:00.0"), paths: fake.paths)
            try device.enableBusMaster()
            let vectors = try device.enableInterrupts(.msi, count: 2)
            #expect(vectors.count == 2)
            #expect(throws: PCIKitError.noSuchInterrupt(device.address, index: "MSI-X", count: 8, available: 4)) {
                try device.enableInterrupts(.msix, count: 8)
            }
        }
        // argsz 28, DATA_EVENTFD|TRIGGER, index MSI, start 0, count 2, fds 1006 1006
        #expect(setIRQs == [28, 0x24, 1, 0, 2, 1006, 1006])
        let calls = Self.vfioCalls(mock, fake)
        #expect(calls.contains("pread 1005 2@\((7 as UInt64) << 40 + 4)"))
        #expect(calls.contains("pwrite 1005 2@\((7 as UInt64) << 40 + 4)"))
    }
}
