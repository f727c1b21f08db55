/* transport_copy.c - the host backend's payload copy (see ntb_transport.h). */
#include <string.h>
#include "ntb_transport.h"
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

void ntb_transport_copy_nocache(volatile void *dst_, const void *src_, uintptr_t len) {
    unsigned char *dst = (unsigned char *)dst_;
    const unsigned char *src = (const unsigned char *)src_;
#if defined(__x86_64__)
    if (len >= 256) {
        uintptr_t head = (16 - ((uintptr_t)dst & 15)) & 15;
        memcpy(dst, src, head);
        dst += head; src += head; len -= head;
        uintptr_t blocks = len / 64;
        for (uintptr_t i = 0; i < blocks; i++) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + 0));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(src + 48));
            _mm_stream_si128((__m128i *)(dst + 0), a);
            _mm_stream_si128((__m128i *)(dst + 16), b);
            _mm_stream_si128((__m128i *)(dst + 32), c);
            _mm_stream_si128((__m128i *)(dst + 48), d);
            dst += 64; src += 64;
        }
        len -= blocks * 64;
        memcpy(dst, src, len);
        _mm_sfence();
        return;
    }
#endif
    memcpy(dst, src, len);
}
