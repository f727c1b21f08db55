/*
 * ntb_edma.h - DesignWare eDMA (v0) linked-list element layouts, and the posted-write ring that the
 * eDMA engine model (NTBMock) uses to receive register writes from another thread or process.
 *                                                                       (DWEDMA, NTBMock)
 *
 * Layouts follow Linux drivers/dma/dw-edma/dw-edma-v0-regs.h (docs/hardware-reference.md §1.5): the structures
 * are packed there; every field below sits at its natural alignment, so packing changes nothing, and
 * the _Static_asserts pin each offset.
 */
#ifndef NTB_EDMA_H
#define NTB_EDMA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>

/* ---- LL elements (docs/hardware-reference.md §1.5) ---------------------------------------------------------- */

/* Data element, struct dw_edma_v0_lli: 24 bytes. */
typedef struct ntb_edma_lli {
    uint32_t control;        /* @0  CB/TCB/LLP/LIE/RIE (§1.4)        */
    uint32_t transfer_size;  /* @4  bytes                             */
    uint64_t sar;            /* @8  source address                    */
    uint64_t dar;            /* @16 destination address               */
} ntb_edma_lli;

/* Link element, struct dw_edma_v0_llp: 16 bytes, written at slot offset i * 24 (EDMA_LL_SZ). */
typedef struct ntb_edma_llp {
    uint32_t control;        /* @0  LLP|TCB (+CB)                     */
    uint32_t reserved;       /* @4                                    */
    uint64_t llp;            /* @8  next element (bus address seen by the eDMA) */
} ntb_edma_llp;

#define NTB_EDMA_LL_SZ 24u   /* EDMA_LL_SZ: one slot per element, link included (dw-edma-core.h) */

_Static_assert(sizeof(ntb_edma_lli) == 24, "dw_edma_v0_lli is 24 bytes");
_Static_assert(offsetof(ntb_edma_lli, control) == 0, "lli.control @0");
_Static_assert(offsetof(ntb_edma_lli, transfer_size) == 4, "lli.transfer_size @4");
_Static_assert(offsetof(ntb_edma_lli, sar) == 8, "lli.sar @8");
_Static_assert(offsetof(ntb_edma_lli, dar) == 16, "lli.dar @16");
_Static_assert(sizeof(ntb_edma_llp) == 16, "dw_edma_v0_llp is 16 bytes");
_Static_assert(offsetof(ntb_edma_llp, control) == 0, "llp.control @0");
_Static_assert(offsetof(ntb_edma_llp, reserved) == 4, "llp.reserved @4");
_Static_assert(offsetof(ntb_edma_llp, llp) == 8, "llp.llp @8");
_Static_assert(sizeof(ntb_edma_llp) <= NTB_EDMA_LL_SZ, "a link element fits a slot");

/* ---- Posted-write ring of the engine model (docs/mock-device.md, "DW eDMA engine model") ------- */
/*
 * A register write becomes one entry. Producers (any thread of the accessor's process) reserve a ticket
 * with an atomic increment, fill the entry, then publish it by storing seq = ticket + 1 (release). The
 * model consumes entries strictly in ticket order, applies each exactly once and advances `applied`
 * (release). A register read first waits until `applied` covers every ticket reserved before it: a
 * PCIe read completion does not pass earlier posted writes.
 */
typedef struct ntb_edma_pw_entry {
    uint64_t seq;            /* ticket + 1 once published; 0 = never used */
    uint64_t value;          /* written value (zero-extended)             */
    uint32_t offset;         /* byte offset in the register space         */
    uint32_t width;          /* 1, 2, 4 or 8                               */
} ntb_edma_pw_entry;
_Static_assert(sizeof(ntb_edma_pw_entry) == 24, "posted-write entry is 24 bytes");

typedef struct ntb_edma_pw_ring {
    uint64_t reserve;        /* @0  next ticket (producers: fetch-add)     */
    uint64_t applied;        /* @8  tickets applied by the model           */
    uint32_t applied_wake;   /* @16 futex word bumped by the model         */
    uint32_t waiters;        /* @20 readers sleeping on applied_wake       */
    uint32_t capacity;       /* @24 entries (power of two)                 */
    uint32_t pad0;           /* @28                                        */
    uint64_t pad1[4];        /* @32 .. 64                                  */
} ntb_edma_pw_ring;
_Static_assert(sizeof(ntb_edma_pw_ring) == 64, "ring header is one cache line");

/* The rings file: this header, then ring 0 (host accessor), then ring 1 (endpoint accessor); each ring
 * is a ntb_edma_pw_ring followed by `capacity` entries. */
typedef struct ntb_edma_pw_file {
    uint64_t magic;          /* @0  NTB_EDMA_PW_MAGIC                      */
    uint32_t version;        /* @8  1                                      */
    uint32_t ring_count;     /* @12 2                                      */
    uint32_t capacity;       /* @16 entries per ring                       */
    uint32_t model_sleeping; /* @20 1 while the model waits for work       */
    uint32_t model_wake;     /* @24 futex word producers bump to wake it   */
    uint32_t model_alive;    /* @28 1 while a model serves the rings       */
    uint32_t model_pid;      /* @32 process serving the rings (liveness)   */
    uint32_t pad0;           /* @36                                        */
    uint64_t pad[3];         /* @40 .. 64                                  */
} ntb_edma_pw_file;
_Static_assert(sizeof(ntb_edma_pw_file) == 64, "rings file header is one cache line");
_Static_assert(offsetof(ntb_edma_pw_file, model_wake) == 24, "model_wake @24");
_Static_assert(offsetof(ntb_edma_pw_file, model_pid) == 32, "model_pid @32");

#define NTB_EDMA_PW_MAGIC 0x4E54424557504552ull /* "REPWEBTN" little-endian: "NTBEWPER" */

static inline uint64_t ntb_atomic_load_acquire_u64(const uint64_t *_Nonnull p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ntb_atomic_store_release_u64(uint64_t *_Nonnull p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t ntb_atomic_fetch_add_u64(uint64_t *_Nonnull p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t ntb_atomic_load_u32(const uint32_t *_Nonnull p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void ntb_atomic_store_u32(uint32_t *_Nonnull p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t ntb_atomic_fetch_add_u32(uint32_t *_Nonnull p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline void ntb_atomic_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* Waits while *addr == expected, at most timeout_ns (shared futex: works across processes on a
 * MAP_SHARED file mapping). Returns 0 when woken or on a value change, -1 on timeout or signal. */
static inline int ntb_futex_wait(uint32_t *_Nonnull addr, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts = { (time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000) };
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, NULL, 0);
}
/* Wakes every waiter on addr. */
static inline void ntb_futex_wake_all(uint32_t *_Nonnull addr) {
    (void)syscall(SYS_futex, addr, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

#endif /* NTB_EDMA_H */
