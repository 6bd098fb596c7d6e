#define _POSIX_C_SOURCE 200809L
#include "kaa_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t kaa_posix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* -- the file store ---------------------------------------------------------------------- */

static int file_load(void *self, uint8_t *buf, size_t cap, size_t *len)
{
    kaa_posix_file *f = self;
    size_t total = 0;
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return errno == ENOENT ? KAA_ERR_NOT_FOUND : KAA_ERR_STORAGE;
    for (;;) {
        ssize_t n;
        if (total == cap) { /* one more byte would not fit: the record is too big */
            uint8_t extra;
            n = read(fd, &extra, 1);
            close(fd);
            return n == 0 ? (*len = total, KAA_OK) : KAA_ERR_NO_ROOM;
        }
        n = read(fd, buf + total, cap - total);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { close(fd); return KAA_ERR_STORAGE; }
        if (n == 0) break;
        total += (size_t)n;
    }
    close(fd);
    *len = total;
    return KAA_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Atomic: the new record is complete and on disk before it replaces the old one. */
static int file_save(void *self, const kaa_bytes *parts, size_t count)
{
    kaa_posix_file *f = self;
    char dir[512];
    char *slash;
    size_t i;
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600), dfd, bad = 0;
    if (fd < 0) return KAA_ERR_STORAGE;
    for (i = 0; i < count && !bad; i++) bad = write_all(fd, parts[i].data, parts[i].len);
    if (!bad) bad = fsync(fd);
    bad |= close(fd);
    if (!bad) bad = rename(f->tmp, f->path);
    if (bad) {
        unlink(f->tmp);
        return KAA_ERR_STORAGE;
    }
    /* the rename itself must survive a power cut */
    memcpy(dir, f->path, sizeof dir);
    slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    dfd = open(slash ? dir : ".", O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KAA_OK;
}

int kaa_posix_file_init(kaa_posix_file *file, const char *dir, const char *name, kaa_store_port *port)
{
    int n = snprintf(file->path, sizeof file->path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof file->path) return KAA_ERR_INVALID_ARGUMENT;
    snprintf(file->tmp, sizeof file->tmp, "%s.tmp", file->path);
    port->self = file;
    port->load = file_load;
    port->save = file_save;
    return KAA_OK;
}

/* -- the transport ---------------------------------------------------------------------- */

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        struct pollfd p;
        uint64_t now = kaa_posix_now_ms();
        int r;
        if (now >= deadline) return KAA_ERR_TIMEOUT;
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return KAA_ERR_TRANSPORT;
        if (r == 0) return KAA_ERR_TIMEOUT;
        return KAA_OK;
    }
}

static int connect_to(const char *host, size_t host_len, uint16_t port, uint64_t deadline, int *out)
{
    char name[256], service[8];
    struct addrinfo hints, *res = NULL, *ai;
    int err = KAA_ERR_TRANSPORT;
    memcpy(name, host, host_len);
    name[host_len] = '\0';
    snprintf(service, sizeof service, "%u", (unsigned)port);
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, service, &hints, &res) != 0) return KAA_ERR_TRANSPORT;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol), so = 0;
        socklen_t sl = sizeof so;
        if (fd < 0) continue;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            close(fd);
            continue;
        }
        err = wait_fd(fd, POLLOUT, deadline);
        if (!err && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0 || so != 0)) err = KAA_ERR_TRANSPORT;
        if (!err) {
            *out = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

static int exchange(kaa_context *ctx, const kaa_step *step, uint32_t timeout_ms)
{
    uint64_t deadline = kaa_posix_now_ms() + timeout_ms;
    size_t sent = 0;
    int fd = -1, err = connect_to(step->host, step->host_len, step->port, deadline, &fd);
    if (err) return err;
    while (sent < step->request_len) {
        ssize_t n = send(fd, step->request + sent, step->request_len - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            err = wait_fd(fd, POLLOUT, deadline);
            if (err) break;
            continue;
        }
        if (n <= 0) { err = KAA_ERR_TRANSPORT; break; }
        sent += (size_t)n;
    }
    while (!err) {
        size_t room;
        uint8_t *p = kaa_rx_space(ctx, &room);
        ssize_t n = recv(fd, p, room, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            err = wait_fd(fd, POLLIN, deadline);
            continue;
        }
        if (n < 0) { err = KAA_ERR_TRANSPORT; break; }
        if (kaa_rx_commit(ctx, (size_t)n, kaa_posix_now_ms()) != KAA_ERR_NEED_DATA) {
            close(fd);
            return KAA_OK; /* answered, refused or closed: the core took it */
        }
    }
    close(fd);
    return err;
}

int kaa_posix_run(kaa_context *ctx, uint32_t exchange_timeout_ms, kaa_step *final)
{
    for (;;) {
        kaa_step step;
        int err = kaa_next(ctx, kaa_posix_now_ms(), &step);
        if (err) return err;
        if (step.kind == KAA_STEP_EXCHANGE) {
            err = exchange(ctx, &step, exchange_timeout_ms);
            if (err) kaa_exchange_failed(ctx, err, kaa_posix_now_ms());
        } else if (step.kind == KAA_STEP_SLEEP) {
            struct timespec ts;
            ts.tv_sec = step.sleep_ms / 1000;
            ts.tv_nsec = (long)(step.sleep_ms % 1000) * 1000000L;
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
        } else {
            *final = step;
            return KAA_OK;
        }
    }
}
