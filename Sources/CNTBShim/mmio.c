/* mmio.c - out-of-line helpers of ntb_mmio.h. */
#include <string.h>
#include "ntb_mmio.h"

void ntb_memcpy_toio(volatile void *dst, const void *src, uintptr_t len) {
    memcpy((void *)dst, src, len);
}

void ntb_memcpy_fromio(void *dst, const volatile void *src, uintptr_t len) {
    memcpy(dst, (const void *)src, len);
}
