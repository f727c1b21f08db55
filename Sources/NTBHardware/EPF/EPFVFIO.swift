public import PCIKit

extension EPFHostDevice {
    /// Opens an endpoint-function NTB bound to vfio-pci, as `ntb_epf_pci_probe` does: picks the BAR map by
    /// the board KnownNTBDevices lists for its PCI ID (TI J721E, NXP i.MX8, Renesas R-Car S4; docs/hardware-reference.md §3.4), enables bus mastering, maps the
    /// BARs, routes 4...32 MSI-X vectors (else MSI) to eventfds (`ntb_epf_init_isr`), and allocates inbound
    /// buffers from IOMMU-mapped memory of the device's container.
    ///
    /// The device keeps the VFIO device, its BAR mappings and the vectors alive while it lives.
    public static func open(vfio address: PCIAddress, commandTimeout: Duration = .seconds(1)) throws(NTBError) -> EPFHostDevice {
        func pci(_ body: () throws(PCIKitError) -> Void) throws(NTBError) {
            do { try body() } catch { throw .pci(error) }
        }
        var device: VFIODevice!
        var id = PCIID(vendor: 0, device: 0)
        try pci { () throws(PCIKitError) in
            device = try VFIODevice.open(address)
            id = try device.readID()
        }
        guard let board = KnownNTBDevices.entries(for: id).lazy.compactMap(\.board).first else {
            let known = KnownNTBDevices.all.filter { $0.board != nil }.map { "\($0.id) \($0.summary)" }.joined(separator: ", ")
            throw .unsupported("\(address) is \(id), not an endpoint-function NTB that ntb_hw_epf binds (\(known))")
        }
        let map = EPFBARMap.forBoard(board)
        var bars = [MMIORegion?](repeating: nil, count: 6)
        var resources: [AnyObject] = [device]
        var vectors: [EventNotifier] = []
        var msix = true
        try pci { () throws(PCIKitError) in
            try device.enableBusMaster()
            let wanted = Set([map.config, map.peerScratchpad, map.doorbell] + map.memoryWindows.compactMap { $0 })
            for bar in wanted.sorted() {
                guard try device.regionInfo(bar).size > 0 else { continue }   // a window BAR this function lacks
                let mapped = try device.mapBAR(bar)
                resources.append(mapped)
                bars[bar] = mapped.mmio
            }
            // ntb_epf_init_isr: MSI-X first, then MSI; one link vector plus 3...31 doorbell vectors.
            let x = (try? device.interruptInfo(.msix).count) ?? 0
            if x >= EPFControl.minimumVectors {
                vectors = try device.enableInterrupts(.msix, count: min(x, EPFControl.maximumVectors))
            } else {
                msix = false
                let m = (try? device.interruptInfo(.msi).count) ?? 0
                if m >= EPFControl.minimumVectors {
                    vectors = try device.enableInterrupts(.msi, count: min(m, EPFControl.maximumVectors))
                }
            }
        }
        guard vectors.count >= EPFControl.minimumVectors else {
            throw .unsupported("\(address) offers fewer than \(EPFControl.minimumVectors) MSI-X or MSI vectors; configure more MSI interrupts on the endpoint function (configfs msi_interrupts)")
        }
        let container = device.container
        return try EPFHostDevice(
            name: address.description, bars: bars, map: map, vectors: vectors, msix: msix,
            commandTimeout: commandTimeout, retaining: resources,
            allocator: { (length, alignment) throws(NTBError) in
                let buffer: DMABuffer
                do throws(PCIKitError) { buffer = try container.allocateDMA(length: length) } catch { throw .pci(error) }
                guard buffer.region.busAddress % UInt64(alignment) == 0 else {
                    buffer.close()
                    throw .unsupported("the IOMMU gave IOVA 0x\(String(buffer.region.busAddress, radix: 16)), not aligned to \(alignment) bytes; ask for a smaller alignment")
                }
                return buffer
            })
    }
}
