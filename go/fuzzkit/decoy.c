#include "decoy.h"

/* From threadguard.h, declared here so that the package builds however the
 * threadguard package finds the library (its header need not be on this
 * package's include path). */
uint64_t tg_current_thread_id(void);

static uint64_t runs_total;

void fuzzkit_decoy_destroy(void *object) {
	fuzzkit_decoy *decoy = object;
	__atomic_add_fetch(&runs_total, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&decoy->ran_on, tg_current_thread_id(), __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&decoy->runs, 1, __ATOMIC_SEQ_CST);
}

uint64_t fuzzkit_decoy_runs(const fuzzkit_decoy *decoy) {
	return __atomic_load_n(&decoy->runs, __ATOMIC_SEQ_CST);
}

uint64_t fuzzkit_decoy_runs_total(void) {
	return __atomic_load_n(&runs_total, __ATOMIC_SEQ_CST);
}

uint64_t fuzzkit_decoy_ran_on(const fuzzkit_decoy *decoy) {
	return __atomic_load_n(&decoy->ran_on, __ATOMIC_SEQ_CST);
}
