/*
 * ntb_transport.h - the wire layout of Linux ntb_transport version 4 (the `host` backend).  (NTBTransport)
 *
 * Why this exists: a userspace peer must read and write exactly the bytes the kernel's
 * drivers/ntb/ntb_transport.c does, so the layout is declared once here, checked with _Static_assert,
 * and tested against docs/hardware-reference.md §2 (Tests/NTBTransportTests/HostLayoutTests.swift).
 *
 * Layout of one queue pair's area of S bytes inside a memory window (docs/hardware-reference.md §2.3,
 * ntb_transport_setup_qp_mw / ntb_transport_init_queue):
 *
 *   frame 0 | frame 1 | ... | frame N-1 | (unused) | struct ntb_rx_info  (last 4 bytes of the area)
 *
 *   F = min(transport_mtu, (S - 4) / 2)        frame size
 *   N = (S - 4) / F                            frames
 *   each frame: payload at offset 0, struct ntb_payload_header in its LAST 12 bytes.
 *
 * Both structs are native-endian u32 fields (the kernel uses `unsigned int` and iowrite32 on
 * little-endian hosts; x86_64 and arm64 are little-endian).
 */
#ifndef NTB_TRANSPORT_H
#define NTB_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

/* NTB_TRANSPORT_VERSION */
#define NTB_TRANSPORT_V4_VERSION 4u

/* struct ntb_payload_header: at the end of every frame. `ver` is the sender's packet counter
 * (u32 of tx_pkts), `len` the payload length, `flags` DONE / LINK_DOWN. */
struct ntb_transport_payload_header {
    uint32_t ver;
    uint32_t len;
    uint32_t flags;
};
_Static_assert(sizeof(struct ntb_transport_payload_header) == 12, "ntb_payload_header is 12 bytes");
_Static_assert(offsetof(struct ntb_transport_payload_header, ver) == 0, "ver at 0");
_Static_assert(offsetof(struct ntb_transport_payload_header, len) == 4, "len at 4");
_Static_assert(offsetof(struct ntb_transport_payload_header, flags) == 8, "flags at 8");

/* struct ntb_rx_info: the last 4 bytes of a queue pair's area. The RECEIVER writes the index of the
 * frame it has just consumed into the SENDER's memory (through its outbound window); the sender reads
 * it as the ring tail. */
struct ntb_transport_rx_info {
    uint32_t entry;
};
_Static_assert(sizeof(struct ntb_transport_rx_info) == 4, "ntb_rx_info is 4 bytes");

/* Header flags (enum { DESC_DONE_FLAG, LINK_DOWN_FLAG }). */
#define NTB_TRANSPORT_DESC_DONE_FLAG (1u << 0)
#define NTB_TRANSPORT_LINK_DOWN_FLAG (1u << 1)

/* Scratchpad indices (enum { VERSION, QP_LINKS, NUM_QPS, NUM_MWS, MW0_SZ_HIGH, MW0_SZ_LOW }).
 * MW i size: high word at 4 + 2i, low word at 5 + 2i. */
enum ntb_transport_spad {
    NTB_TRANSPORT_SPAD_VERSION = 0,
    NTB_TRANSPORT_SPAD_QP_LINKS = 1,
    NTB_TRANSPORT_SPAD_NUM_QPS = 2,
    NTB_TRANSPORT_SPAD_NUM_MWS = 3,
    NTB_TRANSPORT_SPAD_MW0_SZ_HIGH = 4,
    NTB_TRANSPORT_SPAD_MW0_SZ_LOW = 5,
};
/* NTB_TRANSPORT_MIN_SPADS = MW0_SZ_HIGH + 2 */
#define NTB_TRANSPORT_MIN_SPADS 6

/* Defaults of the module parameters / constants. */
#define NTB_TRANSPORT_DEFAULT_MTU 0x10000u      /* transport_mtu */
#define NTB_TRANSPORT_LINK_RETRY_MS 10          /* NTB_LINK_DOWN_TIMEOUT */
#define NTB_TRANSPORT_DEF_NUM_ENTRIES 100       /* NTB_QP_DEF_NUM_ENTRIES */

/* Copies a payload into a memory window with non-temporal stores where the CPU has them (x86-64:
 * movntdq for the 16-byte-aligned body), as Linux ntb_memcpy_tx does with
 * __copy_from_user_inatomic_nocache: the data goes to the window (or memory) instead of staying dirty in
 * this CPU's cache for the peer to pull. Ends with a store fence. Plain memcpy elsewhere. */
void ntb_transport_copy_nocache(volatile void *_Nonnull dst, const void *_Nonnull src, uintptr_t len);

#endif /* NTB_TRANSPORT_H */
