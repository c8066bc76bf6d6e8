/* Two copies of threadguard in one process: this program links libthreadguard.a and loads
 * libthreadguard.so (argv[1]) with dlopen, as a program linking the static library and a Rust
 * library built with export_thread_affine! would. Each copy keeps its own tables: a handle
 * registered through one is TG_ERR_STALE to the other. The test checks that the split is
 * detected without being asked: a copy that refuses a handle of the other (or makes its first
 * call) after the other was loaded reports it once on stderr and says so in the refused call's
 * message; then tg_copies_loaded counts 2 in each copy that can see the other.
 * tests/install/check.sh counts the report lines, which come before the line
 * "two_copies: querying".
 *
 *   two_copies LIBRARY EXPECTED_STATIC EXPECTED_SHARED
 *
 * EXPECTED_* are the counts each copy should report: built with -rdynamic the executable's
 * copy is in the global scope too, and both see 2; without it the shared copy sees only
 * itself (the count is a lower bound). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "threadguard.h"

#define TAG 3u

typedef tg_status (*register_fn)(uint32_t, void *, tg_destructor, tg_handle *);
typedef tg_status (*with_fn)(tg_handle, uint32_t, tg_borrow_fn, void *);
typedef tg_status (*copies_fn)(uint32_t *);

static int borrows = 0;
static void borrow(void *object, void *context) {
    (void)object;
    (void)context;
    borrows += 1;
}

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "two_copies: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                      \
        }                                                                  \
    } while (0)

int main(int argc, char **argv) {
    static int object = 0;
    uint32_t copies = 0;
    tg_handle h;
    CHECK(argc == 4);
    unsigned expected_static = (unsigned)atoi(argv[2]), expected_shared = (unsigned)atoi(argv[3]);

    /* One copy so far: the static one, first used here. */
    CHECK(tg_register(TAG, &object, NULL, &h) == TG_OK);
    CHECK(tg_copies_loaded(&copies) == TG_OK && copies == 1);
    CHECK(tg_copies_loaded(NULL) == TG_ERR_NULL_POINTER);

    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    CHECK(lib != NULL);
    register_fn so_register = (register_fn)dlsym(lib, "tg_register");
    with_fn so_with = (with_fn)dlsym(lib, "tg_with");
    copies_fn so_copies = (copies_fn)dlsym(lib, "tg_copies_loaded");
    CHECK(so_register && so_with && so_copies && so_with != tg_with);

    /* The split: a handle of one copy means nothing to the other. */
    CHECK(so_with(h, TAG, borrow, NULL) == TG_ERR_STALE);
    CHECK(tg_with(h, TAG, borrow, NULL) == TG_OK && borrows == 1);
    tg_handle other;
    CHECK(so_register(TAG, &object, NULL, &other) == TG_OK);
    /* The static copy refuses the shared copy's handle; it has seen the new object and says so. */
    char message[512];
    CHECK(tg_with(other, TAG, borrow, NULL) == TG_ERR_STALE && borrows == 1);
    tg_last_error(message, sizeof message);
    CHECK(strstr(message, "(2 copies of threadguard are loaded in this process") != NULL);

    /* Queried repeatedly; each copy has reported on stderr at most once, already. */
    fprintf(stderr, "two_copies: querying\n");
    for (int i = 0; i < 3; i++) {
        CHECK(tg_copies_loaded(&copies) == TG_OK && copies == expected_static);
        CHECK(so_copies(&copies) == TG_OK && copies == expected_shared);
    }
    printf("two_copies: static copy counts %u, shared copy counts %u\n", expected_static, expected_shared);
    tg_thread_cleanup();
    return 0;
}
