/*
 * ntb_pci.h - PCI enumeration, ID names and config-space reads through libpci (pciutils).   (PCIKit)
 *
 * Why it exists: libpci gives the same enumeration and the same pci.ids / hwdb names that `lspci`
 * prints, but its API is a linked list of structs with a fatal-error callback that exits the process.
 * This wrapper keeps libpci's types out of Swift (plain value structs instead), and turns libpci's fatal
 * errors into return codes with a message: the error callback longjmps back to the wrapper's entry point
 * (memory libpci held at that moment may leak; this happens only on an unusable PCI access method).
 */
#ifndef NTB_PCI_H
#define NTB_PCI_H

#include <stdint.h>
#include <stddef.h>

/* One PCI function as libpci reports it. */
typedef struct ntb_pci_info {
    int32_t  domain;
    uint8_t  bus, dev, func;
    uint8_t  header_type;       /* low 7 bits of config 0x0E */
    uint16_t vendor_id, device_id;
    uint16_t subsys_vendor_id, subsys_id;
    uint16_t device_class;      /* base class << 8 | subclass */
    uint8_t  prog_if, rev_id;
    int32_t  irq;
    uint64_t base_addr[6];      /* with the flag bits in the low 4 bits, as in the BAR */
    uint64_t size[6];
    uint64_t flags[6];          /* Linux IORESOURCE_* flags (from sysfs "resource") */
} ntb_pci_info;

/* A filter; -1 in a field means any value. */
typedef struct ntb_pci_match {
    int32_t domain, bus, dev, func;
    int32_t vendor, device;
    int32_t device_class;       /* base << 8 | sub */
} ntb_pci_match;

/* What to look up in ntb_pci_lookup_name. */
enum {
    NTB_PCI_NAME_VENDOR = 1,           /* a = vendor                                              */
    NTB_PCI_NAME_DEVICE = 2,           /* a = vendor, b = device                                  */
    NTB_PCI_NAME_CLASS = 3,            /* a = class (base << 8 | sub)                             */
    NTB_PCI_NAME_SUBSYS_VENDOR = 4,    /* a = subsystem vendor                                    */
    NTB_PCI_NAME_SUBSYS_DEVICE = 5,    /* a = vendor, b = device, c = subsys vendor, d = subsys id */
    NTB_PCI_NAME_PROGIF = 6,           /* a = class, b = prog_if                                  */
};

typedef struct ntb_pci ntb_pci;        /* opaque: a struct pci_access plus its error state */

/*
 * Opens libpci. `sysfs_bus_pci` replaces "/sys/bus/pci" (a fake tree in tests) and forces the sysfs
 * access method; NULL keeps libpci's defaults. On failure returns NULL with a message in `err`.
 */
ntb_pci *_Nullable ntb_pci_open(const char *_Nullable sysfs_bus_pci, char *_Nonnull err, size_t errlen);
void ntb_pci_close(ntb_pci *_Nullable pci);

/*
 * Scans the bus and writes the functions that match `match` (NULL: all) to `out`, at most `max`.
 * Returns how many matched (which may exceed max: call again with a bigger array), or -1 with the
 * message in `err`.
 */
int ntb_pci_scan(ntb_pci *_Nonnull pci, const ntb_pci_match *_Nullable match, ntb_pci_info *_Nullable out,
                 int max, char *_Nonnull err, size_t errlen);

/*
 * The name of an ID from pci.ids (or udev's hwdb), formatted exactly as lspci prints it: unknown IDs
 * become e.g. "Device 0d57". Returns `buf`.
 */
const char *_Nonnull ntb_pci_lookup_name(ntb_pci *_Nonnull pci, char *_Nonnull buf, int size, int what,
                                         uint32_t a, uint32_t b, uint32_t c, uint32_t d);

/*
 * Reads `len` bytes of configuration space at `offset` of a function. Returns the number of bytes read
 * (unprivileged users can read only the first 64 bytes through sysfs; the rest reads as 0xff... and
 * this returns the readable count), or -1 with the message in `err`.
 */
int ntb_pci_read_config(ntb_pci *_Nonnull pci, int32_t domain, uint8_t bus, uint8_t dev, uint8_t func,
                        int offset, uint8_t *_Nonnull buf, int len, char *_Nonnull err, size_t errlen);

#endif /* NTB_PCI_H */
