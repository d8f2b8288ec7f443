#ifndef KILN_PROCESS_SPAWN_H
#define KILN_PROCESS_SPAWN_H
#include <sys/types.h>
#include "poll_wait.h"
#include "epoll_wait.h"

/// posix_spawn of `path` with stdin from /dev/null, stdout and stderr appended to `output_path`, every other
/// descriptor closed in the child, default signal dispositions and an empty signal mask; with `new_session`
/// the child starts its own session (setsid). Returns 0 and the pid, or an errno value.
int kiln_spawn(const char *path, char *const argv[], char *const envp[], const char *output_path, int new_session,
               pid_t *pid);

/// setns(fd, CLONE_NEWNET): moves the calling thread (only it) into the network namespace `fd` refers to.
/// Returns 0, or an errno value.
int kiln_enter_network_namespace(int fd);

#endif
