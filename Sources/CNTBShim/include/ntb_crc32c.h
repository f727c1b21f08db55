/*
 * ntb_crc32c.h - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the end-to-end checksum of the
 * CLI's file transfers, at the speed of the CPU's CRC instruction. (ntb-transport CLI; tested in
 * Tests/PCIKitTests/CRC32CTests.swift)
 *
 * Convention (the same as zlib's crc32 and the CLI's `CRC32C` table loop, so the wire value does not
 * change): the register starts at 0xFFFFFFFF and the result is XORed with 0xFFFFFFFF. `crc` is the result
 * of the previous call (0 to start), so ntb_crc32c(ntb_crc32c(0, a), b) == ntb_crc32c(0, a ++ b), and
 * ntb_crc32c(0, "123456789", 9) == 0xE3069283. `p` may be NULL when `n` is 0.
 *
 * ntb_crc32c picks its implementation once, at the first call: the SSE4.2 `crc32` instruction on x86-64
 * (three interleaved streams), the ARMv8 CRC32 extension (`crc32c*`) on arm64 when AT_HWCAP says
 * HWCAP_CRC32, else the slice-by-8 table. All three give identical results for every input.
 */
#ifndef NTB_CRC32C_H
#define NTB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of n bytes at p, continuing from `crc` (0 to start). Fastest implementation this CPU supports. */
uint32_t ntb_crc32c(uint32_t crc, const void *_Nullable p, size_t n);
/* The same with the slice-by-8 table only (the fallback; always available). */
uint32_t ntb_crc32c_sw(uint32_t crc, const void *_Nullable p, size_t n);
/* Which implementation ntb_crc32c uses: "sse4.2", "armv8-crc32" or "table" (a static string). */
const char *_Nonnull ntb_crc32c_impl(void);

#endif
