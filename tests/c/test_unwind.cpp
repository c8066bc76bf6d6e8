/*
 * test_unwind.cpp - a C++ consumer whose callbacks throw.
 *
 * Every function pointer threadguard calls must return normally. A C++
 * exception that leaves one must end the process at once, loudly and
 * deterministically: threadguard writes "threadguard: <which callback>
 * unwound ..." to stderr and aborts (SIGABRT). The exception never reaches
 * a handler above the threadguard call, the call never returns, and nothing
 * runs after the throw: no second destructor, no completion for the job, no
 * other job.
 *
 * Each scenario runs in a forked child (the abort is the expected outcome),
 * with its stderr sent to a temporary file. The child counts what ran in
 * memory it shares with the parent, which then checks the signal, the
 * message and the counts. Scenarios: a tg_with callback; a destructor run by
 * tg_destroy, by tg_run_pending (a deferred request), by tg_thread_cleanup,
 * by thread exit and by tg_runner_stop (on the runner); runner work; a
 * completion function; an abandon function; a completion-queue discard
 * function. Last, in this process: an exception caught inside its callback
 * is the callback's own business and changes nothing.
 */
#include "tg_test.h"

#include <atomic>
#include <csignal>
#include <new>
#include <stdexcept>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

constexpr uint32_t TAG = 77;

/* What ran in the child, in memory shared with the parent. */
struct Counts {
    std::atomic<int> thrown;     /* throwing callbacks entered */
    std::atomic<int> destroyed;  /* non-throwing destructors run */
    std::atomic<int> work;       /* non-throwing work functions run */
    std::atomic<int> done;       /* non-throwing completion functions run */
    std::atomic<int> caught;     /* handlers above the threadguard call reached */
    std::atomic<int> returned;   /* threadguard calls that returned after the throw */
    std::atomic<int> setup;      /* setup steps that succeeded */
};

Counts *counts;

struct callback_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/* A blocking work function waits on this pipe. */
int gate[2];

} // namespace

extern "C" {

static void throwing_borrow(void *, void *)
{
    counts->thrown++;
    throw callback_error("thrown by a tg_with callback");
}

static void throwing_destructor(void *)
{
    counts->thrown++;
    throw callback_error("thrown by a destructor");
}

static void counting_destructor(void *)
{
    counts->destroyed++;
}

static void throwing_work(void *, void **)
{
    counts->thrown++;
    throw callback_error("thrown by runner work");
}

static void counting_work(void *, void **)
{
    counts->work++;
}

static void gated_work(void *, void **)
{
    char byte;
    while (read(gate[0], &byte, 1) < 0) {
    }
}

static void register_throwing_object(void *, void **out_result)
{
    tg_handle h;
    if (tg_register(TAG, nullptr, throwing_destructor, &h) == TG_OK)
        counts->setup++;
    *out_result = nullptr;
}

static void throwing_done(void *, tg_status, void *)
{
    counts->thrown++;
    throw callback_error("thrown by a completion function");
}

static void counting_done(void *, tg_status, void *)
{
    counts->done++;
}

static void throwing_discard(uint64_t, tg_status, void *)
{
    counts->thrown++;
    throw callback_error("thrown by a discard function");
}

static void *exiting_owner(void *)
{
    tg_handle h;
    if (tg_register(TAG, nullptr, throwing_destructor, &h) == TG_OK)
        counts->setup++;
    return nullptr; /* the thread's exit destroys the object */
}

static void *destroy_later_from_here(void *handle)
{
    if (tg_destroy_later(*static_cast<tg_handle *>(handle)) == TG_OK)
        counts->setup++;
    return nullptr;
}

} // extern "C"

namespace {

void note_setup(tg_status status)
{
    if (status == TG_OK)
        counts->setup++;
}

/* Calls `call`; an exception that reaches here, or a return, is counted. */
template <typename F>
void call_and_count(F call)
{
    try {
        (void)call();
        counts->returned++;
    } catch (...) {
        counts->caught++;
    }
}

tg_handle start_runner()
{
    tg_handle runner = tgt_handle(0, 0);
    note_setup(tg_runner_start("unwind-test", 16, &runner));
    return runner;
}

/* Holds the runner in gated_work until open_gate(), so that the main thread has counted its
 * setup before the runner gets to the throwing callback (which ends the process). */
void close_gate(tg_handle runner)
{
    if (pipe(gate) != 0)
        _exit(6);
    note_setup(tg_runner_post(runner, gated_work, nullptr, nullptr));
}

/* Counts nothing afterwards: from here on the runner may end the process at any moment. */
void open_gate()
{
    if (write(gate[1], "x", 1) != 1)
        _exit(7);
}

/* The scenarios: each runs in a child and is expected to die of SIGABRT. */

void borrow_callback()
{
    tg_handle h;
    note_setup(tg_register(TAG, nullptr, counting_destructor, &h));
    call_and_count([&] { return tg_with(h, TAG, throwing_borrow, nullptr); });
}

void destructor_at_destroy()
{
    tg_handle h;
    note_setup(tg_register(TAG, nullptr, throwing_destructor, &h));
    call_and_count([&] { return tg_destroy(h); });
}

void destructor_of_a_deferred_request()
{
    tg_handle h;
    pthread_t other;
    note_setup(tg_register(TAG, nullptr, throwing_destructor, &h));
    if (pthread_create(&other, nullptr, destroy_later_from_here, &h) == 0)
        pthread_join(other, nullptr);
    call_and_count([&] { return tg_run_pending(); });
}

void destructor_at_thread_cleanup()
{
    tg_handle h;
    note_setup(tg_register(TAG, nullptr, throwing_destructor, &h));
    call_and_count([&] { return tg_thread_cleanup(); });
}

void destructor_at_thread_exit()
{
    pthread_t owner;
    call_and_count([&] {
        if (pthread_create(&owner, nullptr, exiting_owner, nullptr) == 0)
            pthread_join(owner, nullptr);
        return TG_OK;
    });
}

void destructor_at_runner_stop()
{
    tg_handle runner = start_runner();
    void *result;
    note_setup(tg_runner_call(runner, register_throwing_object, nullptr, TG_TIMEOUT_INFINITE, nullptr, &result));
    call_and_count([&] { return tg_runner_stop(runner); });
}

void runner_work()
{
    tg_handle runner = start_runner();
    void *result;
    close_gate(runner);
    note_setup(tg_runner_post(runner, throwing_work, nullptr, counting_done));
    open_gate();
    /* Queued behind the throwing work: it must never run, and this call never returns. */
    call_and_count([&] { return tg_runner_call(runner, counting_work, nullptr, TG_TIMEOUT_INFINITE, nullptr, &result); });
}

void completion_function()
{
    tg_handle runner = start_runner();
    void *result;
    close_gate(runner);
    note_setup(tg_runner_post(runner, counting_work, nullptr, throwing_done));
    open_gate();
    call_and_count([&] { return tg_runner_call(runner, counting_work, nullptr, TG_TIMEOUT_INFINITE, nullptr, &result); });
}

void abandon_function()
{
    tg_handle runner = start_runner();
    void *result;
    /* The runner waits in gated_work, so the call below times out before its work starts: it is
     * cancelled, and the runner calls its abandon function when it gets to it. */
    close_gate(runner);
    if (tg_runner_call(runner, counting_work, nullptr, 0, throwing_done, &result) == TG_ERR_TIMEOUT)
        counts->setup++;
    open_gate();
    call_and_count([&] { return tg_runner_call(runner, counting_work, nullptr, TG_TIMEOUT_INFINITE, nullptr, &result); });
}

void discard_function()
{
    tg_handle runner = start_runner();
    tg_handle cq = tgt_handle(0, 0);
    void *result;
    note_setup(tg_cq_create(4, throwing_discard, &cq));
    note_setup(tg_runner_post_to_queue(runner, counting_work, nullptr, cq, 1));
    note_setup(tg_runner_post_to_queue(runner, counting_work, nullptr, cq, 2));
    /* The runner runs jobs in order: once this returns, both entries wait in the queue. */
    note_setup(tg_runner_call(runner, counting_work, nullptr, TG_TIMEOUT_INFINITE, nullptr, &result));
    /* Destroying the queue discards both entries here; the first discard throws. */
    call_and_count([&] { return tg_cq_destroy(cq); });
}

struct Expect {
    int setup;
    int destroyed;
    int work;
    int done;
};

struct Scenario {
    const char *name;
    void (*run)();
    const char *callback; /* how threadguard's message names the callback */
    Expect expect;
};

const Scenario scenarios[] = {
    {"tg_with callback throws", borrow_callback, "a tg_with callback", {1, 0, 0, 0}},
    {"destructor throws in tg_destroy", destructor_at_destroy, "a destructor (tg_destructor)", {1, 0, 0, 0}},
    {"destructor throws in a deferred request (tg_run_pending)", destructor_of_a_deferred_request,
     "a destructor (tg_destructor)", {2, 0, 0, 0}},
    {"destructor throws in tg_thread_cleanup", destructor_at_thread_cleanup, "a destructor (tg_destructor)",
     {1, 0, 0, 0}},
    {"destructor throws at thread exit", destructor_at_thread_exit, "a destructor (tg_destructor)", {1, 0, 0, 0}},
    {"destructor throws on the runner at tg_runner_stop", destructor_at_runner_stop, "a destructor (tg_destructor)",
     {3, 0, 0, 0}},
    {"runner work throws", runner_work, "a runner's work function (tg_work_fn)", {3, 0, 0, 0}},
    {"completion function throws", completion_function, "a runner's completion function (tg_completion_fn, done)",
     {3, 0, 1, 0}},
    {"abandon function throws", abandon_function, "a runner's abandon function (tg_completion_fn, abandon)",
     {3, 0, 0, 0}},
    {"discard function throws", discard_function, "a completion queue's discard function (tg_discard_fn)",
     {5, 0, 3, 0}},
};

void run_in_child(const Scenario &scenario)
{
    tgt_section(scenario.name);
    FILE *err = tmpfile();
    if (!err) {
        CHECK_MSG(0, "tmpfile");
        return;
    }
    new (counts) Counts();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        CHECK_MSG(0, "fork");
        fclose(err);
        return;
    }
    if (pid == 0) {
        tgt_record_coverage_at_abort();
        dup2(fileno(err), 2);
        scenario.run();
        _exit(0); /* reached only if the throw did not end the process */
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) {
        CHECK_MSG(0, "waitpid");
        fclose(err);
        return;
    }
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "the child dies of SIGABRT");
    if (WIFEXITED(status))
        fprintf(stderr, "  %s: the child exited with status %d instead\n", scenario.name, WEXITSTATUS(status));

    char text[4096];
    rewind(err);
    size_t n = fread(text, 1, sizeof text - 1, err);
    text[n] = '\0';
    fclose(err);
    char want[256];
    snprintf(want, sizeof want, "threadguard: %s unwound (a foreign exception", scenario.callback);
    if (!CHECK_MSG(strstr(text, want) != nullptr, "stderr names the callback that unwound"))
        fprintf(stderr, "  expected \"%s\" in the child's stderr:\n%s\n", want, text);

    const Expect &e = scenario.expect;
    CHECK_U64(counts->thrown.load(), 1);   /* the throwing callback ran once */
    CHECK_U64(counts->caught.load(), 0);   /* no handler above threadguard saw the exception */
    CHECK_U64(counts->returned.load(), 0); /* the threadguard call never returned */
    CHECK_U64(counts->setup.load(), e.setup);
    CHECK_U64(counts->destroyed.load(), e.destroyed);
    CHECK_U64(counts->work.load(), e.work);
    CHECK_U64(counts->done.load(), e.done);
}

} // namespace

extern "C" {

/* Throws and catches its own exception: allowed, and invisible to threadguard. */
static void self_contained_borrow(void *object, void *)
{
    try {
        throw callback_error("caught below");
    } catch (const callback_error &) {
        ++*static_cast<int *>(object);
    }
}

} // extern "C"

namespace {

void exception_caught_inside_the_callback()
{
    tgt_section("an exception caught inside its callback changes nothing");
    int value = 0;
    tg_handle h;
    CHECK_STATUS(tg_register(TAG, &value, nullptr, &h), TG_OK);
    CHECK_STATUS(tg_with(h, TAG, self_contained_borrow, nullptr), TG_OK);
    CHECK_STATUS(tg_with(h, TAG, self_contained_borrow, nullptr), TG_OK);
    CHECK_U64(value, 2);
    CHECK_STATUS(tg_destroy(h), TG_OK);
}

} // namespace

int main()
{
    void *shared = mmap(nullptr, sizeof(Counts), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    counts = static_cast<Counts *>(shared);
    /* The children start from a process that has not called threadguard yet. */
    for (const Scenario &scenario : scenarios)
        run_in_child(scenario);
    exception_caught_inside_the_callback();
    return tgt_finish();
}
