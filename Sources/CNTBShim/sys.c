/* sys.c - non-variadic ioctl entry points and ppoll of ntb_sys.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <time.h>
#include "ntb_sys.h"

int ntb_sys_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
int ntb_sys_ioctl_int(int fd, unsigned long request, unsigned long value) { return ioctl(fd, request, value); }
int ntb_sys_errno(void) { return errno; }
int ntb_sys_poll_ns(struct pollfd *fds, unsigned long nfds, long long timeout_ns) {
    if (timeout_ns < 0) return ppoll(fds, nfds, NULL, NULL);
    struct timespec ts = { .tv_sec = timeout_ns / 1000000000LL, .tv_nsec = timeout_ns % 1000000000LL };
    return ppoll(fds, nfds, &ts, NULL);
}
