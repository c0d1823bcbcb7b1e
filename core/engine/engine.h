// Engine: owns every piece of state made through one berth_engine handle.
// No globals: two engines share nothing. Thread-safe (each member is).
#pragma once

#include "core/pool/registry.h"

namespace berth {

struct Engine {
  PoolRegistry pools;
};

}  // namespace berth
