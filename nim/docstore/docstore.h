/*
 * docstore: a document store written in Nim (garbage-collected, thread-affine), with a C API
 * guarded by threadguard. Link with libdocstore.a, then libthreadguard.a -lpthread -ldl -lm.
 *
 * A store and its documents live on the Nim heap of the thread that created the store (its
 * owner) and are reached only through a tg_handle. Every function that takes a store checks
 * the handle first, as tg_with does, and in this order: TG_ERR_NULL_HANDLE,
 * TG_ERR_WRONG_THREAD (another thread, alive, owns it), TG_ERR_OWNER_EXITED, TG_ERR_STALE
 * (freed, or never issued), TG_ERR_WRONG_TYPE (a threadguard handle of something else),
 * TG_ERR_BUSY (a re-entrant call on a store that is being used further up this thread's
 * stack). Pointer arguments are checked next (TG_ERR_NULL_POINTER). A call refused for its
 * handle changes nothing; one refused for a pointer changes no store. docstore_last_error
 * gives the detail (which handle, which owner, which caller).
 *
 * Any thread may call any function; the library sets up the Nim runtime and the calling
 * thread's garbage collector itself (do not call NimMain). Stores are destroyed exactly once,
 * on their owner: docstore_free (owner); docstore_free_later (any thread; the owner runs it
 * right after its next successful call that reaches a store or creates one, i.e. any but
 * docstore_owner and the counters, at tg_run_pending, or when it exits); or when the owner
 * exits. The main thread should call tg_thread_cleanup before returning from main.
 *
 * Example:
 *
 *     tg_handle s;
 *     char buf[64];
 *     int64_t n;
 *     if (docstore_new(&s) != TG_OK) return 1;
 *     docstore_put(s, "greeting", "hello");
 *     docstore_get(s, "greeting", buf, sizeof buf, &n);   // TG_OK, buf = "hello", n = 5
 *     docstore_free(s);                                   // TG_OK
 *     tg_thread_cleanup();
 */
#ifndef DOCSTORE_H
#define DOCSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "threadguard.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The threadguard type tag of a store ("NDS1"); do not register other objects with it. */
#define DOCSTORE_TYPE_TAG 0x4e445331u

/* Creates an empty store owned by the calling thread and writes its handle to *out.
 * TG_OK; TG_ERR_NULL_POINTER if out is NULL; TG_ERR_SHUT_DOWN while the thread is cleaning up. */
tg_status docstore_new(tg_handle *out);

/* Sets key to value (both copied; a previous value becomes a revision). Owner only. */
tg_status docstore_put(tg_handle store, const char *key, const char *value);

/* Copies the value of key into buf with snprintf semantics (at most len - 1 bytes and a NUL;
 * buf may be NULL when len is 0) and writes its full length to *out_len, or -1 (and an empty
 * buf) if the key is absent. Owner only. */
tg_status docstore_get(tg_handle store, const char *key, char *buf, size_t len, int64_t *out_len);

/* Writes how many values key has had (0 if absent) to *out_count. Owner only. */
tg_status docstore_revisions(tg_handle store, const char *key, uint64_t *out_count);

/* Writes the number of keys to *out_count. Owner only. */
tg_status docstore_count(tg_handle store, uint64_t *out_count);

/* Writes the store's serial number (unique in the process, from 1) to *out_serial. Owner only. */
tg_status docstore_serial(tg_handle store, uint64_t *out_serial);

/* Writes the threadguard ID of the store's owner thread to *out_thread_id (tg_owner_of:
 * any thread may ask; only the owner also checks that the store still exists). */
tg_status docstore_owner(tg_handle store, uint64_t *out_thread_id);

/* Destroys the store now. Owner only; the type is checked first (TG_ERR_WRONG_TYPE leaves
 * another object alone); TG_ERR_STALE if it is already gone. */
tg_status docstore_free(tg_handle store);

/* Asks the owner to destroy the store; any thread (a finalizer, say). TG_OK when queued;
 * TG_ERR_OWNER_EXITED if the owner has exited (its exit destroyed the store). Called on the
 * owner, the handle is checked like docstore_free's (TG_ERR_STALE, TG_ERR_WRONG_TYPE); other
 * threads cannot see the owner's table, so a request for a store that is already gone is
 * dropped (and counted as stale) when the owner runs it. */
tg_status docstore_free_later(tg_handle store);

/* Copies the detail of this thread's most recent failed docstore call into buf (snprintf
 * semantics) and returns its full length; 0 if there is none. */
size_t docstore_last_error(char *buf, size_t len);

/* Runs a full garbage collection of the calling thread's Nim heap (a no-op under ARC). */
void docstore_collect(void);

/* Called on the destroying thread each time a store is destroyed, with its serial, its owner's
 * threadguard ID and the threadguard ID of the thread the destructor runs on (always the owner).
 * Set it (or NULL) while no store can be destroyed concurrently. */
typedef void (*docstore_destroy_observer)(uint64_t serial, uint64_t owner_thread,
                                          uint64_t destroyed_on_thread, void *context);
void docstore_set_destroy_observer(docstore_destroy_observer fn, void *context);

/* Stores created (registered) and destroyed so far, and destructors that ran anywhere but on
 * their owner (by threadguard ID or OS thread ID; 0 unless something is badly wrong). */
uint64_t docstore_created_count(void);
uint64_t docstore_destroyed_count(void);
uint64_t docstore_misplaced_count(void);

/* The Nim memory manager the library was built with: "refc", "orc", "arc" or "markAndSweep". */
const char *docstore_memory_manager(void);

#ifdef __cplusplus
}
#endif

#endif /* DOCSTORE_H */
