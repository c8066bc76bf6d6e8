/*
 * test_late_exit.c - a thread's first threadguard call from a pthread key destructor.
 *
 * glibc runs pthread key destructors after every thread-local destructor, in rounds (up to
 * PTHREAD_DESTRUCTOR_ITERATIONS), so a library that hooks thread exit with a thread-local
 * destructor alone never sees a thread that first calls in from there. Such a thread must
 * still be cleaned up at its exit: what it registers is destroyed once, on it; its handles
 * answer TG_ERR_OWNER_EXITED after the join (never a phantom live thread); its requests to
 * other threads are run by their owners; and the live-thread count comes back.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <pthread.h>

/*
 * LeakSanitizer (make c-tests-asan) reads this when the test is built with it: the one leak
 * this test cannot avoid is glibc's record of a thread-local destructor registered during
 * key destruction (see valgrind.supp); glibc never frees those.
 */
#ifdef __cplusplus
extern "C"
#endif
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:__cxa_thread_atexit_impl\n";
}

/* What a key destructor did, for the main thread to check after the join. */
typedef struct {
    int call_in_round;   /* make the threadguard calls in this destructor round (1-based) */
    int round;           /* rounds seen so far */
    tgt_obj *registered; /* registered from the destructor (NULL: not this scenario) */
    tg_status register_status;
    tg_status with_status;
    tg_handle foreign;   /* a handle of the main thread to destroy later (null: none) */
    tg_status destroy_later_status;
} late_calls;

static pthread_key_t early_key; /* created before the library's first use */
static pthread_key_t late_key;  /* created after it */

static void key_destructor(pthread_key_t key, void *value)
{
    late_calls *calls = (late_calls *)value;
    calls->round++;
    if (calls->round < calls->call_in_round) {
        /* Ask for another round (glibc re-runs destructors whose key got a value again). */
        pthread_setspecific(key, calls);
        return;
    }
    if (calls->registered) {
        tgt_obj *o = calls->registered;
        o->creator = pthread_self();
        o->creator_tid = tg_current_thread_id(); /* this thread's first call */
        calls->register_status = tgt_obj_register(o);
        calls->with_status = tg_with(o->handle, o->tag, tgt_borrow_cb, o);
    }
    if (!tgt_same_handle(calls->foreign, tgt_handle(0, 0)))
        calls->destroy_later_status = tg_destroy_later(calls->foreign);
}

static void early_destructor(void *value) { key_destructor(early_key, value); }
static void late_destructor(void *value) { key_destructor(late_key, value); }

typedef struct {
    pthread_key_t key;
    late_calls *calls;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *arg = (thread_arg *)p;
    /* No threadguard call here: the first one comes from the key's destructor. */
    pthread_setspecific(arg->key, arg->calls);
    return NULL;
}

static void run_thread(pthread_key_t key, late_calls *calls)
{
    pthread_t thread;
    thread_arg arg;
    arg.key = key;
    arg.calls = calls;
    CHECK(pthread_create(&thread, NULL, thread_main, &arg) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
}

static uint64_t threads_live(void)
{
    tg_stats s;
    CHECK_STATUS(tg_get_stats(&s), TG_OK);
    return s.threads_live;
}

static void test_register_from_key_destructor(pthread_key_t key, int round, const char *what)
{
    late_calls calls;
    uint64_t owner = 0, live = threads_live();
    tgt_obj *o = tgt_obj_new(1, TAG_A);

    tgt_section(what);
    memset(&calls, 0, sizeof calls);
    calls.call_in_round = round;
    calls.registered = o;
    run_thread(key, &calls);
    CHECK_U64(calls.round, round);
    CHECK_STATUS(calls.register_status, TG_OK);
    CHECK_STATUS(calls.with_status, TG_OK);
    CHECK_U64(tgt_obj_borrows(o), 1);
    /* Destroyed once, on the late thread (tgt_obj_dtor checks the pthread and the ID). */
    CHECK_DESTROYED_ONCE(o);
    /* No phantom live thread: its handle answers OWNER_EXITED, requests are refused. */
    CHECK_STATUS(tg_owner_of(o->handle, &owner), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_destroy_later(o->handle), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_OWNER_EXITED);
    CHECK_U64(threads_live(), live);
    tgt_obj_free(o);
}

static void test_destroy_later_from_key_destructor(void)
{
    late_calls calls;
    uint64_t live = threads_live();
    tgt_obj *mine = tgt_obj_make(2, TAG_B);

    tgt_section("tg_destroy_later as a thread's first call, from a key destructor");
    memset(&calls, 0, sizeof calls);
    calls.call_in_round = 1;
    calls.foreign = mine->handle;
    run_thread(late_key, &calls);
    CHECK_STATUS(calls.destroy_later_status, TG_OK);
    CHECK_NOT_DESTROYED(mine);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_DESTROYED_ONCE(mine);
    CHECK_U64(threads_live(), live);
    tgt_obj_free(mine);
}

int main(void)
{
    tg_stats before, after;

    /* One key before the library's first call (a lower index than its own key), one after. */
    CHECK(pthread_key_create(&early_key, early_destructor) == 0);
    CHECK(tg_current_thread_id() != 0);
    CHECK(pthread_key_create(&late_key, late_destructor) == 0);
    CHECK_STATUS(tg_get_stats(&before), TG_OK);

    test_register_from_key_destructor(late_key, 1, "first call in a key destructor (key created after the library's)");
    test_register_from_key_destructor(early_key, 1, "first call in a key destructor (key created before the library's)");
    test_register_from_key_destructor(late_key, 3, "first call in the third destructor round");
    test_register_from_key_destructor(early_key, 3, "first call in the third destructor round (earlier key)");
    /* glibc's last round: the library's key has a higher index than this one, so glibc reaches
     * it later in the same round (a key created after the library's is the documented residue). */
    test_register_from_key_destructor(early_key, 4, "first call in the fourth and last destructor round (earlier key)");
    test_destroy_later_from_key_destructor();

    tgt_section("counters after the late threads");
    CHECK_STATUS(tg_get_stats(&after), TG_OK);
    CHECK_U64(after.live, before.live);
    CHECK_U64(after.created - before.created, 6);
    CHECK_U64(after.destroyed - before.destroyed, 6);
    CHECK_U64(after.deferred_pending, 0);
    CHECK_U64(after.threads_live, before.threads_live);
    CHECK_U64(after.threads_started - before.threads_started, 6);
    CHECK_U64(tgt_dtor_bad, 0);
    return tgt_finish();
}
