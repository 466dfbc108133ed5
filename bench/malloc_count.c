// An LD_PRELOAD shim that counts malloc calls while `gs_malloc_on` is set (bench/allocations.py).
// Build: gcc -O2 -shared -fPIC bench/malloc_count.c -o build/libmalloc_count.so -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
static void* (*real_malloc)(size_t) = 0;
long gs_malloc_count = 0;
int gs_malloc_on = 0;
void* malloc(size_t n) {
  if (!real_malloc) real_malloc = dlsym(RTLD_NEXT, "malloc");
  if (gs_malloc_on) __atomic_add_fetch(&gs_malloc_count, 1, __ATOMIC_RELAXED);
  return real_malloc(n);
}
