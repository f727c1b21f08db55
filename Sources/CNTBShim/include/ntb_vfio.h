/*
 * ntb_vfio.h - VFIO ioctl numbers, flags and struct layouts for PCIKit's VFIO path.   (PCIKit)
 *
 * Why it exists: the VFIO ioctl numbers are function-like macros (_IO(';', 100 + n)) that Swift cannot
 * import, and the UAPI structs end in flexible arrays and capability chains. This header exports the
 * numbers as constants, mirrors the structs PCIKit uses (checked against <linux/vfio.h> with
 * _Static_assert in vfio.c) and offers pure helpers that build or parse the variable-length buffers.
 * None of these functions makes a system call: PCIKit's Internals/Syscalls.swift issues every ioctl,
 * so that its debug-only mock can record and answer them.
 *
 * Source: include/uapi/linux/vfio.h; Documentation/driver-api/vfio.rst ("VFIO Usage Example").
 */
#ifndef NTB_VFIO_H
#define NTB_VFIO_H

#include <stdint.h>
#include <stddef.h>

/* ioctl request numbers (exact values tested in Tests/PCIKitTests/VFIOLayoutTests.swift). */
extern const unsigned long NTB_VFIO_GET_API_VERSION;        /* _IO(';', 100)  0x3b64 */
extern const unsigned long NTB_VFIO_CHECK_EXTENSION;        /* _IO(';', 101)  0x3b65 */
extern const unsigned long NTB_VFIO_SET_IOMMU;              /* _IO(';', 102)  0x3b66 */
extern const unsigned long NTB_VFIO_GROUP_GET_STATUS;       /* _IO(';', 103)  0x3b67 */
extern const unsigned long NTB_VFIO_GROUP_SET_CONTAINER;    /* _IO(';', 104)  0x3b68 */
extern const unsigned long NTB_VFIO_GROUP_UNSET_CONTAINER;  /* _IO(';', 105)  0x3b69 */
extern const unsigned long NTB_VFIO_GROUP_GET_DEVICE_FD;    /* _IO(';', 106)  0x3b6a */
extern const unsigned long NTB_VFIO_DEVICE_GET_INFO;        /* _IO(';', 107)  0x3b6b */
extern const unsigned long NTB_VFIO_DEVICE_GET_REGION_INFO; /* _IO(';', 108)  0x3b6c */
extern const unsigned long NTB_VFIO_DEVICE_GET_IRQ_INFO;    /* _IO(';', 109)  0x3b6d */
extern const unsigned long NTB_VFIO_DEVICE_SET_IRQS;        /* _IO(';', 110)  0x3b6e */
extern const unsigned long NTB_VFIO_DEVICE_RESET;           /* _IO(';', 111)  0x3b6f */
extern const unsigned long NTB_VFIO_IOMMU_GET_INFO;         /* _IO(';', 112)  0x3b70 */
extern const unsigned long NTB_VFIO_IOMMU_MAP_DMA;          /* _IO(';', 113)  0x3b71 */
extern const unsigned long NTB_VFIO_IOMMU_UNMAP_DMA;        /* _IO(';', 114)  0x3b72 */

/* Plain values (checked equal to the kernel's in vfio.c). */
#define NTB_VFIO_API_VERSION               0
#define NTB_VFIO_TYPE1_IOMMU               1
#define NTB_VFIO_TYPE1v2_IOMMU             3
#define NTB_VFIO_NOIOMMU_IOMMU             8

#define NTB_VFIO_GROUP_FLAGS_VIABLE        1u
#define NTB_VFIO_GROUP_FLAGS_CONTAINER_SET 2u

#define NTB_VFIO_DEVICE_FLAGS_RESET        1u
#define NTB_VFIO_DEVICE_FLAGS_PCI          2u

#define NTB_VFIO_REGION_INFO_FLAG_READ     1u
#define NTB_VFIO_REGION_INFO_FLAG_WRITE    2u
#define NTB_VFIO_REGION_INFO_FLAG_MMAP     4u
#define NTB_VFIO_REGION_INFO_FLAG_CAPS     8u
#define NTB_VFIO_REGION_INFO_CAP_SPARSE_MMAP 1

#define NTB_VFIO_IRQ_INFO_EVENTFD          1u
#define NTB_VFIO_IRQ_INFO_MASKABLE         2u
#define NTB_VFIO_IRQ_INFO_AUTOMASKED       4u
#define NTB_VFIO_IRQ_INFO_NORESIZE         8u

#define NTB_VFIO_IRQ_SET_DATA_NONE         1u
#define NTB_VFIO_IRQ_SET_DATA_BOOL         2u
#define NTB_VFIO_IRQ_SET_DATA_EVENTFD      4u
#define NTB_VFIO_IRQ_SET_ACTION_MASK       8u
#define NTB_VFIO_IRQ_SET_ACTION_UNMASK     16u
#define NTB_VFIO_IRQ_SET_ACTION_TRIGGER    32u

#define NTB_VFIO_DMA_MAP_FLAG_READ         1u
#define NTB_VFIO_DMA_MAP_FLAG_WRITE        2u

/* vfio-pci region and IRQ indices (enum in <linux/vfio.h>). */
#define NTB_VFIO_PCI_BAR0_REGION_INDEX     0
#define NTB_VFIO_PCI_ROM_REGION_INDEX      6
#define NTB_VFIO_PCI_CONFIG_REGION_INDEX   7
#define NTB_VFIO_PCI_VGA_REGION_INDEX      8
#define NTB_VFIO_PCI_INTX_IRQ_INDEX        0
#define NTB_VFIO_PCI_MSI_IRQ_INDEX         1
#define NTB_VFIO_PCI_MSIX_IRQ_INDEX        2
#define NTB_VFIO_PCI_ERR_IRQ_INDEX         3
#define NTB_VFIO_PCI_REQ_IRQ_INDEX         4

/* Mirrors of the UAPI structs (same layout; see the _Static_asserts in vfio.c). */
typedef struct ntb_vfio_group_status {
    uint32_t argsz;
    uint32_t flags;
} ntb_vfio_group_status;

typedef struct ntb_vfio_device_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
    uint32_t cap_offset;
} ntb_vfio_device_info;

typedef struct ntb_vfio_region_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;
} ntb_vfio_region_info;

typedef struct ntb_vfio_info_cap_header {
    uint16_t id;
    uint16_t version;
    uint32_t next;
} ntb_vfio_info_cap_header;

typedef struct ntb_vfio_region_sparse_mmap_area {
    uint64_t offset;
    uint64_t size;
} ntb_vfio_region_sparse_mmap_area;

typedef struct ntb_vfio_region_info_cap_sparse_mmap {
    ntb_vfio_info_cap_header header;
    uint32_t nr_areas;
    uint32_t reserved;
    /* ntb_vfio_region_sparse_mmap_area areas[nr_areas] follow */
} ntb_vfio_region_info_cap_sparse_mmap;

typedef struct ntb_vfio_irq_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
} ntb_vfio_irq_info;

typedef struct ntb_vfio_irq_set {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t start;
    uint32_t count;
    /* uint8_t data[] follows: count int32 eventfds, count bools, or nothing */
} ntb_vfio_irq_set;

typedef struct ntb_vfio_iommu_type1_dma_map {
    uint32_t argsz;
    uint32_t flags;
    uint64_t vaddr;
    uint64_t iova;
    uint64_t size;
} ntb_vfio_iommu_type1_dma_map;

typedef struct ntb_vfio_iommu_type1_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
    uint64_t iova;
    uint64_t size;
} ntb_vfio_iommu_type1_dma_unmap;

typedef struct ntb_vfio_iommu_type1_info {
    uint32_t argsz;
    uint32_t flags;
    uint64_t iova_pgsizes;
    uint32_t cap_offset;
    uint32_t pad;
} ntb_vfio_iommu_type1_info;

typedef struct ntb_vfio_iova_range {
    uint64_t start;
    uint64_t end;               /* inclusive */
} ntb_vfio_iova_range;

#define NTB_VFIO_IOMMU_INFO_PGSIZES        1u
#define NTB_VFIO_IOMMU_INFO_CAPS           2u
#define NTB_VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE 1

/* Sizes of the kernel's structs, for tests (sizeof on the <linux/vfio.h> types). */
extern const size_t NTB_VFIO_SIZEOF_GROUP_STATUS;
extern const size_t NTB_VFIO_SIZEOF_DEVICE_INFO;
extern const size_t NTB_VFIO_SIZEOF_REGION_INFO;
extern const size_t NTB_VFIO_SIZEOF_IRQ_INFO;
extern const size_t NTB_VFIO_SIZEOF_IRQ_SET;
extern const size_t NTB_VFIO_SIZEOF_DMA_MAP;
extern const size_t NTB_VFIO_SIZEOF_DMA_UNMAP;
extern const size_t NTB_VFIO_SIZEOF_SPARSE_MMAP_CAP;
extern const size_t NTB_VFIO_SIZEOF_SPARSE_MMAP_AREA;
extern const size_t NTB_VFIO_SIZEOF_IOMMU_TYPE1_INFO;

/*
 * Finds the sparse-mmap capability in a VFIO_DEVICE_GET_REGION_INFO answer of `len` bytes (the info
 * struct followed by its capability chain). Copies at most `max` areas to `areas` and returns the
 * number of areas the capability lists, 0 when the chain has no such capability, or -1 when the chain
 * is malformed (an offset outside the buffer, or a loop).
 */
int ntb_vfio_region_sparse_areas(const void *_Nonnull info, size_t len,
                                 ntb_vfio_region_sparse_mmap_area *_Nullable areas, int max);

/*
 * Finds the IOVA-range capability in a VFIO_IOMMU_GET_INFO answer of `len` bytes: the ranges the IOMMU
 * can map (reserved regions such as the MSI window excluded). Copies at most `max` ranges and returns
 * how many the capability lists, 0 without it, -1 for a malformed chain.
 */
int ntb_vfio_iommu_iova_ranges(const void *_Nonnull info, size_t len, ntb_vfio_iova_range *_Nullable ranges, int max);

/* Bytes needed for a VFIO_DEVICE_SET_IRQS argument carrying `count` eventfds. */
size_t ntb_vfio_irq_set_eventfd_size(uint32_t count);

/*
 * Fills `buf` (of ntb_vfio_irq_set_eventfd_size(count) bytes) with a DATA_EVENTFD | ACTION_TRIGGER
 * request routing vectors start..start+count-1 of IRQ `index` to `fds` (-1 in fds de-assigns one).
 * With count 0 it fills a DATA_NONE | ACTION_TRIGGER request, which disables the index.
 */
void ntb_vfio_irq_set_eventfds(void *_Nonnull buf, uint32_t index, uint32_t start, uint32_t count,
                               const int32_t *_Nullable fds);

/* Fills an ntb_vfio_irq_set with DATA_NONE and `action` (MASK/UNMASK/TRIGGER) for one vector. */
void ntb_vfio_irq_set_action(ntb_vfio_irq_set *_Nonnull set, uint32_t index, uint32_t start,
                             uint32_t count, uint32_t action);

#endif /* NTB_VFIO_H */
