/* libpci (pciutils) headers, found through pkg-config "libpci" (Debian: libpci-dev). */
#include <pci/pci.h>
