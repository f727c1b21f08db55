/*
 * crc32c.c - CRC-32C with the CPU's instruction, selected at run time, and a slice-by-8 table fallback
 * (see ntb_crc32c.h for the convention).
 *
 * The x86-64 path follows Mark Adler's crc32c.c (zlib's author, public domain): `crc32q` has a latency of
 * 3 cycles but a throughput of 1 per cycle, so three independent streams over three adjacent blocks keep
 * the unit busy, and the three partial CRCs are combined by "shifting" each over the length of the blocks
 * after it (multiplying by x^(8·len) mod P, done with four 256-entry tables per block length). The arm64
 * path is the plain 8-byte loop of the CRC32 extension.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <string.h>
#include "ntb_crc32c.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#define NTB_CRC32C_X86 1
#elif defined(__aarch64__) && defined(__linux__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define NTB_CRC32C_ARM64 1
#endif

#define POLY 0x82F63B78u /* CRC-32C, reflected */

/* ---- slice-by-8 table (the fallback) ------------------------------------------------------------------ */

static uint32_t crc32c_table[8][256];

static void crc32c_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        crc32c_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc32c_table[0][i];
        for (int k = 1; k < 8; k++) {
            c = crc32c_table[0][c & 0xFF] ^ (c >> 8);
            crc32c_table[k][i] = c;
        }
    }
}

static uint32_t crc32c_sw_raw(uint32_t c, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        n--;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c;
        c = crc32c_table[7][w & 0xFF] ^ crc32c_table[6][(w >> 8) & 0xFF] ^
            crc32c_table[5][(w >> 16) & 0xFF] ^ crc32c_table[4][(w >> 24) & 0xFF] ^
            crc32c_table[3][(w >> 32) & 0xFF] ^ crc32c_table[2][(w >> 40) & 0xFF] ^
            crc32c_table[1][(w >> 48) & 0xFF] ^ crc32c_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
#endif
    while (n--) c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

/* ---- x86-64: SSE4.2, three streams --------------------------------------------------------------------- */

#if NTB_CRC32C_X86
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

/* crc32c_long/short[k][b]: the register contribution of byte k of the register after LONG/SHORT zeros. */
static uint32_t crc32c_long[4][256];
static uint32_t crc32c_short[4][256];

static uint32_t gf2_matrix_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_matrix_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_matrix_times(mat, mat[n]);
}

/* The 32x32 GF(2) operator that feeds `len` zero bytes (a power of two) through the register. */
static void crc32c_zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32];
    odd[0] = POLY; /* one zero bit */
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_matrix_square(even, odd); /* two zero bits */
    gf2_matrix_square(odd, even); /* four zero bits */
    do {                          /* 8, 16, ... zero bits, alternating between the two */
        gf2_matrix_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        gf2_matrix_square(odd, even);
        len >>= 1;
    } while (len);
    memcpy(even, odd, sizeof(odd));
}

static void crc32c_zeros(uint32_t zeros[4][256], size_t len) {
    uint32_t op[32];
    crc32c_zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_matrix_times(op, n);
        zeros[1][n] = gf2_matrix_times(op, n << 8);
        zeros[2][n] = gf2_matrix_times(op, n << 16);
        zeros[3][n] = gf2_matrix_times(op, n << 24);
    }
}

static inline uint32_t crc32c_shift(uint32_t zeros[4][256], uint32_t crc) {
    return zeros[0][crc & 0xFF] ^ zeros[1][(crc >> 8) & 0xFF] ^ zeros[2][(crc >> 16) & 0xFF] ^ zeros[3][crc >> 24];
}

static inline uint64_t load64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42_raw(uint32_t c, const unsigned char *p, size_t n) {
    uint64_t crc0 = c;
    while (n && ((uintptr_t)p & 7)) {
        crc0 = _mm_crc32_u8((uint32_t)crc0, *p++);
        n--;
    }
    while (n >= 3 * LONG_BLOCK) {
        uint64_t crc1 = 0, crc2 = 0;
        const unsigned char *end = p + LONG_BLOCK;
        do {
            crc0 = _mm_crc32_u64(crc0, load64(p));
            crc1 = _mm_crc32_u64(crc1, load64(p + LONG_BLOCK));
            crc2 = _mm_crc32_u64(crc2, load64(p + 2 * LONG_BLOCK));
            p += 8;
        } while (p < end);
        crc0 = crc32c_shift(crc32c_long, (uint32_t)crc0) ^ crc1;
        crc0 = crc32c_shift(crc32c_long, (uint32_t)crc0) ^ crc2;
        p += 2 * LONG_BLOCK;
        n -= 3 * LONG_BLOCK;
    }
    while (n >= 3 * SHORT_BLOCK) {
        uint64_t crc1 = 0, crc2 = 0;
        const unsigned char *end = p + SHORT_BLOCK;
        do {
            crc0 = _mm_crc32_u64(crc0, load64(p));
            crc1 = _mm_crc32_u64(crc1, load64(p + SHORT_BLOCK));
            crc2 = _mm_crc32_u64(crc2, load64(p + 2 * SHORT_BLOCK));
            p += 8;
        } while (p < end);
        crc0 = crc32c_shift(crc32c_short, (uint32_t)crc0) ^ crc1;
        crc0 = crc32c_shift(crc32c_short, (uint32_t)crc0) ^ crc2;
        p += 2 * SHORT_BLOCK;
        n -= 3 * SHORT_BLOCK;
    }
    while (n >= 8) {
        crc0 = _mm_crc32_u64(crc0, load64(p));
        p += 8;
        n -= 8;
    }
    while (n--) crc0 = _mm_crc32_u8((uint32_t)crc0, *p++);
    return (uint32_t)crc0;
}
#endif

/* ---- arm64: the CRC32 extension ------------------------------------------------------------------------ */

#if NTB_CRC32C_ARM64
__attribute__((target("crc"))) static uint32_t crc32c_arm64_raw(uint32_t c, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) {
        c = __crc32cb(c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __crc32cd(c, w);
        p += 8;
        n -= 8;
    }
    while (n--) c = __crc32cb(c, *p++);
    return c;
}
#endif

/* ---- selection ----------------------------------------------------------------------------------------- */

typedef uint32_t (*crc32c_raw_fn)(uint32_t, const unsigned char *, size_t);

static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static crc32c_raw_fn crc32c_selected = crc32c_sw_raw;
static const char *crc32c_selected_name = "table";

static void crc32c_init(void) {
    crc32c_init_table();
#if NTB_CRC32C_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        crc32c_zeros(crc32c_long, LONG_BLOCK);
        crc32c_zeros(crc32c_short, SHORT_BLOCK);
        crc32c_selected = crc32c_sse42_raw;
        crc32c_selected_name = "sse4.2";
    }
#elif NTB_CRC32C_ARM64
    if (getauxval(AT_HWCAP) & HWCAP_CRC32) {
        crc32c_selected = crc32c_arm64_raw;
        crc32c_selected_name = "armv8-crc32";
    }
#endif
}

uint32_t ntb_crc32c(uint32_t crc, const void *p, size_t n) {
    pthread_once(&crc32c_once, crc32c_init);
    if (n == 0) return crc;
    return crc32c_selected(crc ^ 0xFFFFFFFFu, (const unsigned char *)p, n) ^ 0xFFFFFFFFu;
}

uint32_t ntb_crc32c_sw(uint32_t crc, const void *p, size_t n) {
    pthread_once(&crc32c_once, crc32c_init);
    if (n == 0) return crc;
    return crc32c_sw_raw(crc ^ 0xFFFFFFFFu, (const unsigned char *)p, n) ^ 0xFFFFFFFFu;
}

const char *ntb_crc32c_impl(void) {
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_selected_name;
}
