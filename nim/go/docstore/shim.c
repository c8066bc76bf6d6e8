/* C side of the Go package docstore; see shim.h. */
#define _GNU_SOURCE
#include "shim.h"

#include <string.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

static tg_status finish(tg_status st, nds_where *w)
{
	w->thread = tg_current_thread_id();
	w->err_len = 0;
	w->err[0] = '\0';
	if (st != TG_OK)
		w->err_len = docstore_last_error(w->err, sizeof w->err);
	return st;
}

tg_status nds_new(tg_handle *out, nds_where *w) { return finish(docstore_new(out), w); }

tg_status nds_put(tg_handle s, const char *key, const char *value, nds_where *w)
{
	return finish(docstore_put(s, key, value), w);
}

tg_status nds_get(tg_handle s, const char *key, char *buf, size_t len, int64_t *out_len, nds_where *w)
{
	return finish(docstore_get(s, key, buf, len, out_len), w);
}

tg_status nds_revisions(tg_handle s, const char *key, uint64_t *out, nds_where *w)
{
	return finish(docstore_revisions(s, key, out), w);
}

tg_status nds_count(tg_handle s, uint64_t *out, nds_where *w) { return finish(docstore_count(s, out), w); }

tg_status nds_serial(tg_handle s, uint64_t *out, nds_where *w) { return finish(docstore_serial(s, out), w); }

tg_status nds_free(tg_handle s, nds_where *w) { return finish(docstore_free(s), w); }

tg_status nds_free_later(tg_handle s, nds_where *w) { return finish(docstore_free_later(s), w); }

void nds_collect(nds_where *w)
{
	docstore_collect();
	finish(TG_OK, w);
}

/* ---- destroy log ---- */

static uint32_t log_count[NDS_LOG_SERIALS];
static uint64_t log_owner[NDS_LOG_SERIALS];
static uint64_t log_ran_on[NDS_LOG_SERIALS];
static uint64_t log_total, log_overflow;

static void observe(uint64_t serial, uint64_t owner, uint64_t ran_on, void *context)
{
	(void)context;
	if (serial < NDS_LOG_SERIALS) {
		__atomic_store_n(&log_owner[serial], owner, __ATOMIC_RELAXED);
		__atomic_store_n(&log_ran_on[serial], ran_on, __ATOMIC_RELAXED);
		__atomic_fetch_add(&log_count[serial], 1, __ATOMIC_RELEASE);
	} else {
		__atomic_fetch_add(&log_overflow, 1, __ATOMIC_RELAXED);
	}
	__atomic_fetch_add(&log_total, 1, __ATOMIC_RELEASE);
}

void nds_log_start(void) { docstore_set_destroy_observer(observe, NULL); }

void nds_log_read(uint64_t serial, uint32_t *count, uint64_t *owner, uint64_t *ran_on)
{
	*count = 0;
	*owner = 0;
	*ran_on = 0;
	if (serial >= NDS_LOG_SERIALS)
		return;
	*count = __atomic_load_n(&log_count[serial], __ATOMIC_ACQUIRE);
	*owner = __atomic_load_n(&log_owner[serial], __ATOMIC_RELAXED);
	*ran_on = __atomic_load_n(&log_ran_on[serial], __ATOMIC_RELAXED);
}

uint64_t nds_log_total(void) { return __atomic_load_n(&log_total, __ATOMIC_ACQUIRE); }

uint64_t nds_log_overflow(void) { return __atomic_load_n(&log_overflow, __ATOMIC_RELAXED); }

void nds_thread_name(char *buf, size_t len)
{
	if (len == 0)
		return;
	buf[0] = '\0';
#if defined(__linux__)
	char name[17] = {0};
	if (prctl(PR_GET_NAME, name, 0, 0, 0) == 0) {
		strncpy(buf, name, len - 1);
		buf[len - 1] = '\0';
	}
#endif
}
