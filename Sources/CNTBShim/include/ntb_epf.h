/*
 * ntb_epf.h - the control region of an endpoint-function NTB (pci-epf-vntb / pci-epf-ntb), as the host
 * driver ntb_hw_epf.c reads it, and the shared state page of the mock NTB link.        (NTBHardware, NTBMock)
 *
 * The control region is written by the endpoint and by the host over PCIe, so its layout is declared here once
 * and checked with _Static_assert against docs/hardware-reference.md §3.1 (struct epf_ntb_ctrl in pci-epf-vntb.c, the
 * NTB_EPF_* offsets in ntb_hw_epf.c). The mw_offset[]/mw_size[] tail is the RFC's proposed extension (RFC v3 patch 02),
 * not mainline; a peer advertises it with topology/version = 1.
 */
#ifndef NTB_EPF_H
#define NTB_EPF_H

#include <stddef.h>
#include <stdint.h>

/* Offsets of struct epf_ntb_ctrl (ntb_hw_epf.c NTB_EPF_*). */
enum {
    NTB_EPF_COMMAND        = 0x00,
    NTB_EPF_ARGUMENT       = 0x04,
    NTB_EPF_CMD_STATUS     = 0x08,
    NTB_EPF_LINK_STATUS    = 0x0A,
    NTB_EPF_TOPOLOGY       = 0x0C,   /* RFC: control-region version (1 = mw_offset/mw_size present) */
    NTB_EPF_LOWER_ADDR     = 0x10,
    NTB_EPF_UPPER_ADDR     = 0x14,
    NTB_EPF_LOWER_SIZE     = 0x18,
    NTB_EPF_UPPER_SIZE     = 0x1C,
    NTB_EPF_MW_COUNT       = 0x20,
    NTB_EPF_MW1_OFFSET     = 0x24,
    NTB_EPF_SPAD_OFFSET    = 0x28,
    NTB_EPF_SPAD_COUNT     = 0x2C,
    NTB_EPF_DB_ENTRY_SIZE  = 0x30,
    NTB_EPF_DB_DATA0       = 0x34,   /* + 4n, n < NTB_EPF_DB_SLOTS */
    NTB_EPF_DB_OFFSET0     = 0xB4,   /* + 4n */
    NTB_EPF_MW_OFFSET0     = 0x134,  /* + 4n, n < NTB_EPF_MAX_MW (RFC v3 patch 02, proposed) */
    NTB_EPF_MW_SIZE0       = 0x144,  /* + 4n (RFC v3 patch 02, proposed) */
    NTB_EPF_CTRL_SIZE_V0   = 0x134,  /* sizeof(struct epf_ntb_ctrl) upstream */
    NTB_EPF_CTRL_SIZE_V1   = 0x154,  /* with the RFC tail */
};

/* Commands (CMD_* in ntb_hw_epf.c, COMMAND_* in pci-epf-vntb.c). */
enum {
    NTB_EPF_CMD_CONFIGURE_DOORBELL = 1,
    NTB_EPF_CMD_TEARDOWN_DOORBELL  = 2,
    NTB_EPF_CMD_CONFIGURE_MW       = 3,
    NTB_EPF_CMD_TEARDOWN_MW        = 4,
    NTB_EPF_CMD_LINK_UP            = 5,
    NTB_EPF_CMD_LINK_DOWN          = 6,
};

enum {
    NTB_EPF_STATUS_OK      = 1,
    NTB_EPF_STATUS_ERROR   = 2,
    NTB_EPF_LINK_UP_BIT    = 1,        /* LINK_STATUS_UP = BIT(0) */
    NTB_EPF_MSIX_ENABLE    = 1 << 16,  /* CONFIGURE_DOORBELL argument */
    NTB_EPF_DB_SLOTS       = 32,
    NTB_EPF_MAX_MW         = 4,
    NTB_EPF_MIN_DB_COUNT   = 3,        /* ntb_hw_epf.c NTB_EPF_MIN_DB_COUNT */
    NTB_EPF_MAX_DB_COUNT   = 31,       /* ntb_hw_epf.c NTB_EPF_MAX_DB_COUNT */
};

/* struct epf_ntb_ctrl (pci-epf-vntb.c, __packed) plus the RFC tail. */
struct ntb_epf_ctrl {
    uint32_t command;
    uint32_t argument;
    uint16_t command_status;
    uint16_t link_status;
    uint32_t topology;
    uint64_t addr;
    uint64_t size;
    uint32_t num_mws;
    uint32_t reserved;        /* mw1_offset on pci-epf-ntb */
    uint32_t spad_offset;
    uint32_t spad_count;
    uint32_t db_entry_size;
    uint32_t db_data[NTB_EPF_DB_SLOTS];
    uint32_t db_offset[NTB_EPF_DB_SLOTS];
    uint32_t mw_offset[NTB_EPF_MAX_MW];
    uint32_t mw_size[NTB_EPF_MAX_MW];
} __attribute__((packed));

_Static_assert(offsetof(struct ntb_epf_ctrl, command) == NTB_EPF_COMMAND, "command");
_Static_assert(offsetof(struct ntb_epf_ctrl, argument) == NTB_EPF_ARGUMENT, "argument");
_Static_assert(offsetof(struct ntb_epf_ctrl, command_status) == NTB_EPF_CMD_STATUS, "command_status");
_Static_assert(offsetof(struct ntb_epf_ctrl, link_status) == NTB_EPF_LINK_STATUS, "link_status");
_Static_assert(offsetof(struct ntb_epf_ctrl, topology) == NTB_EPF_TOPOLOGY, "topology");
_Static_assert(offsetof(struct ntb_epf_ctrl, addr) == NTB_EPF_LOWER_ADDR, "addr");
_Static_assert(offsetof(struct ntb_epf_ctrl, size) == NTB_EPF_LOWER_SIZE, "size");
_Static_assert(offsetof(struct ntb_epf_ctrl, num_mws) == NTB_EPF_MW_COUNT, "num_mws");
_Static_assert(offsetof(struct ntb_epf_ctrl, reserved) == NTB_EPF_MW1_OFFSET, "mw1_offset");
_Static_assert(offsetof(struct ntb_epf_ctrl, spad_offset) == NTB_EPF_SPAD_OFFSET, "spad_offset");
_Static_assert(offsetof(struct ntb_epf_ctrl, spad_count) == NTB_EPF_SPAD_COUNT, "spad_count");
_Static_assert(offsetof(struct ntb_epf_ctrl, db_entry_size) == NTB_EPF_DB_ENTRY_SIZE, "db_entry_size");
_Static_assert(offsetof(struct ntb_epf_ctrl, db_data) == NTB_EPF_DB_DATA0, "db_data");
_Static_assert(offsetof(struct ntb_epf_ctrl, db_offset) == NTB_EPF_DB_OFFSET0, "db_offset");
_Static_assert(offsetof(struct ntb_epf_ctrl, mw_offset) == NTB_EPF_MW_OFFSET0, "mw_offset");
_Static_assert(offsetof(struct ntb_epf_ctrl, mw_size) == NTB_EPF_MW_SIZE0, "mw_size");
_Static_assert(sizeof(struct ntb_epf_ctrl) == NTB_EPF_CTRL_SIZE_V1, "ctrl size");

/* Atomic exchange on endpoint memory the host writes through the doorbell BAR: takes a rung slot and clears
 * it in one step, so a ring between "look" and "clear" is not lost (vNTB reads, then writes 0). */
static inline __attribute__((always_inline)) uint32_t ntb_xchg32(volatile uint32_t *_Nonnull p, uint32_t v) {
    return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL);
}

/*
 * The mock link's shared state page (file "link" in the mock directory, docs/mock-device.md). Not hardware:
 * it stands for the PCIe link itself (who is plugged in, the endpoint's inbound BAR translations).
 */
enum {
    NTB_MOCK_MAGIC          = 0x4E54424D,  /* "NTBM" */
    NTB_MOCK_LAYOUT_VERSION = 2,   /* 2: fifo_pending[] */
    NTB_MOCK_SIDE_HOST      = 0,
    NTB_MOCK_SIDE_ENDPOINT  = 1,
    NTB_MOCK_FLAG_MSI_DOORBELL = 1,  /* host doorbell writes also interrupt the endpoint (pci_epf_alloc_doorbell) */
    NTB_MOCK_FLAG_RFC_OFFSETS  = 2,  /* control region version 1: mw_offset[]/mw_size[] (RFC v3 patch 02) */
    NTB_MOCK_FIFO_SLOTS        = 64, /* fifo_pending[]: MSI vector n uses slot n, the endpoint doorbell the last */
};

struct ntb_mock_side {
    uint32_t pid;            /* 0 = nobody */
    uint32_t ready;          /* 1 = the side has initialised its state and beats */
    uint64_t start_time;     /* /proc/<pid>/stat field 22, to tell a reused pid */
    uint64_t epoch;          /* bumped each time a process takes this side */
    uint64_t heartbeat;      /* bumped by the side's monitor thread */
};
_Static_assert(sizeof(struct ntb_mock_side) == 32, "mock side");

struct ntb_mock_link {
    uint32_t magic;
    uint32_t layout_version;
    uint32_t profile;              /* NTBMock.LinkProfile raw value */
    uint32_t num_mws;
    uint32_t spad_count;
    uint32_t db_count;             /* doorbell slots the endpoint serves */
    uint32_t msi_vectors;          /* MSI vectors the endpoint function offers */
    uint32_t heartbeat_ms;
    uint32_t flags;                /* NTB_MOCK_FLAG_* */
    uint32_t reserved;
    uint64_t mw_size[NTB_EPF_MAX_MW];
    uint64_t host_ram_bus;
    uint64_t host_ram_size;
    uint64_t ep_ram_bus;
    uint64_t ep_ram_size;
    uint64_t bar_size[6];
    struct ntb_mock_side side[2];
    uint64_t mw_inbound_seq;       /* even = stable; the endpoint bumps it around updates (seqlock) */
    uint64_t mw_inbound_bus[NTB_EPF_MAX_MW]; /* EP RAM bus address each MW BAR translates to */
    /* One word per interrupt FIFO: 1 while a raised interrupt has not been consumed. A raiser writes the FIFO
     * only on the 0 -> 1 transition (the interrupt is already pending otherwise), the consumer clears the word
     * before draining the FIFO; so a spinning peer that never sleeps costs no system call per interrupt. */
    uint32_t fifo_pending[NTB_MOCK_FIFO_SLOTS];
};
_Static_assert(offsetof(struct ntb_mock_link, mw_size) == 40, "mock mw_size");
_Static_assert(offsetof(struct ntb_mock_link, side) == 152, "mock side array");
_Static_assert(offsetof(struct ntb_mock_link, mw_inbound_seq) == 216, "mock inbound seq");
_Static_assert(offsetof(struct ntb_mock_link, fifo_pending) == 256, "mock fifo_pending");
_Static_assert(sizeof(struct ntb_mock_link) == 512, "mock link size");

#endif /* NTB_EPF_H */
