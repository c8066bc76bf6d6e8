/* The deletion log: which OS thread created and deleted each interpreter,
 * and how many times Tcl deleted it (Tcl_CallWhenDeleted). */
#ifndef TCLEX_DELETED_H
#define TCLEX_DELETED_H

#include <stdint.h>
#include <tcl.h>

typedef struct {
	int64_t created_on; /* gettid() of the creating thread */
	int64_t deleted_on; /* gettid() of the deleting thread; 0 if not deleted */
	int64_t deletes;    /* deletions; 1 once deleted */
} tclex_record;

/* Logs interp's creation on the calling thread and watches its deletion;
 * returns its serial. */
uint64_t tclex_watch(Tcl_Interp *interp);

/* Copies the record of serial to *out (zeros for an unknown serial). */
void tclex_lookup(uint64_t serial, tclex_record *out);

#endif
