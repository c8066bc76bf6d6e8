/*
 * test_runner.c - the runner and completion-queue C ABI (tg_runner_*, tg_cq_*).
 *
 * Covers: constants; starting a named runner and its thread ID; objects
 * registered by runner work owned by the runner (WRONG_THREAD elsewhere,
 * destroyed on the runner at stop, OWNER_EXITED after); tg_runner_post with a
 * completion callback run exactly once on the runner; tg_runner_call with its
 * result, with a timeout before and after the work started (the context goes to
 * `abandon` exactly once); completion queues waited on from other threads,
 * capacity reserved at post time, destroyed while a thread waits and with
 * entries left (each discarded exactly once); a full runner queue (LIMIT); stop
 * while work is queued (every callback exactly once, with SHUT_DOWN) from
 * another thread; stop and call from the runner's own work (BUSY); stopping
 * twice, posting after stop, null, forged, object and queue handles; and
 * several producers posting concurrently.
 *
 * Contexts and results are heap blocks freed where the contract says they
 * are released, so valgrind and ASan check that each is released exactly once.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <sched.h>

#define RUN_TAG 41u

/* ------------------------------------------------------------------ */
/* Small work functions                                                */
/* ------------------------------------------------------------------ */

/* Returns a heap copy of tg_current_thread_id() on the runner. */
static void work_thread_id(void *context, void **out_result)
{
    uint64_t *id = (uint64_t *)malloc(sizeof *id);
    (void)context;
    if (!id)
        abort();
    *id = tg_current_thread_id();
    *out_result = id;
}

/* Does nothing, returns nothing. */
static void work_nothing(void *context, void **out_result)
{
    (void)context;
    (void)out_result;
}

/* Returns its context as the result. */
static void work_echo(void *context, void **out_result)
{
    *out_result = context;
}

/* Creates a tracked object on the runner (the context is the int id); returns it. */
static void work_make_obj(void *context, void **out_result)
{
    tgt_obj *o = tgt_obj_make((int)(intptr_t)context, RUN_TAG);
    *out_result = o;
}

/* ------------------------------------------------------------------ */
/* A gate that holds the runner inside one job                         */
/* ------------------------------------------------------------------ */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered;
    int open;
} gate;

static void gate_work(void *context, void **out_result)
{
    gate *g = (gate *)context;
    (void)out_result;
    pthread_mutex_lock(&g->mu);
    g->entered = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* Posts the gate job and waits until the runner is inside it. */
static void gate_close(gate *g, tg_handle runner)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    CHECK_STATUS(tg_runner_post(runner, gate_work, g, NULL), TG_OK);
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Waits until the runner has run everything queued before this call. */
static void flush(tg_handle runner)
{
    void *result = NULL;
    CHECK_STATUS(tg_runner_call(runner, work_nothing, NULL, TG_TIMEOUT_INFINITE, NULL, &result), TG_OK);
}

static tg_handle start(const char *name, uint32_t capacity)
{
    tg_handle h = tgt_handle(0, 0);
    CHECK_STATUS(tg_runner_start(name, capacity, &h), TG_OK);
    return h;
}

static uint64_t runner_id(tg_handle runner)
{
    uint64_t id = 0;
    CHECK_STATUS(tg_runner_thread_id(runner, &id), TG_OK);
    return id;
}

/* ------------------------------------------------------------------ */
/* Completion callbacks that record each delivery                      */
/* ------------------------------------------------------------------ */

/* One posted job: where its completion landed, and how often. */
typedef struct delivery {
    uint64_t runner_tid; /* the runner's thread ID, to check where done runs */
    int calls;
    int wrong_thread;
    tg_status status;
    void *result;
} delivery;

static pthread_mutex_t deliveries_lock = PTHREAD_MUTEX_INITIALIZER;

static void done_record(void *context, tg_status status, void *result)
{
    delivery *d = (delivery *)context;
    int wrong = tg_current_thread_id() != d->runner_tid;
    pthread_mutex_lock(&deliveries_lock);
    d->calls++;
    d->wrong_thread += wrong;
    d->status = status;
    d->result = result;
    pthread_mutex_unlock(&deliveries_lock);
}

/* An abandon callback that owns its heap context: records it, then frees it. */
typedef struct abandoned_ctx {
    int id;
    int ran;
} abandoned_ctx;

static int abandon_calls[4];
static tg_status abandon_status[4];
static int abandon_result_was_ctx[4];

static void slow_work(void *context, void **out_result)
{
    abandoned_ctx *c = (abandoned_ctx *)context;
    tgt_sleep_ms(150);
    c->ran = 1;
    *out_result = context;
}

static void abandon_free(void *context, tg_status status, void *result)
{
    abandoned_ctx *c = (abandoned_ctx *)context;
    pthread_mutex_lock(&deliveries_lock);
    abandon_calls[c->id]++;
    abandon_status[c->id] = status;
    abandon_result_was_ctx[c->id] = result == context;
    pthread_mutex_unlock(&deliveries_lock);
    free(c);
}

static uint64_t discarded;
static uint64_t discarded_tags;

static void discard_count(uint64_t tag, tg_status status, void *result)
{
    (void)status;
    free(result); /* the results below are heap blocks (or NULL) */
    pthread_mutex_lock(&deliveries_lock);
    discarded++;
    discarded_tags += tag;
    pthread_mutex_unlock(&deliveries_lock);
}

/* ------------------------------------------------------------------ */

static void test_constants(void)
{
    tgt_section("constants");
    CHECK(TG_RUNNER_OWNER == UINT64_MAX);
    CHECK(TG_CQ_OWNER == UINT64_MAX - 1);
    CHECK(TG_TIMEOUT_INFINITE == -1);
    CHECK(TG_MAX_QUEUE_CAPACITY == 16777216u);
}

static void test_start_call_and_ownership(void)
{
    tg_stats before, after;
    tgt_delta d;
    tg_handle runner;
    uint64_t rid;
    void *result = NULL;
    tgt_obj *o;
    char message[512];

    tgt_section("start, call, and objects owned by the runner");
    STATS_NOW(before);
    runner = start("c-owner", 64);
    CHECK(runner.owner == TG_RUNNER_OWNER);
    rid = runner_id(runner);
    CHECK(rid != 0 && rid != tg_current_thread_id());

    CHECK_STATUS(tg_runner_call(runner, work_thread_id, NULL, TG_TIMEOUT_INFINITE, NULL, &result), TG_OK);
    CHECK(result != NULL);
    if (result)
        CHECK_U64(*(uint64_t *)result, rid);
    free(result);

    result = NULL;
    CHECK_STATUS(tg_runner_call(runner, work_make_obj, (void *)(intptr_t)7, 1000, NULL, &result), TG_OK);
    o = (tgt_obj *)result;
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK_U64(o->creator_tid, rid);
    {
        uint64_t owner = 0;
        CHECK_STATUS(tg_owner_of(o->handle, &owner), TG_OK);
        CHECK_U64(owner, rid);
    }
    /* Held here, usable only there. */
    CHECK_STATUS(tg_with(o->handle, RUN_TAG, tgt_forbidden_cb, NULL), TG_ERR_WRONG_THREAD);
    tg_last_error(message, sizeof message);
    CHECK_MSG(strstr(message, "c-owner") != NULL, message);
    CHECK_NOT_DESTROYED(o);

    CHECK_STATUS(tg_runner_stop(runner), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    CHECK_STATUS(tg_with(o->handle, RUN_TAG, tgt_forbidden_cb, NULL), TG_ERR_OWNER_EXITED);
    tgt_obj_free(o);

    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, created, 1);
    D_SET(d, destroyed, 1);
    D_VIOL(d, wrong_thread, 1);
    D_VIOL(d, owner_exited, 1);
    D_SET(d, threads_started, 1);
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "runner object created and destroyed once");
}

static void test_post_callbacks(void)
{
    enum { N = 200 };
    delivery *d = (delivery *)calloc(N, sizeof *d);
    tg_handle runner;
    uint64_t rid;
    int i, bad = 0;

    tgt_section("tg_runner_post: each callback exactly once, on the runner");
    if (!d)
        abort();
    runner = start("c-post", 256);
    rid = runner_id(runner);
    for (i = 0; i < N; i++) {
        d[i].runner_tid = rid;
        CHECK_STATUS(tg_runner_post(runner, work_echo, &d[i], done_record), TG_OK);
    }
    /* done may be NULL: nothing is reported. */
    CHECK_STATUS(tg_runner_post(runner, work_nothing, NULL, NULL), TG_OK);
    flush(runner);
    pthread_mutex_lock(&deliveries_lock);
    for (i = 0; i < N; i++) {
        if (d[i].calls != 1 || d[i].wrong_thread || d[i].status != TG_OK || d[i].result != &d[i])
            bad++;
    }
    pthread_mutex_unlock(&deliveries_lock);
    CHECK_U64(bad, 0);
    CHECK_STATUS(tg_runner_stop(runner), TG_OK);
    free(d);
}

static void test_call_timeouts(void)
{
    tg_handle runner;
    abandoned_ctx *started, *queued;
    void *result = (void *)&result;

    tgt_section("tg_runner_call timeouts: abandon gets the context exactly once");
    runner = start("c-timeout", 16);
    started = (abandoned_ctx *)calloc(1, sizeof *started);
    queued = (abandoned_ctx *)calloc(1, sizeof *queued);
    if (!started || !queued)
        abort();
    started->id = 1;
    queued->id = 2;
    /* Started, then timed out: finishes late; abandon gets TG_OK and the late result. */
    CHECK_STATUS(tg_runner_call(runner, slow_work, started, 30, abandon_free, &result), TG_ERR_TIMEOUT);
    CHECK(result == (void *)&result); /* untouched */
    /* Queued behind it, timed out before it started: cancelled; abandon gets TG_ERR_TIMEOUT. */
    CHECK_STATUS(tg_runner_call(runner, slow_work, queued, 0, abandon_free, &result), TG_ERR_TIMEOUT);
    flush(runner);
    pthread_mutex_lock(&deliveries_lock);
    CHECK_U64(abandon_calls[1], 1);
    CHECK_STATUS(abandon_status[1], TG_OK);
    CHECK(abandon_result_was_ctx[1]);
    CHECK_U64(abandon_calls[2], 1);
    CHECK_STATUS(abandon_status[2], TG_ERR_TIMEOUT);
    CHECK(!abandon_result_was_ctx[2]);
    pthread_mutex_unlock(&deliveries_lock);
    /* A call that returns TG_OK never calls abandon. */
    CHECK_STATUS(tg_runner_call(runner, work_echo, &result, TG_TIMEOUT_INFINITE, abandon_free, &result), TG_OK);
    CHECK(result == (void *)&result);
    CHECK_STATUS(tg_runner_call(runner, work_nothing, NULL, -2, NULL, &result), TG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tg_runner_stop(runner), TG_OK);
    CHECK_U64(abandon_calls[1] + abandon_calls[2] + abandon_calls[0] + abandon_calls[3], 2);
}

/* A worker job: waits on a completion queue and stores what it got. */
typedef struct cq_wait_job {
    tg_handle cq;
    int64_t timeout_ms;
    tg_status st;
    uint64_t tag;
    tg_status entry_status;
    void *result;
} cq_wait_job;

static void cq_wait_job_fn(void *p)
{
    cq_wait_job *j = (cq_wait_job *)p;
    j->st = tg_cq_wait(j->cq, j->timeout_ms, &j->tag, &j->entry_status, &j->result);
}

static void *cq_wait_thread(void *p)
{
    cq_wait_job_fn(p);
    return NULL;
}

static void test_completion_queue(void)
{
    tg_handle runner, cq = tgt_handle(0, 0);
    tgt_worker w;
    cq_wait_job job;
    uint64_t tag = 0, sum = 0;
    tg_status st = -1;
    void *result = NULL;
    int i;

    tgt_section("completion queues: tags, results, reserved room, any waiting thread");
    runner = start("c-cq", 64);
    CHECK_STATUS(tg_cq_create(3, discard_count, &cq), TG_OK);
    CHECK(cq.owner == TG_CQ_OWNER);
    CHECK_STATUS(tg_cq_wait(cq, 0, &tag, &st, &result), TG_ERR_TIMEOUT);
    CHECK_STATUS(tg_cq_wait(cq, 5, &tag, &st, &result), TG_ERR_TIMEOUT);
    for (i = 1; i <= 3; i++)
        CHECK_STATUS(tg_runner_post_to_queue(runner, work_thread_id, NULL, cq, (uint64_t)i), TG_OK);
    /* Three completions outstanding or queued: the capacity is taken. */
    CHECK_STATUS(tg_runner_post_to_queue(runner, work_thread_id, NULL, cq, 9), TG_ERR_LIMIT);
    /* Another thread takes them. */
    tgt_worker_start(&w, "c-cq-waiter");
    for (i = 0; i < 3; i++) {
        memset(&job, 0, sizeof job);
        job.cq = cq;
        job.timeout_ms = 10000;
        tgt_worker_call(&w, cq_wait_job_fn, &job);
        CHECK_STATUS(job.st, TG_OK);
        CHECK_STATUS(job.entry_status, TG_OK);
        CHECK(job.result != NULL);
        if (job.result)
            CHECK_U64(*(uint64_t *)job.result, runner_id(runner));
        free(job.result);
        sum += job.tag;
    }
    CHECK_U64(sum, 6);
    tgt_worker_stop(&w);

    /* Destroyed with entries left: each is discarded exactly once (results freed there). */
    for (i = 10; i < 12; i++)
        CHECK_STATUS(tg_runner_post_to_queue(runner, work_thread_id, NULL, cq, (uint64_t)i), TG_OK);
    flush(runner);
    CHECK_STATUS(tg_cq_destroy(cq), TG_OK);
    pthread_mutex_lock(&deliveries_lock);
    CHECK_U64(discarded, 2);
    CHECK_U64(discarded_tags, 21);
    pthread_mutex_unlock(&deliveries_lock);
    CHECK_STATUS(tg_cq_destroy(cq), TG_ERR_SHUT_DOWN);
    CHECK_STATUS(tg_cq_wait(cq, 0, &tag, &st, &result), TG_ERR_SHUT_DOWN);
    CHECK_STATUS(tg_runner_post_to_queue(runner, work_nothing, NULL, cq, 1), TG_ERR_SHUT_DOWN);

    /* A thread blocked in tg_cq_wait is released by tg_cq_destroy. */
    {
        pthread_t t;
        CHECK_STATUS(tg_cq_create(1, NULL, &cq), TG_OK);
        memset(&job, 0, sizeof job);
        job.cq = cq;
        job.timeout_ms = TG_TIMEOUT_INFINITE;
        job.st = -1;
        if (pthread_create(&t, NULL, cq_wait_thread, &job) != 0)
            abort();
        tgt_sleep_ms(20);
        CHECK_STATUS(tg_cq_destroy(cq), TG_OK);
        pthread_join(t, NULL);
        CHECK_STATUS(job.st, TG_ERR_SHUT_DOWN);
    }
    CHECK_STATUS(tg_runner_stop(runner), TG_OK);
}

static void test_full_queue(void)
{
    tg_handle runner;
    gate g;
    int i;
    void *result = NULL;

    tgt_section("a full runner queue: TG_ERR_LIMIT, never blocks a post");
    runner = start("c-full", 4);
    gate_close(&g, runner);
    for (i = 0; i < 4; i++)
        CHECK_STATUS(tg_runner_post(runner, work_nothing, NULL, NULL), TG_OK);
    CHECK_STATUS(tg_runner_post(runner, work_nothing, NULL, NULL), TG_ERR_LIMIT);
    /* A blocking call waits for room only until its timeout; then nothing is queued. */
    CHECK_STATUS(tg_runner_call(runner, work_nothing, NULL, 20, NULL, &result), TG_ERR_LIMIT);
    gate_open(&g);
    flush(runner);
    CHECK_STATUS(tg_runner_stop(runner), TG_OK);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
}

static void *stop_thread(void *p)
{
    tg_handle *runner = (tg_handle *)p;
    CHECK_STATUS(tg_runner_stop(*runner), TG_OK);
    return NULL;
}

static void test_stop_while_busy(void)
{
    enum { N = 100 };
    delivery *d = (delivery *)calloc(N, sizeof *d);
    tg_handle runner, cq = tgt_handle(0, 0);
    tgt_obj *o;
    pthread_t stopper;
    gate g;
    uint64_t rid, tag = 0;
    tg_status st = -1;
    void *result = NULL;
    int i, bad = 0;

    tgt_section("stop while work is queued: each callback once, with TG_ERR_SHUT_DOWN");
    if (!d)
        abort();
    runner = start("c-stop", 256);
    rid = runner_id(runner);
    CHECK_STATUS(tg_runner_call(runner, work_make_obj, (void *)(intptr_t)8, -1, NULL, &result), TG_OK);
    o = (tgt_obj *)result;
    CHECK_STATUS(tg_cq_create(4, NULL, &cq), TG_OK);
    gate_close(&g, runner);
    for (i = 0; i < N; i++) {
        d[i].runner_tid = rid;
        CHECK_STATUS(tg_runner_post(runner, work_echo, &d[i], done_record), TG_OK);
    }
    CHECK_STATUS(tg_runner_post_to_queue(runner, work_echo, &tag, cq, 5), TG_OK);
    if (pthread_create(&stopper, NULL, stop_thread, &runner) != 0)
        abort();
    /* Wait until the stop has closed the queue (posts get SHUT_DOWN), then let the runner go. */
    while (tg_runner_post(runner, work_nothing, NULL, NULL) != TG_ERR_SHUT_DOWN)
        sched_yield();
    gate_open(&g);
    pthread_join(stopper, NULL);

    pthread_mutex_lock(&deliveries_lock);
    for (i = 0; i < N; i++) {
        if (d[i].calls != 1 || d[i].wrong_thread || d[i].status != TG_ERR_SHUT_DOWN || d[i].result != NULL)
            bad++;
    }
    pthread_mutex_unlock(&deliveries_lock);
    CHECK_U64(bad, 0);
    CHECK_STATUS(tg_cq_wait(cq, 0, &tag, &st, &result), TG_OK);
    CHECK_U64(tag, 5);
    CHECK_STATUS(st, TG_ERR_SHUT_DOWN);
    CHECK(result == NULL);
    CHECK_STATUS(tg_cq_destroy(cq), TG_OK);
    if (o) {
        CHECK_DESTROYED_ONCE(o);
        tgt_obj_free(o);
    }
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
    free(d);
}

/* Runner work that tries to stop and to call its own runner (context: the handle). */
typedef struct self_job {
    tg_handle runner;
    tg_status stop;
    tg_status call;
} self_job;

static void work_self(void *context, void **out_result)
{
    self_job *j = (self_job *)context;
    void *result = NULL;
    (void)out_result;
    j->stop = tg_runner_stop(j->runner);
    j->call = tg_runner_call(j->runner, work_nothing, NULL, TG_TIMEOUT_INFINITE, NULL, &result);
}

static void test_misuse(void)
{
    tg_handle runner, cq = tgt_handle(0, 0), forged, null_h = tgt_handle(0, 0);
    tgt_obj *o = tgt_obj_make(9, RUN_TAG);
    self_job job;
    void *result = NULL;
    uint64_t id = 0, tag = 0;
    tg_status st = 0;
    int bit, stale = 0;
    char message[512];

    tgt_section("misuse: each gets a clear code, never a hang");
    runner = start(NULL, 8);
    CHECK_STATUS(tg_cq_create(2, NULL, &cq), TG_OK);

    /* From the runner's own work: stop and call would wait for themselves. */
    memset(&job, 0, sizeof job);
    job.runner = runner;
    CHECK_STATUS(tg_runner_call(runner, work_self, &job, TG_TIMEOUT_INFINITE, NULL, &result), TG_OK);
    CHECK_STATUS(job.stop, TG_ERR_BUSY);
    CHECK_STATUS(job.call, TG_ERR_BUSY);
    flush(runner); /* still running */

    /* Null, wrong kind, forged. */
    CHECK_STATUS(tg_runner_post(null_h, work_nothing, NULL, NULL), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(tg_runner_post(o->handle, work_nothing, NULL, NULL), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_runner_post(cq, work_nothing, NULL, NULL), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_runner_stop(cq), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_cq_wait(runner, 0, &tag, &st, &result), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_cq_destroy(o->handle), TG_ERR_WRONG_TYPE);
    for (bit = 0; bit < 64; bit++) {
        forged = tgt_handle(runner.owner, runner.key ^ (UINT64_C(1) << bit));
        if (tg_runner_post(forged, work_nothing, NULL, NULL) == TG_ERR_STALE)
            stale++;
    }
    CHECK_U64(stale, 64);
    tg_last_error(message, sizeof message);
    CHECK_MSG(strstr(message, "never issued") != NULL, message);
    /* Object entry points on runner and queue handles: they name no object. */
    CHECK_STATUS(tg_with(runner, RUN_TAG, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    CHECK_STATUS(tg_destroy(cq), TG_ERR_STALE);
    CHECK_STATUS(tg_destroy_later(runner), TG_ERR_STALE);
    CHECK_STATUS(tg_owner_of(cq, &id), TG_ERR_STALE);

    /* Null pointer arguments, after the handle checks. */
    CHECK_STATUS(tg_runner_post(runner, NULL, NULL, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_runner_call(runner, work_nothing, NULL, -1, NULL, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_runner_thread_id(runner, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_cq_wait(cq, 0, NULL, &st, &result), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_runner_start("x", 4, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_runner_start("x", 0, &forged), TG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tg_cq_create(0, NULL, &forged), TG_ERR_INVALID_ARGUMENT);

    /* After stop. */
    CHECK_STATUS(tg_runner_stop(runner), TG_OK);
    CHECK_STATUS(tg_runner_stop(runner), TG_ERR_SHUT_DOWN);
    CHECK_STATUS(tg_runner_post(runner, work_nothing, NULL, NULL), TG_ERR_SHUT_DOWN);
    tg_last_error(message, sizeof message);
    CHECK_MSG(strstr(message, "stopped") != NULL, message);
    CHECK_STATUS(tg_runner_call(runner, work_nothing, NULL, -1, NULL, &result), TG_ERR_SHUT_DOWN);
    CHECK_STATUS(tg_runner_post_to_queue(runner, work_nothing, NULL, cq, 1), TG_ERR_SHUT_DOWN);
    CHECK_STATUS(tg_runner_thread_id(runner, &id), TG_ERR_SHUT_DOWN);
    CHECK_STATUS(tg_cq_destroy(cq), TG_OK);
    CHECK_STATUS(tg_destroy(o->handle), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    tgt_obj_free(o);
}

/* Producers: each posts `count` jobs, retrying while the queue is full. */
typedef struct producer {
    pthread_t thread;
    tg_handle runner;
    long count;
    uint64_t *counter; /* incremented by the jobs, on the runner only */
    long refused_full;
    long other_errors;
} producer;

static void work_count(void *context, void **out_result)
{
    (void)out_result;
    (*(uint64_t *)context)++; /* the runner is one thread: no lock needed */
}

static uint64_t completions;

static void done_count(void *context, tg_status status, void *result)
{
    (void)context;
    (void)result;
    if (status == TG_OK)
        completions++; /* also on the runner only */
}

static void *producer_main(void *p)
{
    producer *pr = (producer *)p;
    long i;
    for (i = 0; i < pr->count; i++) {
        for (;;) {
            tg_status s = tg_runner_post(pr->runner, work_count, pr->counter, done_count);
            if (s == TG_OK)
                break;
            if (s == TG_ERR_LIMIT) {
                pr->refused_full++;
                sched_yield();
                continue;
            }
            pr->other_errors++;
            break;
        }
    }
    return NULL;
}

static void test_producers(void)
{
    enum { P = 4 };
    producer pr[P];
    uint64_t counter = 0;
    long per = tgt_iterations(25000), errors = 0;
    tg_handle runner;
    int i;

    tgt_section("several producers post concurrently: every job and callback once");
    runner = start("c-producers", 1024);
    for (i = 0; i < P; i++) {
        memset(&pr[i], 0, sizeof pr[i]);
        pr[i].runner = runner;
        pr[i].count = per;
        pr[i].counter = &counter;
        if (pthread_create(&pr[i].thread, NULL, producer_main, &pr[i]) != 0)
            abort();
    }
    for (i = 0; i < P; i++) {
        pthread_join(pr[i].thread, NULL);
        errors += pr[i].other_errors;
    }
    flush(runner); /* also orders the runner's writes before the reads below */
    CHECK_U64(errors, 0);
    CHECK_U64(counter, (uint64_t)(P * per));
    CHECK_U64(completions, (uint64_t)(P * per));
    CHECK_STATUS(tg_runner_stop(runner), TG_OK);
}

/* ------------------------------------------------------------------ */

int main(void)
{
    CHECK(tg_current_thread_id() != 0); /* the main thread's state exists before any delta */
    test_constants();
    test_start_call_and_ownership();
    test_post_callbacks();
    test_call_timeouts();
    test_completion_queue();
    test_full_queue();
    test_stop_while_busy();
    test_misuse();
    test_producers();

    tgt_final_checks();
    return tgt_finish();
}
