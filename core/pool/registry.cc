#include "core/pool/registry.h"

namespace berth {

std::shared_ptr<PoolRegistry::Slot> PoolRegistry::Find(std::string_view name, bool create) {
  Shard& shard = ShardFor(name);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.pools.find(name);
  if (it != shard.pools.end()) return it->second;
  if (!create) return nullptr;
  auto slot = std::allocate_shared<Slot>(Alloc<Slot>());
  shard.pools.emplace(String(name.data(), name.size()), slot);
  return slot;
}

bool PoolRegistry::Remove(std::string_view name) {
  std::shared_ptr<Slot> slot;
  {
    Shard& shard = ShardFor(name);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.pools.find(name);
    if (it == shard.pools.end()) return false;
    slot = std::move(it->second);
    shard.pools.erase(it);
  }
  std::lock_guard<std::mutex> lock(slot->mu);
  slot->dead = true;
  // Free the keys now; the Slot itself goes when the last in-flight caller
  // drops its reference.
  slot->pool.reset();
  return true;
}

}  // namespace berth
