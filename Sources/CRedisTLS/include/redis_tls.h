#ifndef KILN_REDIS_TLS_H
#define KILN_REDIS_TLS_H

#include <stddef.h>

/*
 * A RESP connection over TLS: OpenSSL does the socket I/O, hiredis 0.14's redisReader parses the replies (hiredis
 * 0.14 itself has no TLS). Replies are hiredis `redisReply` objects: free them with freeReplyObject.
 *
 * Ownership: kiln_redis_tls_connect returns a stream the caller owns and frees with kiln_redis_tls_free (which also
 * closes the socket). Threading: a stream is used by one thread at a time. Timeouts: connecting (TCP connect plus
 * the TLS handshake) is bounded by one deadline of `timeout_seconds`; afterwards every wait for the socket to become
 * readable or writable is bounded by `timeout_seconds`. After any error but a server error reply the stream is out
 * of step: free it.
 */

typedef struct kiln_redis_tls kiln_redis_tls;

typedef enum {
    KILN_REDIS_TLS_OK = 0,
    /* The CA file could not be read, or memory ran out. Nothing was sent. */
    KILN_REDIS_TLS_ERR_SETUP = 1,
    /* TCP connect refused, unreachable or timed out. Nothing was sent. */
    KILN_REDIS_TLS_ERR_CONNECT = 2,
    /* The TLS handshake failed (the server speaks no TLS, no common protocol) or timed out. Nothing was sent. */
    KILN_REDIS_TLS_ERR_HANDSHAKE = 3,
    /* The server's certificate does not chain to the CA, or names neither the host name nor the IP address asked
     * for. Nothing was sent. */
    KILN_REDIS_TLS_ERR_VERIFY = 4,
    /* Reading or writing failed (reset, TLS alert). */
    KILN_REDIS_TLS_ERR_IO = 5,
    /* The socket did not become readable/writable within the timeout. */
    KILN_REDIS_TLS_ERR_TIMEOUT = 6,
    /* The server closed the connection. */
    KILN_REDIS_TLS_ERR_EOF = 7,
    /* The bytes received are not valid RESP. */
    KILN_REDIS_TLS_ERR_PROTOCOL = 8,
} kiln_redis_tls_status;

/* Connects to host:port, completes a TLS handshake and verifies the server's certificate against the PEM CA file
 * `ca_file` (NULL: the system's CA certificates) and `host` (an IP address is matched against the certificate's IP SANs, a name against its DNS names).
 * Returns NULL on failure with the status in *status and a message in error (NUL-terminated, at most error_size). */
kiln_redis_tls *kiln_redis_tls_connect(const char *host, int port, const char *ca_file, double timeout_seconds,
                                       kiln_redis_tls_status *status, char *error, size_t error_size);

void kiln_redis_tls_free(kiln_redis_tls *stream);

/* The socket, for a poller (readable = TLS records arrived). */
int kiln_redis_tls_fd(const kiln_redis_tls *stream);

/* The status and message of the last failed call. */
kiln_redis_tls_status kiln_redis_tls_status_of(const kiln_redis_tls *stream);
const char *kiln_redis_tls_error(const kiln_redis_tls *stream);
/* errno at the last failed system call (0 when none). */
int kiln_redis_tls_errno(const kiln_redis_tls *stream);

/* Queues a command (hiredis's redisFormatCommandArgv encoding) or bytes already encoded as RESP. Nothing is sent
 * until kiln_redis_tls_flush or kiln_redis_tls_get_reply. */
kiln_redis_tls_status kiln_redis_tls_append_argv(kiln_redis_tls *stream, int argc, const char **argv, const size_t *argvlen);
kiln_redis_tls_status kiln_redis_tls_append_formatted(kiln_redis_tls *stream, const char *bytes, size_t length);

/* Sends everything queued. */
kiln_redis_tls_status kiln_redis_tls_flush(kiln_redis_tls *stream);

/* Sends everything queued, then waits for the next reply (*reply: a redisReply the caller frees). */
kiln_redis_tls_status kiln_redis_tls_get_reply(kiln_redis_tls *stream, void **reply);

/* Without waiting: reads what the socket holds (all of it, so no decrypted bytes stay hidden from a poller), then
 * hands out a complete reply if there is one (*reply NULL otherwise). */
kiln_redis_tls_status kiln_redis_tls_read_available(kiln_redis_tls *stream, void **reply);

/* Raw bytes, for protocols other than RESP over the same TLS stream (kiln audit's Kafka wire probe): sends everything
 * queued, then waits (up to the timeout) for at least one byte and reads at most `size` into `buffer`; *received is
 * the count. A server that closes the connection gives KILN_REDIS_TLS_ERR_EOF. Do not mix with the reply calls. */
kiln_redis_tls_status kiln_redis_tls_read_raw(kiln_redis_tls *stream, char *buffer, size_t size, size_t *received);

#endif
