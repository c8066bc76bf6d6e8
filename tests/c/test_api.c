/*
 * test_api.c - single-thread contract tests for the threadguard C ABI.
 *
 * Covers: constants and struct layout, tg_version / tg_abi_version,
 * tg_status_name, tg_register argument checks, the null handle on every
 * entry point, null out/fn pointers, wrong type, stale handles and double
 * destroy, slot reuse (generation check), check order, re-entrancy (BUSY on
 * the borrowed object, nested calls on other objects succeed), destroy_later
 * of itself from inside its own callback, destructors that call back in,
 * tg_thread_cleanup (also from inside a callback), tg_last_error snprintf
 * semantics, tg_set_thread_name, tg_set_violation_policy (RETURN, LOG,
 * invalid, and ABORT in a forked child), and exact tg_get_stats deltas.
 *
 * Everything here runs on the main thread (plus one forked child).
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <limits.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */

static void test_constants_and_layout(void)
{
    tgt_section("constants and struct layout");
    CHECK(TG_OK == 0);
    CHECK(TG_ERR_NULL_HANDLE == 1);
    CHECK(TG_ERR_WRONG_THREAD == 2);
    CHECK(TG_ERR_OWNER_EXITED == 3);
    CHECK(TG_ERR_STALE == 4);
    CHECK(TG_ERR_WRONG_TYPE == 5);
    CHECK(TG_ERR_BUSY == 6);
    CHECK(TG_ERR_NULL_POINTER == 7);
    CHECK(TG_ERR_INVALID_ARGUMENT == 8);
    CHECK(TG_ERR_PANIC == 9);
    CHECK(TG_ERR_SHUT_DOWN == 10);
    CHECK(TG_ERR_LIMIT == 11);
    CHECK(TG_ERR_TIMEOUT == 12);
    CHECK(TG_POLICY_RETURN == 0);
    CHECK(TG_POLICY_LOG == 1);
    CHECK(TG_POLICY_ABORT == 2);
    CHECK(sizeof(tg_status) == 4);

    CHECK(sizeof(tg_handle) == 16);
    CHECK(offsetof(tg_handle, owner) == 0);
    CHECK(offsetof(tg_handle, key) == 8);
    CHECK(sizeof(((tg_handle *)0)->owner) == 8);
    CHECK(sizeof(((tg_handle *)0)->key) == 8);

    CHECK(sizeof(tg_stats) == 17 * sizeof(uint64_t));
#define TGT_CHECK_OFFSET(f) CHECK_U64(offsetof(tg_stats, f), (uint64_t)TGF_##f * 8u);
    TGT_STATS_FIELDS(TGT_CHECK_OFFSET)
#undef TGT_CHECK_OFFSET
}

static void test_versions(void)
{
    const char *v = tg_version();
    const char *p;
    int parts = 0, ok = 1;
    tgt_section("tg_version / tg_abi_version");
    CHECK(v != NULL);
    if (!v)
        return;
#ifdef TG_EXPECTED_VERSION
    CHECK_STR(v, TG_EXPECTED_VERSION);
#endif
    /* MAJOR.MINOR.PATCH, optionally followed by a pre-release or build suffix. */
    for (p = v; ok && parts < 3; parts++) {
        if (!(*p >= '0' && *p <= '9'))
            ok = 0;
        while (*p >= '0' && *p <= '9')
            p++;
        if (parts < 2) {
            if (*p == '.')
                p++;
            else
                ok = 0;
        }
    }
    CHECK_MSG(ok && (*p == '\0' || *p == '-' || *p == '+'), v);
    CHECK_STR(tg_version(), v);
    CHECK_U64(tg_abi_version(), TG_ABI_VERSION);
    CHECK_U64(TG_ABI_VERSION, 2);
}

static void test_status_names(void)
{
    static const struct {
        tg_status code;
        const char *name;
    } known[] = {
        {TG_OK, "TG_OK"},
        {TG_ERR_NULL_HANDLE, "TG_ERR_NULL_HANDLE"},
        {TG_ERR_WRONG_THREAD, "TG_ERR_WRONG_THREAD"},
        {TG_ERR_OWNER_EXITED, "TG_ERR_OWNER_EXITED"},
        {TG_ERR_STALE, "TG_ERR_STALE"},
        {TG_ERR_WRONG_TYPE, "TG_ERR_WRONG_TYPE"},
        {TG_ERR_BUSY, "TG_ERR_BUSY"},
        {TG_ERR_NULL_POINTER, "TG_ERR_NULL_POINTER"},
        {TG_ERR_INVALID_ARGUMENT, "TG_ERR_INVALID_ARGUMENT"},
        {TG_ERR_PANIC, "TG_ERR_PANIC"},
        {TG_ERR_SHUT_DOWN, "TG_ERR_SHUT_DOWN"},
        {TG_ERR_LIMIT, "TG_ERR_LIMIT"},
        {TG_ERR_TIMEOUT, "TG_ERR_TIMEOUT"},
    };
    static const tg_status unknown[] = {-1, 13, 14, 100, 255, 256, INT32_MAX, INT32_MIN};
    size_t i;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("tg_status_name");
    STATS_NOW(before);
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        CHECK_STR(tg_status_name(known[i].code), known[i].name);
        /* Static storage: the same text on every call. */
        CHECK_STR(tg_status_name(known[i].code), known[i].name);
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        CHECK_STR(tg_status_name(unknown[i]), "TG_ERR_UNKNOWN");
    tgt_delta_init(&d);
    STATS_EXPECT(before, after, d, "tg_status_name changes no counter");
}

/* ------------------------------------------------------------------ */

static void test_register_arguments(void)
{
    tgt_obj *o = tgt_obj_new(1, TAG_A);
    tg_handle h, h2, h3;
    uint64_t owner = 0;
    tg_stats before, after;
    tgt_delta d;
    int marker = 42;

    tgt_section("tg_register argument checks");
    STATS_NOW(before);
    h = tgt_handle(0, 0);
    CHECK_STATUS(tg_register(0, o, tgt_obj_dtor, &h), TG_ERR_INVALID_ARGUMENT);
    CHECK_MSG(h.owner == 0 && h.key == 0, "a rejected tg_register leaves *out unchanged");
    CHECK_STATUS(tg_register(TAG_A, o, tgt_obj_dtor, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_register(0, o, tgt_obj_dtor, NULL), TG_ERR_NULL_POINTER); /* null out checked first */
    tgt_delta_init(&d);
    D_VIOL(d, invalid_argument, 1);
    D_VIOL(d, null_pointer, 2);
    STATS_EXPECT(before, after, d, "rejected registrations create nothing");
    CHECK_NOT_DESTROYED(o);

    /* A NULL object with a NULL destructor is allowed; so is a NULL destructor. */
    before = after;
    h = tgt_handle(0, 0);
    CHECK_STATUS(tg_register(TAG_B, NULL, NULL, &h), TG_OK);
    CHECK(h.owner != 0 || h.key != 0);
    CHECK_U64(h.owner, tg_current_thread_id());
    CHECK_STATUS(tg_owner_of(h, &owner), TG_OK);
    CHECK_U64(owner, tg_current_thread_id());
    CHECK_STATUS(tg_register(UINT32_MAX, &marker, NULL, &h2), TG_OK);
    CHECK(!tgt_same_handle(h, h2));
    CHECK_STATUS(tgt_obj_register(o), TG_OK);
    h3 = o->handle;
    CHECK(!tgt_same_handle(h3, h) && !tgt_same_handle(h3, h2));
    tgt_delta_init(&d);
    D_SET(d, created, 3);
    D_SET(d, live, 3);
    STATS_EXPECT(before, after, d, "three registrations");

    before = after;
    CHECK_STATUS(tg_with(h3, TAG_A, tgt_borrow_cb, o), TG_OK);
    CHECK_U64(tgt_obj_borrows(o), 1);
    CHECK_STATUS(tg_destroy(h), TG_OK);
    CHECK_STATUS(tg_destroy(h2), TG_OK);
    CHECK(marker == 42);
    CHECK_STATUS(tg_destroy(h3), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 3);
    D_SET(d, live, -3);
    STATS_EXPECT(before, after, d, "three destructions");
    tgt_obj_free(o);
}

static void test_null_handle(void)
{
    tg_handle null_h = tgt_handle(0, 0);
    uint64_t owner = 12345;
    tg_stats before, after;
    tgt_delta d;
    char msg[256];

    tgt_section("null handle on every entry point");
    STATS_NOW(before);
    CHECK_STATUS(tg_with(null_h, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_NULL_HANDLE);
    CHECK(tgt_last_error(msg, sizeof msg) > 0);
    CHECK_STATUS(tg_with(null_h, 0, NULL, NULL), TG_ERR_NULL_HANDLE); /* handle checked first */
    CHECK_STATUS(tg_destroy(null_h), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(tg_destroy_later(null_h), TG_ERR_NULL_HANDLE);
    CHECK_STATUS(tg_owner_of(null_h, &owner), TG_ERR_NULL_HANDLE);
    CHECK_U64(owner, 12345);
    CHECK_STATUS(tg_owner_of(null_h, NULL), TG_ERR_NULL_HANDLE); /* handle checked first */
    tgt_delta_init(&d);
    D_VIOL(d, null_handle, 6);
    STATS_EXPECT(before, after, d, "six null-handle rejections, nothing else");
}

static void test_null_pointers(void)
{
    tgt_obj *o = tgt_obj_make(2, TAG_A);
    uint64_t owner = 0;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("null out / fn pointers");
    STATS_NOW(before);
    CHECK_STATUS(tg_with(o->handle, TAG_A, NULL, o), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_owner_of(o->handle, NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS(tg_register(TAG_A, o, tgt_obj_dtor, NULL), TG_ERR_NULL_POINTER);
    tgt_delta_init(&d);
    D_VIOL(d, null_pointer, 3);
    STATS_EXPECT(before, after, d, "null fn / out pointers");

    before = after;
    CHECK_STATUS(tg_get_stats(NULL), TG_ERR_NULL_POINTER);
    tgt_delta_init(&d);
    D_VIOL(d, null_pointer, 1);
    STATS_EXPECT(before, after, d, "tg_get_stats(NULL) counts one null-pointer violation");

    before = after;
    CHECK_STATUS(tg_set_thread_name(NULL), TG_ERR_NULL_POINTER);
    tgt_delta_init(&d);
    D_VIOL(d, null_pointer, 1);
    STATS_EXPECT(before, after, d, "tg_set_thread_name(NULL) counts one null-pointer violation");

    /* A NULL context is fine: it is passed through untouched. */
    before = after;
    CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_borrow_cb, NULL), TG_OK);
    CHECK_U64(tgt_obj_borrows(o), 1);
    CHECK_STATUS(tg_owner_of(o->handle, &owner), TG_OK);
    CHECK_U64(owner, tg_current_thread_id());
    CHECK_NOT_DESTROYED(o);
    CHECK_STATUS(tg_destroy(o->handle), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    STATS_EXPECT(before, after, d, "the object survived the rejected calls");
    tgt_obj_free(o);
}

static void test_wrong_type(void)
{
    tgt_obj *o = tgt_obj_make(3, TAG_A);
    tg_stats before, after;
    tgt_delta d;

    tgt_section("wrong type");
    STATS_NOW(before);
    CHECK_STATUS(tg_with(o->handle, TAG_B, tgt_forbidden_cb, NULL), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_with(o->handle, 0, tgt_forbidden_cb, NULL), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_with(o->handle, TAG_A ^ 1u, tgt_forbidden_cb, NULL), TG_ERR_WRONG_TYPE);
    CHECK_STATUS(tg_with(o->handle, TAG_B, NULL, NULL), TG_ERR_WRONG_TYPE); /* type before fn */
    tgt_delta_init(&d);
    D_VIOL(d, wrong_type, 4);
    STATS_EXPECT(before, after, d, "four wrong-type rejections");
    CHECK_U64(tgt_obj_borrows(o), 0);
    CHECK_STATUS(tg_with(o->handle, TAG_A, tgt_borrow_cb, o), TG_OK);
    CHECK_U64(tgt_obj_borrows(o), 1);
    CHECK_STATUS(tg_destroy(o->handle), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    tgt_obj_free(o);
}

static void test_stale_and_double_destroy(void)
{
    tgt_obj *o = tgt_obj_make(4, TAG_A);
    tg_handle h = o->handle;
    uint64_t owner = 0;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("stale handle and double destroy");
    STATS_NOW(before);
    CHECK_STATUS(tg_destroy(h), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    CHECK_STATUS(tg_destroy(h), TG_ERR_STALE);
    CHECK_STATUS(tg_with(h, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    CHECK_STATUS(tg_with(h, TAG_B, NULL, NULL), TG_ERR_STALE); /* stale before type and fn */
    CHECK_STATUS(tg_destroy_later(h), TG_ERR_STALE);          /* the owner validates fully */
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    D_VIOL(d, stale, 4);
    STATS_EXPECT(before, after, d, "destroy once, then four stale rejections");

    /* tg_owner_of on a stale handle must not claim it is live: STALE, or OK naming the owner. */
    owner = 0;
    {
        tg_status s = tg_owner_of(h, &owner);
        CHECK_STATUS_IN(s, TGT_BIT(TG_ERR_STALE) | TGT_BIT(TG_OK));
        if (s == TG_OK)
            CHECK_U64(owner, tg_current_thread_id());
    }
    tgt_obj_free(o);
}

/* Slots are reused, but an old handle must never reach the new occupant. */
static void test_slot_reuse(void)
{
    enum { ROUNDS = 2000 };
    tg_handle *old = (tg_handle *)calloc(ROUNDS, sizeof *old);
    int i, distinct = 1, stale_ok = 1;
    tgt_obj *cur;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("slot reuse: old handles stay stale");
    if (!old)
        abort();
    STATS_NOW(before);
    for (i = 0; i < ROUNDS; i++) {
        tgt_obj *o = tgt_obj_new(1000 + i, TAG_A);
        if (tgt_obj_register(o) != TG_OK) {
            CHECK_MSG(0, "registration in churn loop");
            tgt_obj_free(o);
            break;
        }
        old[i] = o->handle;
        if (i > 0 && tgt_same_handle(old[i], old[i - 1]))
            distinct = 0;
        if (tg_destroy(o->handle) != TG_OK)
            CHECK_MSG(0, "destroy in churn loop");
        if (tgt_obj_dtor_runs(o) != 1 || o->dtor_wrong_pthread || o->dtor_wrong_tid)
            CHECK_MSG(0, "destroyed exactly once, on the owner, in churn loop");
        tgt_obj_free(o);
    }
    CHECK_MSG(distinct, "consecutive registrations reusing a slot get distinct handles");
    cur = tgt_obj_make(999, TAG_A);
    for (i = 0; i < ROUNDS; i++) {
        if (tgt_same_handle(old[i], cur->handle))
            distinct = 0;
        if (tg_with(old[i], TAG_A, tgt_forbidden_cb, NULL) != TG_ERR_STALE)
            stale_ok = 0;
    }
    CHECK_MSG(distinct, "the live object's handle differs from every earlier handle");
    CHECK_MSG(stale_ok, "every earlier handle is TG_ERR_STALE, never the live occupant");
    CHECK_U64(tgt_obj_borrows(cur), 0);
    CHECK_STATUS(tg_with(cur->handle, TAG_A, tgt_borrow_cb, cur), TG_OK);
    CHECK_STATUS(tg_destroy(cur->handle), TG_OK);
    CHECK_DESTROYED_ONCE(cur);
    tgt_delta_init(&d);
    D_SET(d, created, ROUNDS + 1);
    D_SET(d, destroyed, ROUNDS + 1);
    D_VIOL(d, stale, ROUNDS);
    STATS_EXPECT(before, after, d, "churn: created == destroyed, one stale violation per old handle");
    tgt_obj_free(cur);
    free(old);
}

/* ------------------------------------------------------------------ */
/* Re-entrancy                                                         */
/* ------------------------------------------------------------------ */

typedef struct reent_ctx {
    tgt_obj *a, *b, *c;
    int a_ran, b_ran;
    uint64_t live_at_entry;
} reent_ctx;

static void reent_cb_b(void *object, void *context)
{
    reent_ctx *r = (reent_ctx *)context;
    CHECK(object == r->b);
    CHECK_STATUS(tg_with(r->a->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_BUSY);
    CHECK_STATUS(tg_with(r->b->handle, TAG_B, tgt_forbidden_cb, NULL), TG_ERR_BUSY);
    CHECK_STATUS(tg_destroy(r->b->handle), TG_ERR_BUSY);
    CHECK_STATUS(tg_destroy(r->a->handle), TG_ERR_BUSY);
    /* Third level of nesting on an object that is not busy. */
    CHECK_STATUS(tg_with(r->c->handle, TAG_A, tgt_borrow_cb, r->c), TG_OK);
    CHECK_U64(tgt_obj_borrows(r->c), 1);
    CHECK_STATUS(tg_destroy(r->c->handle), TG_OK);
    CHECK_DESTROYED_ONCE(r->c);
    CHECK_STATUS(tg_thread_cleanup(), TG_ERR_BUSY);
    CHECK_NOT_DESTROYED(r->a);
    CHECK_NOT_DESTROYED(r->b);
    r->b_ran++;
}

static void reent_cb_a(void *object, void *context)
{
    reent_ctx *r = (reent_ctx *)context;
    tg_stats s;
    CHECK(object == r->a);
    CHECK_STATUS(tg_with(r->a->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_BUSY);
    CHECK_STATUS(tg_with(r->a->handle, TAG_A, NULL, NULL), TG_ERR_BUSY);               /* busy before fn */
    CHECK_STATUS(tg_with(r->a->handle, TAG_B, tgt_forbidden_cb, NULL), TG_ERR_WRONG_TYPE); /* type before busy */
    CHECK_STATUS(tg_destroy(r->a->handle), TG_ERR_BUSY);
    CHECK_NOT_DESTROYED(r->a);

    /* tg_thread_cleanup from inside a callback: BUSY, and nothing happens. */
    CHECK_STATUS(tg_thread_cleanup(), TG_ERR_BUSY);
    CHECK_NOT_DESTROYED(r->a);
    CHECK_NOT_DESTROYED(r->b);
    STATS_NOW(s);
    CHECK_U64(s.live, r->live_at_entry);

    /* Nested registration and nested calls on other objects succeed. */
    r->c = tgt_obj_new(13, TAG_A);
    CHECK_STATUS(tgt_obj_register(r->c), TG_OK);
    CHECK_STATUS(tg_with(r->b->handle, TAG_B, reent_cb_b, r), TG_OK);
    CHECK_U64(r->b_ran, 1);
    /* b is no longer borrowed: destroying it from inside a's callback works. */
    CHECK_STATUS(tg_destroy(r->b->handle), TG_OK);
    CHECK_DESTROYED_ONCE(r->b);
    CHECK_STATUS(tg_with(r->b->handle, TAG_B, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    r->a_ran++;
}

static void reent_cb_busy_probe(void *object, void *context)
{
    reent_ctx *r = (reent_ctx *)context;
    char msg[512];
    CHECK(object == r->a);
    CHECK_STATUS(tg_with(r->a->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_BUSY);
    CHECK(tgt_last_error(msg, sizeof msg) > 0);
    CHECK_MSG(msg[0] != '\0', "a BUSY rejection leaves a last-error message");
}

static void test_reentrancy(void)
{
    reent_ctx r;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("re-entrancy: BUSY on the borrowed object, nested calls elsewhere succeed");
    memset(&r, 0, sizeof r);
    r.a = tgt_obj_make(11, TAG_A);
    r.b = tgt_obj_make(12, TAG_B);
    STATS_NOW(before);
    r.live_at_entry = before.live;
    CHECK_STATUS(tg_with(r.a->handle, TAG_A, reent_cb_a, &r), TG_OK);
    CHECK_U64(r.a_ran, 1);
    tgt_delta_init(&d);
    D_SET(d, created, 1);   /* c */
    D_SET(d, destroyed, 2); /* b, c */
    D_SET(d, live, -1);
    D_VIOL(d, busy, 9);
    D_VIOL(d, wrong_type, 1);
    D_VIOL(d, stale, 1);
    STATS_EXPECT(before, after, d, "nested calls");

    /* a is intact and usable once the outer borrow has ended. */
    CHECK_STATUS(tg_with(r.a->handle, TAG_A, tgt_borrow_cb, r.a), TG_OK);
    CHECK_U64(tgt_obj_borrows(r.a), 1);
    CHECK_STATUS(tg_with(r.a->handle, TAG_A, tgt_borrow_cb, r.a), TG_OK);
    CHECK_U64(tgt_obj_borrows(r.a), 2);
    CHECK_NOT_DESTROYED(r.a);

    /* The BUSY rejection leaves a last-error message. */
    CHECK_STATUS(tg_with(r.a->handle, TAG_A, reent_cb_busy_probe, &r), TG_OK);

    CHECK_STATUS(tg_destroy(r.a->handle), TG_OK);
    CHECK_DESTROYED_ONCE(r.a);
    tgt_obj_free(r.a);
    tgt_obj_free(r.b);
    tgt_obj_free(r.c);
}

/* ------------------------------------------------------------------ */
/* Deferred destruction on the owner                                   */
/* ------------------------------------------------------------------ */

typedef struct self_later_ctx {
    tgt_obj *self;
    tgt_obj *other;
    uint64_t pending_before;
    int ran;
} self_later_ctx;

static void self_later_cb(void *object, void *context)
{
    self_later_ctx *c = (self_later_ctx *)context;
    tg_stats s;
    CHECK(object == c->self);
    CHECK_STATUS(tg_destroy_later(c->self->handle), TG_OK);
    CHECK_NOT_DESTROYED(c->self);
    STATS_NOW(s);
    CHECK_U64(s.deferred_pending, c->pending_before + 1);
    /* The request waits while the object is borrowed, whatever runs meanwhile. */
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_NOT_DESTROYED(c->self);
    CHECK_STATUS(tg_with(c->other->handle, TAG_B, tgt_borrow_cb, c->other), TG_OK);
    CHECK_NOT_DESTROYED(c->self);
    /* The object is still ours and intact inside its own callback. */
    CHECK(c->self->magic == TGT_MAGIC);
    c->ran++;
}

static void test_destroy_later_on_owner(void)
{
    self_later_ctx c;
    tgt_obj *o;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("tg_destroy_later of itself from inside its own callback");
    memset(&c, 0, sizeof c);
    c.self = tgt_obj_make(21, TAG_A);
    c.other = tgt_obj_make(22, TAG_B);
    STATS_NOW(before);
    c.pending_before = before.deferred_pending;
    CHECK_STATUS(tg_with(c.self->handle, TAG_A, self_later_cb, &c), TG_OK);
    CHECK_U64(c.ran, 1);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_DESTROYED_ONCE(c.self);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_DESTROYED_ONCE(c.self);
    CHECK_STATUS(tg_with(c.self->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    CHECK_NOT_DESTROYED(c.other);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    D_VIOL(d, stale, 1);
    STATS_EXPECT(before, after, d, "self destroy_later: destroyed once, nothing left queued");

    tgt_section("tg_destroy_later on the owner, outside any callback");
    o = tgt_obj_make(23, TAG_A);
    before = after;
    CHECK_STATUS(tg_destroy_later(o->handle), TG_OK);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    CHECK_STATUS(tg_destroy_later(o->handle), TG_ERR_STALE);
    CHECK_STATUS(tg_run_pending(), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    tgt_delta_init(&d);
    D_SET(d, created, 1);
    D_SET(d, destroyed, 1);
    D_VIOL(d, stale, 1);
    STATS_EXPECT(before, after, d, "owner destroy_later");

    CHECK_STATUS(tg_destroy(c.other->handle), TG_OK);
    CHECK_DESTROYED_ONCE(c.other);
    tgt_obj_free(o);
    tgt_obj_free(c.self);
    tgt_obj_free(c.other);
}

/* ------------------------------------------------------------------ */
/* Destructors that call back into the library                         */
/* ------------------------------------------------------------------ */

static void test_destructor_callbacks(void)
{
    tgt_obj *parent, *c1, *c2, *x, *y, *s;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("destructor destroys its children");
    c1 = tgt_obj_make(31, TAG_A);
    c2 = tgt_obj_make(32, TAG_B);
    parent = tgt_obj_make(30, TAG_A);
    parent->nchildren = 2;
    parent->children[0] = c1->handle;
    parent->children[1] = c2->handle;
    STATS_NOW(before);
    CHECK_STATUS(tg_destroy(parent->handle), TG_OK);
    CHECK_DESTROYED_ONCE(parent);
    CHECK_DESTROYED_ONCE(c1);
    CHECK_DESTROYED_ONCE(c2);
    CHECK_STATUS(parent->child_status[0], TG_OK);
    CHECK_STATUS(parent->child_status[1], TG_OK);
    CHECK_STATUS(tg_with(c1->handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    tgt_delta_init(&d);
    D_SET(d, destroyed, 3);
    D_SET(d, live, -3);
    D_VIOL(d, stale, 1);
    STATS_EXPECT(before, after, d, "parent and two children destroyed");

    tgt_section("destructor registers a new object");
    x = tgt_obj_make(33, TAG_A);
    y = tgt_obj_new(34, TAG_B);
    x->register_in_dtor = y;
    STATS_NOW(before);
    CHECK_STATUS(tg_destroy(x->handle), TG_OK);
    CHECK_DESTROYED_ONCE(x);
    CHECK_STATUS(x->register_in_dtor_status, TG_OK);
    CHECK_NOT_DESTROYED(y);
    CHECK_STATUS(tg_with(y->handle, TAG_B, tgt_borrow_cb, y), TG_OK);
    CHECK_STATUS(tg_destroy(y->handle), TG_OK);
    CHECK_DESTROYED_ONCE(y);
    tgt_delta_init(&d);
    D_SET(d, created, 1);
    D_SET(d, destroyed, 2);
    D_SET(d, live, -1);
    STATS_EXPECT(before, after, d, "register from a destructor");

    tgt_section("destructor calls tg_destroy on its own handle");
    s = tgt_obj_make(35, TAG_A);
    s->destroy_self_in_dtor = 1;
    STATS_NOW(before);
    CHECK_STATUS(tg_destroy(s->handle), TG_OK);
    CHECK_DESTROYED_ONCE(s);
    CHECK_STATUS_IN(s->destroy_self_status, TGT_BIT(TG_ERR_STALE) | TGT_BIT(TG_ERR_BUSY));
    tgt_delta_init(&d);
    D_SET(d, destroyed, 1);
    D_SET(d, live, -1);
    D_IGNORE(d, violations_stale);
    D_IGNORE(d, violations_busy);
    STATS_EXPECT(before, after, d, "self destroy inside the destructor is refused");
    CHECK_U64(after.violations_stale + after.violations_busy,
              before.violations_stale + before.violations_busy + 1);

    tgt_obj_free(parent);
    tgt_obj_free(c1);
    tgt_obj_free(c2);
    tgt_obj_free(x);
    tgt_obj_free(y);
    tgt_obj_free(s);
}

static void test_thread_cleanup_on_main(void)
{
    enum { PLAIN = 10 };
    tgt_obj *plain[PLAIN];
    tgt_obj *parent, *c1, *c2, *x, *y, *z, *after_obj;
    tg_stats before, after;
    tgt_delta d;
    int i;

    tgt_section("tg_thread_cleanup on the main thread");
    STATS_NOW(before);
    CHECK_U64(before.live, 0); /* everything earlier was destroyed */
    for (i = 0; i < PLAIN; i++)
        plain[i] = tgt_obj_make(40 + i, i % 2 ? TAG_A : TAG_B);
    c1 = tgt_obj_make(51, TAG_A);
    parent = tgt_obj_make(50, TAG_A);
    c2 = tgt_obj_make(52, TAG_A);
    parent->nchildren = 2;
    parent->children[0] = c1->handle;
    parent->children[1] = c2->handle;
    x = tgt_obj_make(53, TAG_A);
    y = tgt_obj_new(54, TAG_A);
    x->register_in_dtor = y; /* registering during cleanup must be refused */
    z = tgt_obj_make(55, TAG_B);
    CHECK_STATUS(tg_destroy_later(z->handle), TG_OK);

    CHECK_STATUS(tg_thread_cleanup(), TG_OK);
    for (i = 0; i < PLAIN; i++)
        CHECK_DESTROYED_ONCE(plain[i]);
    CHECK_DESTROYED_ONCE(parent);
    CHECK_DESTROYED_ONCE(c1);
    CHECK_DESTROYED_ONCE(c2);
    CHECK_STATUS_IN(parent->child_status[0], TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_STALE));
    CHECK_STATUS_IN(parent->child_status[1], TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_STALE));
    CHECK_DESTROYED_ONCE(x);
    CHECK_STATUS(x->register_in_dtor_status, TG_ERR_SHUT_DOWN);
    CHECK_NOT_DESTROYED(y);
    CHECK_DESTROYED_ONCE(z);
    tgt_delta_init(&d);
    D_SET(d, created, PLAIN + 5);
    D_SET(d, destroyed, PLAIN + 5);
    D_IGNORE(d, violations_stale); /* a child may already be gone when its parent asks */
    STATS_EXPECT(before, after, d, "cleanup destroyed everything the thread owned");
    CHECK_U64(after.live, 0);
    CHECK_U64(after.deferred_pending, 0);

    /* The thread stays usable afterwards. */
    after_obj = tgt_obj_make(56, TAG_A);
    CHECK_STATUS(tg_with(after_obj->handle, TAG_A, tgt_borrow_cb, after_obj), TG_OK);
    CHECK_STATUS(tg_destroy(after_obj->handle), TG_OK);
    CHECK_DESTROYED_ONCE(after_obj);
    /* A second cleanup with nothing to do is fine. */
    CHECK_STATUS(tg_thread_cleanup(), TG_OK);

    for (i = 0; i < PLAIN; i++)
        tgt_obj_free(plain[i]);
    tgt_obj_free(parent);
    tgt_obj_free(c1);
    tgt_obj_free(c2);
    tgt_obj_free(x);
    tgt_obj_free(y);
    tgt_obj_free(z);
    tgt_obj_free(after_obj);
}

/* ------------------------------------------------------------------ */
/* Diagnostics                                                         */
/* ------------------------------------------------------------------ */

static void test_last_error_semantics(void)
{
    tgt_obj *o = tgt_obj_make(60, TAG_A);
    tg_handle h = o->handle;
    char full[1024], shortbuf[64], again[1024];
    size_t n, r;
    tg_stats before, after;
    tgt_delta d;

    tgt_section("tg_last_error: snprintf semantics");
    CHECK_STATUS(tg_destroy(h), TG_OK);
    STATS_NOW(before);
    CHECK_STATUS(tg_with(h, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    /* Only tg_last_error itself is called until the message has been examined. */
    n = tg_last_error(NULL, 0);
    CHECK(n > 0);
    CHECK(n < sizeof full);
    memset(full, 'X', sizeof full);
    r = tg_last_error(full, sizeof full);
    CHECK_U64(r, n);
    CHECK_U64(strlen(full), n);
    CHECK(full[n] == '\0');
    CHECK(full[n + 1] == 'X'); /* nothing written past the terminator */

    /* Exactly fitting buffer: n chars + NUL. */
    memset(again, 'X', sizeof again);
    r = tg_last_error(again, n + 1);
    CHECK_U64(r, n);
    CHECK(memcmp(again, full, n + 1) == 0);
    CHECK(again[n + 1] == 'X');

    /* One byte short: truncated to n-1 chars + NUL. */
    memset(again, 'X', sizeof again);
    r = tg_last_error(again, n);
    CHECK_U64(r, n);
    CHECK(again[n - 1] == '\0');
    CHECK(memcmp(again, full, n - 1) == 0);
    CHECK(again[n] == 'X');

    /* Short buffer: 4 chars + NUL, the rest untouched. */
    memset(shortbuf, 'X', sizeof shortbuf);
    r = tg_last_error(shortbuf, 5);
    CHECK_U64(r, n);
    CHECK(shortbuf[4] == '\0');
    CHECK(memcmp(shortbuf, full, 4) == 0);
    CHECK(shortbuf[5] == 'X');

    /* len 1: just the terminator. */
    memset(shortbuf, 'X', sizeof shortbuf);
    r = tg_last_error(shortbuf, 1);
    CHECK_U64(r, n);
    CHECK(shortbuf[0] == '\0');
    CHECK(shortbuf[1] == 'X');

    /* len 0 with a real buffer: nothing written. */
    memset(shortbuf, 'X', sizeof shortbuf);
    r = tg_last_error(shortbuf, 0);
    CHECK_U64(r, n);
    CHECK(shortbuf[0] == 'X');

    /* Reading does not consume the message. */
    memset(again, 0, sizeof again);
    CHECK_U64(tg_last_error(again, sizeof again), n);
    CHECK_STR(again, full);
    tgt_delta_init(&d);
    D_VIOL(d, stale, 1);
    STATS_EXPECT(before, after, d, "one stale violation; tg_last_error changes no counter");
    tgt_obj_free(o);
}

static void test_thread_name(void)
{
    char longname[1200];
    const char bad_utf8[] = {'b', 'a', 'd', (char)0xff, (char)0xfe, '\0'};
    tgt_obj *o;
    char msg[2048];
    tg_handle forged;

    tgt_section("tg_set_thread_name");
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_STATUS(tg_set_thread_name("api-main"), TG_OK);
    CHECK_STATUS(tg_set_thread_name(NULL), TG_ERR_NULL_POINTER);
    CHECK_STATUS_IN(tg_set_thread_name(""), TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_INVALID_ARGUMENT));
    CHECK_STATUS_IN(tg_set_thread_name(longname),
                    TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_INVALID_ARGUMENT) | TGT_BIT(TG_ERR_LIMIT));
    CHECK_STATUS_IN(tg_set_thread_name(bad_utf8), TGT_BIT(TG_OK) | TGT_BIT(TG_ERR_INVALID_ARGUMENT));
    CHECK_STATUS(tg_set_thread_name("api \"main\" thread"), TG_OK);
    CHECK_STATUS(tg_set_thread_name("api-main"), TG_OK);

    /* Our own id shows up in a message about our own handle. */
    o = tgt_obj_make(61, TAG_A);
    forged = tgt_handle(o->handle.owner, o->handle.key ^ UINT64_C(0x8000000000000000));
    CHECK_STATUS(tg_with(forged, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
    CHECK(tgt_last_error(msg, sizeof msg) > 0);
    CHECK_MSG(tgt_contains_number(msg, tg_current_thread_id()), msg);
    CHECK_STATUS(tg_destroy(o->handle), TG_OK);
    CHECK_DESTROYED_ONCE(o);
    tgt_obj_free(o);
}

/* Redirect fd 2 into a temporary file while a violation happens. */
typedef struct capture {
    FILE *tmp;
    int saved;
} capture;

static void capture_begin(capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    c->saved = dup(2);
    if (!c->tmp || c->saved < 0 || dup2(fileno(c->tmp), 2) < 0) {
        fprintf(stdout, "cannot redirect stderr\n");
        abort();
    }
}

static size_t capture_end(capture *c, char *buf, size_t len)
{
    size_t n;
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    rewind(c->tmp);
    n = fread(buf, 1, len - 1, c->tmp);
    buf[n] = '\0';
    fclose(c->tmp);
    return n;
}

static void test_violation_policy(void)
{
    capture cap;
    char out[4096], msg[1024];
    size_t n;
    tg_handle null_h = tgt_handle(0, 0);
    tg_stats before, after;
    tgt_delta d;

    tgt_section("tg_set_violation_policy: RETURN (default), LOG, invalid");
    /* Default is RETURN: a violation prints nothing. */
    capture_begin(&cap);
    CHECK_STATUS(tg_destroy(null_h), TG_ERR_NULL_HANDLE);
    n = capture_end(&cap, out, sizeof out);
    CHECK_MSG(n == 0, out);

    /* LOG: the call still returns its code, and the message goes to stderr. */
    CHECK_STATUS(tg_set_violation_policy(TG_POLICY_LOG), TG_OK);
    capture_begin(&cap);
    CHECK_STATUS(tg_with(null_h, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_NULL_HANDLE);
    n = capture_end(&cap, out, sizeof out);
    tgt_last_error(msg, sizeof msg);
    CHECK_MSG(n > 0, "LOG policy prints the violation to stderr");
    CHECK_MSG(msg[0] && strstr(out, msg) != NULL, "the printed text contains the last-error message");

    /* Invalid policies are refused and change nothing (under LOG, the refusal itself is logged). */
    STATS_NOW(before);
    capture_begin(&cap);
    CHECK_STATUS(tg_set_violation_policy(3), TG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tg_set_violation_policy(-1), TG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tg_set_violation_policy(INT32_MAX), TG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(tg_set_violation_policy(INT32_MIN), TG_ERR_INVALID_ARGUMENT);
    capture_end(&cap, out, sizeof out);
    tgt_delta_init(&d);
    D_VIOL(d, invalid_argument, 4);
    STATS_EXPECT(before, after, d, "invalid policies count as invalid-argument violations");
    capture_begin(&cap);
    CHECK_STATUS(tg_destroy_later(null_h), TG_ERR_NULL_HANDLE);
    n = capture_end(&cap, out, sizeof out);
    CHECK_MSG(n > 0, "policy is still LOG after the invalid attempts");

    /* Back to RETURN: silent again. */
    CHECK_STATUS(tg_set_violation_policy(TG_POLICY_RETURN), TG_OK);
    capture_begin(&cap);
    CHECK_STATUS(tg_destroy(null_h), TG_ERR_NULL_HANDLE);
    n = capture_end(&cap, out, sizeof out);
    CHECK_MSG(n == 0, out);
}

static void test_abort_policy_in_child(void)
{
    pid_t pid;
    int status = 0;
    FILE *tmp;
    char out[4096];
    size_t n;

    tgt_section("tg_set_violation_policy: ABORT (in a forked child)");
    tmp = tmpfile();
    if (!tmp) {
        CHECK_MSG(0, "tmpfile");
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        CHECK_MSG(0, "fork");
        fclose(tmp);
        return;
    }
    if (pid == 0) {
        tg_handle null_h = tgt_handle(0, 0);
        tgt_record_coverage_at_abort();
        dup2(fileno(tmp), 2);
        if (tg_set_violation_policy(TG_POLICY_ABORT) != TG_OK)
            _exit(3);
        (void)tg_with(null_h, TAG_A, tgt_forbidden_cb, NULL);
        _exit(4); /* not reached if the policy works */
    }
    if (waitpid(pid, &status, 0) != pid) {
        CHECK_MSG(0, "waitpid");
        fclose(tmp);
        return;
    }
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "the child died of SIGABRT at its first violation");
    if (WIFEXITED(status))
        fprintf(stderr, "  child exited with status %d instead\n", WEXITSTATUS(status));
    rewind(tmp);
    n = fread(out, 1, sizeof out - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    CHECK_MSG(n > 0, "ABORT policy prints the violation before aborting");
}

/* ------------------------------------------------------------------ */

int main(void)
{
    uint64_t me;
    tg_stats s;

    /* Make the main thread known to the library first, then start from a clean state. */
    me = tg_current_thread_id();
    CHECK(me != 0);
    CHECK_U64(tg_current_thread_id(), me);
    STATS_NOW(s);
    CHECK_STATS_CONSISTENT(s);
    CHECK_U64(s.live, 0);
    CHECK_U64(s.created, 0);
    CHECK_U64(s.violations, 0);
    CHECK_U64(s.threads_live, 1);
    CHECK_U64(s.threads_started, 1);

    test_abort_policy_in_child(); /* first, while this process has a single thread */
    test_constants_and_layout();
    test_versions();
    test_status_names();
    test_register_arguments();
    test_null_handle();
    test_null_pointers();
    test_wrong_type();
    test_stale_and_double_destroy();
    test_slot_reuse();
    test_reentrancy();
    test_destroy_later_on_owner();
    test_destructor_callbacks();
    test_thread_cleanup_on_main();
    test_last_error_semantics();
    test_thread_name();
    test_violation_policy();

    tgt_final_checks();
    CHECK_U64(tg_current_thread_id(), me);
    return tgt_finish();
}
