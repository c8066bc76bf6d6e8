/* C side of the package: the borrow calls that return their status with its
 * last-error message (tgo_call, tgo_with), and the callbacks. Every call from
 * C into Go enters through an exported Go function with a cgo.Handle,
 * whichever thread it arrives on: tgoInvoke for borrows and Callbacks,
 * tgoRunnerWork and tgoRunnerFail for runner jobs. */
#define _GNU_SOURCE
#include "shim.h"
#include "_cgo_export.h"

#include <pthread.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

static void tgo_borrow(void *object, void *context) {
	tgoInvoke((uintptr_t)context, object);
}

char *tgo_last_error(void) {
	size_t len = tg_last_error(NULL, 0) + 1;
	char *message = malloc(len);
	if (message != NULL) {
		tg_last_error(message, len);
	}
	return message;
}

tgo_result tgo_with(tg_handle h, uint32_t type_tag, uintptr_t ctx) {
	return tgo_call(h, type_tag, tgo_borrow, (void *)ctx);
}

void tgo_callback(void *arg, void *context) {
	tgoInvoke(*(const uintptr_t *)context, arg);
}

void tgo_run_destructor(tg_destructor destroy, void *object) {
	if (destroy != NULL) {
		destroy(object);
	}
}

void tgo_destroy_go(void *object) {
	tgoDestroy(object);
}

int tgo_is_main_thread(void) {
#if defined(__linux__)
	return syscall(SYS_gettid) == getpid();
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__)
	return pthread_main_np();
#else
	return 0;
#endif
}

static void tgo_runner_work(void *context, void **out_result) {
	(void)out_result; /* Go results travel in the job, not through C */
	tgoRunnerWork((uintptr_t)context);
}

static void tgo_runner_done(void *context, tg_status status, void *result) {
	(void)result;
	/* After TG_OK the work has already reported and released the job. */
	if (status != TG_OK) {
		tgoRunnerFail((uintptr_t)context, status);
	}
}

tg_status tgo_runner_post(tg_handle runner, uintptr_t job) {
	return tg_runner_post(runner, tgo_runner_work, (void *)job, tgo_runner_done);
}
