import CNTBShim
import Foundation
import SystemPackage
import Testing
@testable import PCIKit

@Suite struct IOVAAllocatorTests {
    @Test func allocatesAlignedFirstFitAndMergesOnRelease() {
        var a = IOVAAllocator(range: 0x1000..<0x10_0000)
        let x = a.allocate(length: 0x1000, alignment: 0x1000)
        let y = a.allocate(length: 0x2000, alignment: 0x1_0000)
        let z = a.allocate(length: 0x1000, alignment: 0x1000)
        #expect(x == 0x1000 && y == 0x1_0000 && z == 0x2000)
        #expect(a.allocate(length: 0x10_0000, alignment: 0x1000) == nil)
        a.release(start: 0x1_0000, length: 0x2000)
        a.release(start: 0x1000, length: 0x1000)
        a.release(start: 0x2000, length: 0x1000)
        #expect(a == IOVAAllocator(range: 0x1000..<0x10_0000))
    }

    @Test func defaultWindowStaysBelowTheMSIRange() {
        var a = IOVAAllocator()
        let big = a.allocate(length: 0x4000_0000, alignment: 0x20_0000) ?? 0
        #expect(big >= 0x10_0000 && big + 0x4000_0000 <= 0xfee0_0000)
    }
}

@Suite struct DMATests {
    @Test func vfioDMABufferIsMappedAtAnIOVAAndReleasedInOrder() throws {
        let fake = try FakeSysfs()
        var maps: [(UInt64, UInt64, UInt64)] = []
        let mock = unsafe SyscallMock { call, arg in
            switch call {
            case .open(let p, _) where p.hasSuffix("/vfio/vfio"): return .success(2001)
            case .close(2001): return .success(0)
            case .ioctl(_, "VFIO_IOMMU_MAP_DMA"):
                maps.append(unsafe (arg!.load(fromByteOffset: 8, as: UInt64.self), arg!.load(fromByteOffset: 16, as: UInt64.self), arg!.load(fromByteOffset: 24, as: UInt64.self)))
                return .success(0)
            case .ioctl(_, "VFIO_GET_API_VERSION"): return .success(0)
            case .ioctl: return .success(1)
            default: return .passthrough   // mmap, mlock, munmap: real memory
            }
        }
        try mock.run { () throws(PCIKitError) in
            let container = try VFIOContainer(paths: fake.paths)
            let a = try container.allocateDMA(length: 5000)
            #expect(a.region.length == 8192 && a.region.busAddress == 0x10_0000)
            a.region.mmio.store64(0x1122_3344_5566_7788, at: 8)   // the memory is real and writable
            #expect(unsafe a.region.address.load(fromByteOffset: 8, as: UInt64.self) == 0x1122_3344_5566_7788)
            let b = try container.allocateDMA(length: 4096)
            #expect(b.region.busAddress == 0x10_2000)
            a.close()
            let c = try container.allocateDMA(length: 4096)
            #expect(c.region.busAddress == 0x10_0000)   // the freed IOVA is reused
            #expect(maps.count == 3 && maps[0].1 == 0x10_0000 && maps[0].2 == 8192)
            #expect(maps[0].0 == UInt64(UInt(bitPattern: unsafe a.region.address)))
        }
        let names = mock.calls.compactMap { c -> String? in
            switch c {
            case .ioctl(_, let n) where n.contains("DMA"): return n
            case .mlock: return "mlock"
            case .munlock: return "munlock"
            case .munmap: return "munmap"
            case .close(2001): return "close container"
            default: return nil
            }
        }
        #expect(names == ["mlock", "VFIO_IOMMU_MAP_DMA", "mlock", "VFIO_IOMMU_MAP_DMA",
                          "VFIO_IOMMU_UNMAP_DMA", "munlock", "munmap",          // a.close()
                          "mlock", "VFIO_IOMMU_MAP_DMA",
                          "VFIO_IOMMU_UNMAP_DMA", "munlock", "munmap",          // b and c go away ...
                          "VFIO_IOMMU_UNMAP_DMA", "munlock", "munmap",
                          "close container"])                                   // ... before the container closes
    }

    @Test func aFailedIOMMUMapReleasesTheMemory() throws {
        let fake = try FakeSysfs()
        let mock = unsafe SyscallMock { call, _ in
            switch call {
            case .open(let p, _) where p.hasSuffix("/vfio/vfio"): return .success(2001)
            case .close(2001): return .success(0)
            case .ioctl(_, "VFIO_IOMMU_MAP_DMA"): return .failure(.noMemory)
            case .ioctl(_, "VFIO_GET_API_VERSION"): return .success(0)
            case .ioctl: return .success(1)
            default: return .passthrough
            }
        }
        #expect(throws: PCIKitError.ioctl(name: "VFIO_IOMMU_MAP_DMA", errno: ENOMEM, remedy: "raise the locked-memory limit (ulimit -l): VFIO pins DMA memory against it")) {
            try mock.run { () throws(PCIKitError) in _ = try VFIOContainer(paths: fake.paths).allocateDMA(length: 4096) }
        }
        let tail = mock.calls.suffix(3).map(\.description)
        #expect(tail == ["munlock len=4096", "munmap len=4096", "close 2001"])
    }

    @Test func pagemapGivesAPhysicalAddressAsRoot() throws {
        let memory = try PinnedMemory.allocate(length: 4096)
        defer { memory.release() }
        if geteuid() == 0 {
            let phys = try PhysicalAddress.contiguous(memory, paths: .live)
            #expect(phys != 0 && phys % 4096 == 0)
        } else {
            #expect(throws: PCIKitError.self) { try PhysicalAddress.contiguous(memory, paths: .live) }
        }
    }
}

@Suite struct UIOAndSysfsResourceTests {
    static func machine() throws -> FakeSysfs {
        let fake = try FakeSysfs()
        try fake.addFunction("0000:05:00.0", vendor: 0x104c, device: 0xb00d, deviceClass: 0x050000, driver: "uio_pci_generic",
                             bars: [(0xfe00_0000, 0x1000, 0x0004_0200), (0, 0, 0), (0x80_0000_0000, 0x10_0000, 0x0014_220c)], wc: [2])
        let dir = "sys/bus/pci/devices/0000:05:00.0/"
        for f in ["resource0", "resource2"] {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: fake.path(dir + f)))
            try h.truncate(atOffset: f == "resource0" ? 0x1000 : 0x10_0000)
            try h.close()
        }
        // resource2_wc maps the same BAR as resource2: a hard link to the same backing file.
        try FileManager.default.removeItem(atPath: fake.path(dir + "resource2_wc"))
        try FileManager.default.linkItem(atPath: fake.path(dir + "resource2"), toPath: fake.path(dir + "resource2_wc"))
        try FileManager.default.createDirectory(atPath: fake.path("sys/bus/pci/devices/0000:05:00.0/uio/uio0"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: fake.path("sys/class/uio/uio0/maps/map0"), withIntermediateDirectories: true)
        try fake.write("sys/class/uio/uio0/maps/map0/addr", "0x00000000fe000000\n")
        try fake.write("sys/class/uio/uio0/maps/map0/size", "0x0000000000001000\n")
        try fake.write("sys/class/uio/uio0/maps/map0/offset", "0x0\n")
        try fake.write("sys/class/uio/uio0/maps/map0/name", "BAR0\n")
        #expect(unsafe mkfifo(fake.path("dev/uio0"), 0o600) == 0)   // stands in for /dev/uio0: readable when "interrupted"
        return fake
    }

    @Test func writeCombiningMapsResourceWCOnlyForPrefetchableBars() throws {
        let fake = try Self.machine()
        let a = try PCIAddress(parsing: "05:00.0")
        let wc = try SysfsResource.map(a, bar: 2, writeCombining: true, paths: fake.paths)
        #expect(wc.writeCombining && wc.length == 0x10_0000)
        wc.mmio.store32(0xabcd_0123, at: 0x40)
        Barrier.write()
        let plain = try SysfsResource.map(a, bar: 2, paths: fake.paths)
        #expect(plain.mmio.load32(at: 0x40) == 0xabcd_0123)   // same backing file
        #expect(throws: PCIKitError.writeCombiningUnavailable(a, bar: 0)) { try SysfsResource.map(a, bar: 0, writeCombining: true, paths: fake.paths) }
        #expect(PCIKitError.writeCombiningUnavailable(a, bar: 0).description.contains("not prefetchable"))
    }

    @Test func uioMapsInterruptAndWrongDriver() throws {
        let fake = try Self.machine()
        let uio = try UIODevice.open(PCIAddress(parsing: "05:00.0"), paths: fake.paths)
        #expect(uio.number == 0)
        #expect(try uio.maps() == [UIOMap(index: 0, name: "BAR0", address: 0xfe00_0000, size: 0x1000, offset: 0)])
        #expect(try uio.waitForInterrupt(timeout: .milliseconds(5)) == false)
        // The "kernel" raises the interrupt: /dev/uioN becomes readable with a 4-byte count.
        let raiser = unsafe open(fake.path("dev/uio0"), O_WRONLY | O_NONBLOCK)
        var count: UInt32 = 1
        #expect(unsafe write(raiser, &count, 4) == 4)
        close(raiser)
        #expect(try uio.waitForInterrupt(timeout: .milliseconds(500)))
        #expect(try uio.waitForInterrupt(timeout: .milliseconds(5)) == false)
        let bar2 = try uio.mapBAR(2, writeCombining: true)
        #expect(bar2.writeCombining)

        try fake.addFunction("0000:06:00.0", vendor: 0x104c, device: 0xb00d, deviceClass: 0x050000, driver: "vfio-pci")
        let other = try PCIAddress(parsing: "06:00.0")
        #expect(throws: PCIKitError.wrongDriver(other, bound: "vfio-pci", needed: "uio_pci_generic")) { try UIODevice.open(other, paths: fake.paths) }
    }

    @Test func interruptSetReportsWhichVectorsFired() throws {
        let vectors = [try EventNotifier(), try EventNotifier(), try EventNotifier()]
        let set = try InterruptSet(vectors)
        #expect(try set.wait(timeout: .milliseconds(1)) == [])
        vectors[2].signal()
        vectors[0].signal()
        #expect(try set.wait(timeout: .milliseconds(100)) == [0, 2])
        #expect(vectors[0].consume() == 1 && vectors[2].consume() == 1)
        #expect(try set.wait(timeout: .milliseconds(1)) == [])
    }
}
