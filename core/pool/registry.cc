#include "core/pool/registry.h"

#include <algorithm>

namespace berth {

std::shared_ptr<PoolRegistry::Slot> PoolRegistry::Find(std::string_view name, bool create) {
  Shard& shard = ShardFor(name);
  std::lock_guard<Mutex> lock(shard.mu);
  auto it = shard.pools.find(name);
  if (it != shard.pools.end()) return it->second;
  if (!create) return nullptr;
  auto slot = std::allocate_shared<Slot>(Alloc<Slot>());
  shard.pools.emplace(String(name.data(), name.size()), slot);
  return slot;
}

PoolRegistry::~PoolRegistry() {
  // No call is in flight (the engine's contract), so no locks.
  size_t bytes = 0;
  for (Shard& shard : shards_) {
    for (auto& [name, slot] : shard.pools) {
      bytes += slot->pool->ApproxBytes();
      slot->pool.reset();
    }
  }
  ReleaseFreedMemory(bytes);
}

bool PoolRegistry::Remove(std::string_view name) {
  std::shared_ptr<Slot> slot;
  MiUnique<WarmPool> doomed;  // freed after the locks are released
  {
    Shard& shard = ShardFor(name);
    std::lock_guard<Mutex> shard_lock(shard.mu);
    auto it = shard.pools.find(name);
    if (it == shard.pools.end()) return false;
    slot = std::move(it->second);
    // Mark dead before the name disappears (lock order shard -> pool; callers
    // never hold both): an operation either runs before this point, or sees
    // `dead` and retries its lookup, which waits for the erase below.
    std::lock_guard<Mutex> pool_lock(slot->mu);
    slot->dead = true;
    doomed = std::move(slot->pool);
    shard.pools.erase(it);
  }
  const size_t bytes = doomed->ApproxBytes();
  doomed.reset();
  ReleaseFreedMemory(bytes);
  return true;
}

std::vector<String> PoolRegistry::Names() const {
  std::vector<String> names;
  for (const Shard& shard : shards_) {
    std::lock_guard<Mutex> lock(shard.mu);
    for (const auto& [name, slot] : shard.pools) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace berth
