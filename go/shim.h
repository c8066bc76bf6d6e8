/* Private C helpers of the Go package (defined in shim.c). */
#ifndef THREADGUARD_GO_SHIM_H
#define THREADGUARD_GO_SHIM_H

#include <stdint.h>
#include <stdlib.h>
#include "threadguard.h"

/* tg_with with the package's borrow trampoline; ctx is a cgo.Handle. */
tg_status tgo_with(tg_handle h, uint32_t type_tag, uintptr_t ctx);

/* A tg_borrow_fn-shaped entry for Callback: context points at a uintptr_t
 * holding a cgo.Handle. */
void tgo_callback(void *arg, void *context);

/* Runs a destructor (may be NULL) on an object that never got registered. */
void tgo_run_destructor(tg_destructor destroy, void *object);

/* Whether the calling thread is the process's main thread. */
int tgo_is_main_thread(void);

#endif
