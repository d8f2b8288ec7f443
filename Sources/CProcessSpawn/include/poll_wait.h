#ifndef KILN_POLL_WAIT_H
#define KILN_POLL_WAIT_H
#include <poll.h>
#include <stdint.h>

/// ppoll(2) of `count` descriptors for POLLIN with a timeout in nanoseconds (negative: none): the open-model
/// multiplexer's wait, precise to the kernel's timer slack rather than poll(2)'s milliseconds. Returns ppoll's
/// result (ready descriptors, 0 on timeout, -1 with errno).
int kiln_poll_readable(struct pollfd *fds, int count, int64_t timeout_nanos);

#endif
