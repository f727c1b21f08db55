/* vfio.c - VFIO ioctl numbers, layout checks against <linux/vfio.h>, and pure buffer helpers. */
#include <linux/vfio.h>
#include <string.h>
#include "ntb_vfio.h"

const unsigned long NTB_VFIO_GET_API_VERSION = VFIO_GET_API_VERSION;
const unsigned long NTB_VFIO_CHECK_EXTENSION = VFIO_CHECK_EXTENSION;
const unsigned long NTB_VFIO_SET_IOMMU = VFIO_SET_IOMMU;
const unsigned long NTB_VFIO_GROUP_GET_STATUS = VFIO_GROUP_GET_STATUS;
const unsigned long NTB_VFIO_GROUP_SET_CONTAINER = VFIO_GROUP_SET_CONTAINER;
const unsigned long NTB_VFIO_GROUP_UNSET_CONTAINER = VFIO_GROUP_UNSET_CONTAINER;
const unsigned long NTB_VFIO_GROUP_GET_DEVICE_FD = VFIO_GROUP_GET_DEVICE_FD;
const unsigned long NTB_VFIO_DEVICE_GET_INFO = VFIO_DEVICE_GET_INFO;
const unsigned long NTB_VFIO_DEVICE_GET_REGION_INFO = VFIO_DEVICE_GET_REGION_INFO;
const unsigned long NTB_VFIO_DEVICE_GET_IRQ_INFO = VFIO_DEVICE_GET_IRQ_INFO;
const unsigned long NTB_VFIO_DEVICE_SET_IRQS = VFIO_DEVICE_SET_IRQS;
const unsigned long NTB_VFIO_DEVICE_RESET = VFIO_DEVICE_RESET;
const unsigned long NTB_VFIO_IOMMU_GET_INFO = VFIO_IOMMU_GET_INFO;
const unsigned long NTB_VFIO_IOMMU_MAP_DMA = VFIO_IOMMU_MAP_DMA;
const unsigned long NTB_VFIO_IOMMU_UNMAP_DMA = VFIO_IOMMU_UNMAP_DMA;

const size_t NTB_VFIO_SIZEOF_GROUP_STATUS = sizeof(struct vfio_group_status);
const size_t NTB_VFIO_SIZEOF_DEVICE_INFO = sizeof(struct vfio_device_info);
const size_t NTB_VFIO_SIZEOF_REGION_INFO = sizeof(struct vfio_region_info);
const size_t NTB_VFIO_SIZEOF_IRQ_INFO = sizeof(struct vfio_irq_info);
const size_t NTB_VFIO_SIZEOF_IRQ_SET = sizeof(struct vfio_irq_set);
const size_t NTB_VFIO_SIZEOF_DMA_MAP = sizeof(struct vfio_iommu_type1_dma_map);
const size_t NTB_VFIO_SIZEOF_DMA_UNMAP = sizeof(struct vfio_iommu_type1_dma_unmap);
const size_t NTB_VFIO_SIZEOF_SPARSE_MMAP_CAP = sizeof(struct vfio_region_info_cap_sparse_mmap);
const size_t NTB_VFIO_SIZEOF_SPARSE_MMAP_AREA = sizeof(struct vfio_region_sparse_mmap_area);

/* Our values equal the kernel's. */
_Static_assert(NTB_VFIO_API_VERSION == VFIO_API_VERSION, "VFIO_API_VERSION");
_Static_assert(NTB_VFIO_TYPE1_IOMMU == VFIO_TYPE1_IOMMU, "VFIO_TYPE1_IOMMU");
_Static_assert(NTB_VFIO_TYPE1v2_IOMMU == VFIO_TYPE1v2_IOMMU, "VFIO_TYPE1v2_IOMMU");
_Static_assert(NTB_VFIO_NOIOMMU_IOMMU == VFIO_NOIOMMU_IOMMU, "VFIO_NOIOMMU_IOMMU");
_Static_assert(NTB_VFIO_GROUP_FLAGS_VIABLE == VFIO_GROUP_FLAGS_VIABLE, "GROUP_FLAGS_VIABLE");
_Static_assert(NTB_VFIO_GROUP_FLAGS_CONTAINER_SET == VFIO_GROUP_FLAGS_CONTAINER_SET, "CONTAINER_SET");
_Static_assert(NTB_VFIO_DEVICE_FLAGS_RESET == VFIO_DEVICE_FLAGS_RESET, "DEVICE_FLAGS_RESET");
_Static_assert(NTB_VFIO_DEVICE_FLAGS_PCI == VFIO_DEVICE_FLAGS_PCI, "DEVICE_FLAGS_PCI");
_Static_assert(NTB_VFIO_REGION_INFO_FLAG_READ == VFIO_REGION_INFO_FLAG_READ, "REGION READ");
_Static_assert(NTB_VFIO_REGION_INFO_FLAG_WRITE == VFIO_REGION_INFO_FLAG_WRITE, "REGION WRITE");
_Static_assert(NTB_VFIO_REGION_INFO_FLAG_MMAP == VFIO_REGION_INFO_FLAG_MMAP, "REGION MMAP");
_Static_assert(NTB_VFIO_REGION_INFO_FLAG_CAPS == VFIO_REGION_INFO_FLAG_CAPS, "REGION CAPS");
_Static_assert(NTB_VFIO_REGION_INFO_CAP_SPARSE_MMAP == VFIO_REGION_INFO_CAP_SPARSE_MMAP, "SPARSE_MMAP");
_Static_assert(NTB_VFIO_IRQ_INFO_EVENTFD == VFIO_IRQ_INFO_EVENTFD, "IRQ_INFO_EVENTFD");
_Static_assert(NTB_VFIO_IRQ_INFO_MASKABLE == VFIO_IRQ_INFO_MASKABLE, "IRQ_INFO_MASKABLE");
_Static_assert(NTB_VFIO_IRQ_INFO_AUTOMASKED == VFIO_IRQ_INFO_AUTOMASKED, "IRQ_INFO_AUTOMASKED");
_Static_assert(NTB_VFIO_IRQ_INFO_NORESIZE == VFIO_IRQ_INFO_NORESIZE, "IRQ_INFO_NORESIZE");
_Static_assert(NTB_VFIO_IRQ_SET_DATA_NONE == VFIO_IRQ_SET_DATA_NONE, "DATA_NONE");
_Static_assert(NTB_VFIO_IRQ_SET_DATA_BOOL == VFIO_IRQ_SET_DATA_BOOL, "DATA_BOOL");
_Static_assert(NTB_VFIO_IRQ_SET_DATA_EVENTFD == VFIO_IRQ_SET_DATA_EVENTFD, "DATA_EVENTFD");
_Static_assert(NTB_VFIO_IRQ_SET_ACTION_MASK == VFIO_IRQ_SET_ACTION_MASK, "ACTION_MASK");
_Static_assert(NTB_VFIO_IRQ_SET_ACTION_UNMASK == VFIO_IRQ_SET_ACTION_UNMASK, "ACTION_UNMASK");
_Static_assert(NTB_VFIO_IRQ_SET_ACTION_TRIGGER == VFIO_IRQ_SET_ACTION_TRIGGER, "ACTION_TRIGGER");
_Static_assert(NTB_VFIO_DMA_MAP_FLAG_READ == VFIO_DMA_MAP_FLAG_READ, "DMA READ");
_Static_assert(NTB_VFIO_DMA_MAP_FLAG_WRITE == VFIO_DMA_MAP_FLAG_WRITE, "DMA WRITE");
_Static_assert(NTB_VFIO_PCI_BAR0_REGION_INDEX == VFIO_PCI_BAR0_REGION_INDEX, "BAR0 index");
_Static_assert(NTB_VFIO_PCI_ROM_REGION_INDEX == VFIO_PCI_ROM_REGION_INDEX, "ROM index");
_Static_assert(NTB_VFIO_PCI_CONFIG_REGION_INDEX == VFIO_PCI_CONFIG_REGION_INDEX, "CONFIG index");
_Static_assert(NTB_VFIO_PCI_VGA_REGION_INDEX == VFIO_PCI_VGA_REGION_INDEX, "VGA index");
_Static_assert(NTB_VFIO_PCI_INTX_IRQ_INDEX == VFIO_PCI_INTX_IRQ_INDEX, "INTX index");
_Static_assert(NTB_VFIO_PCI_MSI_IRQ_INDEX == VFIO_PCI_MSI_IRQ_INDEX, "MSI index");
_Static_assert(NTB_VFIO_PCI_MSIX_IRQ_INDEX == VFIO_PCI_MSIX_IRQ_INDEX, "MSIX index");
_Static_assert(NTB_VFIO_PCI_ERR_IRQ_INDEX == VFIO_PCI_ERR_IRQ_INDEX, "ERR index");
_Static_assert(NTB_VFIO_PCI_REQ_IRQ_INDEX == VFIO_PCI_REQ_IRQ_INDEX, "REQ index");

/* Our mirrors have the kernel's layout, field by field. */
#define SAME_FIELD(ours, theirs, f) \
    _Static_assert(offsetof(ours, f) == offsetof(theirs, f), #theirs "." #f); \
    _Static_assert(sizeof(((ours *)0)->f) == sizeof(((theirs *)0)->f), #theirs "." #f " size")
#define SAME_SIZE(ours, theirs) _Static_assert(sizeof(ours) == sizeof(theirs), "sizeof " #theirs)

SAME_SIZE(ntb_vfio_group_status, struct vfio_group_status);
SAME_FIELD(ntb_vfio_group_status, struct vfio_group_status, argsz);
SAME_FIELD(ntb_vfio_group_status, struct vfio_group_status, flags);

SAME_SIZE(ntb_vfio_device_info, struct vfio_device_info);
SAME_FIELD(ntb_vfio_device_info, struct vfio_device_info, argsz);
SAME_FIELD(ntb_vfio_device_info, struct vfio_device_info, flags);
SAME_FIELD(ntb_vfio_device_info, struct vfio_device_info, num_regions);
SAME_FIELD(ntb_vfio_device_info, struct vfio_device_info, num_irqs);
SAME_FIELD(ntb_vfio_device_info, struct vfio_device_info, cap_offset);

SAME_SIZE(ntb_vfio_region_info, struct vfio_region_info);
SAME_FIELD(ntb_vfio_region_info, struct vfio_region_info, argsz);
SAME_FIELD(ntb_vfio_region_info, struct vfio_region_info, flags);
SAME_FIELD(ntb_vfio_region_info, struct vfio_region_info, index);
SAME_FIELD(ntb_vfio_region_info, struct vfio_region_info, cap_offset);
SAME_FIELD(ntb_vfio_region_info, struct vfio_region_info, size);
SAME_FIELD(ntb_vfio_region_info, struct vfio_region_info, offset);

SAME_SIZE(ntb_vfio_info_cap_header, struct vfio_info_cap_header);
SAME_FIELD(ntb_vfio_info_cap_header, struct vfio_info_cap_header, id);
SAME_FIELD(ntb_vfio_info_cap_header, struct vfio_info_cap_header, version);
SAME_FIELD(ntb_vfio_info_cap_header, struct vfio_info_cap_header, next);

SAME_SIZE(ntb_vfio_region_sparse_mmap_area, struct vfio_region_sparse_mmap_area);
SAME_FIELD(ntb_vfio_region_sparse_mmap_area, struct vfio_region_sparse_mmap_area, offset);
SAME_FIELD(ntb_vfio_region_sparse_mmap_area, struct vfio_region_sparse_mmap_area, size);

SAME_SIZE(ntb_vfio_region_info_cap_sparse_mmap, struct vfio_region_info_cap_sparse_mmap);
SAME_FIELD(ntb_vfio_region_info_cap_sparse_mmap, struct vfio_region_info_cap_sparse_mmap, header);
SAME_FIELD(ntb_vfio_region_info_cap_sparse_mmap, struct vfio_region_info_cap_sparse_mmap, nr_areas);
_Static_assert(offsetof(struct vfio_region_info_cap_sparse_mmap, areas) ==
               sizeof(ntb_vfio_region_info_cap_sparse_mmap), "sparse areas follow the header");

SAME_SIZE(ntb_vfio_irq_info, struct vfio_irq_info);
SAME_FIELD(ntb_vfio_irq_info, struct vfio_irq_info, argsz);
SAME_FIELD(ntb_vfio_irq_info, struct vfio_irq_info, flags);
SAME_FIELD(ntb_vfio_irq_info, struct vfio_irq_info, index);
SAME_FIELD(ntb_vfio_irq_info, struct vfio_irq_info, count);

SAME_SIZE(ntb_vfio_irq_set, struct vfio_irq_set);
SAME_FIELD(ntb_vfio_irq_set, struct vfio_irq_set, argsz);
SAME_FIELD(ntb_vfio_irq_set, struct vfio_irq_set, flags);
SAME_FIELD(ntb_vfio_irq_set, struct vfio_irq_set, index);
SAME_FIELD(ntb_vfio_irq_set, struct vfio_irq_set, start);
SAME_FIELD(ntb_vfio_irq_set, struct vfio_irq_set, count);
_Static_assert(offsetof(struct vfio_irq_set, data) == sizeof(ntb_vfio_irq_set), "irq data follows the header");

SAME_SIZE(ntb_vfio_iommu_type1_dma_map, struct vfio_iommu_type1_dma_map);
SAME_FIELD(ntb_vfio_iommu_type1_dma_map, struct vfio_iommu_type1_dma_map, argsz);
SAME_FIELD(ntb_vfio_iommu_type1_dma_map, struct vfio_iommu_type1_dma_map, flags);
SAME_FIELD(ntb_vfio_iommu_type1_dma_map, struct vfio_iommu_type1_dma_map, vaddr);
SAME_FIELD(ntb_vfio_iommu_type1_dma_map, struct vfio_iommu_type1_dma_map, iova);
SAME_FIELD(ntb_vfio_iommu_type1_dma_map, struct vfio_iommu_type1_dma_map, size);

SAME_SIZE(ntb_vfio_iommu_type1_dma_unmap, struct vfio_iommu_type1_dma_unmap);
SAME_FIELD(ntb_vfio_iommu_type1_dma_unmap, struct vfio_iommu_type1_dma_unmap, argsz);
SAME_FIELD(ntb_vfio_iommu_type1_dma_unmap, struct vfio_iommu_type1_dma_unmap, flags);
SAME_FIELD(ntb_vfio_iommu_type1_dma_unmap, struct vfio_iommu_type1_dma_unmap, iova);
SAME_FIELD(ntb_vfio_iommu_type1_dma_unmap, struct vfio_iommu_type1_dma_unmap, size);

int ntb_vfio_region_sparse_areas(const void *info, size_t len, ntb_vfio_region_sparse_mmap_area *areas, int max) {
    const unsigned char *base = info;
    ntb_vfio_region_info ri;
    if (len < sizeof ri) return -1;
    memcpy(&ri, base, sizeof ri);
    if (!(ri.flags & NTB_VFIO_REGION_INFO_FLAG_CAPS) || ri.cap_offset == 0) return 0;
    /* Walk the chain: each header's `next` is an offset from the start of the info struct; 0 ends it.
     * A chain longer than the buffer can hold headers is a loop. */
    uint32_t off = ri.cap_offset;
    for (size_t hops = 0; off != 0; hops++) {
        ntb_vfio_info_cap_header h;
        if (hops > len / sizeof h || off < sizeof ri || (size_t)off + sizeof h > len) return -1;
        memcpy(&h, base + off, sizeof h);
        if (h.id == NTB_VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
            ntb_vfio_region_info_cap_sparse_mmap cap;
            if ((size_t)off + sizeof cap > len) return -1;
            memcpy(&cap, base + off, sizeof cap);
            size_t need = (size_t)off + sizeof cap + (size_t)cap.nr_areas * sizeof(ntb_vfio_region_sparse_mmap_area);
            if (need > len) return -1;
            for (uint32_t i = 0; areas && i < cap.nr_areas && (int)i < max; i++)
                memcpy(&areas[i], base + off + sizeof cap + i * sizeof(ntb_vfio_region_sparse_mmap_area),
                       sizeof(ntb_vfio_region_sparse_mmap_area));
            return (int)cap.nr_areas;
        }
        off = h.next;
    }
    return 0;
}

size_t ntb_vfio_irq_set_eventfd_size(uint32_t count) {
    return sizeof(ntb_vfio_irq_set) + (size_t)count * sizeof(int32_t);
}

void ntb_vfio_irq_set_eventfds(void *buf, uint32_t index, uint32_t start, uint32_t count, const int32_t *fds) {
    ntb_vfio_irq_set set = {
        .argsz = (uint32_t)ntb_vfio_irq_set_eventfd_size(count),
        .flags = (count ? NTB_VFIO_IRQ_SET_DATA_EVENTFD : NTB_VFIO_IRQ_SET_DATA_NONE) | NTB_VFIO_IRQ_SET_ACTION_TRIGGER,
        .index = index, .start = start, .count = count,
    };
    memcpy(buf, &set, sizeof set);
    if (count && fds) memcpy((unsigned char *)buf + sizeof set, fds, (size_t)count * sizeof(int32_t));
}

void ntb_vfio_irq_set_action(ntb_vfio_irq_set *set, uint32_t index, uint32_t start, uint32_t count, uint32_t action) {
    set->argsz = sizeof *set;
    set->flags = NTB_VFIO_IRQ_SET_DATA_NONE | action;
    set->index = index;
    set->start = start;
    set->count = count;
}
