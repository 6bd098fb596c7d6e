/* A POSIX host for the SDK: blocking TCP sockets with timeouts, the monotonic clock, and
 * a file store with atomic replacement (write a temporary file, fsync, rename, fsync the
 * directory). The example program uses it; a device writes its own in a page. */
#ifndef KAA_POSIX_H
#define KAA_POSIX_H

#include "kaa/kaa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kaa_posix_file {
    char path[512];
    char tmp[520];
} kaa_posix_file;

/* A store port on the file dir/name (mode 0600). */
int kaa_posix_file_init(kaa_posix_file *file, const char *dir, const char *name,
                        kaa_store_port *port);
uint64_t kaa_posix_now_ms(void);
/* Runs the plan started with kaa_start to its end: *final is CONNECTED, REVOKED or FAILED. */
int kaa_posix_run(kaa_context *ctx, uint32_t exchange_timeout_ms, kaa_step *final);

#ifdef __cplusplus
}
#endif
#endif
