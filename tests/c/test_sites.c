/*
 * test_sites.c - the sites debug mode from C: TG_REGISTER and TG_DESTROY record their call
 * sites, and refusal messages name them.
 *
 * Covers: the wording of a wrong-thread refusal ("registered at test_sites.c:N"), of a stale
 * handle destroyed on a named thread ("destroyed at test_sites.c:M on thread T ("loader")"), of
 * a handle destroyed by a deferred request, the mode off (no sites), tg_set_sites's argument
 * check, and that the macros behave as tg_register and tg_destroy.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <pthread.h>

static char expected[512];
static char msg[1024];

static int contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

typedef struct {
    tgt_obj *o;
    int register_line;
    int destroy_line;
    tg_status with_after_destroy;
    char message[1024];
} loader_job;

/* On the "loader" worker: register with TG_REGISTER, destroy with TG_DESTROY, then use the
 * stale handle. */
static void register_use_destroy(void *p)
{
    loader_job *job = (loader_job *)p;
    tgt_obj *o = job->o;
    o->creator = pthread_self();
    o->creator_tid = tg_current_thread_id();
    job->register_line = __LINE__ + 1;
    CHECK_STATUS(TG_REGISTER(o->tag, o, tgt_obj_dtor, &o->handle), TG_OK);
    job->destroy_line = __LINE__ + 1;
    CHECK_STATUS(TG_DESTROY(o->handle), TG_OK);
    job->with_after_destroy = tg_with(o->handle, o->tag, tgt_forbidden_cb, NULL);
    tgt_last_error(job->message, sizeof job->message);
}

static void test_wording(void)
{
    tgt_worker loader;
    loader_job job;
    tgt_obj *mine;
    int line;

    tgt_section("refusals name where the object was registered and destroyed");
    CHECK_STATUS(tg_set_sites(1), TG_OK);
    CHECK(tg_sites_enabled() == 1);

    mine = tgt_obj_new(1, TAG_A);
    line = __LINE__ + 1;
    CHECK_STATUS(TG_REGISTER(TAG_A, mine, tgt_obj_dtor, &mine->handle), TG_OK);
    CHECK_STATUS(tg_with(mine->handle, TAG_B, tgt_forbidden_cb, NULL), TG_ERR_WRONG_TYPE);
    tgt_last_error(msg, sizeof msg);
    snprintf(expected, sizeof expected, "; registered at %s:%d", __FILE__, line);
    CHECK_MSG(contains(msg, expected), msg);

    tgt_worker_start(&loader, "loader");
    memset(&job, 0, sizeof job);
    job.o = tgt_obj_new(2, TAG_A);
    tgt_worker_call(&loader, register_use_destroy, &job);
    CHECK_DESTROYED_ONCE(job.o);
    CHECK_STATUS(job.with_after_destroy, TG_ERR_STALE);
    snprintf(expected, sizeof expected, "; registered at %s:%d; destroyed at %s:%d on thread %llu (\"loader\")",
             __FILE__, job.register_line, __FILE__, job.destroy_line, (unsigned long long)loader.tid);
    CHECK_MSG(contains(job.message, expected), job.message);

    /* From another thread the registration site shows too. */
    CHECK_STATUS(tg_with(job.o->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_WRONG_THREAD);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(contains(msg, expected), msg);
    tgt_worker_stop(&loader);

    /* A deferred request says how the object went. */
    CHECK_STATUS(tg_destroy_later(mine->handle), TG_OK);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_DESTROYED_ONCE(mine);
    CHECK_STATUS(tg_destroy(mine->handle), TG_ERR_STALE);
    tgt_last_error(msg, sizeof msg);
    snprintf(expected, sizeof expected, "; registered at %s:%d; destroyed by a destroy_later request on thread %llu",
             __FILE__, line, (unsigned long long)tg_current_thread_id());
    CHECK_MSG(contains(msg, expected), msg);

    tgt_obj_free(mine);
    tgt_obj_free(job.o);
}

static void test_mode_off(void)
{
    tgt_obj *o;
    tgt_section("with the mode off, messages carry no sites; the macros still work");
    CHECK_STATUS(tg_set_sites(0), TG_OK);
    CHECK(tg_sites_enabled() == 0);
    CHECK_STATUS(tg_set_sites(2), TG_ERR_INVALID_ARGUMENT);
    CHECK(tg_sites_enabled() == 0);
    o = tgt_obj_new(3, TAG_A);
    CHECK_STATUS(TG_REGISTER(TAG_A, o, tgt_obj_dtor, &o->handle), TG_OK);
    CHECK_STATUS(TG_DESTROY(o->handle), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(!contains(msg, "registered at") && !contains(msg, "destroyed at"), msg);
    CHECK_STATUS(TG_REGISTER(TAG_A, o, tgt_obj_dtor, NULL), TG_ERR_NULL_POINTER);
    tgt_obj_free(o);
}

int main(void)
{
    test_wording();
    test_mode_off();
    CHECK_STATUS(tg_thread_cleanup(), TG_OK);
    return tgt_finish();
}
