/*
 * ntb_sys.h - Linux system headers that Glibc's Swift module does not export (eventfd, epoll), and
 * non-variadic ioctl entry points (Swift cannot call the variadic ioctl(2) with a pointer portably).
 * Only PCIKit's Internals/Syscalls.swift and NTBHardware's Support/Syscalls.swift call these. (PCIKit)
 */
#ifndef NTB_SYS_H
#define NTB_SYS_H

#include <sys/eventfd.h>
#include <sys/epoll.h>

/* ioctl(fd, request, arg) with a pointer argument. Returns ioctl's result; errno as ioctl sets it. */
int ntb_sys_ioctl_ptr(int fd, unsigned long request, void *_Nullable arg);
/* ioctl(fd, request, value) with an integer argument (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU). */
int ntb_sys_ioctl_int(int fd, unsigned long request, unsigned long value);
/* poll(2) with a timeout in nanoseconds (ppoll; poll's milliseconds are too coarse for a 100 µs service
 * period). timeout_ns < 0 waits forever. Returns ppoll's result; errno as ppoll sets it. */
struct pollfd;
int ntb_sys_poll_ns(struct pollfd *_Nonnull fds, unsigned long nfds, long long timeout_ns);
/* errno of the calling thread (read right after the failed call, before anything else runs). */
int ntb_sys_errno(void);

#endif
