// A C++ program linking libberth.a: it instantiates the same inline and
// template functions of libstdc++ as Berth does (std::to_string, string
// operator+), and throws and catches its own exceptions around Berth calls.
// libberth.a is one prelinked object whose hidden symbols are made local; if
// that object kept its COMDAT groups, the linker would keep the program's
// copy of each shared group, discard Berth's, and fail ("defined in discarded
// section") on Berth's references to its now-local symbols. That this file
// links is most of the test.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "berth.h"

#define S(str) (str), std::strlen(str)

int main() {
  berth_engine* engine = nullptr;
  if (berth_engine_new(&engine) != BERTH_OK) return 1;
  for (int i = 0; i < 1000; ++i) {
    std::string name = std::string("sandbox-") + std::to_string(i);
    if (berth_pool_add(nullptr, engine, S("p"), S("ns"), name.data(), name.size(), S("node"), 1) !=
        BERTH_OK)
      return 1;
    try {
      throw std::runtime_error(name + " host exception");
    } catch (const std::runtime_error& e) {
      if (std::strstr(e.what(), "host exception") == nullptr) return 1;
    }
  }
  berth_pool_stats stats;
  if (berth_pool_get_stats(&stats, engine, S("p")) != BERTH_OK || stats.keys != 1000) return 1;
  if (berth_pool_add(nullptr, nullptr, S("p"), S("ns"), S("x"), S("n"), 1) !=
      BERTH_ERR_INVALID_ARGUMENT)
    return 1;
  berth_engine_free(engine);
  std::puts("ok");
  return 0;
}
