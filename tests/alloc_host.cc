// The C++ host of alloc_host.c (see there).
#include <cstddef>
#include <new>

#include "alloc_host.c"
