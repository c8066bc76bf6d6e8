/* Private C helpers of the Go package (defined in shim.c). */
#ifndef THREADGUARD_GO_SHIM_H
#define THREADGUARD_GO_SHIM_H

#include <stdint.h>
#include <stdlib.h>
#include "threadguard.h"

/* A status and, if it is not TG_OK, the calling thread's last-error message
 * read right after the failing call, on the thread that made it: the caller
 * need not be locked to its thread. The message is malloc'd for the caller to
 * free; NULL on success, or if it could not be allocated. */
typedef struct {
	tg_status status;
	char *message;
} tgo_result;

/* The calling thread's last-error message, malloc'd for the caller to free;
 * NULL if it could not be allocated. */
char *tgo_last_error(void);

/* tg_with, returning its status with its message. Inline, so that the C side
 * of the cgo call (compiled with the preamble that includes this header)
 * calls tg_with directly. */
static inline tgo_result tgo_call(tg_handle h, uint32_t type_tag, tg_borrow_fn fn, void *context) {
	tgo_result r = {tg_with(h, type_tag, fn, context), NULL};
	if (r.status != TG_OK) {
		r.message = tgo_last_error();
	}
	return r;
}

/* tgo_call with the package's borrow trampoline; ctx is a cgo.Handle. */
tgo_result tgo_with(tg_handle h, uint32_t type_tag, uintptr_t ctx);

/* A tg_borrow_fn-shaped entry for Callback: context points at a uintptr_t
 * holding a cgo.Handle. */
void tgo_callback(void *arg, void *context);

/* Runs a destructor (may be NULL) on an object that never got registered. */
void tgo_run_destructor(tg_destructor destroy, void *object);

/* The tg_destructor of objects with a Go destructor (NewRef): it calls the
 * one registered for the object pointer, through tgoDestroy. */
void tgo_destroy_go(void *object);

/* Whether the calling thread is the process's main thread. */
int tgo_is_main_thread(void);

/* tg_runner_post with the package's trampolines. job is a cgo.Handle of a Go
 * job, so C holds no Go pointer. The work enters Go on the runner
 * (tgoRunnerWork); a job the runner never ran enters Go there too, to be
 * failed (tgoRunnerFail). Every outcome travels to its waiter in Go. */
tg_status tgo_runner_post(tg_handle runner, uintptr_t job);

#endif
