#ifndef KILN_EPOLL_WAIT_H
#define KILN_EPOLL_WAIT_H
#include <stdint.h>

/// epoll for the open-model multiplexer: each connection's descriptor stays registered (level-triggered) with its
/// slot as data across ops, so a wait costs the ready descriptors only (ppoll scanned and queued on every
/// descriptor at each call) and an op costs no epoll_ctl; an idle connection has nothing to read and so does not
/// wake the loop (one that does is unregistered by the loop).

/// A new epoll instance (close-on-exec), or -1 with errno.
int kiln_epoll_create(void);
/// Registers `fd` for level-triggered readability carrying `slot` (EPOLLIN, no one-shot): adds it, or updates the
/// registration when this open file is registered already. Level-triggered, it stays armed across ops, so a
/// connection that keeps its open file costs no epoll_ctl per op; the caller registers again when the connection
/// behind a slot may have changed (a closed descriptor leaves epoll by itself, so a reused number is a new file),
/// and unregisters a connection that becomes readable with no op in flight. 0, or -1 with errno.
int kiln_epoll_register(int epfd, int fd, int32_t slot);
/// Removes `fd` from `epfd`. 0, or -1 with errno.
int kiln_epoll_unregister(int epfd, int fd);
/// Waits up to `timeout_nanos` (negative: no limit; rounded up to whole microseconds via epoll_pwait2 when the
/// kernel has it, else to milliseconds) and writes at most `capacity` ready slots into `slots`. Returns how many
/// (0 on timeout), or -1 with errno (EINTR included).
int kiln_epoll_wait_slots(int epfd, int32_t *slots, int capacity, int64_t timeout_nanos);

#endif
