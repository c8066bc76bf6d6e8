/*
 * demo.c - threadguard from C, in one short program.
 *
 * A "canvas" stands for any thread-affine object (a GUI or GL context, an
 * interpreter state, an object of a per-thread garbage-collected heap): it
 * remembers the thread that created it and must only ever be touched there.
 * Touching it from anywhere else would corrupt it; here that is simulated by
 * aborting the demo.
 *
 * The program shows:
 *   1. registering the canvas on its owner thread and using it via tg_with;
 *   2. another pthread trying to use it: refused with TG_ERR_WRONG_THREAD,
 *      the canvas untouched, and the last-error message explaining why;
 *   3. that thread asking for a deferred destroy (tg_destroy_later), which the
 *      owner then runs, so the destructor runs on the owner;
 *   4. a stale use after the destroy, caught as TG_ERR_STALE;
 *   5. the process-wide counters from tg_get_stats.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "threadguard.h"

#define CANVAS_TAG 0x43414e56u /* "CANV": a type tag of our choosing (nonzero) */

typedef struct canvas {
    pthread_t owner; /* the only thread allowed to touch this canvas */
    int strokes;
} canvas;

/* Borrow callback: runs on the owner thread while threadguard holds the canvas. */
static void canvas_draw(void *object, void *context)
{
    canvas *c = (canvas *)object;
    const char *shape = (const char *)context;
    if (!pthread_equal(pthread_self(), c->owner)) {
        printf("   !! the canvas was touched from a foreign thread: it is now corrupt\n");
        abort();
    }
    c->strokes++;
    printf("   drew %s (stroke %d)\n", shape, c->strokes);
}

/* Destructor: threadguard runs it exactly once, on the owner thread. */
static void canvas_destroy(void *object)
{
    canvas *c = (canvas *)object;
    int on_owner = pthread_equal(pthread_self(), c->owner);
    printf("   destructor: canvas with %d strokes freed on thread %" PRIu64 " (%s)\n", c->strokes,
           tg_current_thread_id(), on_owner ? "its owner, as promised" : "NOT its owner");
    free(c);
}

static void print_last_error(void)
{
    char message[512];
    tg_last_error(message, sizeof message);
    printf("   message: %s\n", message);
}

/* The other thread: it has the handle (a plain value) but does not own the canvas. */
static void *render_worker(void *arg)
{
    tg_handle h = *(const tg_handle *)arg;
    tg_status s;
    tg_stats stats;

    tg_set_thread_name("render-worker");
    printf("\n3. Thread %" PRIu64 " (\"render-worker\") got hold of the handle and tries to draw:\n",
           tg_current_thread_id());
    s = tg_with(h, CANVAS_TAG, canvas_draw, (void *)"a triangle");
    printf("   tg_with    -> %s (the callback did not run; the canvas was not touched)\n", tg_status_name(s));
    print_last_error();
    s = tg_destroy(h);
    printf("   tg_destroy -> %s (nothing was destroyed)\n", tg_status_name(s));

    printf("\n4. It may, however, ask the owner to destroy the canvas later:\n");
    s = tg_destroy_later(h);
    tg_get_stats(&stats);
    printf("   tg_destroy_later -> %s (destroy requests waiting for their owners: %" PRIu64 ")\n",
           tg_status_name(s), stats.deferred_pending);
    return NULL;
}

int main(void)
{
    canvas *c;
    tg_handle h;
    tg_status s;
    tg_stats stats;
    pthread_t worker;

    printf("threadguard %s (ABI %u): C demo\n", tg_version(), (unsigned)tg_abi_version());

    tg_set_thread_name("ui-main");
    printf("\n1. Thread %" PRIu64 " (\"ui-main\") creates a canvas and registers it.\n", tg_current_thread_id());
    c = (canvas *)malloc(sizeof *c);
    if (!c)
        return 1;
    c->owner = pthread_self();
    c->strokes = 0;
    s = tg_register(CANVAS_TAG, c, canvas_destroy, &h);
    if (s != TG_OK) {
        printf("   tg_register failed: %s\n", tg_status_name(s));
        return 1;
    }
    printf("   tg_register -> %s; handle = { owner %" PRIu64 ", key 0x%016" PRIx64 " }\n", tg_status_name(s),
           h.owner, h.key);

    printf("\n2. The owner draws through tg_with:\n");
    tg_with(h, CANVAS_TAG, canvas_draw, (void *)"a circle");
    tg_with(h, CANVAS_TAG, canvas_draw, (void *)"a square");

    if (pthread_create(&worker, NULL, render_worker, &h) != 0)
        return 1;
    pthread_join(worker, NULL);

    printf("\n5. Back on ui-main, tg_run_pending runs the queued request here, on the owner:\n");
    tg_run_pending();

    printf("\n6. The handle is now stale; using it is caught as well:\n");
    s = tg_with(h, CANVAS_TAG, canvas_draw, (void *)"a star");
    printf("   tg_with    -> %s\n", tg_status_name(s));
    print_last_error();

    tg_get_stats(&stats);
    printf("\n7. Counters from tg_get_stats:\n");
    printf("   objects:    created %" PRIu64 ", destroyed %" PRIu64 ", live %" PRIu64 "\n", stats.created,
           stats.destroyed, stats.live);
    printf("   violations: %" PRIu64 " (wrong thread %" PRIu64 ", stale %" PRIu64 ")\n", stats.violations,
           stats.violations_wrong_thread, stats.violations_stale);
    printf("   threads:    %" PRIu64 " started, %" PRIu64 " still running\n", stats.threads_started,
           stats.threads_live);

    /* The main thread's thread-local destructors do not run at exit: clean up explicitly. */
    tg_thread_cleanup();
    return 0;
}
