/*
 * test_fork.c - handles after fork().
 *
 * The child of a fork has one thread, the one that forked. Every other thread of the parent
 * is gone there, so in the child their handles answer TG_ERR_OWNER_EXITED (never
 * WRONG_THREAD forever), requests to them are refused instead of accepted and lost, and the
 * requests queued to them before the fork no longer count as pending. The forking thread
 * keeps its objects; new threads work as usual. The parent is unaffected.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* A thread that registers objects, then waits until told to exit. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready;
    int release;
    tgt_obj *a;
    tgt_obj *b;
} worker;

static void *worker_main(void *p)
{
    worker *w = (worker *)p;
    w->a = tgt_obj_make(1, TAG_A);
    w->b = tgt_obj_make(2, TAG_B);
    pthread_mutex_lock(&w->lock);
    w->ready = 1;
    pthread_cond_broadcast(&w->cond);
    while (!w->release)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return NULL; /* its exit destroys what it still owns */
}

static void *child_thread_main(void *p)
{
    tgt_obj *o = tgt_obj_make(4, TAG_A);
    (void)p;
    CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_borrow_cb, o), TG_OK);
    return o;
}

/* Runs in the child; prints its summary line and returns its exit status. */
static int child(worker *w, tgt_obj *mine)
{
    uint64_t owner = 0;
    pthread_t thread;
    void *made = NULL;
    tg_stats s;

    tgt_section("child: the parent's other threads have exited");
    CHECK_STATUS(tg_with(w->a->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_destroy(w->a->handle), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_destroy_later(w->a->handle), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_owner_of(w->a->handle, &owner), TG_ERR_OWNER_EXITED);
    CHECK_NOT_DESTROYED(w->a);

    tgt_section("child: the forking thread keeps its objects");
    CHECK_STATUS(tg_owner_of(mine->handle, &owner), TG_OK);
    CHECK_U64(owner, tg_current_thread_id());
    CHECK_STATUS(tg_with(mine->handle, TAG_A, tgt_borrow_cb, mine), TG_OK);
    CHECK_STATUS(tg_destroy(mine->handle), TG_OK);
    CHECK_DESTROYED_ONCE(mine);

    tgt_section("child: counters and new threads");
    CHECK_STATUS(tg_get_stats(&s), TG_OK);
    CHECK_U64(s.threads_live, 1);
    CHECK_U64(s.deferred_pending, 0); /* the request queued to the worker is dropped with it */
    CHECK(pthread_create(&thread, NULL, child_thread_main, NULL) == 0);
    CHECK(pthread_join(thread, &made) == 0);
    if (made) {
        CHECK_DESTROYED_ONCE((tgt_obj *)made);
        CHECK_STATUS(tg_owner_of(((tgt_obj *)made)->handle, &owner), TG_ERR_OWNER_EXITED);
    }
    CHECK_STATUS(tg_get_stats(&s), TG_OK);
    CHECK_U64(s.threads_live, 1);
    CHECK_U64(tgt_dtor_bad, 0);
    return tgt_finish();
}

int main(void)
{
    worker w;
    pthread_t thread;
    tgt_obj *mine;
    pid_t pid;
    int status = 0;
    int report[2];
    unsigned long child_failed = 1;
    uint64_t owner = 0;

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    mine = tgt_obj_make(3, TAG_A);
    CHECK(pthread_create(&thread, NULL, worker_main, &w) == 0);
    pthread_mutex_lock(&w.lock);
    while (!w.ready)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);

    tgt_section("parent before fork");
    CHECK_STATUS(tg_with(w.a->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_WRONG_THREAD);
    /* A request queued to the worker before the fork: pending in both processes at the fork. */
    CHECK_STATUS(tg_destroy_later(w.b->handle), TG_OK);

    fflush(stdout);
    fflush(stderr);
    CHECK(pipe(report) == 0);
    pid = fork();
    if (pid < 0) {
        CHECK_MSG(0, "fork");
        return tgt_finish();
    }
    if (pid == 0) {
        /* The child reports its failures through the pipe and ends with SIGKILL, so that no
         * exit-time leak checker (valgrind, LeakSanitizer) reports the memory of the threads
         * that do not exist in it: their objects are never destroyed there, by design. */
        unsigned long failed;
        child(&w, mine);
        failed = tgt_failures();
        fflush(stdout);
        fflush(stderr);
        if (write(report[1], &failed, sizeof failed) != (ssize_t)sizeof failed)
            _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }

    close(report[1]);
    CHECK((size_t)read(report[0], &child_failed, sizeof child_failed) == sizeof child_failed);
    close(report[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child ran to its end");
    CHECK_MSG(child_failed == 0, "every check in the child passed");

    tgt_section("parent after fork: nothing changed");
    CHECK_STATUS(tg_with(w.a->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_WRONG_THREAD);
    CHECK_STATUS(tg_owner_of(w.a->handle, &owner), TG_OK);
    CHECK_STATUS(tg_with(mine->handle, TAG_A, tgt_borrow_cb, mine), TG_OK);
    CHECK_NOT_DESTROYED(mine);
    pthread_mutex_lock(&w.lock);
    w.release = 1;
    pthread_cond_broadcast(&w.cond);
    pthread_mutex_unlock(&w.lock);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_DESTROYED_ONCE(w.a);
    CHECK_DESTROYED_ONCE(w.b);
    CHECK_STATUS(tg_owner_of(w.a->handle, &owner), TG_ERR_OWNER_EXITED);
    CHECK_STATUS(tg_destroy(mine->handle), TG_OK);
    CHECK_DESTROYED_ONCE(mine);
    CHECK_U64(tgt_dtor_bad, 0);
    tgt_obj_free(w.a);
    tgt_obj_free(w.b);
    tgt_obj_free(mine);
    return tgt_finish();
}
