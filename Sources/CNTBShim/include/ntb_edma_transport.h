/*
 * ntb_edma_transport.h - hardware-visible layouts of the RFC v3 "NTB transport backed by endpoint
 * DW eDMA" protocol (Koichiro Den; hardware-reference §4.2 and §4.3). Owner: NTBTransport (edma backend).
 *
 * Why C: these structures are read and written by the peer (through a memory window) and by the
 * endpoint's eDMA, so their layout must be the C layout of the Linux RFC, declared once and checked
 * here; Swift reads and writes them field by field at MemoryLayout offsets of these structs.
 *
 * Sources: RFC v3 patch 25 ntb_hw_edma.h (struct ntb_edma_info, struct ntb_edma_db, the window layout),
 * RFC v3 patch 26 ntb_transport_edma.c (struct ntb_edma_desc, struct ntb_edma_ring). Neither struct is packed:
 * natural alignment puts db_base at 16 (hardware-reference §5 item 10).
 */
#ifndef NTB_EDMA_TRANSPORT_H
#define NTB_EDMA_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

/* "EDMA" read as a little-endian u32 at offset 0 of the eDMA window. */
#define NTB_EDMA_INFO_MAGIC 0x45444D41u
/* ntb_edma_info has one LL address per endpoint read channel: 4 data channels + 1 notify channel. */
#define NTB_EDMA_INFO_LL_SLOTS 5
/* ntb_edma_db.db[]: at most 64 queue pairs can be notified host -> endpoint (NTB_EDMA_NOTIFY_MAX_QP). */
#define NTB_EDMA_NOTIFY_MAX_QP 64
/* Descriptors per ring; indices are free-running u32 masked by (entries - 1); 127 usable. */
#define NTB_EDMA_RING_ENTRIES 128
/* ntb_edma_desc.flags. Inferred: the RFC reuses ntb_transport.c's DESC_DONE_FLAG BIT(0) and
 * LINK_DOWN_FLAG BIT(1) (hardware-reference §2.3, §4.3); the values in RFC v3 patch 26 were not seen: unverified. */
#define NTB_EDMA_DESC_DONE_FLAG (1u << 0)
#define NTB_EDMA_LINK_DOWN_FLAG (1u << 1)

/* Offset 0 of the eDMA window (endpoint coherent memory), published by the endpoint before link-up. */
struct ntb_edma_info {
    uint32_t magic;                               /* 0x00  NTB_EDMA_INFO_MAGIC */
    uint32_t reg_size;                            /* 0x04  R: eDMA register window, a power of two */
    uint16_t ch_cnt;                              /* 0x08  read channels with an LL region (RFC: 5) */
    /* 0x0A..0x0F: padding (natural alignment of db_base) */
    uint64_t db_base;                             /* 0x10  endpoint-local address of ntb_edma_db */
    uint64_t ll_rd_phys[NTB_EDMA_INFO_LL_SLOTS];  /* 0x18  endpoint-local address of read channel i's LL */
};                                                /* 0x40 */

/* Offset P of the eDMA window: host -> endpoint notification page (endpoint memory). The host writes
 * db[qp] = 1 through the window, then DMAs 4 bytes to db_base (i.e. to `target`) on the notify read
 * channel; the endpoint's completion scans and clears db[]. */
struct ntb_edma_db {
    uint32_t target;                              /* 0x00  DMA write target */
    uint32_t db[NTB_EDMA_NOTIFY_MAX_QP];          /* 0x04  one flag per queue pair */
};                                                /* 0x104 */

/* One ring descriptor. The receiver writes len and addr (its own bus address) into the peer's copy
 * when it posts a buffer; the sender writes the final len and flags. data is local-only. */
struct ntb_edma_desc {
    uint32_t len;                                 /* 0x00 */
    uint32_t flags;                               /* 0x04  NTB_EDMA_DESC_DONE_FLAG / NTB_EDMA_LINK_DOWN_FLAG */
    uint64_t addr;                                /* 0x08  receiver's buffer bus address */
    uint64_t data;                                /* 0x10  local-only (the kernel keeps an entry pointer) */
};                                                /* 0x18 */

/* Two of these start each queue pair's area in the (non-eDMA) memory windows: ring n XOR is_ep, so
 * ring 0 carries RC -> EP traffic and ring 1 EP -> RC on both sides. */
struct ntb_edma_ring {
    struct ntb_edma_desc desc[NTB_EDMA_RING_ENTRIES]; /* 0x000 */
    uint32_t head;                                /* 0xC00  producer index, written by the receiver */
    uint32_t tail;                                /* 0xC04  consumer index, written by the sender */
};                                                /* 0xC08 = 3080 */

_Static_assert(offsetof(struct ntb_edma_info, magic) == 0, "ntb_edma_info.magic");
_Static_assert(offsetof(struct ntb_edma_info, reg_size) == 4, "ntb_edma_info.reg_size");
_Static_assert(offsetof(struct ntb_edma_info, ch_cnt) == 8, "ntb_edma_info.ch_cnt");
_Static_assert(offsetof(struct ntb_edma_info, db_base) == 16, "ntb_edma_info.db_base (not packed)");
_Static_assert(offsetof(struct ntb_edma_info, ll_rd_phys) == 24, "ntb_edma_info.ll_rd_phys");
_Static_assert(sizeof(struct ntb_edma_info) == 64, "ntb_edma_info size");
_Static_assert(offsetof(struct ntb_edma_db, target) == 0, "ntb_edma_db.target");
_Static_assert(offsetof(struct ntb_edma_db, db) == 4, "ntb_edma_db.db");
_Static_assert(sizeof(struct ntb_edma_db) == 4 + 4 * NTB_EDMA_NOTIFY_MAX_QP, "ntb_edma_db size");
_Static_assert(offsetof(struct ntb_edma_desc, len) == 0, "ntb_edma_desc.len");
_Static_assert(offsetof(struct ntb_edma_desc, flags) == 4, "ntb_edma_desc.flags");
_Static_assert(offsetof(struct ntb_edma_desc, addr) == 8, "ntb_edma_desc.addr");
_Static_assert(offsetof(struct ntb_edma_desc, data) == 16, "ntb_edma_desc.data");
_Static_assert(sizeof(struct ntb_edma_desc) == 24, "ntb_edma_desc size");
_Static_assert(offsetof(struct ntb_edma_ring, head) == 128 * 24, "ntb_edma_ring.head");
_Static_assert(offsetof(struct ntb_edma_ring, tail) == 128 * 24 + 4, "ntb_edma_ring.tail");
_Static_assert(sizeof(struct ntb_edma_ring) == 3080, "ntb_edma_ring size (two per QP: 6160 bytes)");

#endif
