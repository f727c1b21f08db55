public import PCIKit

extension IVSHMEMDevice {
    /// ivshmem-plain's PCI ID (QEMU `docs/specs/ivshmem-spec.rst`: Red Hat 1af4, device 1110).
    public static let pciVendor: UInt16 = 0x1af4
    public static let pciDevice: UInt16 = 0x1110
    public static let pciID = PCIID(vendor: pciVendor, device: pciDevice)
    /// BAR2 is the shared memory (BAR0 holds the registers, useful only with ivshmem-server).
    public static let sharedMemoryBAR = 2

    /// Opens side `side` of an ivshmem-plain device bound to vfio-pci: maps BAR2 through VFIO (PCIKit).
    /// Both VMs' devices must be backed by the same host memory (`memory-backend-file,share=on`).
    public static func open(vfio address: PCIAddress, side: IVSHMEMSide, options: Options = Options()) throws(NTBError) -> IVSHMEMDevice {
        let device: VFIODevice
        let id: PCIID
        let bar: MappedRegion
        do throws(PCIKitError) {
            device = try VFIODevice.open(address)
            id = try device.readID()
        } catch { throw .pci(error) }
        guard id == pciID else {
            throw .unsupported("\(address) is \(id), not an ivshmem-plain device (\(pciID))")
        }
        do throws(PCIKitError) { bar = try device.mapBAR(sharedMemoryBAR) } catch { throw .pci(error) }
        return try IVSHMEMDevice(name: "ivshmem:\(address)", memory: bar.mmio, side: side, options: options, retaining: [device, bar])
    }

    /// Opens side `side` of a shared file (tests, and two processes on one machine). A missing or empty
    /// file is created with `createSize` bytes.
    public static func open(file path: String, side: IVSHMEMSide, createSize: Int? = 4 << 20, options: Options = Options()) throws(NTBError) -> IVSHMEMDevice {
        let mapping = try SharedFileMapping(path: path, createSize: createSize)
        return try IVSHMEMDevice(
            name: "ivshmem-file:\(path)", memory: unsafe MMIORegion(base: mapping.base, length: mapping.length),
            side: side, options: options, retaining: [mapping])
    }
}
