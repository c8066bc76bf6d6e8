/*
 * test_docstore.c - the Nim docstore library, guarded by threadguard, driven from C threads.
 *
 * Checks, under whichever Nim memory manager the library was built with:
 *   - the owner thread creates, fills, reads back and frees stores (Nim ref objects holding
 *     strings and seqs on the owner's heap);
 *   - other threads get TG_ERR_WRONG_THREAD for every call on a store they do not own, also
 *     while the owner is busy allocating, and the owner's Nim heap is intact afterwards
 *     (every value reads back after a full collection);
 *   - docstore_free_later from another thread destroys the store on its owner;
 *   - a thread's exit destroys the stores it still owns, on that thread;
 *   - every store's destructor runs exactly once, on its owner (an observer counts each run
 *     and records the thread, and the library counts misplaced runs);
 *   - destructors may call back into the library.
 *
 * Prints "N passed, M failed" last and exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docstore.h"
#include "threadguard.h"

/* ------------------------------------------------------------------------------------- */
/* Pass/fail accounting                                                                   */
/* ------------------------------------------------------------------------------------- */

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long passed, failed;

static int record(int ok, int line, const char *expr, const char *detail)
{
    pthread_mutex_lock(&count_lock);
    if (ok) {
        passed++;
    } else {
        failed++;
        if (failed <= 50)
            fprintf(stderr, "FAIL test_docstore.c:%d: %s%s%s\n", line, expr, detail ? " -- " : "",
                    detail ? detail : "");
    }
    pthread_mutex_unlock(&count_lock);
    return ok;
}

static int check_status(tg_status got, tg_status want, int line, const char *expr)
{
    char detail[512];
    char message[320];
    if (got == want)
        return record(1, line, expr, NULL);
    docstore_last_error(message, sizeof message);
    snprintf(detail, sizeof detail, "returned %s, expected %s (last error: %s)", tg_status_name(got),
             tg_status_name(want), message);
    return record(0, line, expr, detail);
}

static int check_u64(uint64_t got, uint64_t want, int line, const char *expr)
{
    char detail[128];
    if (got == want)
        return record(1, line, expr, NULL);
    snprintf(detail, sizeof detail, "got %" PRIu64 ", expected %" PRIu64, got, want);
    return record(0, line, expr, detail);
}

#define CHECK(cond) record(!!(cond), __LINE__, #cond, NULL)
#define CHECK_STATUS(expr, want) check_status((expr), (want), __LINE__, #expr)
#define CHECK_U64(got, want) check_u64((uint64_t)(got), (uint64_t)(want), __LINE__, #got)

/* ------------------------------------------------------------------------------------- */
/* Destruction records: every destructor run, by store serial                             */
/* ------------------------------------------------------------------------------------- */

#define MAX_SERIAL 20000

struct destruction {
    unsigned runs;
    uint64_t owner;
    uint64_t ran_on;
};

static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER;
static struct destruction records[MAX_SERIAL + 1];
static unsigned long out_of_range_serials;

/* A destructor that calls back into the library: set by the re-entrancy test. */
static uint64_t callback_serial;
static tg_handle callback_sibling, callback_self;
static tg_status callback_sibling_status = -1, callback_self_status = -1;
/* A destructor that tries to create a store while its thread cleans up. */
static uint64_t cleanup_probe_serial;
static tg_status cleanup_probe_status = -1;

static void observe(uint64_t serial, uint64_t owner, uint64_t ran_on, void *context)
{
    (void)context;
    pthread_mutex_lock(&records_lock);
    if (serial == 0 || serial > MAX_SERIAL) {
        out_of_range_serials++;
    } else {
        records[serial].runs++;
        records[serial].owner = owner;
        records[serial].ran_on = ran_on;
    }
    pthread_mutex_unlock(&records_lock);
    if (serial != 0 && serial == callback_serial) {
        uint64_t n = 0;
        int64_t len = 0;
        callback_sibling_status = docstore_count(callback_sibling, &n);
        callback_self_status = docstore_get(callback_self, "k", NULL, 0, &len);
    }
    if (serial != 0 && serial == cleanup_probe_serial) {
        tg_handle late;
        cleanup_probe_status = docstore_new(&late);
    }
}

static struct destruction destruction_of(uint64_t serial)
{
    struct destruction d;
    memset(&d, 0, sizeof d);
    pthread_mutex_lock(&records_lock);
    if (serial > 0 && serial <= MAX_SERIAL)
        d = records[serial];
    pthread_mutex_unlock(&records_lock);
    return d;
}

static uint64_t serial_of(tg_handle store)
{
    uint64_t serial = 0;
    CHECK_STATUS(docstore_serial(store, &serial), TG_OK);
    return serial;
}

static tg_stats stats_now(void)
{
    tg_stats s;
    memset(&s, 0, sizeof s);
    tg_get_stats(&s);
    return s;
}

/* ------------------------------------------------------------------------------------- */
/* Workers: threads that run submitted jobs and otherwise wait, never calling the library  */
/* ------------------------------------------------------------------------------------- */

typedef void (*job_fn)(void *arg);

struct worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_fn job;
    void *arg;
    int has_job, quit;
    uint64_t id; /* the worker's threadguard ID */
};

static void *worker_main(void *p)
{
    struct worker *w = (struct worker *)p;
    pthread_mutex_lock(&w->lock);
    w->id = tg_current_thread_id();
    pthread_cond_broadcast(&w->cond);
    for (;;) {
        while (!w->has_job && !w->quit)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->has_job) {
            job_fn job = w->job;
            void *arg = w->arg;
            pthread_mutex_unlock(&w->lock);
            job(arg);
            pthread_mutex_lock(&w->lock);
            w->has_job = 0;
            pthread_cond_broadcast(&w->cond);
            continue;
        }
        break; /* quit, with no job left */
    }
    pthread_mutex_unlock(&w->lock);
    return NULL; /* the thread exits: threadguard destroys what it still owns, on it */
}

static void worker_start(struct worker *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(2);
    }
    pthread_mutex_lock(&w->lock);
    while (w->id == 0)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/* Submits a job without waiting for it. */
static void worker_submit(struct worker *w, job_fn job, void *arg)
{
    pthread_mutex_lock(&w->lock);
    while (w->has_job)
        pthread_cond_wait(&w->cond, &w->lock);
    w->job = job;
    w->arg = arg;
    w->has_job = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void worker_wait(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    while (w->has_job)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static void worker_run(struct worker *w, job_fn job, void *arg)
{
    worker_submit(w, job, arg);
    worker_wait(w);
}

/* Lets the worker's thread exit and joins it. */
static void worker_stop(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->quit = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

/* ------------------------------------------------------------------------------------- */
/* Store contents: deterministic keys and values, so any thread can verify them            */
/* ------------------------------------------------------------------------------------- */

#define KEYS 150

static void key_name(char *buf, size_t len, int i) { snprintf(buf, len, "key-%d", i); }

/* Values of varying length (up to ~300 bytes), distinct per store and key. */
static void value_for(char *buf, size_t len, uint64_t salt, int i)
{
    size_t n = (size_t)(((uint64_t)i * 37u + salt) % 300u) + 1u;
    size_t k;
    if (n >= len)
        n = len - 1;
    for (k = 0; k < n; k++)
        buf[k] = (char)('a' + (int)((salt + (uint64_t)i + k) % 26u));
    buf[n] = '\0';
}

/* Fills a store: every key twice (the second value stays), so each has two revisions. */
static int fill(tg_handle store, uint64_t salt)
{
    char key[32], value[320];
    int i, ok = 1;
    for (i = 0; i < KEYS; i++) {
        key_name(key, sizeof key, i);
        value_for(value, sizeof value, salt + 1000u, i);
        ok &= docstore_put(store, key, value) == TG_OK;
        value_for(value, sizeof value, salt, i);
        ok &= docstore_put(store, key, value) == TG_OK;
    }
    return ok;
}

/* Whether the store holds exactly what fill(salt) put there (run on the owner). */
static int verify(tg_handle store, uint64_t salt)
{
    char key[32], want[320], got[320];
    uint64_t count = 0, revisions = 0;
    int64_t len = 0;
    int i, ok = docstore_count(store, &count) == TG_OK && count == KEYS;
    for (i = 0; i < KEYS && ok; i++) {
        key_name(key, sizeof key, i);
        value_for(want, sizeof want, salt, i);
        ok &= docstore_get(store, key, got, sizeof got, &len) == TG_OK;
        ok &= len == (int64_t)strlen(want) && strcmp(got, want) == 0;
        ok &= docstore_revisions(store, key, &revisions) == TG_OK && revisions == 2;
    }
    return ok;
}

/* ------------------------------------------------------------------------------------- */
/* Jobs                                                                                   */
/* ------------------------------------------------------------------------------------- */

#define STORES_PER_OWNER 4

struct owned {
    tg_handle stores[STORES_PER_OWNER];
    uint64_t serials[STORES_PER_OWNER];
    int count;
    int ok;
};

static void job_create_and_fill(void *arg)
{
    struct owned *o = (struct owned *)arg;
    int i;
    o->ok = 1;
    for (i = 0; i < o->count; i++) {
        o->ok &= docstore_new(&o->stores[i]) == TG_OK;
        o->ok &= docstore_serial(o->stores[i], &o->serials[i]) == TG_OK;
        o->ok &= fill(o->stores[i], o->serials[i]);
    }
}

static void job_collect_and_verify(void *arg)
{
    struct owned *o = (struct owned *)arg;
    int i;
    docstore_collect();
    o->ok = 1;
    for (i = 0; i < o->count; i++)
        o->ok &= verify(o->stores[i], o->serials[i]);
}

/* Allocation churn on the owner: scratch stores filled and freed, while others misbehave. */
static void job_churn(void *arg)
{
    struct owned *o = (struct owned *)arg;
    int round;
    o->ok = 1;
    for (round = 0; round < 40; round++) {
        tg_handle scratch;
        o->ok &= docstore_new(&scratch) == TG_OK;
        o->ok &= fill(scratch, (uint64_t)round);
        if (round % 8 == 0)
            docstore_collect();
        o->ok &= docstore_free(scratch) == TG_OK;
    }
}

/* Every call a non-owner can make on each store, expecting TG_ERR_WRONG_THREAD. */
struct misuse {
    const struct owned *victim;
    int rounds;
    unsigned long attempts, refused, wrong_messages;
};

static void misuse_all(struct misuse *m)
{
    char buf[64], message[320];
    uint64_t n = 0;
    int64_t len = 0;
    int r, i, k;
    for (r = 0; r < m->rounds; r++) {
        for (i = 0; i < m->victim->count; i++) {
            tg_handle h = m->victim->stores[i];
            tg_status got[7];
            got[0] = docstore_put(h, "key-1", "overwritten by a thief");
            got[1] = docstore_get(h, "key-1", buf, sizeof buf, &len);
            got[2] = docstore_count(h, &n);
            got[3] = docstore_serial(h, &n);
            got[4] = docstore_revisions(h, "key-1", &n);
            got[5] = docstore_free(h);
            got[6] = docstore_put(h, NULL, NULL); /* the handle is checked before the arguments */
            for (k = 0; k < 7; k++) {
                m->attempts++;
                if (got[k] == TG_ERR_WRONG_THREAD)
                    m->refused++;
            }
            docstore_last_error(message, sizeof message);
            if (strstr(message, "is owned by thread") == NULL)
                m->wrong_messages++;
        }
    }
}

static void job_misuse(void *arg) { misuse_all((struct misuse *)arg); }

struct handle_job {
    tg_handle store;
    uint64_t serial;
    tg_status status;
};

static void job_free_later(void *arg)
{
    struct handle_job *j = (struct handle_job *)arg;
    j->status = docstore_free_later(j->store);
}

static void job_new_store(void *arg)
{
    struct handle_job *j = (struct handle_job *)arg;
    j->status = docstore_new(&j->store);
    if (j->status == TG_OK)
        j->status = docstore_serial(j->store, &j->serial);
    if (j->status == TG_OK && (docstore_put(j->store, "k", "v") != TG_OK || !fill(j->store, 7)))
        j->status = -1;
}

static void job_count(void *arg)
{
    struct handle_job *j = (struct handle_job *)arg;
    uint64_t n = 0;
    j->status = docstore_count(j->store, &n);
}

static void job_get_k(void *arg)
{
    struct handle_job *j = (struct handle_job *)arg;
    int64_t len = 0;
    j->status = docstore_get(j->store, "k", NULL, 0, &len);
}

static void job_run_pending(void *arg)
{
    struct handle_job *j = (struct handle_job *)arg;
    j->status = tg_run_pending();
}

/* ------------------------------------------------------------------------------------- */
/* Tests                                                                                  */
/* ------------------------------------------------------------------------------------- */

static void owner_use_round_trips_values_and_frees_once(void)
{
    tg_handle s;
    char buf[8];
    uint64_t count = 0, revisions = 0, serial, owner = 0;
    uint64_t destroyed = docstore_destroyed_count();
    int64_t len = 0;
    struct destruction d;

    CHECK_STATUS(docstore_new(&s), TG_OK);
    CHECK_U64(s.owner, tg_current_thread_id());
    CHECK_STATUS(docstore_owner(s, &owner), TG_OK);
    CHECK_U64(owner, tg_current_thread_id());
    serial = serial_of(s);
    CHECK(fill(s, serial));
    CHECK(verify(s, serial));

    CHECK_STATUS(docstore_put(s, "greeting", "hello, world"), TG_OK);
    CHECK_STATUS(docstore_get(s, "greeting", buf, sizeof buf, &len), TG_OK);
    CHECK(strcmp(buf, "hello, ") == 0); /* truncated like snprintf */
    CHECK(len == 12);
    CHECK_STATUS(docstore_get(s, "greeting", NULL, 0, &len), TG_OK);
    CHECK(len == 12);
    CHECK_STATUS(docstore_get(s, "absent", buf, sizeof buf, &len), TG_OK);
    CHECK(len == -1 && buf[0] == '\0');
    CHECK_STATUS(docstore_revisions(s, "greeting", &revisions), TG_OK);
    CHECK_U64(revisions, 1);
    CHECK_STATUS(docstore_count(s, &count), TG_OK);
    CHECK_U64(count, KEYS + 1);

    CHECK_STATUS(docstore_free(s), TG_OK);
    CHECK_U64(docstore_destroyed_count(), destroyed + 1);
    d = destruction_of(serial);
    CHECK_U64(d.runs, 1);
    CHECK_U64(d.ran_on, tg_current_thread_id());
    CHECK_STATUS(docstore_free(s), TG_ERR_STALE);
    CHECK_STATUS(docstore_get(s, "greeting", buf, sizeof buf, &len), TG_ERR_STALE);
    CHECK_U64(docstore_destroyed_count(), destroyed + 1);
    CHECK_U64(destruction_of(serial).runs, 1);
}

static int destructor_runs;
static void count_destructor(void *object)
{
    (void)object;
    destructor_runs++;
}

static void bad_handles_and_arguments_are_refused(void)
{
    tg_handle s, null_handle, other;
    static int c_object;
    char message[320];
    int64_t len = 0;
    uint64_t n = 0;

    memset(&null_handle, 0, sizeof null_handle);
    CHECK_STATUS(docstore_put(null_handle, "k", "v"), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(docstore_free(null_handle), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(docstore_free_later(null_handle), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(docstore_new(NULL), TG_ERR_NULL_POINTER);

    CHECK_STATUS(docstore_new(&s), TG_OK);
    CHECK_STATUS(docstore_put(s, NULL, "v"), TG_ERR_NULL_POINTER);
    docstore_last_error(message, sizeof message);
    CHECK(strstr(message, "key is NULL") != NULL);
    CHECK_STATUS(docstore_put(s, "k", NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(docstore_get(s, "k", NULL, 4, &len), TG_ERR_NULL_POINTER);
    CHECK_STATUS(docstore_get(s, "k", NULL, 0, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(docstore_count(s, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(docstore_owner(s, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(docstore_count(s, &n), TG_OK);
    CHECK_U64(n, 0); /* the refused puts stored nothing */

    /* A threadguard handle of another type: refused, and that object is left alone. */
    destructor_runs = 0;
    CHECK_STATUS(tg_register(7u, &c_object, count_destructor, &other), TG_OK);
    CHECK_STATUS(docstore_put(other, "k", "v"), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(docstore_free(other), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(docstore_free_later(other), TG_ERR_WRONG_TYPE);
    docstore_last_error(message, sizeof message);
    CHECK(strstr(message, "type tag 7") != NULL);
    CHECK(destructor_runs == 0);
    CHECK_STATUS(tg_destroy(other), TG_OK);
    CHECK(destructor_runs == 1);
    /* ... and a store is not an object of tag 7. */
    CHECK_STATUS(tg_with(s, 7u, NULL, NULL), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_with(s, DOCSTORE_TYPE_TAG, NULL, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(docstore_free(s), TG_OK);
    CHECK_STATUS(docstore_free_later(s), TG_ERR_STALE); /* on the owner, the key is checked */
}

static void misuse_from_other_threads_is_refused_and_changes_nothing(void)
{
    struct worker owner, thief;
    struct owned o;
    struct misuse from_main, from_thief, concurrent_a, concurrent_b;
    struct worker busy_a, busy_b;
    tg_stats before, after;
    uint64_t created, destroyed;
    unsigned long expected;
    int i;

    worker_start(&owner);
    worker_start(&thief);
    memset(&o, 0, sizeof o);
    o.count = STORES_PER_OWNER;
    worker_run(&owner, job_create_and_fill, &o);
    CHECK(o.ok);
    for (i = 0; i < o.count; i++)
        CHECK_U64(o.stores[i].owner, owner.id);

    /* Sequential misuse from the main thread and from another worker: counted exactly. */
    created = docstore_created_count();
    destroyed = docstore_destroyed_count();
    before = stats_now();
    memset(&from_main, 0, sizeof from_main);
    from_main.victim = &o;
    from_main.rounds = 3;
    misuse_all(&from_main);
    memset(&from_thief, 0, sizeof from_thief);
    from_thief.victim = &o;
    from_thief.rounds = 3;
    worker_run(&thief, job_misuse, &from_thief);
    after = stats_now();
    expected = 2ul * 3ul * STORES_PER_OWNER * 7ul;
    CHECK_U64(from_main.attempts + from_thief.attempts, expected);
    CHECK_U64(from_main.refused + from_thief.refused, expected);
    CHECK_U64(from_main.wrong_messages + from_thief.wrong_messages, 0);
    CHECK_U64(after.violations_wrong_thread - before.violations_wrong_thread, expected);
    CHECK_U64(after.violations - before.violations, expected);
    CHECK_U64(after.destroyed, before.destroyed);
    CHECK_U64(after.live, before.live);
    CHECK_U64(docstore_created_count(), created);
    CHECK_U64(docstore_destroyed_count(), destroyed);

    /* The owner's heap is intact: a full collection, then every value reads back. */
    worker_run(&owner, job_collect_and_verify, &o);
    CHECK(o.ok);

    /* Misuse from two threads while the owner allocates and collects. */
    worker_start(&busy_a);
    worker_start(&busy_b);
    memset(&concurrent_a, 0, sizeof concurrent_a);
    concurrent_a.victim = &o;
    concurrent_a.rounds = 200;
    concurrent_b = concurrent_a;
    worker_submit(&owner, job_churn, &o);
    worker_submit(&busy_a, job_misuse, &concurrent_a);
    worker_submit(&busy_b, job_misuse, &concurrent_b);
    worker_wait(&busy_a);
    worker_wait(&busy_b);
    worker_wait(&owner);
    CHECK(o.ok);
    CHECK_U64(concurrent_a.refused, concurrent_a.attempts);
    CHECK_U64(concurrent_b.refused, concurrent_b.attempts);
    worker_run(&owner, job_collect_and_verify, &o);
    CHECK(o.ok);
    worker_stop(&busy_a);
    worker_stop(&busy_b);

    /* The stores die with their owner, on it. */
    destroyed = docstore_destroyed_count();
    worker_stop(&owner);
    worker_stop(&thief);
    CHECK_U64(docstore_destroyed_count(), destroyed + STORES_PER_OWNER);
    for (i = 0; i < o.count; i++) {
        struct destruction d = destruction_of(o.serials[i]);
        CHECK_U64(d.runs, 1);
        CHECK_U64(d.ran_on, owner.id);
    }
}

static void free_later_from_another_thread_runs_on_the_owner(void)
{
    struct worker owner, other;
    struct handle_job a, b, c, req;
    uint64_t destroyed;
    tg_stats before, after;
    struct destruction d;

    worker_start(&owner);
    worker_start(&other);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    worker_run(&owner, job_new_store, &a);
    worker_run(&owner, job_new_store, &b);
    worker_run(&owner, job_new_store, &c);
    CHECK_STATUS(a.status, TG_OK);
    CHECK_STATUS(b.status, TG_OK);
    CHECK_STATUS(c.status, TG_OK);
    CHECK_U64(a.store.owner, owner.id);

    /* Queued from another worker: nothing happens until the owner's next call. */
    destroyed = docstore_destroyed_count();
    req.store = a.store;
    worker_run(&other, job_free_later, &req);
    CHECK_STATUS(req.status, TG_OK);
    CHECK_U64(docstore_destroyed_count(), destroyed);
    worker_run(&owner, job_count, &c); /* any successful call on the owner runs the queue */
    CHECK_STATUS(c.status, TG_OK);
    CHECK_U64(docstore_destroyed_count(), destroyed + 1);
    worker_run(&owner, job_count, &a);
    CHECK_STATUS(a.status, TG_ERR_STALE);

    /* Queued from the main thread, twice: one destruction, on the owner at tg_run_pending;
     * the second request is counted as stale when it runs. */
    before = stats_now();
    CHECK_STATUS(docstore_free_later(b.store), TG_OK);
    CHECK_STATUS(docstore_free_later(b.store), TG_OK);
    worker_run(&owner, job_run_pending, &req);
    CHECK_STATUS(req.status, TG_OK);
    after = stats_now();
    CHECK_U64(docstore_destroyed_count(), destroyed + 2);
    CHECK_U64(after.violations_stale - before.violations_stale, 1);
    worker_run(&owner, job_count, &b);
    CHECK_STATUS(b.status, TG_ERR_STALE);

    /* Both ran on the owner, once. */
    worker_stop(&other);
    d = destruction_of(a.serial);
    CHECK_U64(d.runs, 1);
    CHECK_U64(d.ran_on, owner.id);
    d = destruction_of(b.serial);
    CHECK_U64(d.runs, 1);
    CHECK_U64(d.ran_on, owner.id);

    /* After the owner exits, a request is refused: its exit destroyed the store already. */
    worker_stop(&owner);
    CHECK_U64(docstore_destroyed_count(), destroyed + 3);
    CHECK_STATUS(docstore_free_later(c.store), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(docstore_get(c.store, "k", NULL, 0, NULL), TG_ERR_OWNER_EXITED);
}

static void *create_and_exit(void *arg)
{
    struct owned *o = (struct owned *)arg;
    job_create_and_fill(o);
    return NULL; /* exits owning every store it created */
}

static void thread_exit_destroys_what_the_thread_owns(void)
{
    struct worker w;
    struct owned o, raw;
    pthread_t t;
    uint64_t destroyed = docstore_destroyed_count(), id;
    uint64_t owner_id = 0;
    int i;

    worker_start(&w);
    memset(&o, 0, sizeof o);
    o.count = STORES_PER_OWNER;
    worker_run(&w, job_create_and_fill, &o);
    CHECK(o.ok);
    id = w.id;
    CHECK_STATUS(docstore_owner(o.stores[0], &owner_id), TG_OK);
    CHECK_U64(owner_id, id);
    CHECK_U64(docstore_destroyed_count(), destroyed);
    worker_stop(&w);
    CHECK_U64(docstore_destroyed_count(), destroyed + STORES_PER_OWNER);
    for (i = 0; i < o.count; i++) {
        struct destruction d = destruction_of(o.serials[i]);
        CHECK_U64(d.runs, 1);
        CHECK_U64(d.owner, id);
        CHECK_U64(d.ran_on, id);
        CHECK_STATUS(docstore_count(o.stores[i], &owner_id), TG_ERR_OWNER_EXITED);
        CHECK_STATUS(docstore_free_later(o.stores[i]), TG_ERR_OWNER_EXITED);
    }

    /* A plain pthread that returns from its start routine. */
    memset(&raw, 0, sizeof raw);
    raw.count = STORES_PER_OWNER;
    destroyed = docstore_destroyed_count();
    CHECK(pthread_create(&t, NULL, create_and_exit, &raw) == 0);
    pthread_join(t, NULL);
    CHECK(raw.ok);
    CHECK_U64(docstore_destroyed_count(), destroyed + STORES_PER_OWNER);
    for (i = 0; i < raw.count; i++) {
        struct destruction d = destruction_of(raw.serials[i]);
        CHECK_U64(d.runs, 1);
        CHECK_U64(d.ran_on, raw.stores[i].owner);
    }
}

static void destructors_may_call_back_into_the_library(void)
{
    struct worker w;
    struct handle_job self, sibling;

    worker_start(&w);
    memset(&self, 0, sizeof self);
    memset(&sibling, 0, sizeof sibling);
    worker_run(&w, job_new_store, &self);
    worker_run(&w, job_new_store, &sibling);
    CHECK_STATUS(self.status, TG_OK);
    CHECK_STATUS(sibling.status, TG_OK);

    callback_sibling = sibling.store;
    callback_self = self.store;
    callback_serial = self.serial;
    /* Destroy `self` from another thread: the owner runs its destructor, which calls
     * docstore_count on the sibling (works) and docstore_get on itself (already gone). */
    CHECK_STATUS(docstore_free_later(self.store), TG_OK);
    worker_run(&w, job_run_pending, &self);
    CHECK_STATUS(self.status, TG_OK);
    CHECK_STATUS(callback_sibling_status, TG_OK);
    CHECK_STATUS(callback_self_status, TG_ERR_STALE);
    callback_serial = 0;
    worker_run(&w, job_get_k, &sibling);
    CHECK_STATUS(sibling.status, TG_OK);
    worker_stop(&w);
}

/* refc and markAndSweep scan the stack between the current frame and the deepest-known
 * "bottom". A thread whose first call comes from deep in its stack and whose later calls come
 * from shallower frames must still have those frames scanned, or objects that only the stack
 * references are collected under the library's feet. */
static uint64_t first_call_deep(int depth, tg_handle *out)
{
    volatile char pad[512];
    uint64_t r;
    pad[0] = (char)depth;
    pad[sizeof pad - 1] = (char)depth;
    if (depth == 0)
        r = docstore_new(out) == TG_OK ? 1u : 0u;
    else
        r = first_call_deep(depth - 1, out);
    return r + (uint64_t)(pad[0] != (char)depth) + (uint64_t)(pad[sizeof pad - 1] != (char)depth);
}

static void *deep_then_shallow(void *arg)
{
    struct owned *o = (struct owned *)arg;
    tg_handle first;
    int i, round;
    o->ok = first_call_deep(400, &first) == 1;
    for (round = 0; round < 5; round++) {
        for (i = 0; i < o->count; i++) {
            o->ok &= docstore_new(&o->stores[i]) == TG_OK;
            o->ok &= fill(o->stores[i], (uint64_t)(round * 10 + i));
        }
        docstore_collect();
        for (i = 0; i < o->count; i++) {
            o->ok &= verify(o->stores[i], (uint64_t)(round * 10 + i));
            o->ok &= docstore_free(o->stores[i]) == TG_OK;
        }
    }
    o->ok &= docstore_free(first) == TG_OK;
    return NULL;
}

static void calls_from_shallower_frames_than_the_first_are_safe(void)
{
    struct owned o;
    pthread_t t;
    memset(&o, 0, sizeof o);
    o.count = STORES_PER_OWNER;
    CHECK(pthread_create(&t, NULL, deep_then_shallow, &o) == 0);
    pthread_join(t, NULL);
    CHECK(o.ok);
}

/* A foreign thread's Nim heap is given back when it exits (refc and markAndSweep tear the
 * thread's GC down; ORC collects its cycle candidates), so creating and ending many threads
 * does not grow the process. Measured as resident memory, on Linux only. */
static long resident_kb(void)
{
#ifdef __linux__
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * 4;
#else
    return -1;
#endif
}

static void *fill_one_and_exit(void *arg)
{
    tg_handle s;
    int *ok = (int *)arg;
    *ok = docstore_new(&s) == TG_OK && fill(s, 3) && fill(s, 4);
    return NULL;
}

static int run_short_threads(int n)
{
    int i, ok = 1;
    for (i = 0; i < n; i++) {
        pthread_t t;
        int thread_ok = 0;
        if (pthread_create(&t, NULL, fill_one_and_exit, &thread_ok) != 0)
            return 0;
        pthread_join(t, NULL);
        ok &= thread_ok;
    }
    return ok;
}

static void exiting_threads_give_their_nim_heap_back(void)
{
    long before, after;
    uint64_t destroyed = docstore_destroyed_count();
    CHECK(run_short_threads(50));
    before = resident_kb();
    CHECK(run_short_threads(300));
    after = resident_kb();
    CHECK_U64(docstore_destroyed_count() - destroyed, 350);
    if (before < 0 || after < 0)
        return; /* no way to measure here */
    /* Measured growth is under 300 kB; an exited thread's leaked heap costs 5 kB (ORC's
     * cycle-candidate buffer) to 300 kB (a refc heap) each. */
    if (!CHECK(after - before < 1024))
        fprintf(stderr, "  resident memory grew by %ld kB over 300 threads\n", after - before);
}

/* Many threads at once: each creates stores, uses them, frees some itself and hands the rest
 * to its neighbour, which asks for their destruction from the wrong thread (free_later) and
 * tries to use them (refused); then every thread exits. */
#define CHURN_THREADS 8
#define CHURN_ROUNDS 60

struct churner {
    int index;
    pthread_t thread;
    pthread_barrier_t *barrier;
    tg_handle handoff[CHURN_ROUNDS];
    struct churner *neighbour;
    unsigned long bad;
};

static void *churn_main(void *arg)
{
    struct churner *c = (struct churner *)arg;
    int r;
    uint64_t n = 0;
    for (r = 0; r < CHURN_ROUNDS; r++) {
        tg_handle keep, give;
        if (docstore_new(&keep) != TG_OK || docstore_new(&give) != TG_OK) {
            c->bad++;
            continue;
        }
        if (!fill(keep, (uint64_t)r) || docstore_put(give, "k", "v") != TG_OK)
            c->bad++;
        if (r % 10 == 0)
            docstore_collect();
        if (!verify(keep, (uint64_t)r))
            c->bad++;
        if (docstore_free(keep) != TG_OK)
            c->bad++;
        c->handoff[r] = give;
    }
    pthread_barrier_wait(c->barrier); /* every handoff is written */
    for (r = 0; r < CHURN_ROUNDS; r++) {
        tg_handle foreign = c->neighbour->handoff[r];
        if (docstore_count(foreign, &n) != TG_ERR_WRONG_THREAD)
            c->bad++;
        if (docstore_free_later(foreign) != TG_OK)
            c->bad++;
    }
    pthread_barrier_wait(c->barrier); /* every request is queued */
    if (tg_run_pending() != TG_OK)
        c->bad++;
    for (r = 0; r < CHURN_ROUNDS; r++)
        if (docstore_count(c->handoff[r], &n) != TG_ERR_STALE)
            c->bad++;
    pthread_barrier_wait(c->barrier); /* nobody exits before the others are done */
    return NULL;
}

static void many_threads_create_share_and_exit(void)
{
    struct churner c[CHURN_THREADS];
    pthread_barrier_t barrier;
    uint64_t created = docstore_created_count(), destroyed = docstore_destroyed_count();
    unsigned long bad = 0;
    int i;

    pthread_barrier_init(&barrier, NULL, CHURN_THREADS);
    memset(c, 0, sizeof c);
    for (i = 0; i < CHURN_THREADS; i++) {
        c[i].index = i;
        c[i].barrier = &barrier;
        c[i].neighbour = &c[(i + 1) % CHURN_THREADS];
    }
    for (i = 0; i < CHURN_THREADS; i++)
        CHECK(pthread_create(&c[i].thread, NULL, churn_main, &c[i]) == 0);
    for (i = 0; i < CHURN_THREADS; i++) {
        pthread_join(c[i].thread, NULL);
        bad += c[i].bad;
    }
    pthread_barrier_destroy(&barrier);
    CHECK_U64(bad, 0);
    CHECK_U64(docstore_created_count() - created, 2u * CHURN_THREADS * CHURN_ROUNDS);
    CHECK_U64(docstore_destroyed_count() - destroyed, 2u * CHURN_THREADS * CHURN_ROUNDS);
}

static void every_store_was_destroyed_exactly_once_on_its_owner(void)
{
    uint64_t created = docstore_created_count(), s;
    unsigned long never = 0, repeated = 0, misplaced = 0;
    tg_stats st;

    CHECK_U64(docstore_destroyed_count(), created);
    CHECK_U64(docstore_misplaced_count(), 0);
    CHECK_U64(out_of_range_serials, 0);
    CHECK(created <= MAX_SERIAL);
    for (s = 1; s <= created && s <= MAX_SERIAL; s++) {
        struct destruction d = destruction_of(s);
        if (d.runs == 0)
            never++;
        if (d.runs > 1)
            repeated++;
        if (d.runs > 0 && d.ran_on != d.owner)
            misplaced++;
    }
    CHECK_U64(never, 0);
    CHECK_U64(repeated, 0);
    CHECK_U64(misplaced, 0);
    st = stats_now();
    CHECK_U64(st.live, 0);
    CHECK_U64(st.deferred_pending, 0);
    CHECK_U64(st.created, st.destroyed);
    CHECK_U64(st.panics, 0);
}

int main(void)
{
    tg_handle leftover;

    docstore_set_destroy_observer(observe, NULL);
    printf("test_docstore: Nim memory manager %s, threadguard %s\n", docstore_memory_manager(),
           tg_version());

    owner_use_round_trips_values_and_frees_once();
    bad_handles_and_arguments_are_refused();
    misuse_from_other_threads_is_refused_and_changes_nothing();
    free_later_from_another_thread_runs_on_the_owner();
    thread_exit_destroys_what_the_thread_owns();
    destructors_may_call_back_into_the_library();
    calls_from_shallower_frames_than_the_first_are_safe();
    exiting_threads_give_their_nim_heap_back();
    many_threads_create_share_and_exit();

    /* The main thread's thread-local destructors do not run: clean up explicitly. A store
     * created by a destructor meanwhile is refused (and never counted as created). */
    CHECK_STATUS(docstore_new(&leftover), TG_OK);
    cleanup_probe_serial = serial_of(leftover);
    CHECK_STATUS(tg_thread_cleanup(), TG_OK);
    CHECK_STATUS(cleanup_probe_status, TG_ERR_SHUT_DOWN);
    CHECK_STATUS(docstore_count(leftover, NULL), TG_ERR_STALE);
    every_store_was_destroyed_exactly_once_on_its_owner();

    printf("%lu passed, %lu failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
