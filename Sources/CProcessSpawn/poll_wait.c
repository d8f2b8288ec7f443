#define _GNU_SOURCE
#include "poll_wait.h"
#include <signal.h>
#include <time.h>

int kiln_poll_readable(struct pollfd *fds, int count, int64_t timeout_nanos) {
    if (timeout_nanos < 0) return ppoll(fds, (nfds_t)count, NULL, NULL);
    struct timespec timeout = {.tv_sec = timeout_nanos / 1000000000, .tv_nsec = timeout_nanos % 1000000000};
    return ppoll(fds, (nfds_t)count, &timeout, NULL);
}
