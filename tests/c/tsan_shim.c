/*
 * tsan_shim.c - linked into the C tests of `make tsan` only.
 *
 * Rust code built with -Zsanitizer=thread calls __tsan_memcpy, __tsan_memmove and
 * __tsan_memset (LLVM's ThreadSanitizer instruments memory intrinsics that way); gcc's
 * ThreadSanitizer runtime, which `cc -fsanitize=thread` links, has no such entry points. It
 * does intercept memcpy, memmove and memset themselves, and checks their accesses there, so
 * each entry point forwards to the intercepted function.
 */
#include <string.h>

void *__tsan_memcpy(void *dst, const void *src, size_t n);
void *__tsan_memmove(void *dst, const void *src, size_t n);
void *__tsan_memset(void *dst, int c, size_t n);

void *__tsan_memcpy(void *dst, const void *src, size_t n)
{
    return memcpy(dst, src, n);
}

void *__tsan_memmove(void *dst, const void *src, size_t n)
{
    return memmove(dst, src, n);
}

void *__tsan_memset(void *dst, int c, size_t n)
{
    return memset(dst, c, n);
}
