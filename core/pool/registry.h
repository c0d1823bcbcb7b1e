// PoolRegistry: the pools of one engine, by name. Thread-safe.
//
// There is no registry-wide lock: names hash to one of kShards shards, each a
// small mutex-guarded map held only for the lookup. Every pool has its own
// mutex, held for the whole (O(log M + log K)) operation. A removed pool is
// marked dead under its mutex, so an operation that looked it up just before
// the removal retries instead of changing a pool nobody can see any more.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/common/alloc.h"
#include "core/common/mutex.h"
#include "core/pool/pool.h"

namespace berth {

class PoolRegistry {
 public:
  PoolRegistry() = default;
  // Frees every pool and returns the memory to the OS (ReleaseFreedMemory).
  ~PoolRegistry();
  PoolRegistry(const PoolRegistry&) = delete;
  PoolRegistry& operator=(const PoolRegistry&) = delete;

  // Runs f(WarmPool&) under the pool's mutex and returns true. If the pool
  // does not exist: creates it when `create`, else returns false without
  // calling f. The pool name must have passed CheckPoolName.
  template <class F>
  bool With(std::string_view name, bool create, F&& f) {
    for (;;) {
      std::shared_ptr<Slot> slot = Find(name, create);
      if (!slot) return false;
      std::lock_guard<Mutex> lock(slot->mu);
      if (slot->dead) continue;  // removed between lookup and lock
      f(*slot->pool);
      return true;
    }
  }

  // Drops a pool; true if it existed. Its memory goes back to the OS before
  // this returns (ReleaseFreedMemory) unless the pool was small.
  bool Remove(std::string_view name);

  // The names of the pools that exist, sorted. Each shard's lock is held
  // only while its names are copied, so a pool added or removed meanwhile
  // may or may not be listed. O(pools).
  std::vector<String> Names() const;

 private:
  struct Slot {
    Mutex mu;
    bool dead = false;
    MiUnique<WarmPool> pool = MakeMiUnique<WarmPool>();  // null once dead
  };
  struct Shard {
    mutable Mutex mu;
    std::unordered_map<String, std::shared_ptr<Slot>, StringHash, StringEq,
                       Alloc<std::pair<const String, std::shared_ptr<Slot>>>>
        pools;
  };
  static constexpr size_t kShards = 64;

  std::shared_ptr<Slot> Find(std::string_view name, bool create);
  Shard& ShardFor(std::string_view name) {
    return shards_[StringHash{}(name) % kShards];
  }

  std::array<Shard, kShards> shards_;
};

}  // namespace berth
