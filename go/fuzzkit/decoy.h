/* The destructor of the kit's decoys (decoy.go), in C: it also runs where Go
 * code cannot be entered safely, in the thread-exit cleanup of a goroutine's
 * OS thread. */
#ifndef FUZZKIT_DECOY_H
#define FUZZKIT_DECOY_H

#include <stdint.h>

/* A decoy's object: its destructor's record, in C memory the kit frees. */
typedef struct {
	uint64_t runs;   /* destructor runs */
	uint64_t ran_on; /* threadguard's ID of the thread of the last run */
} fuzzkit_decoy;

/* The decoys' tg_destructor: counts the run and the thread it ran on; frees nothing. */
void fuzzkit_decoy_destroy(void *object);

uint64_t fuzzkit_decoy_runs(const fuzzkit_decoy *decoy);
/* Runs of fuzzkit_decoy_destroy in this process. */
uint64_t fuzzkit_decoy_runs_total(void);
uint64_t fuzzkit_decoy_ran_on(const fuzzkit_decoy *decoy);

#endif
