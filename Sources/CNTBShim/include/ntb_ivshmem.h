/*
 * ntb_ivshmem.h - the header at the start of an ivshmem shared-memory region that the ivshmem NTB
 * adapter keeps there (NTBHardware/IVSHMEM).                                              (NTBHardware)
 *
 * ivshmem-plain (PCI 1af4:1110, QEMU docs/specs/ivshmem-spec.rst) gives each VM a BAR2 that is the
 * same host memory; without ivshmem-server there are no interrupts. The adapter therefore keeps an
 * NTB's state in memory both sides map and poll: this header (one page), then the memory windows.
 * This is the project's own layout (no Linux driver defines one); both sides must run this version.
 *
 *   0x0000  struct ntb_ivshmem_header (4 KiB): magic, version, geometry
 *           side[0] at 0x100 (side A, --role host), side[1] at 0x200 (side B, --role endpoint)
 *   0x1000  side A's inbound windows (mw_count of mw_size bytes each): B's outbound windows
 *   ...     side B's inbound windows: A's outbound windows
 *
 * Scratchpads and doorbells of a side are the ones that side reads: the peer writes spad[] and sets
 * bits in doorbell (atomic OR); the owner reads them and clears doorbell bits (atomic AND).
 */
#ifndef NTB_IVSHMEM_H
#define NTB_IVSHMEM_H

#include <stddef.h>
#include <stdint.h>

enum {
    NTB_IVSHMEM_VERSION      = 1,
    NTB_IVSHMEM_HEADER_SIZE  = 0x1000,
    NTB_IVSHMEM_SIDE_OFFSET  = 0x100,   /* side[0]; side[n] at + n * NTB_IVSHMEM_SIDE_SIZE */
    NTB_IVSHMEM_SIDE_SIZE    = 0x100,
    NTB_IVSHMEM_SPADS        = 16,      /* per side */
    NTB_IVSHMEM_MAX_MWS      = 4,       /* per side */
    NTB_IVSHMEM_MW_ALIGN     = 0x1000,  /* window offsets and sizes are page multiples */
};

/* "NTBIVSH1" as little-endian bytes; NTB_IVSHMEM_INITIALISING ("NTBI....") while the first side writes the geometry. */
#define NTB_IVSHMEM_MAGIC         0x314853564942544EULL
#define NTB_IVSHMEM_INITIALISING  0x2E2E2E2E4942544EULL

/* Side states (ntb_ivshmem_side.state). */
enum {
    NTB_IVSHMEM_STATE_ABSENT  = 0,   /* never opened (zeroed memory) */
    NTB_IVSHMEM_STATE_OPEN    = 1,   /* process attached, beating, link not enabled */
    NTB_IVSHMEM_STATE_ENABLED = 2,   /* link enabled (ntb_link_enable) */
    NTB_IVSHMEM_STATE_CLOSED  = 3,   /* closed cleanly: the peer sees link down at once */
};

struct ntb_ivshmem_side {
    uint64_t heartbeat;                   /* 0x00 incremented by the owner every beat */
    uint64_t session;                     /* 0x08 random per open: a restart is a new session */
    uint32_t state;                       /* 0x10 NTB_IVSHMEM_STATE_* */
    uint32_t pid;                         /* 0x14 owner's process id (diagnostics) */
    uint64_t doorbell;                    /* 0x18 pending doorbell bits, set by the peer */
    uint8_t  boot_id[16];                 /* 0x20 owner's /proc/sys/kernel/random/boot_id (diagnostics) */
    uint32_t spad[NTB_IVSHMEM_SPADS];     /* 0x30 written by the peer, read by the owner */
    uint8_t  reserved[0x100 - 0x70];
};

struct ntb_ivshmem_header {
    uint64_t magic;                       /* 0x00 NTB_IVSHMEM_MAGIC */
    uint32_t version;                     /* 0x08 NTB_IVSHMEM_VERSION */
    uint32_t header_size;                 /* 0x0C NTB_IVSHMEM_HEADER_SIZE */
    uint64_t shm_size;                    /* 0x10 bytes of shared memory the geometry was made for */
    uint32_t spad_count;                  /* 0x18 per side */
    uint32_t mw_count;                    /* 0x1C inbound windows per side, 1...NTB_IVSHMEM_MAX_MWS */
    uint64_t mw_size;                     /* 0x20 bytes per window, multiple of NTB_IVSHMEM_MW_ALIGN */
    uint64_t mw_offset;                   /* 0x28 side A's window 0; side s window w at mw_offset + (s * mw_count + w) * mw_size */
    uint64_t db_valid_mask;               /* 0x30 valid doorbell bits */
    uint8_t  reserved0[NTB_IVSHMEM_SIDE_OFFSET - 0x38];
    struct ntb_ivshmem_side side[2];      /* 0x100, 0x200 */
    uint8_t  reserved1[NTB_IVSHMEM_HEADER_SIZE - 0x300];
};

enum {
    NTB_IVSHMEM_MAGIC_OFF       = 0x00,
    NTB_IVSHMEM_VERSION_OFF     = 0x08,
    NTB_IVSHMEM_HEADER_SIZE_OFF = 0x0C,
    NTB_IVSHMEM_SHM_SIZE_OFF    = 0x10,
    NTB_IVSHMEM_SPAD_COUNT_OFF  = 0x18,
    NTB_IVSHMEM_MW_COUNT_OFF    = 0x1C,
    NTB_IVSHMEM_MW_SIZE_OFF     = 0x20,
    NTB_IVSHMEM_MW_OFFSET_OFF   = 0x28,
    NTB_IVSHMEM_DB_MASK_OFF     = 0x30,
    NTB_IVSHMEM_SIDE_HEARTBEAT  = 0x00,   /* offsets within a side */
    NTB_IVSHMEM_SIDE_SESSION    = 0x08,
    NTB_IVSHMEM_SIDE_STATE      = 0x10,
    NTB_IVSHMEM_SIDE_PID        = 0x14,
    NTB_IVSHMEM_SIDE_DOORBELL   = 0x18,
    NTB_IVSHMEM_SIDE_BOOT_ID    = 0x20,
    NTB_IVSHMEM_SIDE_SPAD0      = 0x30,
};

_Static_assert(sizeof(struct ntb_ivshmem_side) == NTB_IVSHMEM_SIDE_SIZE, "side size");
_Static_assert(offsetof(struct ntb_ivshmem_side, heartbeat) == NTB_IVSHMEM_SIDE_HEARTBEAT, "heartbeat");
_Static_assert(offsetof(struct ntb_ivshmem_side, session) == NTB_IVSHMEM_SIDE_SESSION, "session");
_Static_assert(offsetof(struct ntb_ivshmem_side, state) == NTB_IVSHMEM_SIDE_STATE, "state");
_Static_assert(offsetof(struct ntb_ivshmem_side, pid) == NTB_IVSHMEM_SIDE_PID, "pid");
_Static_assert(offsetof(struct ntb_ivshmem_side, doorbell) == NTB_IVSHMEM_SIDE_DOORBELL, "doorbell");
_Static_assert(offsetof(struct ntb_ivshmem_side, boot_id) == NTB_IVSHMEM_SIDE_BOOT_ID, "boot_id");
_Static_assert(offsetof(struct ntb_ivshmem_side, spad) == NTB_IVSHMEM_SIDE_SPAD0, "spad");
_Static_assert(sizeof(struct ntb_ivshmem_header) == NTB_IVSHMEM_HEADER_SIZE, "header size");
_Static_assert(offsetof(struct ntb_ivshmem_header, magic) == NTB_IVSHMEM_MAGIC_OFF, "magic");
_Static_assert(offsetof(struct ntb_ivshmem_header, version) == NTB_IVSHMEM_VERSION_OFF, "version");
_Static_assert(offsetof(struct ntb_ivshmem_header, header_size) == NTB_IVSHMEM_HEADER_SIZE_OFF, "header_size");
_Static_assert(offsetof(struct ntb_ivshmem_header, shm_size) == NTB_IVSHMEM_SHM_SIZE_OFF, "shm_size");
_Static_assert(offsetof(struct ntb_ivshmem_header, spad_count) == NTB_IVSHMEM_SPAD_COUNT_OFF, "spad_count");
_Static_assert(offsetof(struct ntb_ivshmem_header, mw_count) == NTB_IVSHMEM_MW_COUNT_OFF, "mw_count");
_Static_assert(offsetof(struct ntb_ivshmem_header, mw_size) == NTB_IVSHMEM_MW_SIZE_OFF, "mw_size");
_Static_assert(offsetof(struct ntb_ivshmem_header, mw_offset) == NTB_IVSHMEM_MW_OFFSET_OFF, "mw_offset");
_Static_assert(offsetof(struct ntb_ivshmem_header, db_valid_mask) == NTB_IVSHMEM_DB_MASK_OFF, "db_valid_mask");
_Static_assert(offsetof(struct ntb_ivshmem_header, side) == NTB_IVSHMEM_SIDE_OFFSET, "side[0]");
_Static_assert(offsetof(struct ntb_ivshmem_header, side[1]) == NTB_IVSHMEM_SIDE_OFFSET + NTB_IVSHMEM_SIDE_SIZE, "side[1]");

/* Atomic read-modify-write on the shared words (the other VM's CPU does the same on the same host memory;
 * x86 LOCK-prefixed instructions, sequentially consistent, so they also order the window stores before them). */
static inline __attribute__((always_inline)) uint64_t ntb_ivshmem_fetch_or64(volatile void *_Nonnull base, uintptr_t off, uint64_t bits) {
    return __atomic_fetch_or((volatile uint64_t *)((volatile char *)base + off), bits, __ATOMIC_SEQ_CST);
}
static inline __attribute__((always_inline)) uint64_t ntb_ivshmem_fetch_and64(volatile void *_Nonnull base, uintptr_t off, uint64_t bits) {
    return __atomic_fetch_and((volatile uint64_t *)((volatile char *)base + off), bits, __ATOMIC_SEQ_CST);
}
/* Compare-and-swap of the magic word: which side writes the geometry of a zeroed region. */
static inline __attribute__((always_inline)) int ntb_ivshmem_cas64(volatile void *_Nonnull base, uintptr_t off, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n((volatile uint64_t *)((volatile char *)base + off), &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

#endif
