#define _GNU_SOURCE
#include "deleted.h"

#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TCLEX_LOG_SIZE 65536

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static tclex_record log_records[TCLEX_LOG_SIZE];
static uint64_t log_next = 1;

static int64_t thread_id(void) { return (int64_t)syscall(SYS_gettid); }

static void on_deleted(ClientData serial, Tcl_Interp *interp) {
	(void)interp;
	uint64_t s = (uint64_t)(uintptr_t)serial;
	pthread_mutex_lock(&log_lock);
	if (s < TCLEX_LOG_SIZE) {
		log_records[s].deleted_on = thread_id();
		log_records[s].deletes++;
	}
	pthread_mutex_unlock(&log_lock);
}

uint64_t tclex_watch(Tcl_Interp *interp) {
	pthread_mutex_lock(&log_lock);
	uint64_t s = log_next++;
	if (s < TCLEX_LOG_SIZE) {
		log_records[s].created_on = thread_id();
	}
	pthread_mutex_unlock(&log_lock);
	Tcl_CallWhenDeleted(interp, on_deleted, (ClientData)(uintptr_t)s);
	return s;
}

void tclex_lookup(uint64_t serial, tclex_record *out) {
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&log_lock);
	if (serial < TCLEX_LOG_SIZE) {
		*out = log_records[serial];
	}
	pthread_mutex_unlock(&log_lock);
}
