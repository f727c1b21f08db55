/*
 * ntb_sys.h - Linux system headers that Glibc's Swift module does not export (eventfd, epoll),
 * pulled in here so Swift code can call them.                                    (PCIKit)
 */
#ifndef NTB_SYS_H
#define NTB_SYS_H

#include <sys/eventfd.h>
#include <sys/epoll.h>

#endif
