/* The control for alloc_host: a library that interposes malloc and operator
 * new (forwarding to the next definition), as an overriding allocator such
 * as Debian's libmimalloc.so does. A host linked with it must fail the check. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

void* malloc(size_t size) {
  static void* (*next)(size_t);
  if (!next) next = (void* (*)(size_t))dlsym(RTLD_NEXT, "malloc");
  return next(size);
}

void* _Znwm(size_t size) { return malloc(size ? size : 1); }
