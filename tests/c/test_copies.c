/*
 * test_copies.c - a second copy of threadguard loaded into the process.
 *
 * The program holds one copy (linked statically or shared) and loads a second one with
 * dlopen: a copy of the shared library's file under another name, so the loader maps it as
 * another object even when the program is linked against the shared library itself. Each
 * copy keeps its own tables: a handle of one is TG_ERR_STALE to the other. The split is
 * detected without being asked: the first copy's refusal of the other's handle says so in its
 * message, each copy that can see the other reports it once on stderr, and tg_copies_loaded
 * counts 2 in each copy that can see the other. The program's copy always sees the loaded one
 * (loaded with RTLD_GLOBAL); the loaded one sees the program's only if the program's symbols
 * are in the global scope (a shared library; a static copy in an executable that does not
 * export its symbols is invisible, and the count is a lower bound).
 *
 * TG_SHARED_LIBRARY (set by tests/c/c-tests.mk) is the path of libthreadguard.so.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef TG_SHARED_LIBRARY
#error "TG_SHARED_LIBRARY must name libthreadguard.so"
#endif

typedef tg_status (*register_fn)(uint32_t, void *, tg_destructor, tg_handle *);
typedef tg_status (*handle_fn)(tg_handle);
typedef tg_status (*copies_fn)(uint32_t *);
typedef void (*cleanup_fn)(void);

/* Looks `name` up in `lib` (dlsym returns an object pointer; the copy is how POSIX converts). */
static void lookup(void *lib, const char *name, void *fn, size_t size)
{
    void *symbol = dlsym(lib, name);
    CHECK_MSG(symbol != NULL, name);
    memcpy(fn, &symbol, size);
}

/* Copies `from` to a new file under /tmp; returns 0 on success with its path in `to`. */
static int copy_file(const char *from, char *to)
{
    char buf[65536];
    ssize_t n = 0;
    int in = open(from, O_RDONLY);
    int out = mkstemp(to);
    int ok = in >= 0 && out >= 0;
    while (ok && (n = read(in, buf, sizeof buf)) > 0)
        ok = write(out, buf, (size_t)n) == n;
    ok = ok && n == 0;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return ok ? 0 : -1;
}

/* Counts the lines of `path` that contain `needle`. */
static int count_lines(const char *path, const char *needle)
{
    char line[4096];
    int count = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        count += strstr(line, needle) != NULL;
    fclose(f);
    return count;
}

int main(void)
{
    char copy[] = "/tmp/tg_test_copies_XXXXXX";
    char err_path[] = "/tmp/tg_test_copies_err_XXXXXX";
    char message[512];
    uint32_t copies = 0, other_copies = 0;
    tg_handle other_handle;
    register_fn other_register = NULL;
    handle_fn other_destroy = NULL;
    copies_fn other_copies_loaded = NULL;
    cleanup_fn other_cleanup = NULL;
    void *lib, *global;
    tgt_obj *mine, *theirs;
    int saved_stderr, err_fd, expected_reports;
    unsigned other_sees;

    tgt_section("one copy");
    mine = tgt_obj_make(1, TAG_A);
    CHECK_STATUS(tg_copies_loaded(&copies), TG_OK);
    CHECK_U64(copies, 1);
    CHECK_STATUS(tg_copies_loaded(NULL), TG_ERR_NULL_POINTER);
    tgt_last_error(message, sizeof message);
    CHECK(strstr(message, "out_count") != NULL);

    tgt_section("a second copy, loaded");
    if (copy_file(TG_SHARED_LIBRARY, copy) != 0) {
        CHECK_MSG(0, "copy " TG_SHARED_LIBRARY " to /tmp");
        return tgt_finish();
    }
    /* What both copies write to stderr from here on goes to a file, to count the reports. */
    fflush(stderr);
    saved_stderr = dup(2);
    err_fd = mkstemp(err_path);
    CHECK(saved_stderr >= 0 && err_fd >= 0 && dup2(err_fd, 2) == 2);
    lib = dlopen(copy, RTLD_NOW | RTLD_GLOBAL);
    unlink(copy);
    if (!lib) {
        dup2(saved_stderr, 2);
        CHECK_MSG(0, dlerror());
        return tgt_finish();
    }
    lookup(lib, "tg_register", &other_register, sizeof other_register);
    lookup(lib, "tg_destroy", &other_destroy, sizeof other_destroy);
    lookup(lib, "tg_copies_loaded", &other_copies_loaded, sizeof other_copies_loaded);
    lookup(lib, "tg_thread_cleanup", &other_cleanup, sizeof other_cleanup);
    /* The loaded copy sees the program's if the global scope's first tg_copies_loaded is not its own. */
    global = dlsym(RTLD_DEFAULT, "tg_copies_loaded");
    other_sees = memcmp(&global, &other_copies_loaded, sizeof global) != 0 ? 2 : 1;

    if (other_register && other_destroy && other_copies_loaded && other_cleanup) {
        theirs = tgt_obj_new(2, TAG_A);
        CHECK_STATUS(other_register(TAG_A, theirs, tgt_obj_dtor, &other_handle), TG_OK);

        /* The program's copy refuses the loaded copy's handle, naming the split. */
        CHECK_STATUS(tg_with(other_handle, TAG_A, tgt_forbidden_cb, NULL), TG_ERR_STALE);
        tgt_last_error(message, sizeof message);
        CHECK_MSG(strstr(message, "(2 copies of threadguard are loaded in this process") != NULL, message);
        CHECK_U64(tgt_forbidden_calls, 0);
        /* And the loaded copy refuses the program's (whether it says why depends on what it sees). */
        CHECK_STATUS(other_destroy(mine->handle), TG_ERR_STALE);
        CHECK_NOT_DESTROYED(mine);

        /* Each copy counts what it sees, as often as asked. */
        for (int i = 0; i < 3; i++) {
            CHECK_STATUS(tg_copies_loaded(&copies), TG_OK);
            CHECK_U64(copies, 2);
            CHECK_STATUS(other_copies_loaded(&other_copies), TG_OK);
            CHECK_U64(other_copies, other_sees);
        }

        /* Each copy still destroys its own objects, once. */
        CHECK_STATUS(other_destroy(other_handle), TG_OK);
        CHECK_DESTROYED_ONCE(theirs);
        other_cleanup();
        tgt_obj_free(theirs);
    }
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(err_fd);

    tgt_section("the reports on stderr");
    /* One line from each copy that saw the other, however often it was asked. */
    expected_reports = other_sees == 2 ? 2 : 1;
    CHECK_U64(count_lines(err_path, "copies of threadguard are loaded in this process (this one in"), expected_reports);
    unlink(err_path);

    CHECK_STATUS(tg_destroy(mine->handle), TG_OK);
    CHECK_DESTROYED_ONCE(mine);
    tgt_obj_free(mine);
    CHECK_U64(tgt_dtor_bad, 0);
    tg_thread_cleanup();
    return tgt_finish();
}
