import Testing
import CNTBShim
@testable import PCIKit

/// The ioctl numbers and struct sizes of include/uapi/linux/vfio.h: _IO(';' = 0x3b, VFIO_BASE 100 + n),
/// and the struct sizes the UAPI defines. Literal values, independent of the header the shim compiled
/// against.
@Suite struct VFIOLayoutTests {
    @Test(arguments: [
        (NTB_VFIO_GET_API_VERSION, 0x3b64), (NTB_VFIO_CHECK_EXTENSION, 0x3b65), (NTB_VFIO_SET_IOMMU, 0x3b66),
        (NTB_VFIO_GROUP_GET_STATUS, 0x3b67), (NTB_VFIO_GROUP_SET_CONTAINER, 0x3b68),
        (NTB_VFIO_GROUP_UNSET_CONTAINER, 0x3b69), (NTB_VFIO_GROUP_GET_DEVICE_FD, 0x3b6a),
        (NTB_VFIO_DEVICE_GET_INFO, 0x3b6b), (NTB_VFIO_DEVICE_GET_REGION_INFO, 0x3b6c),
        (NTB_VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d), (NTB_VFIO_DEVICE_SET_IRQS, 0x3b6e), (NTB_VFIO_DEVICE_RESET, 0x3b6f),
        (NTB_VFIO_IOMMU_GET_INFO, 0x3b70), (NTB_VFIO_IOMMU_MAP_DMA, 0x3b71), (NTB_VFIO_IOMMU_UNMAP_DMA, 0x3b72),
    ] as [(UInt, UInt)])
    func ioctlNumbersMatchTheUAPI(value: UInt, expected: UInt) {
        #expect(value == expected)
    }

    @Test func structSizesMatchTheUAPI() {
        #expect(NTB_VFIO_SIZEOF_GROUP_STATUS == 8 && MemoryLayout<ntb_vfio_group_status>.size == 8)
        #expect(NTB_VFIO_SIZEOF_DEVICE_INFO == 20 && MemoryLayout<ntb_vfio_device_info>.size == 20)
        #expect(NTB_VFIO_SIZEOF_REGION_INFO == 32 && MemoryLayout<ntb_vfio_region_info>.size == 32)
        #expect(NTB_VFIO_SIZEOF_IRQ_INFO == 16 && MemoryLayout<ntb_vfio_irq_info>.size == 16)
        #expect(NTB_VFIO_SIZEOF_IRQ_SET == 20 && MemoryLayout<ntb_vfio_irq_set>.size == 20)
        #expect(NTB_VFIO_SIZEOF_DMA_MAP == 32 && MemoryLayout<ntb_vfio_iommu_type1_dma_map>.size == 32)
        #expect(NTB_VFIO_SIZEOF_DMA_UNMAP == 24 && MemoryLayout<ntb_vfio_iommu_type1_dma_unmap>.size == 24)
        #expect(NTB_VFIO_SIZEOF_SPARSE_MMAP_CAP == 16 && MemoryLayout<ntb_vfio_region_info_cap_sparse_mmap>.size == 16)
        #expect(NTB_VFIO_SIZEOF_SPARSE_MMAP_AREA == 16)
        #expect(MemoryLayout<ntb_vfio_region_info>.offset(of: \.size) == 16)
        #expect(MemoryLayout<ntb_vfio_region_info>.offset(of: \.offset) == 24)
        #expect(MemoryLayout<ntb_vfio_iommu_type1_dma_map>.offset(of: \.vaddr) == 8)
        #expect(MemoryLayout<ntb_vfio_iommu_type1_dma_map>.offset(of: \.iova) == 16)
    }

    @Test func flagAndIndexValuesMatchTheUAPI() {
        #expect(NTB_VFIO_TYPE1_IOMMU == 1 && NTB_VFIO_TYPE1v2_IOMMU == 3)
        #expect(NTB_VFIO_PCI_CONFIG_REGION_INDEX == 7 && NTB_VFIO_PCI_MSIX_IRQ_INDEX == 2)
        #expect(NTB_VFIO_IRQ_SET_DATA_EVENTFD | NTB_VFIO_IRQ_SET_ACTION_TRIGGER == 0x24)
        #expect(NTB_VFIO_REGION_INFO_FLAG_MMAP == 4 && NTB_VFIO_REGION_INFO_FLAG_CAPS == 8)
    }

    @Test func irqSetBufferCarriesTheEventfds() {
        let size = ntb_vfio_irq_set_eventfd_size(3)
        #expect(size == 20 + 12)
        var buf = [UInt8](repeating: 0xee, count: size)
        let fds: [Int32] = [7, -1, 9]
        unsafe buf.withUnsafeMutableBytes { b in unsafe fds.withUnsafeBufferPointer { f in
            unsafe ntb_vfio_irq_set_eventfds(b.baseAddress!, 1, 0, 3, f.baseAddress)
        } }
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(buf[o + $1]) << (8 * $1) } }
        #expect(u32(0) == 32)          // argsz
        #expect(u32(4) == 0x24)        // DATA_EVENTFD | ACTION_TRIGGER
        #expect(u32(8) == 1 && u32(12) == 0 && u32(16) == 3)
        #expect(u32(20) == 7 && u32(24) == UInt32(bitPattern: -1) && u32(28) == 9)
    }

    @Test func sparseMmapCapabilityIsFoundInTheChain() {
        // region_info (32) | unrelated cap id 9 at 32 -> next 48 | sparse cap at 48 with 2 areas
        var b = [UInt8](repeating: 0, count: 48 + 16 + 32)
        func put32(_ v: UInt32, _ o: Int) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        func put64(_ v: UInt64, _ o: Int) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        put32(UInt32(b.count), 0); put32(NTB_VFIO_REGION_INFO_FLAG_CAPS | NTB_VFIO_REGION_INFO_FLAG_MMAP, 4)
        put32(32, 12)                                   // cap_offset
        b[32] = 9; put32(48, 36)                        // unrelated cap, next = 48
        b[48] = 1; put32(0, 52); put32(2, 56)           // sparse mmap, last, nr_areas = 2
        put64(0, 64); put64(0x1000, 72); put64(0x3000, 80); put64(0x1000, 88)
        var areas = [ntb_vfio_region_sparse_mmap_area](repeating: .init(), count: 4)
        let n = unsafe b.withUnsafeBytes { r in unsafe areas.withUnsafeMutableBufferPointer { a in
            unsafe ntb_vfio_region_sparse_areas(r.baseAddress!, r.count, a.baseAddress, 4)
        } }
        #expect(n == 2)
        #expect(areas[0].offset == 0 && areas[0].size == 0x1000)
        #expect(areas[1].offset == 0x3000 && areas[1].size == 0x1000)
        // A loop in the chain is malformed, not an endless walk.
        put32(32, 36)
        b[32] = 9
        put32(32, 12)
        b[48] = 9
        put32(32, 52)
        let loop = unsafe b.withUnsafeBytes { r in unsafe ntb_vfio_region_sparse_areas(r.baseAddress!, r.count, nil, 0) }
        #expect(loop == -1)
    }
}
