/* C side of the package's callbacks: every call from C into Go enters
 * through tgoInvoke with a cgo.Handle, whichever thread it arrives on. */
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

tg_status tgo_with(tg_handle h, uint32_t type_tag, uintptr_t ctx) {
	return tg_with(h, type_tag, tgo_borrow, (void *)ctx);
}

void tgo_callback(void *arg, void *context) {
	tgoInvoke(*(const uintptr_t *)context, arg);
}

void tgo_run_destructor(tg_destructor destroy, void *object) {
	if (destroy != NULL) {
		destroy(object);
	}
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
