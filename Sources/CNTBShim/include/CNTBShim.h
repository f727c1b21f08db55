/*
 * CNTBShim - the project's only C. Umbrella header.
 *
 * Each header has one owner module and says why it exists. Every symbol is prefixed ntb_ / NTB_.
 * Hardware-visible layouts are declared here once, with _Static_assert on sizes and offsets.
 */
#ifndef CNTBSHIM_H
#define CNTBSHIM_H

#include "ntb_mmio.h"        /* volatile MMIO + barriers          (PCIKit)       */
#include "ntb_sys.h"         /* eventfd, epoll                    (PCIKit)       */
#include "ntb_vfio.h"        /* VFIO ioctls and layouts           (PCIKit)       */
#include "ntb_pci.h"         /* libpci scan, names, config        (PCIKit)       */
#include "ntb_edma.h"        /* eDMA LL layouts, model ring/futex (DWEDMA, NTBMock) */
#include "ntb_epf.h"         /* EPF NTB control region, mock link page (NTBHardware, NTBMock) */
#include "ntb_transport.h"   /* ntb_transport v4 wire layout      (NTBTransport) */
#include "ntb_edma_transport.h" /* RFC v3 eDMA window and ring layouts (NTBTransport) */
#include "ntb_ivshmem.h"     /* ivshmem NTB adapter header layout (NTBHardware) */
#include "ntb_crc32c.h"      /* CRC-32C, SSE4.2 / ARMv8 CRC32 or table (ntb-transport CLI) */

#endif
