/*
 * tg_test.h - a tiny test harness for the threadguard C consumer tests.
 *
 * Every test program includes this header once (it is header-only: all
 * functions are static inline).  It provides:
 *
 *   - CHECK* macros that count passes and failures (thread-safe: the
 *     counters are protected by a pthread mutex, because C99 has no atomics)
 *     and print a diagnostic for each failure;
 *   - tgt_finish(), which prints the final line "N passed, M failed" and
 *     returns the process exit status (non-zero on any failure);
 *   - tracked objects (tgt_obj): heap objects whose destructor counts its
 *     runs and records on which thread it ran, so that a leak, a double
 *     destruction or a destructor on the wrong thread fails a test;
 *   - workers (tgt_worker): pthreads that run submitted jobs synchronously
 *     and otherwise sit idle without calling into the library;
 *   - a stats snapshot/delta checker over all 16 tg_stats fields.
 *
 * The code is C99 and also compiles as C++17 (no designated initializers,
 * no compound literals, explicit casts from void *).
 */
#ifndef TG_TEST_H
#define TG_TEST_H

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threadguard.h"

/* ------------------------------------------------------------------ */
/* Pass/fail accounting                                                */
/* ------------------------------------------------------------------ */

#define TGT_MAX_REPORTED_FAILURES 200

static pthread_mutex_t tgt_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long tgt_passed;
static unsigned long tgt_failed;

static inline int tgt_record(int ok, const char *file, int line, const char *expr, const char *detail)
{
    pthread_mutex_lock(&tgt_lock);
    if (ok) {
        tgt_passed++;
    } else {
        tgt_failed++;
        if (tgt_failed <= TGT_MAX_REPORTED_FAILURES) {
            fprintf(stderr, "FAIL %s:%d: %s%s%s\n", file, line, expr, detail ? " -- " : "",
                    detail ? detail : "");
        } else if (tgt_failed == TGT_MAX_REPORTED_FAILURES + 1) {
            fprintf(stderr, "(further failure messages suppressed)\n");
        }
        fflush(stderr);
    }
    pthread_mutex_unlock(&tgt_lock);
    return ok;
}

static inline const char *tgt_name(tg_status s)
{
    const char *n = tg_status_name(s);
    return n ? n : "(null)";
}

static inline int tgt_check_status(tg_status got, tg_status want, const char *file, int line, const char *expr)
{
    char detail[160];
    if (got == want)
        return tgt_record(1, file, line, expr, NULL);
    snprintf(detail, sizeof detail, "returned %s (%d), expected %s (%d)", tgt_name(got), (int)got,
             tgt_name(want), (int)want);
    return tgt_record(0, file, line, expr, detail);
}

/* A set of status codes, as a bit mask (codes 0..31). */
#define TGT_BIT(code) (1u << (unsigned)(code))

static inline int tgt_check_status_in(tg_status got, unsigned mask, const char *file, int line, const char *expr)
{
    char detail[400];
    size_t used;
    int code;
    if (got >= 0 && got < 32 && (mask & TGT_BIT(got)))
        return tgt_record(1, file, line, expr, NULL);
    used = (size_t)snprintf(detail, sizeof detail, "returned %s (%d), expected one of:", tgt_name(got), (int)got);
    for (code = 0; code < 32 && used < sizeof detail; code++) {
        if (mask & TGT_BIT(code))
            used += (size_t)snprintf(detail + used, sizeof detail - used, " %s", tgt_name(code));
    }
    return tgt_record(0, file, line, expr, detail);
}

static inline int tgt_check_u64(uint64_t got, uint64_t want, const char *file, int line, const char *expr)
{
    char detail[120];
    if (got == want)
        return tgt_record(1, file, line, expr, NULL);
    snprintf(detail, sizeof detail, "got %" PRIu64 ", expected %" PRIu64, got, want);
    return tgt_record(0, file, line, expr, detail);
}

static inline int tgt_check_str(const char *got, const char *want, const char *file, int line, const char *expr)
{
    char detail[600];
    if (got && want && strcmp(got, want) == 0)
        return tgt_record(1, file, line, expr, NULL);
    snprintf(detail, sizeof detail, "got \"%.280s\", expected \"%.280s\"", got ? got : "(null)",
             want ? want : "(null)");
    return tgt_record(0, file, line, expr, detail);
}

/* Each macro evaluates its arguments exactly once and yields 1 on pass, 0 on failure. */
#define CHECK(cond) tgt_record(!!(cond), __FILE__, __LINE__, #cond, NULL)
#define CHECK_MSG(cond, msg) tgt_record(!!(cond), __FILE__, __LINE__, #cond, (msg))
#define CHECK_STATUS(expr, want) tgt_check_status((expr), (want), __FILE__, __LINE__, #expr)
#define CHECK_STATUS_IN(expr, mask) tgt_check_status_in((expr), (mask), __FILE__, __LINE__, #expr)
#define CHECK_U64(got, want) tgt_check_u64((uint64_t)(got), (uint64_t)(want), __FILE__, __LINE__, #got)
#define CHECK_STR(got, want) tgt_check_str((got), (want), __FILE__, __LINE__, #got)

static inline void tgt_section(const char *name)
{
    pthread_mutex_lock(&tgt_lock);
    printf("-- %s\n", name);
    fflush(stdout);
    pthread_mutex_unlock(&tgt_lock);
}

static inline unsigned long tgt_failures(void)
{
    unsigned long f;
    pthread_mutex_lock(&tgt_lock);
    f = tgt_failed;
    pthread_mutex_unlock(&tgt_lock);
    return f;
}

/* Prints the final summary line and returns the exit status for main(). */
static inline int tgt_finish(void)
{
    unsigned long p, f;
    pthread_mutex_lock(&tgt_lock);
    p = tgt_passed;
    f = tgt_failed;
    pthread_mutex_unlock(&tgt_lock);
    fflush(stderr);
    printf("%lu passed, %lu failed\n", p, f);
    fflush(stdout);
    return f ? 1 : 0;
}

/*
 * For child processes that must die of SIGABRT (the ABORT policy, a callback that throws):
 * when the library is built for `make coverage` and linked statically, writes the process's
 * coverage profile when it aborts (a process otherwise writes it only when it exits), so the
 * code that led to the abort is counted. The abort goes ahead as before: the handler returns,
 * and abort() then ends the process with SIGABRT. Without the instrumentation runtime (every
 * other build, and the shared library, which does not export it) the weak symbol is NULL and
 * nothing is installed.
 */
#ifdef __cplusplus
extern "C" int __llvm_profile_write_file(void) __attribute__((weak));
#else
extern int __llvm_profile_write_file(void) __attribute__((weak));
#endif

static inline void tgt_write_profile(int sig)
{
    (void)sig;
    __llvm_profile_write_file();
}

static inline void tgt_record_coverage_at_abort(void)
{
    if (__llvm_profile_write_file)
        signal(SIGABRT, tgt_write_profile);
}

/* ------------------------------------------------------------------ */
/* Small utilities                                                     */
/* ------------------------------------------------------------------ */

static inline void tgt_sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static inline tg_handle tgt_handle(uint64_t owner, uint64_t key)
{
    tg_handle h;
    h.owner = owner;
    h.key = key;
    return h;
}

static inline int tgt_same_handle(tg_handle a, tg_handle b)
{
    return a.owner == b.owner && a.key == b.key;
}

/* xorshift64* pseudo-random generator; deterministic per seed. */
static inline uint64_t tgt_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

/* Seed from TG_TEST_SEED (decimal) if set, else a fixed default. */
static inline uint64_t tgt_seed(void)
{
    const char *s = getenv("TG_TEST_SEED");
    uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);
    if (s && *s)
        seed = (uint64_t)strtoull(s, NULL, 10);
    if (seed == 0)
        seed = 1;
    return seed;
}

/* Iteration count for stress loops: TG_TEST_ITERATIONS if set, else dflt. */
static inline long tgt_iterations(long dflt)
{
    const char *s = getenv("TG_TEST_ITERATIONS");
    long n;
    if (!s || !*s)
        return dflt;
    n = strtol(s, NULL, 10);
    return n > 0 ? n : dflt;
}

/*
 * Does msg contain the decimal number n as a whole token (not as part of a
 * longer run of digits)?
 */
static inline int tgt_contains_number(const char *msg, uint64_t n)
{
    char num[32];
    size_t len;
    const char *p;
    snprintf(num, sizeof num, "%" PRIu64, n);
    len = strlen(num);
    for (p = strstr(msg, num); p; p = strstr(p + 1, num)) {
        int digit_before = p > msg && p[-1] >= '0' && p[-1] <= '9';
        int digit_after = p[len] >= '0' && p[len] <= '9';
        if (!digit_before && !digit_after)
            return 1;
    }
    return 0;
}

/* Copies the calling thread's last-error message into buf (always NUL-terminated). */
static inline size_t tgt_last_error(char *buf, size_t len)
{
    size_t n;
    if (len == 0)
        return 0;
    buf[0] = '\0';
    n = tg_last_error(buf, len);
    buf[len - 1] = '\0';
    return n;
}

/* ------------------------------------------------------------------ */
/* Tracked objects                                                     */
/* ------------------------------------------------------------------ */

#define TGT_MAGIC 0x74677467u /* "tgtg" */
#define TGT_DEAD 0xdeaddeadu
#define TGT_MAX_CHILDREN 4

/* Type tags used by the tests (0 is invalid by contract). */
#define TAG_A 0x0000a11au
#define TAG_B 0x0000b22bu

typedef struct tgt_obj {
    unsigned magic;
    int id;
    uint32_t tag;
    pthread_t creator;    /* pthread that created (and must own) the object */
    uint64_t creator_tid; /* tg_current_thread_id() on that thread */
    tg_handle handle;     /* filled in by tgt_obj_register */

    /* Everything below is protected by tgt_obj_lock. */
    int dtor_runs;
    int dtor_wrong_pthread;
    int dtor_wrong_tid;
    int borrows;
    int borrow_wrong_thread;

    /* Optional destructor behaviour: destroy children with tg_destroy. */
    int nchildren;
    tg_handle children[TGT_MAX_CHILDREN];
    tg_status child_status[TGT_MAX_CHILDREN];

    /* Optional destructor behaviour: register another object with tg_register. */
    struct tgt_obj *register_in_dtor;
    tg_status register_in_dtor_status;

    /* Optional destructor behaviour: call tg_destroy on its own handle. */
    int destroy_self_in_dtor;
    tg_status destroy_self_status;
} tgt_obj;

static pthread_mutex_t tgt_obj_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long tgt_dtor_total;     /* all destructor runs */
static unsigned long tgt_dtor_bad;       /* runs on a wrong thread or a bad object */
static unsigned long tgt_borrow_total;   /* all borrow callback runs */
static unsigned long tgt_borrow_bad;     /* borrows on a wrong thread or a bad object */

static inline tgt_obj *tgt_obj_new(int id, uint32_t tag)
{
    tgt_obj *o = (tgt_obj *)calloc(1, sizeof *o);
    if (!o) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    o->magic = TGT_MAGIC;
    o->id = id;
    o->tag = tag;
    o->creator = pthread_self();
    o->creator_tid = tg_current_thread_id();
    return o;
}

/* Frees a tracked object once the test no longer needs it. */
static inline void tgt_obj_free(tgt_obj *o)
{
    if (!o)
        return;
    o->magic = TGT_DEAD;
    free(o);
}

static inline void tgt_obj_dtor(void *p)
{
    tgt_obj *o = (tgt_obj *)p;
    int i, bad = 0;
    int wrong_pthread, wrong_tid;
    if (!o || o->magic != TGT_MAGIC) {
        tgt_record(0, __FILE__, __LINE__, "destructor called with a valid tracked object", NULL);
        pthread_mutex_lock(&tgt_obj_lock);
        tgt_dtor_total++;
        tgt_dtor_bad++;
        pthread_mutex_unlock(&tgt_obj_lock);
        return;
    }
    wrong_pthread = !pthread_equal(pthread_self(), o->creator);
    wrong_tid = tg_current_thread_id() != o->creator_tid;
    pthread_mutex_lock(&tgt_obj_lock);
    o->dtor_runs++;
    tgt_dtor_total++;
    if (wrong_pthread) {
        o->dtor_wrong_pthread++;
        bad = 1;
    }
    if (wrong_tid) {
        o->dtor_wrong_tid++;
        bad = 1;
    }
    if (o->dtor_runs > 1)
        bad = 1;
    if (bad)
        tgt_dtor_bad++;
    pthread_mutex_unlock(&tgt_obj_lock);
    if (wrong_pthread)
        tgt_record(0, __FILE__, __LINE__, "destructor runs on the owner pthread", NULL);
    if (wrong_tid)
        tgt_record(0, __FILE__, __LINE__, "tg_current_thread_id() in destructor equals the owner id", NULL);

    for (i = 0; i < o->nchildren; i++)
        o->child_status[i] = tg_destroy(o->children[i]);
    if (o->register_in_dtor) {
        tgt_obj *n = o->register_in_dtor;
        o->register_in_dtor_status = tg_register(n->tag, n, tgt_obj_dtor, &n->handle);
    }
    if (o->destroy_self_in_dtor)
        o->destroy_self_status = tg_destroy(o->handle);
}

static inline tg_status tgt_obj_register(tgt_obj *o)
{
    return tg_register(o->tag, o, tgt_obj_dtor, &o->handle);
}

/* Creates and registers a tracked object on the calling thread; checks TG_OK. */
static inline tgt_obj *tgt_obj_make(int id, uint32_t tag)
{
    tgt_obj *o = tgt_obj_new(id, tag);
    CHECK_STATUS(tgt_obj_register(o), TG_OK);
    return o;
}

static inline int tgt_obj_dtor_runs(tgt_obj *o)
{
    int n;
    pthread_mutex_lock(&tgt_obj_lock);
    n = o->dtor_runs;
    pthread_mutex_unlock(&tgt_obj_lock);
    return n;
}

static inline int tgt_obj_borrows(tgt_obj *o)
{
    int n;
    pthread_mutex_lock(&tgt_obj_lock);
    n = o->borrows;
    pthread_mutex_unlock(&tgt_obj_lock);
    return n;
}

/* Destroyed exactly once, on its owner thread. */
#define CHECK_DESTROYED_ONCE(o)                                                                    \
    do {                                                                                           \
        tgt_obj *tgt_o_ = (o);                                                                     \
        int tgt_runs_, tgt_wp_, tgt_wt_;                                                           \
        pthread_mutex_lock(&tgt_obj_lock);                                                         \
        tgt_runs_ = tgt_o_->dtor_runs;                                                             \
        tgt_wp_ = tgt_o_->dtor_wrong_pthread;                                                      \
        tgt_wt_ = tgt_o_->dtor_wrong_tid;                                                          \
        pthread_mutex_unlock(&tgt_obj_lock);                                                       \
        CHECK_U64(tgt_runs_, 1);                                                                   \
        CHECK_U64(tgt_wp_, 0);                                                                     \
        CHECK_U64(tgt_wt_, 0);                                                                     \
    } while (0)

#define CHECK_NOT_DESTROYED(o) CHECK_U64(tgt_obj_dtor_runs(o), 0)

/*
 * Borrow callback for tracked objects.  context is either NULL or the tgt_obj
 * the caller expects to receive (so a handle that resolves to the wrong object
 * fails).  Checks it runs on the owner thread.
 */
static inline void tgt_borrow_cb(void *object, void *context)
{
    tgt_obj *o = (tgt_obj *)object;
    int bad = 0;
    if (!o || o->magic != TGT_MAGIC || (context && context != object)) {
        tgt_record(0, __FILE__, __LINE__, "borrow callback receives the expected live object", NULL);
        pthread_mutex_lock(&tgt_obj_lock);
        tgt_borrow_total++;
        tgt_borrow_bad++;
        pthread_mutex_unlock(&tgt_obj_lock);
        return;
    }
    if (!pthread_equal(pthread_self(), o->creator) || tg_current_thread_id() != o->creator_tid) {
        tgt_record(0, __FILE__, __LINE__, "borrow callback runs on the owner thread", NULL);
        bad = 1;
    }
    pthread_mutex_lock(&tgt_obj_lock);
    o->borrows++;
    tgt_borrow_total++;
    if (bad) {
        o->borrow_wrong_thread++;
        tgt_borrow_bad++;
    }
    pthread_mutex_unlock(&tgt_obj_lock);
}

/* A borrow callback that must never run (used with handles that must be rejected). */
static unsigned long tgt_forbidden_calls;
static inline void tgt_forbidden_cb(void *object, void *context)
{
    (void)object;
    (void)context;
    pthread_mutex_lock(&tgt_obj_lock);
    tgt_forbidden_calls++;
    pthread_mutex_unlock(&tgt_obj_lock);
    tgt_record(0, __FILE__, __LINE__, "a rejected call never runs its callback", NULL);
}

static inline unsigned long tgt_read_counter(const unsigned long *c)
{
    unsigned long v;
    pthread_mutex_lock(&tgt_obj_lock);
    v = *c;
    pthread_mutex_unlock(&tgt_obj_lock);
    return v;
}

/* ------------------------------------------------------------------ */
/* Workers: threads that run submitted jobs one at a time              */
/* ------------------------------------------------------------------ */

typedef void (*tgt_job_fn)(void *arg);

typedef struct tgt_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tgt_job_fn job;
    void *arg;
    int has_job;
    int stop;
    int started;
    uint64_t tid;   /* tg_current_thread_id() of the worker */
    char name[64];  /* set with tg_set_thread_name if non-empty */
} tgt_worker;

static inline void *tgt_worker_main(void *p)
{
    tgt_worker *w = (tgt_worker *)p;
    uint64_t tid;
    if (w->name[0])
        CHECK_STATUS(tg_set_thread_name(w->name), TG_OK);
    tid = tg_current_thread_id();
    pthread_mutex_lock(&w->mu);
    w->tid = tid;
    w->started = 1;
    pthread_cond_broadcast(&w->cv);
    for (;;) {
        while (!w->has_job && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->has_job) {
            tgt_job_fn job = w->job;
            void *arg = w->arg;
            pthread_mutex_unlock(&w->mu);
            job(arg);
            pthread_mutex_lock(&w->mu);
            w->has_job = 0;
            pthread_cond_broadcast(&w->cv);
            continue;
        }
        break; /* stop requested and no job */
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Starts a worker; name may be NULL (then the thread is not named). */
static inline void tgt_worker_start(tgt_worker *w, const char *name)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (name)
        snprintf(w->name, sizeof w->name, "%s", name);
    if (pthread_create(&w->thread, NULL, tgt_worker_main, w) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        abort();
    }
    pthread_mutex_lock(&w->mu);
    while (!w->started)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* Runs job(arg) on the worker thread and waits for it to finish. */
static inline void tgt_worker_call(tgt_worker *w, tgt_job_fn job, void *arg)
{
    pthread_mutex_lock(&w->mu);
    while (w->has_job)
        pthread_cond_wait(&w->cv, &w->mu);
    w->job = job;
    w->arg = arg;
    w->has_job = 1;
    pthread_cond_broadcast(&w->cv);
    while (w->has_job)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* Asks the worker to exit and joins it (its thread-exit hooks have run on return). */
static inline void tgt_worker_stop(tgt_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/* ------------------------------------------------------------------ */
/* Stats snapshots and exact deltas                                    */
/* ------------------------------------------------------------------ */

#define TGT_STATS_FIELDS(X)                                                                        \
    X(live)                                                                                        \
    X(created)                                                                                     \
    X(destroyed)                                                                                   \
    X(deferred_pending)                                                                            \
    X(violations)                                                                                  \
    X(violations_null_handle)                                                                      \
    X(violations_wrong_thread)                                                                     \
    X(violations_owner_exited)                                                                     \
    X(violations_stale)                                                                            \
    X(violations_wrong_type)                                                                       \
    X(violations_busy)                                                                             \
    X(violations_null_pointer)                                                                     \
    X(violations_invalid_argument)                                                                 \
    X(panics)                                                                                      \
    X(threads_live)                                                                                \
    X(threads_started)                                                                             \
    X(detached)

#define TGT_FIELD_ENUM(f) TGF_##f,
enum { TGT_STATS_FIELDS(TGT_FIELD_ENUM) TGF_COUNT };

#define TGT_FIELD_NAME(f) #f,
static const char *const tgt_stats_names[TGF_COUNT] = {TGT_STATS_FIELDS(TGT_FIELD_NAME)};

static inline uint64_t tgt_stat(const tg_stats *s, int field)
{
    switch (field) {
#define TGT_FIELD_CASE(f)                                                                          \
    case TGF_##f:                                                                                  \
        return s->f;
        TGT_STATS_FIELDS(TGT_FIELD_CASE)
#undef TGT_FIELD_CASE
    default:
        return 0;
    }
}

/* Expected change of each field between two snapshots; ignored fields are not compared. */
typedef struct tgt_delta {
    int64_t v[TGF_COUNT];
    unsigned char ignore[TGF_COUNT];
} tgt_delta;

static inline void tgt_delta_init(tgt_delta *d)
{
    memset(d, 0, sizeof *d);
}

/* Set an expected delta of one field. */
#define D_SET(d, field, n) ((d).v[TGF_##field] = (int64_t)(n))
/* Expect n more violations of one kind (and n more in the total). */
#define D_VIOL(d, kind, n)                                                                         \
    do {                                                                                           \
        (d).v[TGF_violations_##kind] += (int64_t)(n);                                              \
        (d).v[TGF_violations] += (int64_t)(n);                                                     \
    } while (0)
#define D_IGNORE(d, field) ((d).ignore[TGF_##field] = 1)
#define D_IGNORE_THREADS(d)                                                                        \
    do {                                                                                           \
        D_IGNORE(d, threads_live);                                                                 \
        D_IGNORE(d, threads_started);                                                              \
    } while (0)

static inline void tgt_stats_now(tg_stats *s, const char *file, int line)
{
    memset(s, 0, sizeof *s);
    tgt_check_status(tg_get_stats(s), TG_OK, file, line, "tg_get_stats(&snapshot)");
}
#define STATS_NOW(s) tgt_stats_now(&(s), __FILE__, __LINE__)

/* Compares before -> after against the expected delta; one failure per mismatching field. */
static inline int tgt_stats_expect(const tg_stats *before, const tg_stats *after, const tgt_delta *d,
                                   const char *file, int line, const char *label)
{
    int i, ok = 1, kind_ignored = 0;
    for (i = TGF_violations_null_handle; i <= TGF_violations_invalid_argument; i++)
        if (d->ignore[i])
            kind_ignored = 1;
    for (i = 0; i < TGF_COUNT; i++) {
        int64_t got;
        char detail[200];
        if (d->ignore[i] || (i == TGF_violations && kind_ignored))
            continue;
        got = (int64_t)(tgt_stat(after, i) - tgt_stat(before, i));
        if (got != d->v[i]) {
            snprintf(detail, sizeof detail, "stats.%s changed by %" PRId64 ", expected %" PRId64 " (%s)",
                     tgt_stats_names[i], got, d->v[i], label);
            tgt_record(0, file, line, "exact stats delta", detail);
            ok = 0;
        }
    }
    if (ok)
        tgt_record(1, file, line, label, NULL);
    return ok;
}

/* Takes a fresh snapshot into `after` and checks it against `before`. */
#define STATS_EXPECT(before, after, delta, label)                                                  \
    do {                                                                                           \
        STATS_NOW(after);                                                                          \
        tgt_stats_expect(&(before), &(after), &(delta), __FILE__, __LINE__, (label));              \
    } while (0)

/* Internal consistency of one snapshot: violations is the sum of the kinds, live = created - destroyed. */
static inline void tgt_stats_consistent(const tg_stats *s, const char *file, int line)
{
    uint64_t sum = s->violations_null_handle + s->violations_wrong_thread + s->violations_owner_exited +
                   s->violations_stale + s->violations_wrong_type + s->violations_busy +
                   s->violations_null_pointer + s->violations_invalid_argument;
    tgt_check_u64(s->violations, sum, file, line, "stats.violations == sum of per-kind counters");
    tgt_check_u64(s->live, s->created - s->destroyed, file, line, "stats.live == created - destroyed");
}
#define CHECK_STATS_CONSISTENT(s) tgt_stats_consistent(&(s), __FILE__, __LINE__)

/* End-of-program checks: nothing live, nothing queued, no panic, every destructor ran correctly. */
static inline void tgt_final_checks(void)
{
    tg_stats s;
    tgt_section("final: process-wide state");
    CHECK_STATUS(tg_thread_cleanup(), TG_OK);
    STATS_NOW(s);
    CHECK_STATS_CONSISTENT(s);
    CHECK_U64(s.live, 0);
    CHECK_U64(s.deferred_pending, 0);
    CHECK_U64(s.created, s.destroyed);
    CHECK_U64(s.panics, 0);
    CHECK_U64(s.threads_live, 1); /* only the main thread is left */
    CHECK_U64(tgt_read_counter(&tgt_dtor_bad), 0);
    CHECK_U64(tgt_read_counter(&tgt_borrow_bad), 0);
    CHECK_U64(tgt_read_counter(&tgt_forbidden_calls), 0);
}

#endif /* TG_TEST_H */
