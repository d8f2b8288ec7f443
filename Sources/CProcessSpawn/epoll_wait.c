#define _GNU_SOURCE
#include "epoll_wait.h"
#include <errno.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif

int kiln_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

/* 0: unknown or works, -1: the kernel lacks epoll_pwait2 (ENOSYS). Shared by every loop thread. */
static int pwait2_state = 0;

int kiln_epoll_register(int epfd, int fd, int32_t slot) {
    struct epoll_event event = {.events = EPOLLIN, .data = {.u64 = (uint64_t)(uint32_t)slot}};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) == 0) return 0;
    if (errno != EEXIST) return -1;
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event);
}

int kiln_epoll_unregister(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int kiln_epoll_wait_slots(int epfd, int32_t *slots, int capacity, int64_t timeout_nanos) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int ready;
    if (timeout_nanos >= 0 && __atomic_load_n(&pwait2_state, __ATOMIC_RELAXED) >= 0) {
        struct timespec timeout = {.tv_sec = timeout_nanos / 1000000000, .tv_nsec = timeout_nanos % 1000000000};
        ready = (int)syscall(SYS_epoll_pwait2, epfd, events, capacity, &timeout, NULL, 0);
        if (ready < 0 && errno == ENOSYS) {
            __atomic_store_n(&pwait2_state, -1, __ATOMIC_RELAXED);
            return kiln_epoll_wait_slots(epfd, slots, capacity, timeout_nanos);
        }
    } else {
        int milliseconds = timeout_nanos < 0 ? -1 : (int)((timeout_nanos + 999999) / 1000000);
        ready = epoll_wait(epfd, events, capacity, milliseconds);
    }
    for (int i = 0; i < ready; i++) slots[i] = (int32_t)events[i].data.u64;
    return ready;
}
