/*
 * ntb_mmio.h - volatile MMIO accessors and named barriers.
 *
 * Every load or store to a device BAR or to memory another agent (a peer host, a DMA engine) reads goes
 * through these helpers, so that the compiler emits exactly one access of the stated width and never
 * merges, splits, reorders or elides it. Under -O each accessor inlines to a single `load volatile` /
 * `store volatile` (no test checks the generated code; read it with `swiftc -O -emit-assembly` on a caller).
 *
 * Barriers follow the Linux definitions (arch/x86/include/asm/barrier.h, arch/arm64/include/asm/barrier.h):
 *   ntb_mb/rmb/wmb      full/read/write barriers that also order MMIO (x86: mfence/lfence/sfence;
 *                       arm64: dsb sy/ld/st). sfence is what orders write-combining stores on x86.
 *   ntb_dma_wmb/rmb     order CPU accesses to coherent DMA memory as seen by a device
 *                       (x86: compiler barrier, TSO; arm64: dmb oshst/oshld).
 */
#ifndef NTB_MMIO_H
#define NTB_MMIO_H

#include <stdint.h>

#define NTB_ALWAYS_INLINE static inline __attribute__((always_inline))

NTB_ALWAYS_INLINE uint8_t ntb_mmio_read8(const volatile void *_Nonnull base, uintptr_t off) {
    return *(const volatile uint8_t *)((const volatile char *)base + off);
}
NTB_ALWAYS_INLINE uint16_t ntb_mmio_read16(const volatile void *_Nonnull base, uintptr_t off) {
    return *(const volatile uint16_t *)((const volatile char *)base + off);
}
NTB_ALWAYS_INLINE uint32_t ntb_mmio_read32(const volatile void *_Nonnull base, uintptr_t off) {
    return *(const volatile uint32_t *)((const volatile char *)base + off);
}
NTB_ALWAYS_INLINE uint64_t ntb_mmio_read64(const volatile void *_Nonnull base, uintptr_t off) {
    return *(const volatile uint64_t *)((const volatile char *)base + off);
}
NTB_ALWAYS_INLINE void ntb_mmio_write8(volatile void *_Nonnull base, uintptr_t off, uint8_t v) {
    *(volatile uint8_t *)((volatile char *)base + off) = v;
}
NTB_ALWAYS_INLINE void ntb_mmio_write16(volatile void *_Nonnull base, uintptr_t off, uint16_t v) {
    *(volatile uint16_t *)((volatile char *)base + off) = v;
}
NTB_ALWAYS_INLINE void ntb_mmio_write32(volatile void *_Nonnull base, uintptr_t off, uint32_t v) {
    *(volatile uint32_t *)((volatile char *)base + off) = v;
}
NTB_ALWAYS_INLINE void ntb_mmio_write64(volatile void *_Nonnull base, uintptr_t off, uint64_t v) {
    *(volatile uint64_t *)((volatile char *)base + off) = v;
}

/* Barriers. */
#if defined(__x86_64__) || defined(__i386__)
NTB_ALWAYS_INLINE void ntb_mb(void)  { __asm__ __volatile__("mfence" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_rmb(void) { __asm__ __volatile__("lfence" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_wmb(void) { __asm__ __volatile__("sfence" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_dma_wmb(void) { __asm__ __volatile__("" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_dma_rmb(void) { __asm__ __volatile__("" ::: "memory"); }
#elif defined(__aarch64__)
NTB_ALWAYS_INLINE void ntb_mb(void)  { __asm__ __volatile__("dsb sy" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_rmb(void) { __asm__ __volatile__("dsb ld" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_wmb(void) { __asm__ __volatile__("dsb st" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_dma_wmb(void) { __asm__ __volatile__("dmb oshst" ::: "memory"); }
NTB_ALWAYS_INLINE void ntb_dma_rmb(void) { __asm__ __volatile__("dmb oshld" ::: "memory"); }
#else
#error "ntb-transport supports x86_64 and arm64"
#endif

/* Copy into or out of an I/O mapping (a memory window). Plain memcpy is what Linux memcpy_toio does on
 * x86 and arm64 for WC/UC mappings; wrapped so the call site says what it is. */
void ntb_memcpy_toio(volatile void *_Nonnull dst, const void *_Nonnull src, uintptr_t len);
void ntb_memcpy_fromio(void *_Nonnull dst, const volatile void *_Nonnull src, uintptr_t len);

#endif /* NTB_MMIO_H */
