/* Private C helpers of the Go package docstore (defined in shim.c).
 *
 * Each nds_* call makes one docstore call and, on the same OS thread and in the same cgo
 * call, records which thread it ran on and the library's last-error message. A goroutine
 * may move to another thread between two cgo calls, never during one, so the message always
 * belongs to the call. */
#ifndef NIMDOCSTORE_GO_SHIM_H
#define NIMDOCSTORE_GO_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "docstore.h"

#define NDS_ERR_SIZE 256

typedef struct nds_where {
	uint64_t thread;          /* tg_current_thread_id() of the thread the call ran on */
	size_t err_len;           /* full length of the message (may exceed the buffer) */
	char err[NDS_ERR_SIZE];   /* docstore_last_error after a failed call */
} nds_where;

tg_status nds_new(tg_handle *out, nds_where *w);
tg_status nds_put(tg_handle s, const char *key, const char *value, nds_where *w);
tg_status nds_get(tg_handle s, const char *key, char *buf, size_t len, int64_t *out_len, nds_where *w);
tg_status nds_revisions(tg_handle s, const char *key, uint64_t *out, nds_where *w);
tg_status nds_count(tg_handle s, uint64_t *out, nds_where *w);
tg_status nds_serial(tg_handle s, uint64_t *out, nds_where *w);
tg_status nds_free(tg_handle s, nds_where *w);
tg_status nds_free_later(tg_handle s, nds_where *w);
void nds_collect(nds_where *w);

/* The destroy log: a docstore destroy observer that counts the destructor runs of each
 * store serial below NDS_LOG_SERIALS and records the owner and the thread they ran on. */
#define NDS_LOG_SERIALS 16384
void nds_log_start(void);
void nds_log_read(uint64_t serial, uint32_t *count, uint64_t *owner, uint64_t *ran_on);
uint64_t nds_log_total(void);     /* destructor runs seen */
uint64_t nds_log_overflow(void);  /* runs of serials beyond the log */

/* The calling thread's OS-level name (Linux: its comm), "" elsewhere. */
void nds_thread_name(char *buf, size_t len);

#endif
