/*
 * test_transfer.c - ownership transfer from C: tg_detach on the owner, tg_adopt or
 * tg_token_destroy on any thread.
 *
 * Covers: a detached object adopted by a worker and destroyed there once; the old handle
 * answers TG_ERR_STALE; many threads racing to adopt (or destroy) one token, exactly one
 * winning; spent, forged and null tokens; detach refusals (busy, wrong type, NULL out pointer)
 * that change nothing; a token that outlives its old owner's exit; tg_stats.detached.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <pthread.h>

static uint64_t detached_now(void)
{
    tg_stats s;
    CHECK_STATUS(tg_get_stats(&s), TG_OK);
    return s.detached;
}

/* Adopts the token on the calling thread, which becomes the object's owner (and the thread
 * its destructor must run on). */
static tg_status adopt_obj(tg_token token, tgt_obj *o)
{
    tg_handle h;
    tg_status s = tg_adopt(token, &h);
    if (s == TG_OK) {
        pthread_mutex_lock(&tgt_obj_lock);
        o->handle = h;
        o->creator = pthread_self();
        o->creator_tid = tg_current_thread_id();
        pthread_mutex_unlock(&tgt_obj_lock);
    }
    return s;
}

typedef struct {
    tg_token token;
    tgt_obj *o;
    tg_status adopt_status;
    tg_status with_status;
    tg_status destroy_status;
} adopt_job;

static void adopt_and_destroy(void *p)
{
    adopt_job *job = (adopt_job *)p;
    job->adopt_status = adopt_obj(job->token, job->o);
    job->with_status = tg_with(job->o->handle, job->o->tag, tgt_borrow_cb, job->o);
    job->destroy_status = tg_destroy(job->o->handle);
}

static void test_detach_then_adopt_on_a_worker(void)
{
    tgt_worker w;
    tgt_obj *o;
    tg_handle old;
    tg_token token;
    adopt_job job;
    uint64_t before = detached_now();
    char msg[512];

    tgt_section("detach on the owner, adopt and destroy on a worker");
    tgt_worker_start(&w, "adopter");
    o = tgt_obj_make(1, TAG_A);
    old = o->handle;
    CHECK_STATUS(tg_detach(old, TAG_A, &token), TG_OK);
    CHECK_U64(detached_now(), before + 1);
    CHECK_STATUS(tg_with(old, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    CHECK_STATUS(tg_destroy(old), TG_ERR_STALE);
    CHECK_STATUS(tg_detach(old, TAG_A, &token), TG_ERR_STALE);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(strstr(msg, "names no live object") != NULL, msg);

    memset(&job, 0, sizeof job);
    job.token = token;
    job.o = o;
    tgt_worker_call(&w, adopt_and_destroy, &job);
    CHECK_STATUS(job.adopt_status, TG_OK);
    CHECK_STATUS(job.with_status, TG_OK);
    CHECK_STATUS(job.destroy_status, TG_OK);
    CHECK_U64(o->handle.owner, w.tid);
    CHECK_DESTROYED_ONCE(o);
    CHECK_U64(detached_now(), before);

    CHECK_STATUS(tg_adopt(token, &old), TG_ERR_STALE);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(strstr(msg, "already adopted by thread") != NULL, msg);
    CHECK_MSG(strstr(msg, "adopter") != NULL, msg);
    tgt_worker_stop(&w);
    tgt_obj_free(o);
}

#define RACERS 8

typedef struct {
    pthread_barrier_t *start;
    tg_token token;
    tgt_obj *o;
    int destroy_instead;
    tg_status status;
} racer;

static void *race(void *p)
{
    racer *r = (racer *)p;
    pthread_barrier_wait(r->start);
    if (r->destroy_instead) {
        /* The destructor would run here: make this thread its expected thread first. */
        r->status = tg_token_destroy(r->token);
    } else {
        r->status = adopt_obj(r->token, r->o);
        if (r->status == TG_OK)
            CHECK_STATUS(tg_destroy(r->o->handle), TG_OK);
    }
    return NULL;
}

/* Destructor for the race: counts runs only (the winner's thread is not known in advance). */
static unsigned long race_dtor_runs;
static void race_dtor(void *p)
{
    (void)p;
    pthread_mutex_lock(&tgt_obj_lock);
    race_dtor_runs++;
    pthread_mutex_unlock(&tgt_obj_lock);
}

static void test_racing_adoptions(void)
{
    long rounds = tgt_iterations(100), round;
    tgt_section("many threads adopt or destroy one token: exactly one wins");
    for (round = 0; round < rounds; round++) {
        pthread_t threads[RACERS];
        racer racers[RACERS];
        pthread_barrier_t start;
        tgt_obj *o = tgt_obj_new((int)round, TAG_B);
        tg_handle h;
        tg_token token;
        int i, wins = 0, stale = 0;
        unsigned long runs_before;

        CHECK_STATUS(tg_register(TAG_B, o, race_dtor, &h), TG_OK);
        CHECK_STATUS(tg_detach(h, TAG_B, &token), TG_OK);
        pthread_mutex_lock(&tgt_obj_lock);
        runs_before = race_dtor_runs;
        pthread_mutex_unlock(&tgt_obj_lock);
        pthread_barrier_init(&start, NULL, RACERS);
        for (i = 0; i < RACERS; i++) {
            racers[i].start = &start;
            racers[i].token = token;
            racers[i].o = o;
            racers[i].destroy_instead = i % 3 == 0;
            racers[i].status = -1;
            CHECK(pthread_create(&threads[i], NULL, race, &racers[i]) == 0);
        }
        for (i = 0; i < RACERS; i++) {
            pthread_join(threads[i], NULL);
            wins += racers[i].status == TG_OK;
            stale += racers[i].status == TG_ERR_STALE;
        }
        pthread_barrier_destroy(&start);
        CHECK_U64(wins, 1);
        CHECK_U64(stale, RACERS - 1);
        pthread_mutex_lock(&tgt_obj_lock);
        CHECK_U64(race_dtor_runs - runs_before, 1);
        pthread_mutex_unlock(&tgt_obj_lock);
        tgt_obj_free(o);
    }
}

typedef struct {
    tg_handle handle;
    tg_token token;
    tg_status status;
} nested_detach;

static void detach_inside(void *object, void *context)
{
    nested_detach *n = (nested_detach *)context;
    (void)object;
    n->status = tg_detach(n->handle, TAG_A, &n->token);
}

static void test_refusals_change_nothing(void)
{
    tgt_obj *o;
    tg_token token, forged;
    nested_detach n;
    uint64_t before = detached_now();
    tg_handle h;
    char msg[512];

    tgt_section("detach refusals and bad tokens");
    o = tgt_obj_make(2, TAG_A);
    n.handle = o->handle;
    n.status = -1;
    CHECK_STATUS(tg_with(o->handle, TAG_A, detach_inside, &n), TG_OK);
    CHECK_STATUS(n.status, TG_ERR_BUSY);
    CHECK_STATUS(tg_detach(o->handle, TAG_B, &token), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_detach(o->handle, TAG_A, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_detach(tgt_handle(0, 0), TAG_A, &token), TG_ERR_NULL_HANDLE);
    CHECK_U64(detached_now(), before);
    CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_borrow_cb, o), TG_OK);
    CHECK_NOT_DESTROYED(o);

    CHECK_STATUS(tg_detach(o->handle, TAG_A, &token), TG_OK);
    forged = token;
    forged.check ^= 1u << 9;
    CHECK_STATUS(tg_adopt(forged, &h), TG_ERR_STALE);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(strstr(msg, "never issued") != NULL, msg);
    memset(&forged, 0, sizeof forged);
    CHECK_STATUS(tg_adopt(forged, &h), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(tg_token_destroy(forged), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(tg_adopt(token, NULL), TG_ERR_NULL_POINTER);
    CHECK_NOT_DESTROYED(o);
    CHECK_STATUS(tg_token_destroy(token), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    CHECK_STATUS(tg_token_destroy(token), TG_ERR_STALE);
    CHECK_STATUS(tg_adopt(token, &h), TG_ERR_STALE);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(strstr(msg, "already destroyed") != NULL, msg);
    CHECK_U64(detached_now(), before);
    tgt_obj_free(o);
}

typedef struct {
    tgt_obj *o;
    tg_token token;
} exiting_owner;

static void *detach_and_exit(void *p)
{
    exiting_owner *e = (exiting_owner *)p;
    e->o->creator = pthread_self();
    e->o->creator_tid = tg_current_thread_id();
    CHECK_STATUS(tgt_obj_register(e->o), TG_OK);
    CHECK_STATUS(tg_detach(e->o->handle, e->o->tag, &e->token), TG_OK);
    return NULL; /* the thread's exit destroys everything it owns: not the detached object */
}

static void test_token_outlives_its_owner(void)
{
    pthread_t t;
    exiting_owner e;
    char msg[512];

    tgt_section("a token outlives its old owner's exit");
    e.o = tgt_obj_new(3, TAG_A);
    CHECK(pthread_create(&t, NULL, detach_and_exit, &e) == 0);
    pthread_join(t, NULL);
    CHECK_NOT_DESTROYED(e.o);
    /* The old handle is stale: its object was detached before its owner exited. */
    CHECK_STATUS(tg_with(e.o->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(strstr(msg, "was detached from thread") != NULL, msg);
    CHECK_STATUS(adopt_obj(e.token, e.o), TG_OK);
    CHECK_STATUS(tg_with(e.o->handle, TAG_A, tgt_borrow_cb, e.o), TG_OK);
    CHECK_STATUS(tg_thread_cleanup(), TG_OK); /* this thread now owns it */
    CHECK_DESTROYED_ONCE(e.o);
    tgt_obj_free(e.o);
}

int main(void)
{
    test_detach_then_adopt_on_a_worker();
    test_racing_adoptions();
    test_refusals_change_nothing();
    test_token_outlives_its_owner();
    CHECK_STATUS(tg_thread_cleanup(), TG_OK);
    return tgt_finish();
}
