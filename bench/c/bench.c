/*
 * bench.c - the C side of `make bench`: what threadguard's checks cost a C caller.
 *
 *   bench                      time every operation; print "name<TAB>median ns/op<TAB>min<TAB>max"
 *   bench --callgrind OP N     run OP N times inside cg_measured() and exit, for
 *                              valgrind --tool=callgrind --toggle-collect=cg_measured
 *   bench --list               the operation names
 *
 * Operations (each call does the same work: one counter increment in a callback):
 *   plain_call            the floor: an indirect call of the callback, no checks
 *   tg_with               tg_with on a live object, on its owner thread
 *   tg_with_wrong_thread  refused: the owner is another live thread (TG_ERR_WRONG_THREAD)
 *   tg_with_owner_exited  refused: the owner thread has exited (TG_ERR_OWNER_EXITED)
 *   tg_with_stale         refused: the object was destroyed (TG_ERR_STALE)
 *   tg_register_destroy   one tg_register and one tg_destroy
 *   tg_register_destroy_sites  TG_REGISTER and TG_DESTROY with the sites debug mode on
 *
 * Then the runner round trips, in wall time (they are mostly waiting): tg_runner_call of an
 * empty job, back to back, from a caller pinned to CPU 0 to a runner pinned to CPU 0
 * (runner_call_same_cpu) and to CPU 1 (runner_call_other_cpu): the median of RUNS rounds of
 * TRIPS calls, the two placements interleaved. Not in --list: callgrind would count the
 * waiting, not the call.
 *
 * Each timing is the median of RUNS runs of a loop sized to take at least MIN_RUN_NS of the
 * thread's CPU time (CLOCK_THREAD_CPUTIME_ID: time the thread spends preempted by other
 * processes on a shared machine does not count). The runs of all operations are interleaved,
 * so that a slow spell of the machine (a busy neighbour on a shared core) slows every
 * operation alike and the ratios between them hold.
 * A call that returns an unexpected status stops the program with exit status 1.
 */

/* CPU_SET, pthread_setaffinity_np. */
#define _GNU_SOURCE

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "threadguard.h"

#define TAG 1u
#define RUNS 11
#define MIN_RUN_NS 20000000.0
#define TRIPS 2000

static uint64_t counter;

/* The work every operation does: one increment, in a function called through a pointer. */
static void work(void *object, void *context) {
    (void)context;
    *(uint64_t *)object += 1;
}

/* Read through a volatile so the compiler cannot turn the plain call into a direct one. */
static void (*volatile plain_fn)(void *, void *) = work;

static tg_handle live_handle;    /* owned by the main thread */
static tg_handle foreign_handle; /* owned by the holder thread, alive while we measure */
static tg_handle exited_handle;  /* owned by a thread that has exited */
static tg_handle stale_handle;   /* destroyed */

static void fail(const char *what, tg_status status) {
    char message[512];
    tg_last_error(message, sizeof message);
    fprintf(stderr, "bench: %s returned %s: %s\n", what, tg_status_name(status), message);
    exit(1);
}

static void expect(const char *what, tg_status status, tg_status wanted) {
    if (status != wanted) fail(what, status);
}

/* ---- the measured loops ---- */

static void loop_plain_call(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) plain_fn(&counter, NULL);
}

static void loop_tg_with(uint64_t n) {
    tg_status bad = TG_OK;
    for (uint64_t i = 0; i < n; i++) bad |= tg_with(live_handle, TAG, work, NULL);
    expect("tg_with (live)", bad, TG_OK);
}

static void loop_rejected(uint64_t n, tg_handle handle, tg_status wanted, const char *what) {
    for (uint64_t i = 0; i < n; i++) {
        tg_status status = tg_with(handle, TAG, work, NULL);
        if (status != wanted) fail(what, status);
    }
}

static void loop_tg_with_wrong_thread(uint64_t n) {
    loop_rejected(n, foreign_handle, TG_ERR_WRONG_THREAD, "tg_with (wrong thread)");
}

static void loop_tg_with_owner_exited(uint64_t n) {
    loop_rejected(n, exited_handle, TG_ERR_OWNER_EXITED, "tg_with (owner exited)");
}

static void loop_tg_with_stale(uint64_t n) {
    loop_rejected(n, stale_handle, TG_ERR_STALE, "tg_with (stale)");
}

static void loop_tg_register_destroy(uint64_t n) {
    tg_status bad = TG_OK;
    for (uint64_t i = 0; i < n; i++) {
        tg_handle h;
        bad |= tg_register(TAG, &counter, NULL, &h);
        bad |= tg_destroy(h);
    }
    expect("tg_register + tg_destroy", bad, TG_OK);
}

static void loop_tg_register_destroy_sites(uint64_t n) {
    tg_status bad = tg_set_sites(1);
    for (uint64_t i = 0; i < n; i++) {
        tg_handle h;
        bad |= TG_REGISTER(TAG, &counter, NULL, &h);
        bad |= TG_DESTROY(h);
    }
    bad |= tg_set_sites(0);
    expect("TG_REGISTER + TG_DESTROY (sites on)", bad, TG_OK);
}

struct op {
    const char *name;
    void (*loop)(uint64_t n);
};

static const struct op ops[] = {
    {"plain_call", loop_plain_call},
    {"tg_with", loop_tg_with},
    {"tg_with_wrong_thread", loop_tg_with_wrong_thread},
    {"tg_with_owner_exited", loop_tg_with_owner_exited},
    {"tg_with_stale", loop_tg_with_stale},
    {"tg_register_destroy", loop_tg_register_destroy},
    {"tg_register_destroy_sites", loop_tg_register_destroy_sites},
};
#define N_OPS (sizeof ops / sizeof ops[0])

/* ---- the other threads ---- */

static pthread_mutex_t holder_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t holder_cond = PTHREAD_COND_INITIALIZER;
static int holder_ready, holder_release;

/* Registers foreign_handle, then stays alive until released. */
static void *holder(void *unused) {
    (void)unused;
    expect("tg_register (holder)", tg_register(TAG, &counter, NULL, &foreign_handle), TG_OK);
    pthread_mutex_lock(&holder_lock);
    holder_ready = 1;
    pthread_cond_broadcast(&holder_cond);
    while (!holder_release) pthread_cond_wait(&holder_cond, &holder_lock);
    pthread_mutex_unlock(&holder_lock);
    return NULL;
}

/* Registers exited_handle and exits: its exit destroys the object. */
static void *leaver(void *unused) {
    (void)unused;
    expect("tg_register (leaver)", tg_register(TAG, &counter, NULL, &exited_handle), TG_OK);
    return NULL;
}

static pthread_t holder_thread;

static void setup(void) {
    pthread_t leaver_thread;
    expect("tg_register", tg_register(TAG, &counter, NULL, &live_handle), TG_OK);
    expect("tg_register", tg_register(TAG, &counter, NULL, &stale_handle), TG_OK);
    expect("tg_destroy", tg_destroy(stale_handle), TG_OK);
    if (pthread_create(&holder_thread, NULL, holder, NULL) != 0) exit(1);
    pthread_mutex_lock(&holder_lock);
    while (!holder_ready) pthread_cond_wait(&holder_cond, &holder_lock);
    pthread_mutex_unlock(&holder_lock);
    if (pthread_create(&leaver_thread, NULL, leaver, NULL) != 0) exit(1);
    pthread_join(leaver_thread, NULL);
}

static void teardown(void) {
    pthread_mutex_lock(&holder_lock);
    holder_release = 1;
    pthread_cond_broadcast(&holder_cond);
    pthread_mutex_unlock(&holder_lock);
    pthread_join(holder_thread, NULL);
    /* The main thread's thread-local destructors do not run: clean up explicitly. */
    expect("tg_thread_cleanup", tg_thread_cleanup(), TG_OK);
}

/* ---- timing ---- */

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sizes op's loop to take at least MIN_RUN_NS (this also warms it up). */
static uint64_t size_loop(const struct op *op) {
    uint64_t n = 1000;
    for (;;) {
        double start = now_ns();
        op->loop(n);
        if (now_ns() - start >= MIN_RUN_NS) return n;
        n *= 2;
    }
}

/* Times every operation RUNS times, interleaved (one loop of each operation per round), so
 * that a slow spell of the machine hits every operation alike and not one of them alone. */
static void time_all(void) {
    static uint64_t n[N_OPS];
    static double runs[N_OPS][RUNS];
    for (size_t i = 0; i < N_OPS; i++) n[i] = size_loop(&ops[i]);
    for (int r = 0; r < RUNS; r++) {
        for (size_t i = 0; i < N_OPS; i++) {
            double start = now_ns();
            ops[i].loop(n[i]);
            runs[i][r] = (now_ns() - start) / (double)n[i];
        }
    }
    for (size_t i = 0; i < N_OPS; i++) {
        qsort(runs[i], RUNS, sizeof runs[i][0], compare_doubles);
        printf("%s\t%.3f\t%.3f\t%.3f\n", ops[i].name, runs[i][RUNS / 2], runs[i][0], runs[i][RUNS - 1]);
    }
    fflush(stdout);
}

/* ---- runner round trips ---- */

/* Pins the calling thread to CPU `cpu` (modulo the CPUs online); does nothing on one CPU. */
static void pin_to_cpu(long cpu) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)(cpu % cpus), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Runs on the runner: pins it to the CPU its context names. */
static void pin_runner(void *cpu, void **out_result) {
    pin_to_cpu(*(long *)cpu);
    *out_result = NULL;
}

static void empty_job(void *context, void **out_result) {
    *out_result = context;
}

static double wall_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void time_round_trips(void) {
    static const char *names[2] = {"runner_call_same_cpu", "runner_call_other_cpu"};
    static long cpus[2] = {0, 1};
    static double runs[2][RUNS];
    tg_handle runners[2];
    void *result;
    pin_to_cpu(0);
    for (int p = 0; p < 2; p++) {
        expect("tg_runner_start", tg_runner_start("bench-runner", 64, &runners[p]), TG_OK);
        expect("tg_runner_call (pin)", tg_runner_call(runners[p], pin_runner, &cpus[p], -1, NULL, &result), TG_OK);
    }
    for (int r = 0; r < RUNS; r++) {
        for (int p = 0; p < 2; p++) {
            tg_status bad = TG_OK;
            double start = wall_ns();
            for (int i = 0; i < TRIPS; i++) bad |= tg_runner_call(runners[p], empty_job, NULL, -1, NULL, &result);
            runs[p][r] = (wall_ns() - start) / TRIPS;
            expect("tg_runner_call", bad, TG_OK);
        }
    }
    for (int p = 0; p < 2; p++) {
        expect("tg_runner_stop", tg_runner_stop(runners[p]), TG_OK);
        qsort(runs[p], RUNS, sizeof runs[p][0], compare_doubles);
        printf("%s\t%.3f\t%.3f\t%.3f\n", names[p], runs[p][RUNS / 2], runs[p][0], runs[p][RUNS - 1]);
    }
    fflush(stdout);
}

/* The only function callgrind collects from (--toggle-collect=cg_measured). */
__attribute__((noinline)) void cg_measured(void (*loop)(uint64_t), uint64_t n) {
    loop(n);
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < N_OPS; i++) printf("%s%s", i ? " " : "", ops[i].name);
        printf("\n");
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "--callgrind") == 0) {
        const struct op *op = NULL;
        for (size_t i = 0; i < N_OPS; i++)
            if (strcmp(argv[2], ops[i].name) == 0) op = &ops[i];
        if (!op) {
            fprintf(stderr, "bench: unknown operation %s (see --list)\n", argv[2]);
            return 2;
        }
        setup();
        op->loop(16); /* warm up outside the collected function */
        cg_measured(op->loop, strtoull(argv[3], NULL, 10));
        teardown();
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: bench [--list | --callgrind OP N]\n");
        return 2;
    }
    setup();
    time_all();
    time_round_trips();
    teardown();
    return 0;
}
