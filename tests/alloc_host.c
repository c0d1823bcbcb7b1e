/* A host program linked against libberth checks that loading Berth changed
 * none of its allocator: after Berth has run (and allocated), every
 * allocation entry point the process resolves (malloc and friends, operator
 * new/delete in every form) must still come from libc or libstdc++, never
 * from libberth or anything it brought in. Built twice: as C (alloc_host_c)
 * and as C++ (alloc_host_cxx, which also checks the operator new/delete its
 * own code is bound to, and allocates with them after Berth has).
 *
 * Exit 0 when clean; 1 naming each symbol that resolves elsewhere. The
 * control (alloc_host_overridden) links an interposer before libc: it must
 * fail, so this check can tell. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"

#define S(str) (str), strlen(str)

static int failures = 0;

/* Where the definition at `addr` lives, by library file name. */
static const char* library_of(const void* addr) {
  Dl_info info;
  if (addr == NULL || dladdr(addr, &info) == 0 || info.dli_fname == NULL) return "?";
  return info.dli_fname;
}

static void expect_in(const char* what, const void* addr, const char* library) {
  const char* where = library_of(addr);
  const char* base = strrchr(where, '/');
  base = base ? base + 1 : where;
  const int ok = strncmp(base, library, strlen(library)) == 0;
  printf("%-32s -> %s%s\n", what, where, ok ? "" : "   <-- not the host's allocator");
  if (!ok) ++failures;
}

static void expect_symbol_in(const char* name, const char* library) {
  void* addr = dlsym(RTLD_DEFAULT, name);
  if (addr == NULL) {
    printf("%-32s (not in this process)\n", name);
    return;
  }
  expect_in(name, addr, library);
}

/* Berth runs first: engine, pool, hand-outs, a listing buffer freed again. */
static int use_berth(void) {
  berth_engine* engine = NULL;
  if (berth_engine_new(&engine) != BERTH_OK) return 1;
  char name[32];
  for (int i = 0; i < 1000; ++i) {
    snprintf(name, sizeof name, "sandbox-%d", i);
    if (berth_pool_add(NULL, engine, S("ns/pool"), S("ns"), S(name), S("node-a"), 1) != BERTH_OK)
      return 1;
  }
  berth_buffer* buffer = NULL;
  if (berth_pool_snapshot(&buffer, engine, S("ns/pool")) != BERTH_OK) return 1;
  berth_buffer_free(buffer);
  berth_engine_free(engine);
  return 0;
}

int main(void) {
  if (use_berth() != 0) {
    fprintf(stderr, "berth: %s\n", berth_last_error(NULL));
    return 2;
  }
  static const char* const libc_symbols[] = {
      "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc",
      "memalign", "valloc", "pvalloc", "malloc_usable_size", "strdup", "strndup"};
  for (size_t i = 0; i < sizeof libc_symbols / sizeof *libc_symbols; ++i)
    expect_symbol_in(libc_symbols[i], "libc.so");
  /* operator new/delete: plain, array, nothrow, sized, aligned. */
  static const char* const cxx_symbols[] = {
      "_Znwm", "_Znam", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm",
      "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZdlPvRKSt9nothrow_t",
      "_ZnwmSt11align_val_t", "_ZdlPvSt11align_val_t", "_ZdlPvmSt11align_val_t"};
  for (size_t i = 0; i < sizeof cxx_symbols / sizeof *cxx_symbols; ++i)
    expect_symbol_in(cxx_symbols[i], "libstdc++.so");
  /* What this program itself calls. */
  expect_in("malloc (this program's binding)", (const void*)&malloc, "libc.so");
  expect_in("free (this program's binding)", (const void*)&free, "libc.so");
#ifdef __cplusplus
  {
    void* (*plain_new)(std::size_t) = &::operator new;
    void (*plain_delete)(void*) noexcept = &::operator delete;
    expect_in("operator new (this program's)", (const void*)plain_new, "libstdc++.so");
    expect_in("operator delete (this program's)", (const void*)plain_delete, "libstdc++.so");
    // And they work on memory from each other after Berth ran: new/free
    // pairs are the host's business, glibc's checks abort on a foreign block.
    int* p = new int[1000];
    void* q = malloc(64);
    delete[] p;
    free(q);
  }
#endif
  if (failures != 0) {
    printf("%d allocation entry point(s) do not resolve to the host's allocator\n", failures);
    return 1;
  }
  printf("every allocation entry point resolves to libc / libstdc++\n");
  return 0;
}
