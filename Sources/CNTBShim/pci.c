/* pci.c - libpci wrapper (see ntb_pci.h for why it exists). */
#include <pci/pci.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ntb_pci.h"

struct ntb_pci {
    struct pci_access *acc;
    int scanned;
};

/* libpci's error callback must not return. It jumps back to the active entry point of this thread. */
static _Thread_local jmp_buf *ntb_pci_jump;
static _Thread_local char ntb_pci_message[256];

static __attribute__((noreturn)) void ntb_pci_error(char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    vsnprintf(ntb_pci_message, sizeof ntb_pci_message, msg, ap);
    va_end(ap);
    if (ntb_pci_jump) longjmp(*ntb_pci_jump, 1);
    abort(); /* unreachable: every libpci call below runs with a jump target set */
}

static void ntb_pci_quiet(char *msg, ...) { (void)msg; }

static void copy_message(char *err, size_t errlen) {
    snprintf(err, errlen, "%s", ntb_pci_message[0] ? ntb_pci_message : "libpci failed");
}

ntb_pci *ntb_pci_open(const char *sysfs_bus_pci, char *err, size_t errlen) {
    ntb_pci *pci = calloc(1, sizeof *pci);
    if (!pci) { snprintf(err, errlen, "out of memory"); return NULL; }
    jmp_buf env;
    ntb_pci_message[0] = 0;
    if (setjmp(env)) {
        ntb_pci_jump = NULL;
        copy_message(err, errlen);
        free(pci); /* the pci_access is abandoned: libpci's state is unknown after a fatal error */
        return NULL;
    }
    ntb_pci_jump = &env;
    pci->acc = pci_alloc();
    pci->acc->error = ntb_pci_error;
    pci->acc->warning = ntb_pci_quiet;
    pci->acc->debug = ntb_pci_quiet;
    if (sysfs_bus_pci) {
        pci->acc->method = PCI_ACCESS_SYS_BUS_PCI;
        pci_set_param(pci->acc, "sysfs.path", (char *)sysfs_bus_pci);
    }
    pci_init(pci->acc);
    ntb_pci_jump = NULL;
    return pci;
}

void ntb_pci_close(ntb_pci *pci) {
    if (!pci) return;
    jmp_buf env;
    if (!setjmp(env)) {
        ntb_pci_jump = &env;
        pci_cleanup(pci->acc);
    }
    ntb_pci_jump = NULL;
    free(pci);
}

static void fill(ntb_pci_info *o, struct pci_dev *d) {
    memset(o, 0, sizeof *o);
    o->domain = d->domain;
    o->bus = d->bus; o->dev = d->dev; o->func = d->func;
    o->vendor_id = d->vendor_id; o->device_id = d->device_id;
    o->device_class = d->device_class;
    o->irq = d->irq;
    o->prog_if = d->prog_if; o->rev_id = d->rev_id;
    o->subsys_vendor_id = d->subsys_vendor_id; o->subsys_id = d->subsys_id;
    o->header_type = d->no_config_access ? 0 : (pci_read_byte(d, PCI_HEADER_TYPE) & 0x7f);
    for (int i = 0; i < 6; i++) {
        o->base_addr[i] = d->base_addr[i];
        o->size[i] = d->size[i];
        o->flags[i] = d->flags[i];
    }
}

int ntb_pci_scan(ntb_pci *pci, const ntb_pci_match *match, ntb_pci_info *out, int max, char *err, size_t errlen) {
    jmp_buf env;
    ntb_pci_message[0] = 0;
    if (setjmp(env)) { ntb_pci_jump = NULL; copy_message(err, errlen); return -1; }
    ntb_pci_jump = &env;
    if (!pci->scanned) { pci_scan_bus(pci->acc); pci->scanned = 1; }
    struct pci_filter f;
    pci_filter_init(pci->acc, &f);
    if (match) {
        f.domain = match->domain; f.bus = match->bus; f.slot = match->dev; f.func = match->func;
        f.vendor = match->vendor; f.device = match->device; f.device_class = match->device_class;
    }
    int n = 0;
    for (struct pci_dev *d = pci->acc->devices; d; d = d->next) {
        pci_fill_info(d, PCI_FILL_IDENT | PCI_FILL_CLASS | PCI_FILL_IRQ | PCI_FILL_BASES | PCI_FILL_SIZES |
                         PCI_FILL_IO_FLAGS | PCI_FILL_CLASS_EXT | PCI_FILL_SUBSYS);
        if (!pci_filter_match(&f, d)) continue;
        if (out && n < max) fill(&out[n], d);
        n++;
    }
    ntb_pci_jump = NULL;
    return n;
}

const char *ntb_pci_lookup_name(ntb_pci *pci, char *buf, int size, int what,
                                uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    jmp_buf env;
    if (setjmp(env)) { ntb_pci_jump = NULL; snprintf(buf, (size_t)size, "%s", ""); return buf; }
    ntb_pci_jump = &env;
    char *r = NULL;
    switch (what) {
    case NTB_PCI_NAME_VENDOR: r = pci_lookup_name(pci->acc, buf, size, PCI_LOOKUP_VENDOR, a); break;
    case NTB_PCI_NAME_DEVICE: r = pci_lookup_name(pci->acc, buf, size, PCI_LOOKUP_DEVICE, a, b); break;
    case NTB_PCI_NAME_CLASS: r = pci_lookup_name(pci->acc, buf, size, PCI_LOOKUP_CLASS, a); break;
    case NTB_PCI_NAME_SUBSYS_VENDOR:
        r = pci_lookup_name(pci->acc, buf, size, PCI_LOOKUP_SUBSYSTEM | PCI_LOOKUP_VENDOR, a); break;
    case NTB_PCI_NAME_SUBSYS_DEVICE:
        r = pci_lookup_name(pci->acc, buf, size, PCI_LOOKUP_SUBSYSTEM | PCI_LOOKUP_DEVICE, a, b, c, d); break;
    case NTB_PCI_NAME_PROGIF:
        r = pci_lookup_name(pci->acc, buf, size, PCI_LOOKUP_PROGIF | PCI_LOOKUP_NO_NUMBERS, a, b); break;
    default: break;
    }
    ntb_pci_jump = NULL;
    if (r != buf) snprintf(buf, (size_t)size, "%s", r ? r : "");
    return buf;
}

int ntb_pci_read_config(ntb_pci *pci, int32_t domain, uint8_t bus, uint8_t dev, uint8_t func,
                        int offset, uint8_t *buf, int len, char *err, size_t errlen) {
    jmp_buf env;
    struct pci_dev *volatile d = NULL;
    ntb_pci_message[0] = 0;
    if (setjmp(env)) {
        ntb_pci_jump = NULL;
        copy_message(err, errlen);
        return -1;
    }
    ntb_pci_jump = &env;
    d = pci_get_dev(pci->acc, domain, bus, dev, func);
    int got = 0;
    /* Read in 64-byte steps so that a short read (unprivileged sysfs access) reports what was readable. */
    while (got < len) {
        int step = len - got < 64 ? len - got : 64;
        if (!pci_read_block(d, offset + got, buf + got, step)) break;
        got += step;
    }
    pci_free_dev(d);
    ntb_pci_jump = NULL;
    if (got == 0) { snprintf(err, errlen, "cannot read the configuration space"); return -1; }
    return got;
}
