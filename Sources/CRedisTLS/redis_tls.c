#include "redis_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct kiln_redis_tls {
    int fd;
    SSL_CTX *context;
    SSL *ssl;
    redisReader *reader;
    /* Queued request bytes: [sent, length) are still to be written. */
    char *out;
    size_t out_length;
    size_t out_sent;
    size_t out_capacity;
    int timeout_ms;
    kiln_redis_tls_status status;
    int saved_errno;
    char error[256];
};

static kiln_redis_tls_status fail(kiln_redis_tls *stream, kiln_redis_tls_status status, int saved_errno, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(stream->error, sizeof stream->error, format, arguments);
    va_end(arguments);
    stream->status = status;
    stream->saved_errno = saved_errno;
    return status;
}

/* OpenSSL's first queued error as text (then the queue is cleared), or `fallback`. */
static const char *openssl_reason(char *buffer, size_t size, const char *fallback) {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) {
        snprintf(buffer, size, "%s", fallback);
    } else {
        ERR_error_string_n(code, buffer, size);
    }
    return buffer;
}

static long long now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* 1 when `fd` became ready for `events` within `timeout_ms`, 0 on timeout, -1 on a poll error. */
static int wait_for(int fd, short events, int timeout_ms) {
    struct pollfd entry = {.fd = fd, .events = events};
    for (;;) {
        int ready = poll(&entry, 1, timeout_ms < 0 ? 0 : timeout_ms);
        if (ready < 0 && errno == EINTR) continue;
        return ready < 0 ? -1 : (ready > 0 ? 1 : 0);
    }
}

kiln_redis_tls *kiln_redis_tls_connect(const char *host, int port, const char *ca_file, double timeout_seconds,
                                       kiln_redis_tls_status *status, char *error, size_t error_size) {
    kiln_redis_tls *stream = calloc(1, sizeof *stream);
    if (stream == NULL) {
        *status = KILN_REDIS_TLS_ERR_SETUP;
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    stream->fd = -1;
    stream->timeout_ms = timeout_seconds * 1000 < 1 ? 1 : (int)(timeout_seconds * 1000);
    long long deadline = now_ms() + stream->timeout_ms;
    char reason[200];

    stream->reader = redisReaderCreate();
    stream->context = SSL_CTX_new(TLS_client_method());
    if (stream->reader == NULL || stream->context == NULL) {
        fail(stream, KILN_REDIS_TLS_ERR_SETUP, 0, "out of memory");
        goto failed;
    }
    SSL_CTX_set_min_proto_version(stream->context, TLS1_2_VERSION);
    SSL_CTX_set_verify(stream->context, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(stream->context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca_file == NULL) {
        if (SSL_CTX_set_default_verify_paths(stream->context) != 1) {
            fail(stream, KILN_REDIS_TLS_ERR_SETUP, 0, "cannot load the system's CA certificates: %s",
                 openssl_reason(reason, sizeof reason, "failed"));
            goto failed;
        }
    } else if (SSL_CTX_load_verify_locations(stream->context, ca_file, NULL) != 1) {
        fail(stream, KILN_REDIS_TLS_ERR_SETUP, 0, "cannot read the CA file %s: %s", ca_file,
             openssl_reason(reason, sizeof reason, "no certificate in it"));
        goto failed;
    }

    /* TCP: each address in turn, non-blocking, within the deadline. */
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *addresses = NULL;
    int resolved = getaddrinfo(host, service, &hints, &addresses);
    if (resolved != 0) {
        fail(stream, KILN_REDIS_TLS_ERR_CONNECT, 0, "%s", gai_strerror(resolved));
        goto failed;
    }
    int last_errno = 0;
    for (struct addrinfo *address = addresses; address != NULL && stream->fd < 0; address = address->ai_next) {
        int fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, address->ai_protocol);
        if (fd < 0) { last_errno = errno; continue; }
        int connected = connect(fd, address->ai_addr, address->ai_addrlen);
        if (connected != 0 && errno == EINPROGRESS) {
            int ready = wait_for(fd, POLLOUT, (int)(deadline - now_ms()));
            if (ready == 1) {
                int socket_error = 0;
                socklen_t length = sizeof socket_error;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &socket_error, &length);
                connected = socket_error == 0 ? 0 : -1;
                errno = socket_error;
            } else {
                connected = -1;
                errno = ready == 0 ? ETIMEDOUT : errno;
            }
        }
        if (connected == 0) {
            stream->fd = fd;
        } else {
            last_errno = errno;
            close(fd);
        }
    }
    freeaddrinfo(addresses);
    if (stream->fd < 0) {
        fail(stream, KILN_REDIS_TLS_ERR_CONNECT, last_errno, "%s", last_errno == ETIMEDOUT ? "Connection timed out" : strerror(last_errno));
        goto failed;
    }
    int on = 1;
    setsockopt(stream->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);

    /* TLS: the server's certificate must chain to the CA and name `host` (an IP SAN for an address). */
    stream->ssl = SSL_new(stream->context);
    if (stream->ssl == NULL || SSL_set_fd(stream->ssl, stream->fd) != 1) {
        fail(stream, KILN_REDIS_TLS_ERR_SETUP, 0, "out of memory");
        goto failed;
    }
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    X509_VERIFY_PARAM *parameters = SSL_get0_param(stream->ssl);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(parameters, host);
    } else {
        SSL_set_tlsext_host_name(stream->ssl, host);
        SSL_set1_host(stream->ssl, host);
    }
    for (;;) {
        ERR_clear_error();
        int done = SSL_connect(stream->ssl);
        if (done == 1) break;
        int code = SSL_get_error(stream->ssl, done);
        if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
            int ready = wait_for(stream->fd, code == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, (int)(deadline - now_ms()));
            if (ready == 1) continue;
            fail(stream, KILN_REDIS_TLS_ERR_HANDSHAKE, ETIMEDOUT,
                 "TLS handshake timed out (the server may not speak TLS on this port)");
            goto failed;
        }
        long verified = SSL_get_verify_result(stream->ssl);
        if (verified != X509_V_OK) {
            fail(stream, KILN_REDIS_TLS_ERR_VERIFY, 0, "certificate verify failed: %s (CA file %s, expected %s %s)",
                 X509_verify_cert_error_string(verified), ca_file == NULL ? "(the system's)" : ca_file, is_ip ? "IP address" : "host name", host);
            goto failed;
        }
        int saved = errno;
        if (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            fail(stream, KILN_REDIS_TLS_ERR_HANDSHAKE, saved, "TLS handshake: %s",
                 done == 0 || saved == 0 ? "the server closed the connection (does it speak TLS on this port?)" : strerror(saved));
        } else {
            fail(stream, KILN_REDIS_TLS_ERR_HANDSHAKE, 0, "TLS handshake: %s",
                 openssl_reason(reason, sizeof reason, "failed"));
        }
        goto failed;
    }
    *status = KILN_REDIS_TLS_OK;
    return stream;

failed:
    *status = stream->status;
    snprintf(error, error_size, "%s", stream->error);
    kiln_redis_tls_free(stream);
    return NULL;
}

void kiln_redis_tls_free(kiln_redis_tls *stream) {
    if (stream == NULL) return;
    if (stream->ssl != NULL) SSL_free(stream->ssl);  /* no close_notify: the socket may be broken; closing is enough */
    if (stream->context != NULL) SSL_CTX_free(stream->context);
    if (stream->fd >= 0) close(stream->fd);
    if (stream->reader != NULL) redisReaderFree(stream->reader);
    free(stream->out);
    free(stream);
}

int kiln_redis_tls_fd(const kiln_redis_tls *stream) { return stream->fd; }
kiln_redis_tls_status kiln_redis_tls_status_of(const kiln_redis_tls *stream) { return stream->status; }
const char *kiln_redis_tls_error(const kiln_redis_tls *stream) { return stream->error; }
int kiln_redis_tls_errno(const kiln_redis_tls *stream) { return stream->saved_errno; }

kiln_redis_tls_status kiln_redis_tls_append_formatted(kiln_redis_tls *stream, const char *bytes, size_t length) {
    if (stream->out_sent == stream->out_length) {
        stream->out_sent = 0;
        stream->out_length = 0;
    }
    if (stream->out_length + length > stream->out_capacity) {
        size_t capacity = stream->out_capacity < 4096 ? 4096 : stream->out_capacity;
        while (capacity < stream->out_length + length) capacity *= 2;
        char *grown = realloc(stream->out, capacity);
        if (grown == NULL) return fail(stream, KILN_REDIS_TLS_ERR_SETUP, ENOMEM, "out of memory");
        stream->out = grown;
        stream->out_capacity = capacity;
    }
    memcpy(stream->out + stream->out_length, bytes, length);
    stream->out_length += length;
    return KILN_REDIS_TLS_OK;
}

kiln_redis_tls_status kiln_redis_tls_append_argv(kiln_redis_tls *stream, int argc, const char **argv, const size_t *argvlen) {
    char *command = NULL;
    int length = redisFormatCommandArgv(&command, argc, argv, argvlen);
    if (length < 0 || command == NULL) return fail(stream, KILN_REDIS_TLS_ERR_SETUP, ENOMEM, "out of memory");
    kiln_redis_tls_status status = kiln_redis_tls_append_formatted(stream, command, (size_t)length);
    redisFreeCommand(command);
    return status;
}

/* The error of a failed SSL_read/SSL_write whose SSL_get_error is `code`. */
static kiln_redis_tls_status io_failure(kiln_redis_tls *stream, int code, int result, const char *what) {
    int saved = errno;
    char reason[200];
    if (code == SSL_ERROR_ZERO_RETURN) {
        return fail(stream, KILN_REDIS_TLS_ERR_EOF, 0, "Server closed the connection");
    }
    if (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (result == 0 || saved == 0) return fail(stream, KILN_REDIS_TLS_ERR_EOF, 0, "Server closed the connection");
        return fail(stream, KILN_REDIS_TLS_ERR_IO, saved, "%s", strerror(saved));
    }
    return fail(stream, KILN_REDIS_TLS_ERR_IO, 0, "TLS %s: %s", what, openssl_reason(reason, sizeof reason, "failed"));
}

kiln_redis_tls_status kiln_redis_tls_flush(kiln_redis_tls *stream) {
    while (stream->out_sent < stream->out_length) {
        ERR_clear_error();
        size_t remaining = stream->out_length - stream->out_sent;
        int chunk = remaining > (1 << 30) ? (1 << 30) : (int)remaining;
        int written = SSL_write(stream->ssl, stream->out + stream->out_sent, chunk);
        if (written > 0) {
            stream->out_sent += (size_t)written;
            continue;
        }
        int code = SSL_get_error(stream->ssl, written);
        if (code == SSL_ERROR_WANT_WRITE || code == SSL_ERROR_WANT_READ) {
            int ready = wait_for(stream->fd, code == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, stream->timeout_ms);
            if (ready == 1) continue;
            return fail(stream, KILN_REDIS_TLS_ERR_TIMEOUT, ETIMEDOUT, "Resource temporarily unavailable (write timed out)");
        }
        return io_failure(stream, code, written, "write");
    }
    stream->out_sent = 0;
    stream->out_length = 0;
    return KILN_REDIS_TLS_OK;
}

/* Reads everything the socket holds into the reader. `wait`: first wait (up to the timeout) until something
 * arrives. */
static kiln_redis_tls_status fill(kiln_redis_tls *stream, int wait) {
    char buffer[16384];
    int received = 0;
    for (;;) {
        ERR_clear_error();
        int count = SSL_read(stream->ssl, buffer, sizeof buffer);
        if (count > 0) {
            if (redisReaderFeed(stream->reader, buffer, (size_t)count) != REDIS_OK) {
                return fail(stream, KILN_REDIS_TLS_ERR_PROTOCOL, 0, "%s", stream->reader->errstr);
            }
            received = 1;
            continue;
        }
        int code = SSL_get_error(stream->ssl, count);
        if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
            if (received || !wait) return KILN_REDIS_TLS_OK;
            int ready = wait_for(stream->fd, code == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, stream->timeout_ms);
            if (ready == 1) continue;
            return fail(stream, KILN_REDIS_TLS_ERR_TIMEOUT, ETIMEDOUT, "Resource temporarily unavailable (read timed out)");
        }
        return io_failure(stream, code, count, "read");
    }
}

static kiln_redis_tls_status next_reply(kiln_redis_tls *stream, void **reply) {
    if (redisReaderGetReply(stream->reader, reply) != REDIS_OK) {
        return fail(stream, KILN_REDIS_TLS_ERR_PROTOCOL, 0, "%s", stream->reader->errstr);
    }
    return KILN_REDIS_TLS_OK;
}

kiln_redis_tls_status kiln_redis_tls_get_reply(kiln_redis_tls *stream, void **reply) {
    *reply = NULL;
    kiln_redis_tls_status status = kiln_redis_tls_flush(stream);
    if (status != KILN_REDIS_TLS_OK) return status;
    for (;;) {
        status = next_reply(stream, reply);
        if (status != KILN_REDIS_TLS_OK || *reply != NULL) return status;
        status = fill(stream, 1);
        if (status != KILN_REDIS_TLS_OK) return status;
    }
}

kiln_redis_tls_status kiln_redis_tls_read_available(kiln_redis_tls *stream, void **reply) {
    *reply = NULL;
    kiln_redis_tls_status status = next_reply(stream, reply);
    if (status != KILN_REDIS_TLS_OK || *reply != NULL) return status;
    status = fill(stream, 0);
    if (status != KILN_REDIS_TLS_OK) return status;
    return next_reply(stream, reply);
}

kiln_redis_tls_status kiln_redis_tls_read_raw(kiln_redis_tls *stream, char *buffer, size_t size, size_t *received) {
    *received = 0;
    kiln_redis_tls_status status = kiln_redis_tls_flush(stream);
    if (status != KILN_REDIS_TLS_OK) return status;
    int chunk = size > (1 << 30) ? (1 << 30) : (int)size;
    for (;;) {
        ERR_clear_error();
        int count = SSL_read(stream->ssl, buffer, chunk);
        if (count > 0) {
            *received = (size_t)count;
            return KILN_REDIS_TLS_OK;
        }
        int code = SSL_get_error(stream->ssl, count);
        if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
            int ready = wait_for(stream->fd, code == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, stream->timeout_ms);
            if (ready == 1) continue;
            return fail(stream, KILN_REDIS_TLS_ERR_TIMEOUT, ETIMEDOUT, "Resource temporarily unavailable (read timed out)");
        }
        return io_failure(stream, code, count, "read");
    }
}
