/* sys.c - non-variadic ioctl entry points of ntb_sys.h. */
#include <errno.h>
#include <sys/ioctl.h>
#include "ntb_sys.h"

int ntb_sys_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
int ntb_sys_ioctl_int(int fd, unsigned long request, unsigned long value) { return ioctl(fd, request, value); }
int ntb_sys_errno(void) { return errno; }
