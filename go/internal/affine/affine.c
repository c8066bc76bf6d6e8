#include "affine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct affine {
	uint64_t serial;
	uint64_t owner;
	uint32_t slot; /* index into the creating thread's table */
};

/* The calling thread's table: values by slot, and a stack of free slots. */
static __thread int64_t *values;
static __thread uint32_t nvalues, capvalues;
static __thread uint32_t *free_slots;
static __thread uint32_t nfree, capfree;

static _Atomic uint64_t next_serial = 1;
static _Atomic uint64_t n_created, n_destroyed, n_destroyed_off_owner, n_misuse;

static pthread_mutex_t records_mu = PTHREAD_MUTEX_INITIALIZER;
static affine_record *records; /* by serial */
static uint64_t caprecords;

static int grow(void **p, uint32_t *cap, uint32_t need, size_t size) {
	if (need <= *cap) {
		return 1;
	}
	uint32_t c = *cap ? *cap : 16;
	while (c < need) {
		c *= 2;
	}
	void *q = realloc(*p, (size_t)c * size);
	if (q == NULL) {
		return 0;
	}
	*p = q;
	*cap = c;
	return 1;
}

/* Makes slot exist in the calling thread's table. From the wrong thread this
 * is where the harm starts: it is someone else's table. */
static int64_t *slot_ref(uint32_t slot) {
	if (slot >= nvalues) {
		if (!grow((void **)&values, &capvalues, slot + 1, sizeof *values)) {
			abort();
		}
		memset(values + nvalues, 0, (size_t)(slot + 1 - nvalues) * sizeof *values);
		nvalues = slot + 1;
	}
	return &values[slot];
}

static uint32_t slot_alloc(void) {
	uint32_t slot = nfree > 0 ? free_slots[--nfree] : nvalues;
	*slot_ref(slot) = 0;
	return slot;
}

static void slot_free(uint32_t slot) {
	if (!grow((void **)&free_slots, &capfree, nfree + 1, sizeof *free_slots)) {
		return; /* the slot leaks; harmless */
	}
	free_slots[nfree++] = slot;
}

static void note_misuse(const affine *a) {
	if (tg_current_thread_id() != a->owner) {
		atomic_fetch_add(&n_misuse, 1);
	}
}

static affine_record *record_at(uint64_t serial) {
	if (serial >= caprecords) {
		uint64_t c = caprecords ? caprecords : 1024;
		while (c <= serial) {
			c *= 2;
		}
		affine_record *r = realloc(records, c * sizeof *records);
		if (r == NULL) {
			abort();
		}
		memset(r + caprecords, 0, (c - caprecords) * sizeof *r);
		records = r;
		caprecords = c;
	}
	return &records[serial];
}

affine *affine_new(void) {
	affine *a = malloc(sizeof *a);
	if (a == NULL) {
		return NULL;
	}
	a->serial = atomic_fetch_add(&next_serial, 1);
	a->owner = tg_current_thread_id();
	a->slot = slot_alloc();
	pthread_mutex_lock(&records_mu);
	record_at(a->serial)->owner = a->owner;
	pthread_mutex_unlock(&records_mu);
	atomic_fetch_add(&n_created, 1);
	return a;
}

int64_t affine_add(affine *a, int64_t n) {
	note_misuse(a);
	int64_t *v = slot_ref(a->slot);
	*v += n;
	return *v;
}

void affine_add_borrow(void *object, void *context) {
	affine_add((affine *)object, *(const int64_t *)context);
}

void affine_nop(void) {}

affine_call_result affine_call_unchecked(tg_handle h, uint32_t type_tag, tg_borrow_fn fn, void *context) {
	(void)type_tag;
	fn((void *)(uintptr_t)h.key, context);
	return (affine_call_result){TG_OK, NULL};
}

int64_t affine_value(const affine *a) {
	note_misuse(a);
	return *slot_ref(a->slot);
}

uint64_t affine_serial(const affine *a) { return a->serial; }

uint64_t affine_owner(const affine *a) { return a->owner; }

void affine_destroy(void *p) {
	affine *a = p;
	uint64_t me = tg_current_thread_id();
	pthread_mutex_lock(&records_mu);
	affine_record *r = record_at(a->serial);
	r->destroys++;
	r->destroyed_on = me;
	pthread_mutex_unlock(&records_mu);
	atomic_fetch_add(&n_destroyed, 1);
	if (me != a->owner) {
		/* Moved (detached and adopted) or misused: the slot belongs to the
		 * owner's table, not this thread's, so it must not go into this
		 * thread's free list, where a new object here would share it with
		 * a live one. It is left unused. */
		atomic_fetch_add(&n_destroyed_off_owner, 1);
	} else {
		slot_free(a->slot);
	}
	free(a);
}

void affine_get_stats(affine_stats *out) {
	out->created = atomic_load(&n_created);
	out->destroyed = atomic_load(&n_destroyed);
	out->destroyed_off_owner = atomic_load(&n_destroyed_off_owner);
	out->misuse = atomic_load(&n_misuse);
}

int affine_lookup(uint64_t serial, affine_record *out) {
	int found = 0;
	pthread_mutex_lock(&records_mu);
	if (serial > 0 && serial < caprecords && records[serial].owner != 0) {
		*out = records[serial];
		found = 1;
	}
	pthread_mutex_unlock(&records_mu);
	return found;
}

tg_status affine_register_here(affine **obj, tg_handle *out) {
	affine *a = affine_new();
	tg_status st = tg_register(AFFINE_TAG, a, affine_destroy, out);
	if (st != TG_OK) {
		affine_destroy(a);
		a = NULL;
	}
	*obj = a;
	return st;
}

static __thread tg_handle thread_handle;

tg_handle affine_thread_handle(void) { return thread_handle; }

struct cthread_args {
	tg_borrow_fn fn;
	void *context;
	affine_cthread_result *out;
};

static void *cthread_main(void *p) {
	struct cthread_args *args = p;
	affine *a = affine_new();
	args->out->thread_id = tg_current_thread_id();
	args->out->serial = affine_serial(a);
	args->out->register_status = tg_register(AFFINE_TAG, a, affine_destroy, &thread_handle);
	if (args->out->register_status != TG_OK) {
		affine_destroy(a);
		return NULL;
	}
	args->out->with_status = tg_with(thread_handle, AFFINE_TAG, args->fn, args->context);
	args->out->destroy_status = tg_destroy(thread_handle);
	thread_handle = (tg_handle){0, 0};
	return NULL;
}

int affine_borrow_on_new_thread(tg_borrow_fn fn, void *context, affine_cthread_result *out) {
	struct cthread_args args = {fn, context, out};
	pthread_t th;
	int rc = pthread_create(&th, NULL, cthread_main, &args);
	if (rc != 0) {
		return rc;
	}
	return pthread_join(th, NULL);
}
