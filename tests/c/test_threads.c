/*
 * test_threads.c - cross-thread contract tests for the threadguard C ABI.
 *
 * Covers: thread identity and the thread counters; handles used from another
 * live thread (WRONG_THREAD, nothing touched, tg_destroy destroys nothing);
 * handles whose owner has exited (OWNER_EXITED for every entry point,
 * including tg_destroy_later); tg_destroy_later from another thread, run on
 * the owner at its next entry, at tg_run_pending, at tg_thread_cleanup and at
 * its exit, duplicate and stale requests, and a request for a borrowed object
 * waiting for the borrow to end; objects still owned at thread exit
 * (including parents destroying children, and pthread_exit); last-error
 * messages naming both threads; tg_destroy_later racing the owner's exit;
 * and a concurrent destroy_later storm.
 *
 * Every destructor records the thread it ran on; a destructor on a wrong
 * thread, a second run or a missing run fails a check.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <sched.h>

/* ------------------------------------------------------------------ */
/* Running single operations on a worker thread                        */
/* ------------------------------------------------------------------ */

enum {
    OP_WITH,           /* tg_with(h, tag, tgt_borrow_cb, NULL) */
    OP_WITH_FORBIDDEN, /* tg_with(h, tag, tgt_forbidden_cb, NULL): must be rejected */
    OP_WITH_NULL_FN,   /* tg_with(h, tag, NULL, NULL) */
    OP_DESTROY,
    OP_DESTROY_LATER,
    OP_RUN_PENDING,
    OP_CLEANUP,
    OP_OWNER_OF,
    OP_STATS,
    OP_LAST_ERROR
};

typedef struct op {
    int kind;
    tg_handle h;
    uint32_t tag;
    tg_status st;
    uint64_t out_id;
    tg_stats stats;
    char msg[1024]; /* last-error text, read right after a failed call */
    size_t msglen;
} op;

static void op_job(void *p)
{
    op *o = (op *)p;
    o->msg[0] = '\0';
    o->msglen = 0;
    switch (o->kind) {
    case OP_WITH:
        o->st = tg_with(o->h, o->tag, tgt_borrow_cb, NULL);
        break;
    case OP_WITH_FORBIDDEN:
        o->st = tg_with(o->h, o->tag, tgt_forbidden_cb, NULL);
        break;
    case OP_WITH_NULL_FN:
        o->st = tg_with(o->h, o->tag, NULL, NULL);
        break;
    case OP_DESTROY:
        o->st = tg_destroy(o->h);
        break;
    case OP_DESTROY_LATER:
        o->st = tg_destroy_later(o->h);
        break;
    case OP_RUN_PENDING:
        o->st = tg_run_pending();
        break;
    case OP_CLEANUP:
        o->st = tg_thread_cleanup();
        break;
    case OP_OWNER_OF:
        o->out_id = 0;
        o->st = tg_owner_of(o->h, &o->out_id);
        break;
    case OP_STATS:
        o->st = tg_get_stats(&o->stats);
        break;
    case OP_LAST_ERROR:
        o->st = TG_OK;
        o->msglen = tgt_last_error(o->msg, sizeof o->msg);
        return;
    default:
        o->st = -1;
        break;
    }
    if (o->st != TG_OK)
        o->msglen = tgt_last_error(o->msg, sizeof o->msg);
}

static op g_op; /* used by the orchestrating main thread only */

/* Runs one operation on worker w and returns its status; details in g_op. */
static tg_status on(tgt_worker *w, int kind, tg_handle h, uint32_t tag)
{
    memset(&g_op, 0, sizeof g_op);
    g_op.kind = kind;
    g_op.h = h;
    g_op.tag = tag;
    tgt_worker_call(w, op_job, &g_op);
    return g_op.st;
}

typedef struct make_job {
    int id;
    uint32_t tag;
    tgt_obj *o;
} make_job;

static void make_job_fn(void *p)
{
    make_job *m = (make_job *)p;
    m->o = tgt_obj_make(m->id, m->tag);
}

/* Creates and registers a tracked object on worker w (so w owns it). */
static tgt_obj *make_on(tgt_worker *w, int id, uint32_t tag)
{
    make_job m;
    m.id = id;
    m.tag = tag;
    m.o = NULL;
    tgt_worker_call(w, make_job_fn, &m);
    return m.o;
}

/* Stats snapshot taken on worker w (which is then not a quiescent owner any more). */
static void stats_on(tgt_worker *w, tg_stats *s)
{
    CHECK_STATUS(on(w, OP_STATS, tgt_handle(0, 0), 0), TG_OK);
    *s = g_op.stats;
}

/* ------------------------------------------------------------------ */
/* Thread identity and thread counters                                 */
/* ------------------------------------------------------------------ */

typedef struct id_probe {
    uint64_t id1, id2;
    tg_status st;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *release; /* if non-NULL: wait until *release != 0 before exiting */
    int *arrived;
} id_probe;

static void *id_thread(void *p)
{
    id_probe *ip = (id_probe *)p;
    ip->id1 = tg_current_thread_id();
    ip->st = tg_run_pending();
    ip->id2 = tg_current_thread_id();
    if (ip->release) {
        pthread_mutex_lock(ip->mu);
        (*ip->arrived)++;
        pthread_cond_broadcast(ip->cv);
        while (!*ip->release)
            pthread_cond_wait(ip->cv, ip->mu);
        pthread_mutex_unlock(ip->mu);
    }
    return NULL;
}

static void test_thread_identity(void)
{
    enum { SEQ = 100, PAR = 8 };
    id_probe probes[SEQ];
    id_probe par[PAR];
    pthread_t th[PAR];
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int release = 0, arrived = 0;
    uint64_t me = tg_current_thread_id();
    int i, j, distinct = 1, stable = 1, nonzero = 1;
    tg_stats before, during, after;
    tgt_delta d;

    tgt_section("thread identity: nonzero, stable, never reused; thread counters");
    STATS_NOW(before);
    for (i = 0; i < SEQ; i++) {
        pthread_t t;
        memset(&probes[i], 0, sizeof probes[i]);
        if (pthread_create(&t, NULL, id_thread, &probes[i]) != 0)
            abort();
        pthread_join(t, NULL);
        CHECK_STATUS(probes[i].st, TG_OK);
        if (probes[i].id1 == 0)
            nonzero = 0;
        if (probes[i].id1 != probes[i].id2)
            stable = 0;
        if (probes[i].id1 == me)
            distinct = 0;
        for (j = 0; j < i; j++)
            if (probes[j].id1 == probes[i].id1)
                distinct = 0;
    }
    CHECK_MSG(nonzero, "thread ids are nonzero");
    CHECK_MSG(stable, "a thread's id is stable");
    CHECK_MSG(distinct, "ids of exited threads are never reused");
    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, threads_started, SEQ);
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "sequential threads: started +SEQ, live back");

    before = after;
    for (i = 0; i < PAR; i++) {
        memset(&par[i], 0, sizeof par[i]);
        par[i].mu = &mu;
        par[i].cv = &cv;
        par[i].release = &release;
        par[i].arrived = &arrived;
        if (pthread_create(&th[i], NULL, id_thread, &par[i]) != 0)
            abort();
    }
    pthread_mutex_lock(&mu);
    while (arrived < PAR)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    STATS_NOW(during);
    tgt_delta_init(&d);
    D_SET(d, threads_started, PAR);
    D_SET(d, threads_live, PAR);
    tgt_stats_expect(&before, &during, &d, __FILE__, __LINE__, "parallel threads alive: live +PAR");
    pthread_mutex_lock(&mu);
    release = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (i = 0; i < PAR; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < PAR; i++)
        for (j = 0; j < SEQ; j++)
            if (par[i].id1 == probes[j].id1)
                distinct = 0;
    CHECK_MSG(distinct, "ids are unique across all threads");
    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, threads_started, PAR);
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "parallel threads joined: live back");
    pthread_mutex_destroy(&mu);
    pthread_cond_destroy(&cv);
}

/* ------------------------------------------------------------------ */
/* Wrong thread                                                        */
/* ------------------------------------------------------------------ */

static void test_wrong_thread(void)
{
    tgt_worker intruder;
    tgt_obj *a, *gone;
    tg_handle gone_h;
    uint64_t me = tg_current_thread_id();
    char main_msg_before[1024], main_msg_after[1024];
    tg_stats before, after;
    tgt_delta d;

    tgt_section("wrong thread: another live thread uses the handle");
    CHECK_STATUS(tg_set_thread_name("tg-main-owner"), TG_OK);
    tgt_worker_start(&intruder, "tg-intruder");
    CHECK(intruder.tid != 0 && intruder.tid != me);
    a = tgt_obj_make(100, TAG_A);
    gone = tgt_obj_make(101, TAG_A);
    gone_h = gone->handle;
    CHECK_STATUS(tg_destroy(gone_h), TG_OK);
    CHECK_DESTROYED_ONCE(gone);

    /* Give the main thread a last-error message of its own first. */
    CHECK_STATUS(tg_with(tgt_handle(0, 0), TAG_A, tgt_forbidden_cb, NULL), TG_ERR_NULL_HANDLE);
    tgt_last_error(main_msg_before, sizeof main_msg_before);

    STATS_NOW(before);
    CHECK_STATUS(on(&intruder, OP_WITH_FORBIDDEN, a->handle, TAG_A), TG_ERR_WRONG_THREAD);
    /* The message names the owner (id, name, alive) and the caller. */
    CHECK_MSG(tgt_contains_number(g_op.msg, me), g_op.msg);
    CHECK_MSG(strstr(g_op.msg, "tg-main-owner") != NULL, g_op.msg);
    CHECK_MSG(strstr(g_op.msg, "alive") != NULL, g_op.msg);
    CHECK_MSG(tgt_contains_number(g_op.msg, intruder.tid), g_op.msg);
    CHECK_U64(g_op.msglen, strlen(g_op.msg));
    CHECK_STATUS(on(&intruder, OP_WITH_FORBIDDEN, a->handle, TAG_B), TG_ERR_WRONG_THREAD); /* thread before type */
    CHECK_STATUS(on(&intruder, OP_WITH_NULL_FN, a->handle, TAG_A), TG_ERR_WRONG_THREAD);   /* thread before fn */
    CHECK_STATUS(on(&intruder, OP_DESTROY, a->handle, 0), TG_ERR_WRONG_THREAD);
    CHECK_STATUS(on(&intruder, OP_DESTROY, a->handle, 0), TG_ERR_WRONG_THREAD);
    /* A handle that is stale on its owner is still WRONG_THREAD elsewhere: only the owner sees its table. */
    CHECK_STATUS(on(&intruder, OP_WITH_FORBIDDEN, gone_h, TAG_A), TG_ERR_WRONG_THREAD);
    CHECK_STATUS(on(&intruder, OP_DESTROY, gone_h, 0), TG_ERR_WRONG_THREAD);
    /* Asking who owns it is fine from any thread. */
    CHECK_STATUS(on(&intruder, OP_OWNER_OF, a->handle, 0), TG_OK);
    CHECK_U64(g_op.out_id, me);
    /* The intruder's own last-error message is still the WRONG_THREAD one (successful calls keep it). */
    CHECK_STATUS(on(&intruder, OP_LAST_ERROR, tgt_handle(0, 0), 0), TG_OK);
    CHECK_MSG(tgt_contains_number(g_op.msg, intruder.tid), g_op.msg);

    /* The main thread's last error is its own, untouched by the intruder's errors. */
    tgt_last_error(main_msg_after, sizeof main_msg_after);
    CHECK_STR(main_msg_after, main_msg_before);

    tgt_delta_init(&d);
    D_VIOL(d, wrong_thread, 7);
    STATS_EXPECT(before, after, d, "seven wrong-thread rejections, nothing destroyed");
    CHECK_NOT_DESTROYED(a);
    CHECK_U64(tgt_obj_borrows(a), 0);
    CHECK_STATUS(tg_with(a->handle, TAG_A, tgt_borrow_cb, a), TG_OK);
    CHECK_U64(tgt_obj_borrows(a), 1);
    CHECK_DESTROYED_ONCE(gone);

    CHECK_STATUS(tg_destroy(a->handle), TG_OK);
    CHECK_DESTROYED_ONCE(a);
    tgt_worker_stop(&intruder);
    tgt_obj_free(a);
    tgt_obj_free(gone);
}

/* ------------------------------------------------------------------ */
/* Owner exited                                                        */
/* ------------------------------------------------------------------ */

static void test_owner_exited(void)
{
    tgt_worker owner, other;
    tgt_obj *a, *b;
    tg_handle ha, hb;
    uint64_t owner_id, me = tg_current_thread_id();
    uint64_t out = 777;
    char msg[1024];
    tg_stats before, after;
    tgt_delta d;

    tgt_section("owner exited: the owner thread was joined, then its handle is used");
    tgt_worker_start(&owner, "tg-short-lived");
    tgt_worker_start(&other, "tg-other");
    owner_id = owner.tid;
    a = make_on(&owner, 200, TAG_A);
    b = make_on(&owner, 201, TAG_B);
    ha = a->handle;
    hb = b->handle;
    CHECK_U64(ha.owner, owner_id);
    STATS_NOW(before);
    tgt_worker_stop(&owner); /* its exit destroys a and b, on that thread */
    CHECK_DESTROYED_ONCE(a);
    CHECK_DESTROYED_ONCE(b);
    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 2);
    D_SET(d, live, -2);
    D_SET(d, threads_live, -1);
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "owner exit destroyed its two objects");

    before = after;
    CHECK_STATUS(tg_with(ha, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_OWNER_EXITED);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(tgt_contains_number(msg, owner_id), msg);
    CHECK_MSG(tgt_contains_number(msg, me), msg);
    CHECK_MSG(strstr(msg, "exited") != NULL, msg);
    CHECK_STATUS(tg_with(hb, TAG_A, NULL, NULL), TG_ERR_OWNER_EXITED); /* exited before type and fn */
    CHECK_STATUS(tg_destroy(ha), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_destroy_later(ha), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_destroy_later(hb), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_owner_of(ha, &out), TG_ERR_OWNER_EXITED);
    CHECK_U64(out, 777);
    CHECK_STATUS(on(&other, OP_WITH_FORBIDDEN, hb, TAG_B), TG_ERR_OWNER_EXITED);
    CHECK_MSG(strstr(g_op.msg, "exited") != NULL, g_op.msg);
    CHECK_STATUS(on(&other, OP_DESTROY_LATER, hb, 0), TG_ERR_OWNER_EXITED);
    tgt_delta_init(&d);
    D_VIOL(d, owner_exited, 8);
    STATS_EXPECT(before, after, d, "eight owner-exited rejections, nothing else");
    CHECK_DESTROYED_ONCE(a);
    CHECK_DESTROYED_ONCE(b);
    tgt_worker_stop(&other);
    tgt_obj_free(a);
    tgt_obj_free(b);
}

/* ------------------------------------------------------------------ */
/* tg_destroy_later from another thread                                */
/* ------------------------------------------------------------------ */

static void test_destroy_later_cross_thread(void)
{
    tgt_worker owner, requester, requester2;
    tgt_obj *a, *o2;
    tg_stats before, after, seen;
    tgt_delta d;

    tgt_section("destroy_later from another thread, run at the owner's tg_run_pending");
    tgt_worker_start(&owner, "tg-owner");
    tgt_worker_start(&requester, "tg-requester");
    tgt_worker_start(&requester2, "tg-requester-2");
    a = make_on(&owner, 300, TAG_A);
    STATS_NOW(before);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    stats_on(&requester, &seen);
    CHECK_U64(seen.deferred_pending, before.deferred_pending + 1);
    CHECK_NOT_DESTROYED(a); /* the owner has not entered the library since */
    STATS_NOW(seen);
    CHECK_U64(seen.deferred_pending, before.deferred_pending + 1);
    CHECK_NOT_DESTROYED(a);
    CHECK_STATUS(on(&owner, OP_RUN_PENDING, tgt_handle(0, 0), 0), TG_OK);
    CHECK_DESTROYED_ONCE(a);
    CHECK_STATUS(on(&owner, OP_WITH_FORBIDDEN, a->handle, TAG_A), TG_ERR_STALE);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    D_VIOL(d, stale, 1);
    STATS_EXPECT(before, after, d, "queued, then run by the owner");
    tgt_obj_free(a);

    tgt_section("destroy_later from another thread, run at the owner's next entry");
    a = make_on(&owner, 301, TAG_A);
    o2 = make_on(&owner, 302, TAG_B);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    CHECK_NOT_DESTROYED(a);
    CHECK_STATUS(on(&owner, OP_WITH, o2->handle, TAG_B), TG_OK);
    CHECK_U64(tgt_obj_borrows(o2), 1);
    CHECK_DESTROYED_ONCE(a);
    CHECK_NOT_DESTROYED(o2);
    tgt_obj_free(a);

    tgt_section("duplicate requests from several threads: destroyed once");
    a = make_on(&owner, 303, TAG_A);
    STATS_NOW(before);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    CHECK_STATUS(on(&requester2, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    STATS_NOW(seen);
    CHECK_U64(seen.deferred_pending, before.deferred_pending + 3);
    CHECK_STATUS(on(&owner, OP_RUN_PENDING, tgt_handle(0, 0), 0), TG_OK);
    CHECK_DESTROYED_ONCE(a);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    D_VIOL(d, stale, 2); /* the two extra requests found the object gone */
    STATS_EXPECT(before, after, d, "three requests, one destruction");
    tgt_obj_free(a);

    tgt_section("request for an object the owner already destroyed");
    a = make_on(&owner, 304, TAG_A);
    CHECK_STATUS(on(&owner, OP_DESTROY, a->handle, 0), TG_OK);
    CHECK_DESTROYED_ONCE(a);
    STATS_NOW(before);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK); /* cannot be checked from here */
    CHECK_STATUS(on(&owner, OP_RUN_PENDING, tgt_handle(0, 0), 0), TG_OK);
    CHECK_DESTROYED_ONCE(a);
    CHECK_NOT_DESTROYED(o2);
    tgt_delta_init(&d);
    D_VIOL(d, stale, 1);
    STATS_EXPECT(before, after, d, "a stale request destroys nothing");
    tgt_obj_free(a);

    tgt_section("queued request, then the owner destroys the object itself");
    a = make_on(&owner, 307, TAG_A);
    STATS_NOW(before);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    /* tg_destroy may run the queued request first (then it finds the object gone): either way, once. */
    CHECK_STATUS_IN(on(&owner, OP_DESTROY, a->handle, 0), TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_STALE));
    CHECK_STATUS(on(&owner, OP_RUN_PENDING, tgt_handle(0, 0), 0), TG_OK);
    CHECK_DESTROYED_ONCE(a);
    CHECK_NOT_DESTROYED(o2);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    D_VIOL(d, stale, 1); /* whichever of the two came second */
    STATS_EXPECT(before, after, d, "explicit destroy and queued request: one destruction");
    tgt_obj_free(a);

    tgt_section("destroy_later from another thread, run at the owner's tg_thread_cleanup");
    a = make_on(&owner, 305, TAG_A);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    CHECK_STATUS(on(&owner, OP_CLEANUP, tgt_handle(0, 0), 0), TG_OK);
    CHECK_DESTROYED_ONCE(a);
    CHECK_DESTROYED_ONCE(o2); /* cleanup destroyed everything else the owner had */
    tgt_obj_free(a);
    tgt_obj_free(o2);

    tgt_section("destroy_later from another thread, run at the owner's exit");
    a = make_on(&owner, 306, TAG_A);
    STATS_NOW(before);
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_OK);
    CHECK_NOT_DESTROYED(a);
    tgt_worker_stop(&owner);
    CHECK_DESTROYED_ONCE(a);
    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    D_SET(d, threads_live, -1);
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "request run at exit, queue empty");
    CHECK_STATUS(on(&requester, OP_DESTROY_LATER, a->handle, 0), TG_ERR_OWNER_EXITED);
    tgt_obj_free(a);

    tgt_worker_stop(&requester);
    tgt_worker_stop(&requester2);
}

/* A request for an object that is being borrowed waits until the borrow ends. */
typedef struct busy_wait_ctx {
    tgt_worker *requester;
    tgt_obj *a, *other;
    op req;
    int ran;
} busy_wait_ctx;

static void busy_wait_cb(void *object, void *context)
{
    busy_wait_ctx *c = (busy_wait_ctx *)context;
    CHECK(object == c->a);
    memset(&c->req, 0, sizeof c->req);
    c->req.kind = OP_DESTROY_LATER;
    c->req.h = c->a->handle;
    tgt_worker_call(c->requester, op_job, &c->req); /* another thread asks while we borrow */
    CHECK_STATUS(c->req.st, TG_OK);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_NOT_DESTROYED(c->a);
    CHECK_STATUS(tg_with(c->other->handle, TAG_B, tgt_borrow_cb, c->other), TG_OK);
    CHECK_NOT_DESTROYED(c->a);
    CHECK(c->a->magic == TGT_MAGIC);
    c->ran++;
}

typedef struct busy_wait_job {
    busy_wait_ctx *ctx;
    tg_status with_st, pending_st, after_st;
} busy_wait_job;

static void busy_wait_job_fn(void *p)
{
    busy_wait_job *j = (busy_wait_job *)p;
    j->with_st = tg_with(j->ctx->a->handle, TAG_A, busy_wait_cb, j->ctx);
    j->pending_st = tg_run_pending();
    j->after_st = tg_with(j->ctx->a->handle, TAG_A, tgt_forbidden_cb, NULL);
}

static void test_destroy_later_waits_for_borrow(void)
{
    tgt_worker owner, requester;
    busy_wait_ctx ctx;
    busy_wait_job job;

    tgt_section("destroy_later of a borrowed object waits until the borrow ends");
    tgt_worker_start(&owner, "tg-borrower");
    tgt_worker_start(&requester, "tg-requester");
    memset(&ctx, 0, sizeof ctx);
    ctx.requester = &requester;
    ctx.a = make_on(&owner, 400, TAG_A);
    ctx.other = make_on(&owner, 401, TAG_B);
    job.ctx = &ctx;
    tgt_worker_call(&owner, busy_wait_job_fn, &job);
    CHECK_STATUS(job.with_st, TG_OK);
    CHECK_U64(ctx.ran, 1);
    CHECK_STATUS(job.pending_st, TG_OK);
    CHECK_DESTROYED_ONCE(ctx.a);
    CHECK_STATUS(job.after_st, TG_ERR_STALE);
    CHECK_NOT_DESTROYED(ctx.other);
    tgt_worker_stop(&owner);
    CHECK_DESTROYED_ONCE(ctx.other);
    tgt_worker_stop(&requester);
    tgt_obj_free(ctx.a);
    tgt_obj_free(ctx.other);
}

/* ------------------------------------------------------------------ */
/* Objects still owned at thread exit                                  */
/* ------------------------------------------------------------------ */

enum { EXIT_PLAIN = 50 };

typedef struct exit_job {
    tgt_obj *plain[EXIT_PLAIN];
    tgt_obj *parent, *c1, *c2, *c3;
    tgt_obj *late; /* registered after a cleanup: the thread stays usable */
    int use_pthread_exit;
    int cleanup_first;
    tgt_obj *early; /* destroyed by the cleanup */
    tg_status cleanup_st;
    tgt_obj *registrar;  /* its destructor tries to register `newcomer` during the exit */
    tgt_obj *newcomer;
} exit_job;

static void *exit_thread(void *p)
{
    exit_job *j = (exit_job *)p;
    int i;
    if (j->cleanup_first) {
        j->early = tgt_obj_make(599, TAG_A);
        j->cleanup_st = tg_thread_cleanup();
        /* No CHECK here on the early object: the main thread checks after the join. */
    }
    for (i = 0; i < EXIT_PLAIN; i++)
        j->plain[i] = tgt_obj_make(500 + i, i % 3 ? TAG_A : TAG_B);
    j->c1 = tgt_obj_make(551, TAG_A);
    j->c2 = tgt_obj_make(552, TAG_B);
    j->parent = tgt_obj_make(550, TAG_A);
    j->c3 = tgt_obj_make(553, TAG_A);
    j->parent->nchildren = 3;
    j->parent->children[0] = j->c1->handle;
    j->parent->children[1] = j->c2->handle;
    j->parent->children[2] = j->c3->handle;
    j->registrar = tgt_obj_make(554, TAG_B);
    j->newcomer = tgt_obj_new(555, TAG_A);
    j->registrar->register_in_dtor = j->newcomer;
    if (j->use_pthread_exit)
        pthread_exit(NULL);
    return NULL;
}

static void exit_job_check_and_free(exit_job *j)
{
    int i;
    for (i = 0; i < EXIT_PLAIN; i++) {
        CHECK_DESTROYED_ONCE(j->plain[i]);
        tgt_obj_free(j->plain[i]);
    }
    CHECK_DESTROYED_ONCE(j->parent);
    CHECK_DESTROYED_ONCE(j->c1);
    CHECK_DESTROYED_ONCE(j->c2);
    CHECK_DESTROYED_ONCE(j->c3);
    /* At exit a child may be destroyed before or by its parent; either way exactly once. */
    for (i = 0; i < 3; i++)
        CHECK_STATUS_IN(j->parent->child_status[i], TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_STALE));
    tgt_obj_free(j->parent);
    tgt_obj_free(j->c1);
    tgt_obj_free(j->c2);
    tgt_obj_free(j->c3);
    /* Registering while the thread destroys what it owns is refused; the object stays the caller's. */
    CHECK_DESTROYED_ONCE(j->registrar);
    CHECK_STATUS(j->registrar->register_in_dtor_status, TG_ERR_SHUT_DOWN);
    CHECK_NOT_DESTROYED(j->newcomer);
    tgt_obj_free(j->registrar);
    tgt_obj_free(j->newcomer);
    if (j->cleanup_first) {
        CHECK_STATUS(j->cleanup_st, TG_OK);
        CHECK_DESTROYED_ONCE(j->early);
        tgt_obj_free(j->early);
    }
}

static void test_objects_destroyed_at_exit(void)
{
    exit_job j;
    pthread_t t;
    tg_stats before, after;
    tgt_delta d;
    int variant;
    static const char *const names[3] = {"thread returns", "thread calls pthread_exit",
                                         "thread cleans up, registers again, returns"};

    for (variant = 0; variant < 3; variant++) {
        char title[128];
        snprintf(title, sizeof title, "objects still owned at thread exit are destroyed on it (%s)",
                 names[variant]);
        tgt_section(title);
        memset(&j, 0, sizeof j);
        j.use_pthread_exit = variant == 1;
        j.cleanup_first = variant == 2;
        STATS_NOW(before);
        if (pthread_create(&t, NULL, exit_thread, &j) != 0)
            abort();
        pthread_join(t, NULL);
        STATS_NOW(after);
        tgt_delta_init(&d);
        D_SET(d, created, EXIT_PLAIN + 5 + (variant == 2));
        D_SET(d, destroyed, EXIT_PLAIN + 5 + (variant == 2));
        D_SET(d, threads_started, 1);
        D_IGNORE(d, violations_stale); /* a parent may find a child already gone */
        tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, title);
        exit_job_check_and_free(&j);
    }
}

/* ------------------------------------------------------------------ */
/* Last-error message on a fresh thread                                */
/* ------------------------------------------------------------------ */

static void test_fresh_thread_last_error(void)
{
    tgt_worker w;
    tgt_section("a fresh thread has no last-error message");
    tgt_worker_start(&w, NULL);
    CHECK_STATUS(on(&w, OP_LAST_ERROR, tgt_handle(0, 0), 0), TG_OK);
    CHECK_U64(g_op.msglen, 0);
    CHECK(g_op.msg[0] == '\0');
    tgt_worker_stop(&w);
}

/* ------------------------------------------------------------------ */
/* tg_destroy_later racing the owner's exit                            */
/* ------------------------------------------------------------------ */

typedef struct race {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    tgt_obj *o;
    tg_handle h;
    unsigned owner_spin, requester_spin;
    tg_status later;
} race;

/* Busy work of n steps. The accumulator is local to the spinning thread (volatile, so the
 * loop is not optimised away): both racing threads spin at once, and a shared one would be a
 * data race of the test's own (ThreadSanitizer reports it). */
static void spin(unsigned n)
{
    volatile unsigned long sink = 0;
    unsigned i;
    for (i = 0; i < n; i++)
        sink += i;
}

static void *race_owner(void *p)
{
    race *r = (race *)p;
    tgt_obj *o = tgt_obj_make(600, TAG_A);
    pthread_mutex_lock(&r->mu);
    r->o = o;
    r->h = o->handle;
    r->ready = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    spin(r->owner_spin);
    return NULL; /* exits owning o */
}

static void *race_requester(void *p)
{
    race *r = (race *)p;
    tg_handle h;
    (void)tg_current_thread_id();
    pthread_mutex_lock(&r->mu);
    while (!r->ready)
        pthread_cond_wait(&r->cv, &r->mu);
    h = r->h;
    pthread_mutex_unlock(&r->mu);
    spin(r->requester_spin);
    r->later = tg_destroy_later(h);
    return NULL;
}

static void test_destroy_later_races_exit(void)
{
    long iterations = tgt_iterations(400);
    long i, accepted = 0, refused = 0;
    uint64_t seed = tgt_seed();
    tg_stats before, after;
    tgt_delta d;
    char line[160];

    tgt_section("tg_destroy_later racing the owner's exit");
    STATS_NOW(before);
    for (i = 0; i < iterations; i++) {
        race r;
        pthread_t to, tr;
        memset(&r, 0, sizeof r);
        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        r.owner_spin = (unsigned)(tgt_rand(&seed) % 100000);
        r.requester_spin = (unsigned)(tgt_rand(&seed) % 20000);
        if (pthread_create(&tr, NULL, race_requester, &r) != 0 ||
            pthread_create(&to, NULL, race_owner, &r) != 0)
            abort();
        pthread_join(to, NULL);
        pthread_join(tr, NULL);
        if (r.later == TG_OK)
            accepted++;
        else if (r.later == TG_ERR_OWNER_EXITED)
            refused++;
        else
            CHECK_STATUS_IN(r.later, TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_OWNER_EXITED));
        if (r.o) {
            if (tgt_obj_dtor_runs(r.o) != 1 || r.o->dtor_wrong_pthread || r.o->dtor_wrong_tid)
                CHECK_DESTROYED_ONCE(r.o);
            tgt_obj_free(r.o);
        }
        pthread_mutex_destroy(&r.mu);
        pthread_cond_destroy(&r.cv);
    }
    CHECK_U64(accepted + refused, iterations);
    snprintf(line, sizeof line, "   %ld iterations: %ld requests accepted, %ld refused with OWNER_EXITED",
             iterations, accepted, refused);
    tgt_section(line);
    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, created, iterations);
    D_SET(d, destroyed, iterations);
    D_SET(d, threads_started, 2 * iterations);
    D_VIOL(d, owner_exited, refused);
    D_IGNORE(d, violations_stale); /* an accepted request may find its object already destroyed by the exit */
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "race: every object destroyed once, queue empty");
}

/* ------------------------------------------------------------------ */
/* Concurrent destroy_later storm                                      */
/* ------------------------------------------------------------------ */

enum { STORM_OWNERS = 4, STORM_OBJECTS = 150 };

typedef struct storm {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int owners_ready;
    int requesters_done;
    tgt_obj *objs[STORM_OWNERS][STORM_OBJECTS];
    uint64_t owner_ids[STORM_OWNERS];
    tg_status bad_status; /* first unexpected status seen by a requester */
    long requests_ok;
} storm;

typedef struct storm_arg {
    storm *s;
    int index;
} storm_arg;

static void *storm_owner(void *p)
{
    storm_arg *a = (storm_arg *)p;
    storm *s = a->s;
    int i, done = 0;
    for (i = 0; i < STORM_OBJECTS; i++)
        s->objs[a->index][i] = tgt_obj_make(700 + i, TAG_A);
    pthread_mutex_lock(&s->mu);
    s->owner_ids[a->index] = tg_current_thread_id();
    s->owners_ready++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    while (!done) {
        tg_status st = tg_run_pending();
        if (st != TG_OK)
            CHECK_STATUS(st, TG_OK);
        /* Borrow a few survivors meanwhile: requests must never hit a borrowed object. */
        for (i = 0; i < STORM_OBJECTS; i += 17) {
            tgt_obj *o = s->objs[a->index][i];
            st = tg_with(o->handle, TAG_A, tgt_borrow_cb, o);
            if (st != TG_OK && st != TG_ERR_STALE)
                CHECK_STATUS_IN(st, TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_STALE));
        }
        sched_yield();
        pthread_mutex_lock(&s->mu);
        done = s->requesters_done == STORM_OWNERS;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL; /* what was not requested is destroyed at exit */
}

static void *storm_requester(void *p)
{
    storm_arg *a = (storm_arg *)p;
    storm *s = a->s;
    int i, k;
    long ok = 0;
    (void)tg_current_thread_id();
    pthread_mutex_lock(&s->mu);
    while (s->owners_ready < STORM_OWNERS)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    for (k = 0; k < 2; k++) {
        int target = (a->index + k) % STORM_OWNERS;
        for (i = k; i < STORM_OBJECTS; i += 1 + k) {
            tg_status st = tg_destroy_later(s->objs[target][i]->handle);
            if (st == TG_OK) {
                ok++;
            } else {
                pthread_mutex_lock(&s->mu);
                if (!s->bad_status)
                    s->bad_status = st;
                pthread_mutex_unlock(&s->mu);
            }
        }
    }
    pthread_mutex_lock(&s->mu);
    s->requests_ok += ok;
    s->requesters_done++;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void test_destroy_later_storm(void)
{
    storm *s = (storm *)calloc(1, sizeof *s);
    storm_arg args[STORM_OWNERS];
    pthread_t owners[STORM_OWNERS], requesters[STORM_OWNERS];
    int i, k, bad = 0;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("concurrent destroy_later storm: 4 owners, 4 requesters");
    if (!s)
        abort();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    STATS_NOW(before);
    for (i = 0; i < STORM_OWNERS; i++) {
        args[i].s = s;
        args[i].index = i;
        if (pthread_create(&owners[i], NULL, storm_owner, &args[i]) != 0 ||
            pthread_create(&requesters[i], NULL, storm_requester, &args[i]) != 0)
            abort();
    }
    for (i = 0; i < STORM_OWNERS; i++) {
        pthread_join(requesters[i], NULL);
        pthread_join(owners[i], NULL);
    }
    CHECK_STATUS(s->bad_status, TG_OK); /* every request to a live owner was accepted */
    CHECK_U64(s->requests_ok, STORM_OWNERS * (STORM_OBJECTS + STORM_OBJECTS / 2));
    for (i = 0; i < STORM_OWNERS; i++) {
        for (k = 0; k < STORM_OBJECTS; k++) {
            tgt_obj *o = s->objs[i][k];
            if (tgt_obj_dtor_runs(o) != 1 || o->dtor_wrong_pthread || o->dtor_wrong_tid || o->borrow_wrong_thread)
                bad++;
            tgt_obj_free(o);
        }
    }
    CHECK_MSG(bad == 0, "every storm object destroyed exactly once, on its owner");
    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, created, STORM_OWNERS * STORM_OBJECTS);
    D_SET(d, destroyed, STORM_OWNERS * STORM_OBJECTS);
    D_SET(d, threads_started, 2 * STORM_OWNERS);
    D_IGNORE(d, violations_stale); /* duplicate requests, and borrows of objects already destroyed */
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "storm: all destroyed, queue empty");
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* ------------------------------------------------------------------ */

int main(void)
{
    tg_stats s;
    uint64_t me = tg_current_thread_id();
    CHECK(me != 0);
    STATS_NOW(s);
    CHECK_U64(s.threads_live, 1);

    test_thread_identity();
    test_wrong_thread();
    test_owner_exited();
    test_destroy_later_cross_thread();
    test_destroy_later_waits_for_borrow();
    test_objects_destroyed_at_exit();
    test_fresh_thread_last_error();
    test_destroy_later_races_exit();
    test_destroy_later_storm();

    tgt_final_checks();
    return tgt_finish();
}
