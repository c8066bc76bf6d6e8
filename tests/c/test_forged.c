/*
 * test_forged.c - forged, random and bit-flipped handles.
 *
 * Phase A (main thread alone): for 64 live objects, every single-bit flip of
 *   the key and of the owner field, through tg_with, tg_destroy,
 *   tg_destroy_later and tg_owner_of.  A flipped key must never name a live
 *   object (TG_ERR_STALE); a flipped owner names a thread that was never
 *   issued (TG_ERR_STALE).
 * Phase B: two "ghost" threads register objects and exit.
 * Phase C: 4 threads, each owning 32 live objects, push 2,500 random and
 *   forged handle values each (10,000 in all) through every entry point that
 *   takes a handle, concurrently.  Every answer must be the one the contract
 *   prescribes for that handle (null / another live thread / exited owner /
 *   never-issued owner / stale key / wrong type), no rejected call may run a
 *   callback or a destructor, and the violation counters must match the
 *   tallies exactly.  Then every thread repeats the single-bit flips of its
 *   own handles, now with live and exited neighbours around.
 * Finally every live object must be intact, and is destroyed exactly once on
 * its owner.
 *
 * TG_TEST_SEED (decimal) changes the random sequence; the seed is printed.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

enum { MAIN_OBJECTS = 64, GHOSTS = 2, GHOST_OBJECTS = 8, FORGERS = 4, FORGER_OBJECTS = 32, HANDLES_PER_FORGER = 2500 };

/* ------------------------------------------------------------------ */
/* Shared knowledge about every thread and every live handle           */
/* ------------------------------------------------------------------ */

typedef struct world {
    uint64_t main_id;
    uint64_t ghost_ids[GHOSTS];
    tg_handle ghost_handles[GHOSTS][GHOST_OBJECTS];
    uint64_t forger_ids[FORGERS];
    tgt_obj *main_objs[MAIN_OBJECTS];
    tgt_obj *forger_objs[FORGERS][FORGER_OBJECTS];
    uint64_t max_id;
} world;

static world W;

static int is_live_thread(uint64_t id)
{
    int i;
    if (id == W.main_id)
        return 1;
    for (i = 0; i < FORGERS; i++)
        if (W.forger_ids[i] == id)
            return 1;
    return 0;
}

static int is_ghost(uint64_t id)
{
    int i;
    for (i = 0; i < GHOSTS; i++)
        if (W.ghost_ids[i] == id)
            return 1;
    return 0;
}

static int is_live_handle(tg_handle h)
{
    int i, k;
    for (i = 0; i < MAIN_OBJECTS; i++)
        if (tgt_same_handle(W.main_objs[i]->handle, h))
            return 1;
    for (k = 0; k < FORGERS; k++)
        for (i = 0; i < FORGER_OBJECTS; i++)
            if (tgt_same_handle(W.forger_objs[k][i]->handle, h))
                return 1;
    return 0;
}

/* What the contract says about handle h on thread `self` (before any argument check). */
enum { CLASS_LIVE_SELF = 100 };

static tg_status classify(tg_handle h, uint64_t self)
{
    if (h.owner == 0 && h.key == 0)
        return TG_ERR_NULL_HANDLE;
    if (h.owner == 0)
        return TG_ERR_STALE;
    if (h.owner == self)
        return is_live_handle(h) ? CLASS_LIVE_SELF : TG_ERR_STALE;
    if (is_live_thread(h.owner))
        return TG_ERR_WRONG_THREAD;
    if (is_ghost(h.owner))
        return TG_ERR_OWNER_EXITED;
    return TG_ERR_STALE; /* owner 0 with a key, or an ID that was never issued */
}

/* ------------------------------------------------------------------ */
/* Probing one handle through every entry point                        */
/* ------------------------------------------------------------------ */

typedef struct tally {
    unsigned long calls;
    unsigned long by_code[16];   /* rejected calls by status code */
    unsigned long queued_remote; /* destroy_later accepted for another live thread */
    unsigned long mismatches;
} tally;

static void mismatch(tally *t, const char *what, tg_handle h, uint32_t tag, tg_status got, tg_status want)
{
    char detail[300];
    t->mismatches++;
    snprintf(detail, sizeof detail,
             "%s(owner=0x%016" PRIx64 ", key=0x%016" PRIx64 ", tag=0x%x) returned %s, expected %s", what, h.owner,
             h.key, (unsigned)tag, tgt_name(got), tgt_name(want));
    tgt_record(0, __FILE__, __LINE__, "forged handle answered as the contract prescribes", detail);
}

static void count(tally *t, tg_status got)
{
    t->calls++;
    if (got > 0 && got < 16)
        t->by_code[got]++;
}

/*
 * Sends h through tg_with (with a wrong tag if h is a live handle of ours),
 * tg_with with a NULL fn, tg_destroy, tg_destroy_later and tg_owner_of, and
 * checks every answer.  Live handles are never destroyed here.
 */
static void probe(tally *t, tg_handle h, uint32_t tag, uint64_t self)
{
    tg_status cls = classify(h, self);
    tg_status got, want;
    uint64_t out;

    if (cls == CLASS_LIVE_SELF && tag == TAG_A)
        tag = TAG_B; /* never borrow a live object here */
    want = cls == CLASS_LIVE_SELF ? TG_ERR_WRONG_TYPE : cls;

    got = tg_with(h, tag, tgt_forbidden_cb, NULL);
    count(t, got);
    if (got != want)
        mismatch(t, "tg_with", h, tag, got, want);

    got = tg_with(h, tag, NULL, NULL);
    count(t, got);
    if (got != want)
        mismatch(t, "tg_with(fn=NULL)", h, tag, got, want);

    if (cls != CLASS_LIVE_SELF) {
        got = tg_destroy(h);
        count(t, got);
        if (got != cls)
            mismatch(t, "tg_destroy", h, 0, got, cls);
    }

    if (cls != CLASS_LIVE_SELF && !is_live_handle(h)) {
        want = cls == TG_ERR_WRONG_THREAD ? TG_OK : cls; /* another thread's key cannot be checked here */
        got = tg_destroy_later(h);
        count(t, got);
        if (got == TG_OK && cls == TG_ERR_WRONG_THREAD)
            t->queued_remote++;
        if (got != want)
            mismatch(t, "tg_destroy_later", h, 0, got, want);
    }

    out = 0;
    want = (cls == CLASS_LIVE_SELF || cls == TG_ERR_WRONG_THREAD) ? TG_OK : cls;
    got = tg_owner_of(h, &out);
    count(t, got);
    if (got != want)
        mismatch(t, "tg_owner_of", h, 0, got, want);
    else if (got == TG_OK && out != h.owner)
        mismatch(t, "tg_owner_of(out != handle owner)", h, 0, got, want);
}

/* Every single-bit flip of key and owner of each handle in hs. */
static void probe_bit_flips(tally *t, tgt_obj *const *objs, int n, uint64_t self)
{
    int i, b;
    for (i = 0; i < n; i++) {
        tg_handle h = objs[i]->handle;
        for (b = 0; b < 64; b++) {
            tg_handle fk = tgt_handle(h.owner, h.key ^ (UINT64_C(1) << b));
            tg_handle fo = tgt_handle(h.owner ^ (UINT64_C(1) << b), h.key);
            if (is_live_handle(fk))
                mismatch(t, "a single-bit flip of a key names another live object:", fk, 0, TG_OK,
                         TG_ERR_STALE);
            probe(t, fk, TAG_A, self);
            probe(t, fo, TAG_A, self);
        }
    }
}

/* One random or forged handle, drawn from a mix of the interesting families. */
static tg_handle random_handle(uint64_t *rng, int me)
{
    uint64_t r = tgt_rand(rng) % 100;
    uint64_t self = W.forger_ids[me];
    tgt_obj *const *mine = W.forger_objs[me];
    if (r < 5)
        return tgt_handle(0, 0);
    if (r < 12)
        return tgt_handle(0, tgt_rand(rng) | 1u);
    if (r < 27)
        return tgt_handle(self, tgt_rand(rng));
    if (r < 42) {
        tg_handle h = mine[tgt_rand(rng) % FORGER_OBJECTS]->handle;
        h.key ^= UINT64_C(1) << (tgt_rand(rng) % 64);
        return h;
    }
    if (r < 50)
        return mine[tgt_rand(rng) % FORGER_OBJECTS]->handle; /* live: probed with a wrong tag only */
    if (r < 62) {
        /* Another live thread: main or another forger; its keys, flipped keys, our keys, random keys. */
        int other = (int)(tgt_rand(rng) % (FORGERS + 1));
        uint64_t owner = other == FORGERS ? W.main_id : W.forger_ids[other];
        tgt_obj *const *theirs = other == FORGERS ? W.main_objs : W.forger_objs[other];
        uint64_t k = tgt_rand(rng) % 4;
        uint64_t key = k == 0   ? theirs[tgt_rand(rng) % FORGER_OBJECTS]->handle.key
                       : k == 1 ? theirs[tgt_rand(rng) % FORGER_OBJECTS]->handle.key ^ (UINT64_C(1) << (tgt_rand(rng) % 64))
                       : k == 2 ? mine[tgt_rand(rng) % FORGER_OBJECTS]->handle.key
                                : tgt_rand(rng);
        return tgt_handle(owner, key);
    }
    if (r < 72) {
        int g = (int)(tgt_rand(rng) % GHOSTS);
        uint64_t key = tgt_rand(rng) % 2 ? W.ghost_handles[g][tgt_rand(rng) % GHOST_OBJECTS].key : tgt_rand(rng);
        return tgt_handle(W.ghost_ids[g], key);
    }
    if (r < 82)
        return tgt_handle(tgt_rand(rng) | (UINT64_C(1) << 63), tgt_rand(rng));
    if (r < 90)
        return tgt_handle(W.max_id + 1 + tgt_rand(rng) % 1000000, tgt_rand(rng));
    return tgt_handle(tgt_rand(rng), tgt_rand(rng));
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

typedef struct barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count, waiting;
    unsigned long generation;
} barrier;

static barrier B;

static void barrier_wait(barrier *b)
{
    unsigned long gen;
    pthread_mutex_lock(&b->mu);
    gen = b->generation;
    if (++b->waiting == b->count) {
        b->waiting = 0;
        b->generation++;
        pthread_cond_broadcast(&b->cv);
    } else {
        while (gen == b->generation)
            pthread_cond_wait(&b->cv, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
}

static tgt_obj *ghost_objs[GHOSTS][GHOST_OBJECTS];

static void *ghost_thread(void *p)
{
    int g = *(int *)p, i;
    W.ghost_ids[g] = tg_current_thread_id();
    for (i = 0; i < GHOST_OBJECTS; i++) {
        ghost_objs[g][i] = tgt_obj_make(900 + i, TAG_A);
        W.ghost_handles[g][i] = ghost_objs[g][i]->handle;
    }
    return NULL; /* exits owning them all */
}

typedef struct forger_arg {
    int index;
    uint64_t seed;
    tally random_tally;
    tally flip_tally;
} forger_arg;

static void *forger_thread(void *p)
{
    forger_arg *a = (forger_arg *)p;
    uint64_t self = tg_current_thread_id();
    uint64_t rng = a->seed;
    int i;

    W.forger_ids[a->index] = self;
    for (i = 0; i < FORGER_OBJECTS; i++)
        W.forger_objs[a->index][i] = tgt_obj_make(1000 * (a->index + 1) + i, TAG_A);
    barrier_wait(&B); /* 1: everybody's objects are published */
    barrier_wait(&B); /* 2: main has checked the starting counters */

    for (i = 0; i < HANDLES_PER_FORGER; i++) {
        tg_handle h = random_handle(&rng, a->index);
        uint32_t tag = (uint32_t)(tgt_rand(&rng) % 4 == 0 ? tgt_rand(&rng) : TAG_A);
        probe(&a->random_tally, h, tag, self);
    }
    barrier_wait(&B); /* 3: nobody queues anything any more */
    CHECK_STATUS(tg_run_pending(), TG_OK);
    barrier_wait(&B); /* 4: every queued request has been run; main checks the counters */
    barrier_wait(&B); /* 5 */

    probe_bit_flips(&a->flip_tally, W.forger_objs[a->index], FORGER_OBJECTS, self);
    barrier_wait(&B); /* 6: nobody queues anything any more */
    CHECK_STATUS(tg_run_pending(), TG_OK);
    barrier_wait(&B); /* 7: main checks the counters */
    barrier_wait(&B); /* 8 */

    /* Every object is intact, still ours, and destroyed exactly once here. */
    for (i = 0; i < FORGER_OBJECTS; i++) {
        tgt_obj *o = W.forger_objs[a->index][i];
        CHECK_NOT_DESTROYED(o);
        CHECK_U64(tgt_obj_borrows(o), 0);
        CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_borrow_cb, o), TG_OK);
        CHECK_U64(tgt_obj_borrows(o), 1);
        CHECK_STATUS(tg_destroy(o->handle), TG_OK);
        CHECK_DESTROYED_ONCE(o);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */

static void add_tally(tally *sum, const tally *t)
{
    int i;
    sum->calls += t->calls;
    sum->queued_remote += t->queued_remote;
    sum->mismatches += t->mismatches;
    for (i = 0; i < 16; i++)
        sum->by_code[i] += t->by_code[i];
}

static void expect_violations(const tg_stats *before, const tg_stats *after, const tally *t, const char *label)
{
    tgt_delta d;
    tgt_delta_init(&d);
    D_VIOL(d, null_handle, t->by_code[TG_ERR_NULL_HANDLE]);
    D_VIOL(d, wrong_thread, t->by_code[TG_ERR_WRONG_THREAD]);
    D_VIOL(d, owner_exited, t->by_code[TG_ERR_OWNER_EXITED]);
    /* Requests queued for another thread were stale there, and are counted when run. */
    D_VIOL(d, stale, t->by_code[TG_ERR_STALE] + t->queued_remote);
    D_VIOL(d, wrong_type, t->by_code[TG_ERR_WRONG_TYPE]);
    D_VIOL(d, busy, t->by_code[TG_ERR_BUSY]);
    D_VIOL(d, null_pointer, t->by_code[TG_ERR_NULL_POINTER]);
    D_VIOL(d, invalid_argument, t->by_code[TG_ERR_INVALID_ARGUMENT]);
    tgt_stats_expect(before, after, &d, __FILE__, __LINE__, label);
}

static void print_tally(const char *label, const tally *t)
{
    char line[300];
    snprintf(line, sizeof line,
             "   %s: %lu calls; null %lu, wrong-thread %lu, owner-exited %lu, stale %lu, wrong-type %lu, "
             "queued to other threads %lu",
             label, t->calls, t->by_code[TG_ERR_NULL_HANDLE], t->by_code[TG_ERR_WRONG_THREAD],
             t->by_code[TG_ERR_OWNER_EXITED], t->by_code[TG_ERR_STALE], t->by_code[TG_ERR_WRONG_TYPE],
             t->queued_remote);
    tgt_section(line);
}

int main(void)
{
    uint64_t seed = tgt_seed();
    pthread_t ghosts[GHOSTS], forgers[FORGERS];
    int ghost_index[GHOSTS];
    forger_arg args[FORGERS];
    tally main_tally, sum;
    tg_stats before, after;
    tgt_delta d;
    char line[120];
    int i, k;

    memset(&W, 0, sizeof W);
    memset(&main_tally, 0, sizeof main_tally);
    W.main_id = tg_current_thread_id();
    snprintf(line, sizeof line, "seed %" PRIu64 " (set TG_TEST_SEED to change)", seed);
    tgt_section(line);

    /* Phase A ---------------------------------------------------------- */
    tgt_section("phase A: single-bit flips of 64 live handles, main thread alone");
    for (i = 0; i < MAIN_OBJECTS; i++)
        W.main_objs[i] = tgt_obj_make(i, TAG_A);
    for (k = 0; k < FORGERS; k++) /* placeholders so is_live_handle can scan before phase C */
        for (i = 0; i < FORGER_OBJECTS; i++)
            W.forger_objs[k][i] = W.main_objs[i];
    STATS_NOW(before);
    CHECK_U64(before.threads_started, 1); /* so every other owner ID was never issued */
    W.max_id = W.main_id;
    probe_bit_flips(&main_tally, W.main_objs, MAIN_OBJECTS, W.main_id);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    STATS_NOW(after);
    CHECK_U64(main_tally.mismatches, 0);
    CHECK_U64(main_tally.queued_remote, 0);
    print_tally("main", &main_tally);
    expect_violations(&before, &after, &main_tally, "phase A: violations exactly as tallied, nothing else");
    CHECK_U64(tgt_read_counter(&tgt_forbidden_calls), 0);
    for (i = 0; i < MAIN_OBJECTS; i++)
        CHECK_NOT_DESTROYED(W.main_objs[i]);

    /* Phase B ---------------------------------------------------------- */
    tgt_section("phase B: two threads register objects and exit");
    STATS_NOW(before);
    for (i = 0; i < GHOSTS; i++) {
        ghost_index[i] = i;
        if (pthread_create(&ghosts[i], NULL, ghost_thread, &ghost_index[i]) != 0)
            abort();
        pthread_join(ghosts[i], NULL);
    }
    STATS_NOW(after);
    tgt_delta_init(&d);
    D_SET(d, created, GHOSTS * GHOST_OBJECTS);
    D_SET(d, destroyed, GHOSTS * GHOST_OBJECTS);
    D_SET(d, threads_started, GHOSTS);
    tgt_stats_expect(&before, &after, &d, __FILE__, __LINE__, "ghost objects destroyed at their exit");
    for (k = 0; k < GHOSTS; k++) {
        for (i = 0; i < GHOST_OBJECTS; i++) {
            CHECK_DESTROYED_ONCE(ghost_objs[k][i]);
            tgt_obj_free(ghost_objs[k][i]);
        }
    }

    /* Phase C ---------------------------------------------------------- */
    tgt_section("phase C: 10,000 random and forged handles from 4 threads");
    pthread_mutex_init(&B.mu, NULL);
    pthread_cond_init(&B.cv, NULL);
    B.count = FORGERS + 1;
    for (i = 0; i < FORGERS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].index = i;
        args[i].seed = seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (uint64_t)(i + 1));
        if (pthread_create(&forgers[i], NULL, forger_thread, &args[i]) != 0)
            abort();
    }
    barrier_wait(&B); /* 1 */
    for (i = 0; i < FORGERS; i++)
        if (W.forger_ids[i] > W.max_id)
            W.max_id = W.forger_ids[i];
    for (i = 0; i < GHOSTS; i++)
        if (W.ghost_ids[i] > W.max_id)
            W.max_id = W.ghost_ids[i];
    STATS_NOW(before);
    CHECK_U64(before.threads_started, 1 + GHOSTS + FORGERS); /* every issued ID is known here */
    CHECK_U64(before.live, MAIN_OBJECTS + FORGERS * FORGER_OBJECTS);
    barrier_wait(&B); /* 2 */
    barrier_wait(&B); /* 3 */
    CHECK_STATUS(tg_run_pending(), TG_OK); /* requests the forgers queued for main */
    barrier_wait(&B); /* 4 */
    STATS_NOW(after);
    memset(&sum, 0, sizeof sum);
    for (i = 0; i < FORGERS; i++)
        add_tally(&sum, &args[i].random_tally);
    print_tally("random", &sum);
    CHECK_U64(sum.mismatches, 0);
    expect_violations(&before, &after, &sum, "random phase: violations exactly as tallied, nothing else");
    CHECK_U64(after.deferred_pending, 0);
    CHECK_U64(tgt_read_counter(&tgt_forbidden_calls), 0);
    CHECK_U64(tgt_read_counter(&tgt_dtor_total), GHOSTS * GHOST_OBJECTS);
    before = after;
    barrier_wait(&B); /* 5 */

    tgt_section("phase C: single-bit flips of every thread's handles, with neighbours live and exited");
    barrier_wait(&B); /* 6 */
    CHECK_STATUS(tg_run_pending(), TG_OK);
    barrier_wait(&B); /* 7 */
    STATS_NOW(after);
    memset(&sum, 0, sizeof sum);
    for (i = 0; i < FORGERS; i++)
        add_tally(&sum, &args[i].flip_tally);
    print_tally("bit flips", &sum);
    CHECK_U64(sum.mismatches, 0);
    expect_violations(&before, &after, &sum, "bit flips: violations exactly as tallied, nothing else");
    CHECK_U64(after.deferred_pending, 0);
    CHECK_U64(tgt_read_counter(&tgt_forbidden_calls), 0);
    CHECK_U64(tgt_read_counter(&tgt_dtor_total), GHOSTS * GHOST_OBJECTS);
    barrier_wait(&B); /* 8 */

    for (i = 0; i < FORGERS; i++)
        pthread_join(forgers[i], NULL);
    for (k = 0; k < FORGERS; k++)
        for (i = 0; i < FORGER_OBJECTS; i++)
            tgt_obj_free(W.forger_objs[k][i]);

    tgt_section("main's objects are intact and destroyed once");
    for (i = 0; i < MAIN_OBJECTS; i++) {
        tgt_obj *o = W.main_objs[i];
        CHECK_NOT_DESTROYED(o);
        CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_borrow_cb, o), TG_OK);
        CHECK_U64(tgt_obj_borrows(o), 1);
        CHECK_STATUS(tg_destroy(o->handle), TG_OK);
        CHECK_DESTROYED_ONCE(o);
        tgt_obj_free(o);
    }
    pthread_mutex_destroy(&B.mu);
    pthread_cond_destroy(&B.cv);

    tgt_final_checks();
    return tgt_finish();
}
