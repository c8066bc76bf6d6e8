/* counters: the C API of the example library in tests/install/provider (export_thread_affine!). */
#ifndef COUNTERS_H
#define COUNTERS_H

#include <stdint.h>
#include "threadguard.h"

tg_status counter_new(int64_t start, tg_handle *out);
tg_status counter_add(tg_handle counter, int64_t n, int64_t *out);
tg_status counter_free(tg_handle counter);

#endif
