/* affine: a small thread-affine native library, for threadguard's Go tests,
 * examples and demo.
 *
 * An affine object is a counter whose value does not live in the object: it
 * lives in a table in the creating thread's thread-local storage, at the
 * object's slot, the way GL contexts, interpreter states and per-thread GC
 * heaps keep their state. Used from another thread, an object reads and
 * writes that thread's table at its slot instead: the wrong counter, possibly
 * another object's. Nothing crashes; the damage is silent. The library
 * counts such misuse so tests can show it happened, or that it did not. */
#ifndef AFFINE_H
#define AFFINE_H

#include <stdint.h>
#include "threadguard.h"

#define AFFINE_TAG 0x41464631u /* "AFF1" */

typedef struct affine affine;

/* Creates an object on the calling thread (value 0); NULL if out of memory. */
affine *affine_new(void);
/* Adds n to the object's value and returns the new value. */
int64_t affine_add(affine *a, int64_t n);
/* A tg_borrow_fn: adds *(int64_t *)context to the object. For checked calls
 * that stay in C (tg_with(h, AFFINE_TAG, affine_add_borrow, &n)). */
void affine_add_borrow(void *object, void *context);
/* The floors of a checked Handle.Call, for the benchmarks. affine_nop does
 * nothing: an empty cgo call. affine_call_unchecked has the C arguments and
 * result of the Go package's checked call (a handle by value, a type tag, a
 * borrow function and its context; a status and a message) and does the
 * same work with no lookup and no check: fn runs at once on the object whose
 * address is the handle's key word, and the status is TG_OK. */
typedef struct {
	tg_status status;
	char *message;
} affine_call_result;
void affine_nop(void);
affine_call_result affine_call_unchecked(tg_handle h, uint32_t type_tag, tg_borrow_fn fn, void *context);
/* Returns the object's value. */
int64_t affine_value(const affine *a);
/* Process-unique serial number of the object (from 1). */
uint64_t affine_serial(const affine *a);
/* threadguard ID of the thread that created the object. */
uint64_t affine_owner(const affine *a);
/* Destructor (a tg_destructor): frees the object's slot and the object,
 * and records the run (see affine_lookup). */
void affine_destroy(void *a);

typedef struct affine_stats {
	uint64_t created;             /* affine_new calls that succeeded */
	uint64_t destroyed;           /* affine_destroy runs */
	uint64_t destroyed_off_owner; /* ... of which on a thread other than the creator */
	uint64_t misuse;              /* add/value calls on a thread other than the creator */
} affine_stats;
void affine_get_stats(affine_stats *out);

typedef struct affine_record {
	uint64_t owner;        /* creating thread */
	uint64_t destroyed_on; /* thread of the last destructor run, 0 if none */
	uint32_t destroys;     /* destructor runs */
} affine_record;
/* Fills *out for the object with this serial; 0 if there is none, else 1. */
int affine_lookup(uint64_t serial, affine_record *out);

/* Creates an object and registers it with threadguard on the calling thread,
 * as a C library guarding its own objects would. */
tg_status affine_register_here(affine **obj, tg_handle *out);

/* Starts a pthread (one Go never saw), which creates and registers an
 * object, borrows it with tg_with(h, AFFINE_TAG, fn, context), destroys it
 * and exits. Inside fn, affine_thread_handle() gives the borrowed handle. */
typedef struct affine_cthread_result {
	uint64_t thread_id;       /* the pthread's threadguard ID */
	uint64_t serial;          /* the object's serial */
	tg_status register_status;
	tg_status with_status;
	tg_status destroy_status;
} affine_cthread_result;
int affine_borrow_on_new_thread(tg_borrow_fn fn, void *context, affine_cthread_result *out);
/* The handle that affine_borrow_on_new_thread registered on the calling
 * thread (thread-local), or the null handle. */
tg_handle affine_thread_handle(void);

#endif
