// SPDX-License-Identifier: GPL-2.0-only
/*
 * ntb_hw_ivshmem - a Linux NTB hardware driver for ntb-transport's ivshmem NTB protocol.
 *
 * ivshmem-plain (PCI 1af4:1110, QEMU docs/specs/ivshmem-spec.rst) gives two VMs the same memory as
 * BAR2. ntb-transport's userspace adapter (Sources/NTBHardware/IVSHMEM/IVSHMEMDevice.swift) keeps an
 * NTB's state in that memory: the header of Sources/CNTBShim/include/ntb_ivshmem.h (magic, geometry,
 * per side: heartbeat, session, state, doorbell word, scratchpads), then the memory windows. This
 * driver speaks the same protocol as either side, so Linux's own NTB clients (ntb_transport,
 * ntb_netdev) run between two VMs with this driver, and between this driver and the userspace stack.
 *
 * ivshmem-plain has no interrupts: a polling hrtimer plays the interrupt handler (doorbells every
 * poll_us, heartbeat and link every beat_ms) and calls ntb_db_event()/ntb_link_event() as a real
 * NTB driver's ISR does.
 *
 * Memory windows are fixed regions of the shared BAR (side s's inbound window w at
 * mw_offset + (s * mw_count + w) * mw_size), not a translation to any host address. The driver
 * therefore hands NTB clients a DMA device (ntb_dev_ops.get_dma_dev) whose dma_alloc_coherent()
 * returns the next free inbound window, with the window's offset in the BAR as its DMA address, and
 * mw_set_trans() accepts exactly that address: the same contract as the userspace adapter's
 * allocateInboundBuffer()/setMemoryWindowTranslation().
 *
 * Everything in the shared memory is the peer's (untrusted): the geometry is validated once at probe
 * and never re-read; doorbell bits are masked with the valid mask; scratchpad indices are bounded.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/io.h>
#include <linux/ntb.h>
#include <linux/hrtimer.h>
#include <linux/ktime.h>
#include <linux/atomic.h>
#include <linux/random.h>
#include <linux/delay.h>
#include <linux/dma-map-ops.h>
#include <linux/slab.h>

#define DRV_NAME "ntb_hw_ivshmem"

/* ntb_ivshmem.h, the layout the userspace adapter uses (kept in step by hand: same names and values). */
#define NTB_IVSHMEM_VERSION		1
#define NTB_IVSHMEM_HEADER_SIZE		0x1000
#define NTB_IVSHMEM_SIDE_OFFSET		0x100
#define NTB_IVSHMEM_SIDE_SIZE		0x100
#define NTB_IVSHMEM_SPADS		16
#define NTB_IVSHMEM_MAX_MWS		4
#define NTB_IVSHMEM_MW_ALIGN		0x1000
#define NTB_IVSHMEM_MAGIC		0x314853564942544EULL	/* "NTBIVSH1" */
#define NTB_IVSHMEM_INITIALISING	0x2E2E2E2E4942544EULL	/* "NTBI...." */
#define NTB_IVSHMEM_MAX_SHM		(1ULL << 36)		/* sanity bound on shm_size */
#define NTB_IVSHMEM_DEFAULT_DB_MASK	0xFFFFFFFFULL

enum {
	NTB_IVSHMEM_STATE_ABSENT  = 0,
	NTB_IVSHMEM_STATE_OPEN    = 1,
	NTB_IVSHMEM_STATE_ENABLED = 2,
	NTB_IVSHMEM_STATE_CLOSED  = 3,
};

struct ntb_ivshmem_side {
	u64 heartbeat;			/* 0x00 */
	u64 session;			/* 0x08 */
	u32 state;			/* 0x10 */
	u32 pid;			/* 0x14 */
	u64 doorbell;			/* 0x18 set by the peer, cleared by the owner */
	u8  boot_id[16];		/* 0x20 */
	u32 spad[NTB_IVSHMEM_SPADS];	/* 0x30 written by the peer, read by the owner */
	u8  reserved[0x100 - 0x70];
};

struct ntb_ivshmem_header {
	u64 magic;			/* 0x00 */
	u32 version;			/* 0x08 */
	u32 header_size;		/* 0x0C */
	u64 shm_size;			/* 0x10 */
	u32 spad_count;			/* 0x18 */
	u32 mw_count;			/* 0x1C */
	u64 mw_size;			/* 0x20 */
	u64 mw_offset;			/* 0x28 */
	u64 db_valid_mask;		/* 0x30 */
	u8  reserved0[NTB_IVSHMEM_SIDE_OFFSET - 0x38];
	struct ntb_ivshmem_side side[2];
	u8  reserved1[NTB_IVSHMEM_HEADER_SIZE - 0x300];
};

static_assert(sizeof(struct ntb_ivshmem_side) == NTB_IVSHMEM_SIDE_SIZE);
static_assert(offsetof(struct ntb_ivshmem_side, doorbell) == 0x18);
static_assert(offsetof(struct ntb_ivshmem_side, spad) == 0x30);
static_assert(offsetof(struct ntb_ivshmem_header, db_valid_mask) == 0x30);
static_assert(offsetof(struct ntb_ivshmem_header, side) == NTB_IVSHMEM_SIDE_OFFSET);
static_assert(sizeof(struct ntb_ivshmem_header) == NTB_IVSHMEM_HEADER_SIZE);

static char *side = "";
module_param(side, charp, 0444);
MODULE_PARM_DESC(side, "which half of the shared memory this VM plays: a (ntb-transport --role host) or b (--role endpoint); the other VM takes the other (required)");

static uint mw_count = 1;
module_param(mw_count, uint, 0444);
MODULE_PARM_DESC(mw_count, "memory windows per side when this side writes the header of zeroed memory (1-4, default 1)");

static uint poll_us = 200;
module_param(poll_us, uint, 0444);
MODULE_PARM_DESC(poll_us, "doorbell polling period in microseconds (10-100000, default 200)");

static uint beat_ms = 20;
module_param(beat_ms, uint, 0444);
MODULE_PARM_DESC(beat_ms, "heartbeat period in milliseconds (1-1000, default 20, as the userspace adapter)");

static bool pci_dma_windows = true;
module_param(pci_dma_windows, bool, 0444);
MODULE_PARM_DESC(pci_dma_windows, "also let dma_alloc_coherent() on the ivshmem PCI device hand out the windows, for clients that allocate on ntb->pdev->dev instead of ntb_get_dma_dev() (Linux 6.1's ntb_tool and ntb_perf; default on)");

static uint peer_timeout_ms = 500;
module_param(peer_timeout_ms, uint, 0444);
MODULE_PARM_DESC(peer_timeout_ms, "a peer whose heartbeat stood still this long is gone: link down (default 500, as the userspace adapter)");

struct ivshmem_ntb {
	struct ntb_dev ntb;
	struct pci_dev *pdev;
	int own, peer;			/* side indices */
	struct ntb_ivshmem_header *hdr;	/* memremap'd header page */
	struct ntb_ivshmem_side *own_side, *peer_side;
	void *own_mw;			/* memremap'd own inbound windows (mw_count * mw_size) */
	phys_addr_t bar_phys;
	u64 shm_size;

	/* Geometry, validated once at probe (the header is never re-read for it). */
	u32 spad_count;
	u32 mw_count;
	u64 mw_size;
	u64 mw_offset;
	u64 db_valid;

	atomic64_t db_mask;		/* local doorbell mask (software, as the userspace adapter) */
	unsigned long windows_taken;	/* bit w: inbound window w handed out by the DMA device */
	spinlock_t windows_lock;
	u64 trans[NTB_IVSHMEM_MAX_MWS];	/* size set by mw_set_trans (0: none) */

	struct device dma_dev;		/* what ntb_get_dma_dev() returns (see ivshmem_dma_ops) */
	bool dma_dev_ready;
	bool pci_ops_set;		/* pci_dma_windows: the PCI device's DMA ops are ours */
	const struct dma_map_ops *pci_saved_ops;	/* its own, restored at remove */

	struct hrtimer timer;
	bool timer_started;
	bool registered;
	bool enabled;
	bool link_up;
	u64 beat;
	ktime_t next_beat;
	u64 last_peer_beat, last_session;
	u32 last_peer_state;		/* logged when it changes (diagnostics, scripts) */
	ktime_t last_change;		/* when the peer's heartbeat last moved */
	bool peer_seen;			/* its heartbeat was seen moving since we opened */
	ktime_t hold_down_until;	/* after a new peer session: down for 3 beats first */
};

static inline struct ivshmem_ntb *ntb_ivs(struct ntb_dev *ntb)
{
	return container_of(ntb, struct ivshmem_ntb, ntb);
}

static inline u64 ivs_window_offset(struct ivshmem_ntb *ivs, int s, int w)
{
	return ivs->mw_offset + ((u64)s * ivs->mw_count + w) * ivs->mw_size;
}

/* Shared words: the other VM's CPU works on the same host memory (x86 LOCK-prefixed atomics, as the
 * userspace adapter's ntb_ivshmem_fetch_or64/fetch_and64/cas64). */
static inline atomic64_t *ivs_atomic(u64 *word)
{
	return (atomic64_t *)word;
}

/* ---- Link ---------------------------------------------------------------------------------------- */

static u64 ivs_link_is_up(struct ntb_dev *ntb, enum ntb_speed *speed, enum ntb_width *width)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);
	bool up = READ_ONCE(ivs->link_up);

	if (speed)
		*speed = up ? NTB_SPEED_AUTO : NTB_SPEED_NONE;
	if (width)
		*width = up ? NTB_WIDTH_AUTO : NTB_WIDTH_NONE;
	return up ? 1 : 0;
}

static int ivs_link_enable(struct ntb_dev *ntb, enum ntb_speed max_speed, enum ntb_width max_width)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	WRITE_ONCE(ivs->enabled, true);
	WRITE_ONCE(ivs->own_side->state, NTB_IVSHMEM_STATE_ENABLED);
	return 0;
}

/* The link goes down at the next beat (the timer calls ntb_link_event), as the userspace adapter's
 * disableLink() raises its link event. */
static int ivs_link_disable(struct ntb_dev *ntb)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	WRITE_ONCE(ivs->enabled, false);
	WRITE_ONCE(ivs->own_side->state, NTB_IVSHMEM_STATE_OPEN);
	return 0;
}

/* ---- Memory windows ------------------------------------------------------------------------------ */

static int ivs_mw_count(struct ntb_dev *ntb, int pidx)
{
	if (pidx != NTB_DEF_PEER_IDX)
		return -EINVAL;
	return ntb_ivs(ntb)->mw_count;
}

static int ivs_mw_get_align(struct ntb_dev *ntb, int pidx, int widx, resource_size_t *addr_align,
			    resource_size_t *size_align, resource_size_t *size_max)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	if (pidx != NTB_DEF_PEER_IDX || widx < 0 || widx >= ivs->mw_count)
		return -EINVAL;
	if (addr_align)
		*addr_align = NTB_IVSHMEM_MW_ALIGN;
	if (size_align)
		*size_align = NTB_IVSHMEM_MW_ALIGN;
	if (size_max)
		*size_max = ivs->mw_size;
	return 0;
}

/* A window is fixed: the translation must be the window's own region, which is what the DMA device
 * (ntb_get_dma_dev) hands out for it. */
static int ivs_mw_set_trans(struct ntb_dev *ntb, int pidx, int widx, dma_addr_t addr, resource_size_t size)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);
	u64 offset;

	if (pidx != NTB_DEF_PEER_IDX || widx < 0 || widx >= ivs->mw_count)
		return -EINVAL;
	offset = ivs_window_offset(ivs, ivs->own, widx);
	if (addr != offset || size == 0 || size > ivs->mw_size) {
		dev_err(&ivs->pdev->dev,
			"window %d is fixed at offset %#llx (%#llx bytes) and cannot translate to %pad + %#llx; allocate its buffer with dma_alloc_coherent() on ntb_get_dma_dev()\n",
			widx, offset, ivs->mw_size, &addr, (u64)size);
		return -EINVAL;
	}
	ivs->trans[widx] = size;
	return 0;
}

static int ivs_mw_clear_trans(struct ntb_dev *ntb, int pidx, int widx)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	if (pidx != NTB_DEF_PEER_IDX || widx < 0 || widx >= ivs->mw_count)
		return -EINVAL;
	ivs->trans[widx] = 0;
	return 0;
}

static int ivs_peer_mw_count(struct ntb_dev *ntb)
{
	return ntb_ivs(ntb)->mw_count;
}

/* The peer's inbound window w (our outbound window w): its bytes in BAR2. Clients ioremap_wc() it. */
static int ivs_peer_mw_get_addr(struct ntb_dev *ntb, int widx, phys_addr_t *base, resource_size_t *size)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	if (widx < 0 || widx >= ivs->mw_count)
		return -EINVAL;
	if (base)
		*base = ivs->bar_phys + ivs_window_offset(ivs, ivs->peer, widx);
	if (size)
		*size = ivs->mw_size;
	return 0;
}

#ifdef NTB_HAVE_GET_DMA_DEV
static struct device *ivs_get_dma_dev(struct ntb_dev *ntb)
{
	return &ntb_ivs(ntb)->dma_dev;
}
#endif

/* ---- The DMA device: dma_alloc_coherent() hands out inbound windows ------------------------------
 *
 * ntb_transport allocates its receive buffers on ntb_get_dma_dev(): the dedicated dma_dev. With
 * pci_dma_windows, the ivshmem PCI device gets the same ops for the clients that allocate on
 * ntb->pdev->dev (ntb_tool, ntb_perf). ivshmem-plain does no DMA of its own (bus mastering stays
 * off), so no mapping of the device's is affected; its own ops come back at remove. */

static struct ivshmem_ntb *dma_dev_ivs(struct device *dev)
{
	if (dev_is_pci(dev))
		return pci_get_drvdata(to_pci_dev(dev));
	return container_of(dev, struct ivshmem_ntb, dma_dev);
}

static void *ivs_dma_alloc(struct device *dev, size_t size, dma_addr_t *dma_handle, gfp_t gfp,
			   unsigned long attrs)
{
	struct ivshmem_ntb *ivs = dma_dev_ivs(dev);
	unsigned long flags;
	int w = -1, i;
	void *virt;

	if (size == 0 || size > ivs->mw_size) {
		dev_err(&ivs->pdev->dev, "a buffer of %zu bytes does not fit an ivshmem window (%#llx bytes); give the ivshmem device more memory\n",
			size, ivs->mw_size);
		return NULL;
	}
	spin_lock_irqsave(&ivs->windows_lock, flags);
	for (i = 0; i < ivs->mw_count; i++) {
		if (!test_bit(i, &ivs->windows_taken)) {
			__set_bit(i, &ivs->windows_taken);
			w = i;
			break;
		}
	}
	spin_unlock_irqrestore(&ivs->windows_lock, flags);
	if (w < 0) {
		dev_err(&ivs->pdev->dev, "all %u ivshmem windows are in use; free a buffer first\n", ivs->mw_count);
		return NULL;
	}
	virt = (u8 *)ivs->own_mw + (u64)w * ivs->mw_size;
	memset(virt, 0, size);	/* dma_alloc_coherent() memory is zeroed */
	*dma_handle = ivs_window_offset(ivs, ivs->own, w);
	return virt;
}

static void ivs_dma_free(struct device *dev, size_t size, void *vaddr, dma_addr_t dma_handle,
			 unsigned long attrs)
{
	struct ivshmem_ntb *ivs = dma_dev_ivs(dev);
	unsigned long flags;
	int w;

	for (w = 0; w < ivs->mw_count; w++) {
		if (vaddr == (u8 *)ivs->own_mw + (u64)w * ivs->mw_size)
			break;
	}
	if (w == ivs->mw_count) {
		dev_err(&ivs->pdev->dev, "dma_free_coherent() of %p, which is no ivshmem window\n", vaddr);
		return;
	}
	spin_lock_irqsave(&ivs->windows_lock, flags);
	__clear_bit(w, &ivs->windows_taken);
	spin_unlock_irqrestore(&ivs->windows_lock, flags);
}

/* Streaming mappings make no sense for fixed windows: refused (never a NULL op the DMA API would call). */
static dma_addr_t ivs_dma_map_page(struct device *dev, struct page *page, unsigned long offset, size_t size,
				   enum dma_data_direction dir, unsigned long attrs)
{
	return DMA_MAPPING_ERROR;
}

static void ivs_dma_unmap_page(struct device *dev, dma_addr_t addr, size_t size,
			       enum dma_data_direction dir, unsigned long attrs)
{
}

static int ivs_dma_map_sg(struct device *dev, struct scatterlist *sg, int nents,
			  enum dma_data_direction dir, unsigned long attrs)
{
	return -EINVAL;
}

static void ivs_dma_unmap_sg(struct device *dev, struct scatterlist *sg, int nents,
			     enum dma_data_direction dir, unsigned long attrs)
{
}

static const struct dma_map_ops ivshmem_dma_ops = {
	.alloc = ivs_dma_alloc,
	.free = ivs_dma_free,
	.map_page = ivs_dma_map_page,
	.unmap_page = ivs_dma_unmap_page,
	.map_sg = ivs_dma_map_sg,
	.unmap_sg = ivs_dma_unmap_sg,
};

static void ivs_dma_dev_release(struct device *dev)
{
	/* Embedded in struct ivshmem_ntb, freed by remove after the last put. */
}

/* ---- Scratchpads: a side's spad[] is the one it reads; the peer writes it ------------------------ */

static int ivs_spad_count(struct ntb_dev *ntb)
{
	return ntb_ivs(ntb)->spad_count;
}

static u32 ivs_spad_read(struct ntb_dev *ntb, int sidx)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	if (sidx < 0 || sidx >= ivs->spad_count)
		return 0;
	return READ_ONCE(ivs->own_side->spad[sidx]);
}

static int ivs_spad_write(struct ntb_dev *ntb, int sidx, u32 val)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	if (sidx < 0 || sidx >= ivs->spad_count)
		return -EINVAL;
	WRITE_ONCE(ivs->own_side->spad[sidx], val);
	return 0;
}

static u32 ivs_peer_spad_read(struct ntb_dev *ntb, int pidx, int sidx)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	if (pidx != NTB_DEF_PEER_IDX || sidx < 0 || sidx >= ivs->spad_count)
		return 0;
	return READ_ONCE(ivs->peer_side->spad[sidx]);
}

static int ivs_peer_spad_write(struct ntb_dev *ntb, int pidx, int sidx, u32 val)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	if (pidx != NTB_DEF_PEER_IDX || sidx < 0 || sidx >= ivs->spad_count)
		return -EINVAL;
	WRITE_ONCE(ivs->peer_side->spad[sidx], val);
	return 0;
}

/* ---- Doorbells: a side's doorbell word is the one it reads; the peer sets bits in it ------------- */

static u64 ivs_db_valid_mask(struct ntb_dev *ntb)
{
	return ntb_ivs(ntb)->db_valid;
}

static u64 ivs_db_read(struct ntb_dev *ntb)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	return READ_ONCE(ivs->own_side->doorbell) & ivs->db_valid;
}

static int ivs_db_set(struct ntb_dev *ntb, u64 db_bits)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	atomic64_or(db_bits & ivs->db_valid, ivs_atomic(&ivs->own_side->doorbell));
	return 0;
}

static int ivs_db_clear(struct ntb_dev *ntb, u64 db_bits)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	atomic64_andnot(db_bits, ivs_atomic(&ivs->own_side->doorbell));
	return 0;
}

static u64 ivs_db_read_mask(struct ntb_dev *ntb)
{
	return atomic64_read(&ntb_ivs(ntb)->db_mask);
}

static int ivs_db_set_mask(struct ntb_dev *ntb, u64 db_bits)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	atomic64_or(db_bits & ivs->db_valid, &ivs->db_mask);
	return 0;
}

static int ivs_db_clear_mask(struct ntb_dev *ntb, u64 db_bits)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	atomic64_andnot(db_bits, &ivs->db_mask);
	return 0;
}

/* A locked OR into the peer's word: it also orders the clients' window stores before it. */
static int ivs_peer_db_set(struct ntb_dev *ntb, u64 db_bits)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	atomic64_or(db_bits & ivs->db_valid, ivs_atomic(&ivs->peer_side->doorbell));
	return 0;
}

static u64 ivs_peer_db_read(struct ntb_dev *ntb)
{
	struct ivshmem_ntb *ivs = ntb_ivs(ntb);

	return READ_ONCE(ivs->peer_side->doorbell) & ivs->db_valid;
}

static const struct ntb_dev_ops ivshmem_ntb_ops = {
	.link_is_up = ivs_link_is_up,
	.link_enable = ivs_link_enable,
	.link_disable = ivs_link_disable,
	.mw_count = ivs_mw_count,
	.mw_get_align = ivs_mw_get_align,
	.mw_set_trans = ivs_mw_set_trans,
	.mw_clear_trans = ivs_mw_clear_trans,
	.peer_mw_count = ivs_peer_mw_count,
	.peer_mw_get_addr = ivs_peer_mw_get_addr,
	.db_valid_mask = ivs_db_valid_mask,
	.db_read = ivs_db_read,
	.db_set = ivs_db_set,
	.db_clear = ivs_db_clear,
	.db_read_mask = ivs_db_read_mask,
	.db_set_mask = ivs_db_set_mask,
	.db_clear_mask = ivs_db_clear_mask,
	.peer_db_read = ivs_peer_db_read,
	.peer_db_set = ivs_peer_db_set,
	.spad_count = ivs_spad_count,
	.spad_read = ivs_spad_read,
	.spad_write = ivs_spad_write,
	.peer_spad_read = ivs_peer_spad_read,
	.peer_spad_write = ivs_peer_spad_write,
#ifdef NTB_HAVE_GET_DMA_DEV
	.get_dma_dev = ivs_get_dma_dev,
#endif
};

/* ---- The poller: what an NTB's interrupt handler would do ---------------------------------------- */

/* Beat, look at the peer, decide the link: IVSHMEMDevice.monitor, step for step. */
static void ivs_beat(struct ivshmem_ntb *ivs, ktime_t now)
{
	u64 peer_beat, session;
	u32 peer_state;
	bool up;

	ivs->beat++;
	WRITE_ONCE(ivs->own_side->heartbeat, ivs->beat);
	WRITE_ONCE(ivs->own_side->state, READ_ONCE(ivs->enabled) ? NTB_IVSHMEM_STATE_ENABLED : NTB_IVSHMEM_STATE_OPEN);

	peer_beat = READ_ONCE(ivs->peer_side->heartbeat);
	session = READ_ONCE(ivs->peer_side->session);
	if (peer_beat != ivs->last_peer_beat) {
		ivs->last_peer_beat = peer_beat;
		ivs->last_change = now;
		ivs->peer_seen = true;
	}
	if (session != ivs->last_session) {
		/* The peer restarted: the link must be seen down before it comes up with the new session. */
		ivs->last_session = session;
		ivs->hold_down_until = ktime_add_ms(now, 3 * beat_ms);
	}
	peer_state = READ_ONCE(ivs->peer_side->state);
	if (peer_state != ivs->last_peer_state) {
		static const char *const names[] = { "absent", "open", "enabled", "closed" };

		ivs->last_peer_state = peer_state;
		/* The peer's word: named if valid, rate-limited (a peer could flap it every beat). */
		if (peer_state < ARRAY_SIZE(names))
			dev_info_ratelimited(&ivs->pdev->dev, "peer side %c: state %s\n", 'a' + ivs->peer, names[peer_state]);
		else
			dev_info_ratelimited(&ivs->pdev->dev, "peer side %c: invalid state %u\n", 'a' + ivs->peer, peer_state);
	}
	up = READ_ONCE(ivs->enabled) && peer_state == NTB_IVSHMEM_STATE_ENABLED && ivs->peer_seen &&
	     ktime_ms_delta(now, ivs->last_change) < peer_timeout_ms &&
	     ktime_compare(now, ivs->hold_down_until) >= 0;
	if (up != ivs->link_up) {
		WRITE_ONCE(ivs->link_up, up);
		dev_info(&ivs->pdev->dev, "link %s (peer side %c, state %u)\n", up ? "up" : "down",
			 'a' + ivs->peer, peer_state);
		ntb_link_event(&ivs->ntb);
	}
}

static enum hrtimer_restart ivs_poll(struct hrtimer *timer)
{
	struct ivshmem_ntb *ivs = container_of(timer, struct ivshmem_ntb, timer);
	ktime_t now = ktime_get();

	if (ktime_compare(now, ivs->next_beat) >= 0) {
		ivs->next_beat = ktime_add_ms(now, beat_ms);
		ivs_beat(ivs, now);
	}
	/* Doorbell interrupts only while the link is up, as on an NTB, where a peer cannot reach the
	 * doorbell register without a link. Here the two sides see the link come up up to a beat apart,
	 * so the peer may ring first: the bits wait, and the event follows ntb_link_event(). (ntb_perf
	 * drops a command whose doorbell arrives before its own link-up and then stalls for good.) */
	if (ivs->link_up &&
	    (READ_ONCE(ivs->own_side->doorbell) & ivs->db_valid & ~(u64)atomic64_read(&ivs->db_mask)))
		ntb_db_event(&ivs->ntb, 0);
	hrtimer_forward_now(timer, ns_to_ktime((u64)poll_us * NSEC_PER_USEC));
	return HRTIMER_RESTART;
}

/* ---- Header: write the geometry of zeroed memory, validate an existing one ----------------------- */

static int ivs_open_header(struct ivshmem_ntb *ivs)
{
	struct ntb_ivshmem_header *h = ivs->hdr;
	struct device *dev = &ivs->pdev->dev;
	u64 magic, usable, size, total;
	unsigned long deadline;
	u32 version, header_size, spads, count;

	/* A zeroed region: the side that swaps the magic from 0 writes the geometry, then the magic. */
	if (atomic64_cmpxchg(ivs_atomic(&h->magic), 0, NTB_IVSHMEM_INITIALISING) == 0) {
		usable = ivs->shm_size - NTB_IVSHMEM_HEADER_SIZE;
		size = usable / (2 * mw_count) / NTB_IVSHMEM_MW_ALIGN * NTB_IVSHMEM_MW_ALIGN;
		if (size < NTB_IVSHMEM_MW_ALIGN) {
			atomic64_cmpxchg(ivs_atomic(&h->magic), NTB_IVSHMEM_INITIALISING, 0);
			dev_err(dev, "%llu bytes of shared memory cannot hold the header and %u windows; give the ivshmem device more memory (e.g. size=4M)\n",
				ivs->shm_size, 2 * mw_count);
			return -ENOSPC;
		}
		WRITE_ONCE(h->version, NTB_IVSHMEM_VERSION);
		WRITE_ONCE(h->header_size, NTB_IVSHMEM_HEADER_SIZE);
		WRITE_ONCE(h->shm_size, ivs->shm_size);
		WRITE_ONCE(h->spad_count, NTB_IVSHMEM_SPADS);
		WRITE_ONCE(h->mw_count, mw_count);
		WRITE_ONCE(h->mw_size, size);
		WRITE_ONCE(h->mw_offset, NTB_IVSHMEM_HEADER_SIZE);
		WRITE_ONCE(h->db_valid_mask, NTB_IVSHMEM_DEFAULT_DB_MASK);
		atomic64_cmpxchg(ivs_atomic(&h->magic), NTB_IVSHMEM_INITIALISING, NTB_IVSHMEM_MAGIC);
		dev_info(dev, "wrote the ivshmem NTB header: %u windows of %#llx bytes per side\n", mw_count, size);
	}
	deadline = jiffies + 2 * HZ;
	magic = READ_ONCE(h->magic);
	while (magic == NTB_IVSHMEM_INITIALISING && time_before(jiffies, deadline)) {
		msleep(1);
		magic = READ_ONCE(h->magic);
	}
	if (magic == NTB_IVSHMEM_INITIALISING) {
		dev_err(dev, "the ivshmem header stayed half-written for 2 s (a side died while writing it); stop both sides and zero the shared memory\n");
		return -EBUSY;
	}
	if (magic != NTB_IVSHMEM_MAGIC) {
		dev_err(dev, "the shared memory does not start with an ntb-transport ivshmem header (magic %#llx, expected %#llx or zeroed memory); it is used by something else: zero it or use another device\n",
			magic, NTB_IVSHMEM_MAGIC);
		return -EINVAL;
	}
	smp_rmb();

#define BAD(field, value, expected) do { \
		dev_err(dev, "the ivshmem header says " field " = %llu, expected " expected "; it was written by incompatible software or is damaged: stop both sides and zero the shared memory\n", \
			(unsigned long long)(value)); \
		return -EINVAL; \
	} while (0)

	version = READ_ONCE(h->version);
	if (version != NTB_IVSHMEM_VERSION)
		BAD("version", version, "1");
	header_size = READ_ONCE(h->header_size);
	if (header_size != NTB_IVSHMEM_HEADER_SIZE)
		BAD("header_size", header_size, "4096");
	if (READ_ONCE(h->shm_size) != ivs->shm_size)
		BAD("shm_size", READ_ONCE(h->shm_size), "the size of BAR2 (both VMs must share the same memory)");
	spads = READ_ONCE(h->spad_count);
	if (spads < 1 || spads > NTB_IVSHMEM_SPADS)
		BAD("spad_count", spads, "1...16");
	count = READ_ONCE(h->mw_count);
	if (count < 1 || count > NTB_IVSHMEM_MAX_MWS)
		BAD("mw_count", count, "1...4");
	size = READ_ONCE(h->mw_size);
	if (size < NTB_IVSHMEM_MW_ALIGN || size % NTB_IVSHMEM_MW_ALIGN || size > ivs->shm_size)
		BAD("mw_size", size, "a multiple of 4096 within the region");
	ivs->mw_offset = READ_ONCE(h->mw_offset);
	if (ivs->mw_offset < NTB_IVSHMEM_HEADER_SIZE || ivs->mw_offset % NTB_IVSHMEM_MW_ALIGN ||
	    ivs->mw_offset > ivs->shm_size)
		BAD("mw_offset", ivs->mw_offset, "a multiple of 4096 from 4096 on");
	/* No overflow: every term is below 2^36 (shm_size is bounded at probe) and count <= 4. */
	total = ivs->mw_offset + 2 * (u64)count * size;
	if (total > ivs->shm_size)
		BAD("mw_offset + 2 * mw_count * mw_size", total, "at most shm_size");
	ivs->db_valid = READ_ONCE(h->db_valid_mask);
	if (!ivs->db_valid)
		BAD("db_valid_mask", 0, "non-zero");
#undef BAD
	ivs->spad_count = spads;
	ivs->mw_count = count;
	ivs->mw_size = size;
	return 0;
}

/* Another live owner of this side (another VM, or ntb-transport in this one)? Its heartbeat moves. */
static int ivs_claim_side(struct ivshmem_ntb *ivs)
{
	struct ntb_ivshmem_side *s = ivs->own_side;
	u32 state = READ_ONCE(s->state);
	int i;

	if (state == NTB_IVSHMEM_STATE_OPEN || state == NTB_IVSHMEM_STATE_ENABLED) {
		u64 beat = READ_ONCE(s->heartbeat);
		unsigned long until = jiffies + msecs_to_jiffies(peer_timeout_ms);

		while (time_before(jiffies, until)) {
			msleep(beat_ms);
			if (READ_ONCE(s->heartbeat) != beat) {
				dev_err(&ivs->pdev->dev, "side %c is in use by process %u (pid 0: a kernel), whose heartbeat is running; stop it or load this driver with the other side\n",
					'a' + ivs->own, READ_ONCE(s->pid));
				return -EBUSY;
			}
		}
	}
	/* Fresh scratchpads and doorbells, a new session, then the state. */
	for (i = 0; i < ivs->spad_count; i++)
		WRITE_ONCE(s->spad[i], 0);
	WRITE_ONCE(s->doorbell, 0);
	WRITE_ONCE(s->pid, 0);
	memset(s->boot_id, 0, sizeof(s->boot_id));
	ivs->beat = READ_ONCE(s->heartbeat);
	WRITE_ONCE(s->session, get_random_u64() | 1);
	smp_mb();
	WRITE_ONCE(s->state, NTB_IVSHMEM_STATE_OPEN);
	return 0;
}

/* ---- PCI driver ---------------------------------------------------------------------------------- */

static int ivs_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct ivshmem_ntb *ivs;
	u64 own_mw_offset;
	int rc;

	if (!strcmp(side, "a") || !strcmp(side, "A")) {
		rc = 0;
	} else if (!strcmp(side, "b") || !strcmp(side, "B")) {
		rc = 1;
	} else {
		dev_err(dev, "load ntb_hw_ivshmem with side=a or side=b (side a is ntb-transport's --role host, b its --role endpoint); the other VM takes the other side\n");
		return -EINVAL;
	}
	if (mw_count < 1 || mw_count > NTB_IVSHMEM_MAX_MWS || poll_us < 10 || poll_us > 100000 ||
	    beat_ms < 1 || beat_ms > 1000 || peer_timeout_ms < 2 * beat_ms) {
		dev_err(dev, "bad parameters: mw_count=%u (1-4), poll_us=%u (10-100000), beat_ms=%u (1-1000), peer_timeout_ms=%u (at least 2 * beat_ms)\n",
			mw_count, poll_us, beat_ms, peer_timeout_ms);
		return -EINVAL;
	}
#ifndef NTB_HAVE_GET_DMA_DEV
	/* Without get_dma_dev, ntb_get_dma_dev() is the PCI device: it must hand out the windows. */
	if (!pci_dma_windows) {
		dev_err(dev, "this kernel's NTB core has no get_dma_dev, so NTB clients allocate on the PCI device: load with pci_dma_windows=1\n");
		return -EINVAL;
	}
#endif

	ivs = kzalloc(sizeof(*ivs), GFP_KERNEL);
	if (!ivs)
		return -ENOMEM;
	ivs->pdev = pdev;
	ivs->own = rc;
	ivs->peer = 1 - rc;
	spin_lock_init(&ivs->windows_lock);
	atomic64_set(&ivs->db_mask, 0);

	rc = pci_enable_device(pdev);
	if (rc)
		goto err_free;
	rc = pci_request_region(pdev, 2, DRV_NAME);
	if (rc) {
		dev_err(dev, "BAR2 is in use by another driver (vfio-pci for ntb-transport?); unbind it first\n");
		goto err_disable;
	}
	ivs->bar_phys = pci_resource_start(pdev, 2);
	ivs->shm_size = pci_resource_len(pdev, 2);
	if (ivs->shm_size < NTB_IVSHMEM_HEADER_SIZE + 2 * NTB_IVSHMEM_MW_ALIGN || ivs->shm_size > NTB_IVSHMEM_MAX_SHM) {
		dev_err(dev, "BAR2 has %llu bytes: the ivshmem NTB header and two windows need 12 KiB to 64 GiB; give the device more memory (e.g. size=4M)\n",
			ivs->shm_size);
		rc = -ENOSPC;
		goto err_region;
	}
	ivs->hdr = memremap(ivs->bar_phys, NTB_IVSHMEM_HEADER_SIZE, MEMREMAP_WB);
	if (!ivs->hdr) {
		rc = -ENOMEM;
		goto err_region;
	}
	ivs->own_side = &ivs->hdr->side[ivs->own];
	ivs->peer_side = &ivs->hdr->side[ivs->peer];

	rc = ivs_open_header(ivs);
	if (rc)
		goto err_unmap_hdr;
	own_mw_offset = ivs_window_offset(ivs, ivs->own, 0);
	ivs->own_mw = memremap(ivs->bar_phys + own_mw_offset, (u64)ivs->mw_count * ivs->mw_size, MEMREMAP_WB);
	if (!ivs->own_mw) {
		rc = -ENOMEM;
		goto err_unmap_hdr;
	}
	rc = ivs_claim_side(ivs);
	if (rc)
		goto err_unmap_mw;

	/* The DMA device NTB clients allocate their inbound buffers on (ntb_get_dma_dev). */
	device_initialize(&ivs->dma_dev);
	ivs->dma_dev.parent = dev;
	ivs->dma_dev.release = ivs_dma_dev_release;
	ivs->dma_dev.coherent_dma_mask = DMA_BIT_MASK(64);
	ivs->dma_dev.dma_mask = &ivs->dma_dev.coherent_dma_mask;
	set_dma_ops(&ivs->dma_dev, &ivshmem_dma_ops);
	dev_set_name(&ivs->dma_dev, "%s-windows", pci_name(pdev));
	ivs->dma_dev_ready = true;
	if (pci_dma_windows) {
		ivs->pci_saved_ops = dev->dma_ops;
		set_dma_ops(dev, &ivshmem_dma_ops);
		ivs->pci_ops_set = true;
	}

	ivs->last_peer_beat = READ_ONCE(ivs->peer_side->heartbeat);
	ivs->last_session = READ_ONCE(ivs->peer_side->session);
	ivs->last_peer_state = U32_MAX;	/* the first beat logs the peer's state */
	ivs->next_beat = ktime_get();
	ivs->hold_down_until = ktime_get();

	ivs->ntb.pdev = pdev;
	ivs->ntb.topo = NTB_TOPO_NONE;
	ivs->ntb.ops = &ivshmem_ntb_ops;
	pci_set_drvdata(pdev, ivs);

	rc = ntb_register_device(&ivs->ntb);
	if (rc)
		goto err_state;
	ivs->registered = true;

	hrtimer_init(&ivs->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	ivs->timer.function = ivs_poll;
	hrtimer_start(&ivs->timer, ns_to_ktime((u64)poll_us * NSEC_PER_USEC), HRTIMER_MODE_REL);
	ivs->timer_started = true;

	dev_info(dev, "side %c of %llu bytes of shared memory: %u windows of %#llx bytes per side, %u scratchpads, doorbells %#llx, polled every %u us\n",
		 'a' + ivs->own, ivs->shm_size, ivs->mw_count, ivs->mw_size, ivs->spad_count, ivs->db_valid, poll_us);
	return 0;

err_state:
	WRITE_ONCE(ivs->own_side->state, NTB_IVSHMEM_STATE_CLOSED);
	if (ivs->pci_ops_set)
		set_dma_ops(dev, ivs->pci_saved_ops);
	put_device(&ivs->dma_dev);
err_unmap_mw:
	memunmap(ivs->own_mw);
err_unmap_hdr:
	memunmap(ivs->hdr);
err_region:
	pci_release_region(pdev, 2);
err_disable:
	pci_disable_device(pdev);
err_free:
	kfree(ivs);
	return rc;
}

static void ivs_remove(struct pci_dev *pdev)
{
	struct ivshmem_ntb *ivs = pci_get_drvdata(pdev);

	/* The poller stops first (no event reaches a client being removed), then the clients
	 * (ntb_transport) go: they free their windows and disable the link. */
	hrtimer_cancel(&ivs->timer);
	ntb_unregister_device(&ivs->ntb);
	/* The clean-shutdown state: the peer sees link down at once. */
	WRITE_ONCE(ivs->own_side->state, NTB_IVSHMEM_STATE_CLOSED);
	smp_mb();
	if (ivs->pci_ops_set)
		set_dma_ops(&pdev->dev, ivs->pci_saved_ops);
	put_device(&ivs->dma_dev);
	memunmap(ivs->own_mw);
	memunmap(ivs->hdr);
	pci_release_region(pdev, 2);
	pci_disable_device(pdev);
	kfree(ivs);
}

static const struct pci_device_id ivs_pci_ids[] = {
	{ PCI_DEVICE(0x1af4, 0x1110) },	/* ivshmem (QEMU docs/specs/ivshmem-spec.rst) */
	{ 0 }
};
MODULE_DEVICE_TABLE(pci, ivs_pci_ids);

static struct pci_driver ivs_pci_driver = {
	.name = DRV_NAME,
	.id_table = ivs_pci_ids,
	.probe = ivs_probe,
	.remove = ivs_remove,
};
module_pci_driver(ivs_pci_driver);

MODULE_DESCRIPTION("NTB over ivshmem shared memory, ntb-transport's ivshmem NTB protocol (polled)");
MODULE_LICENSE("GPL");
