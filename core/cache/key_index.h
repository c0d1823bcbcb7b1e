// KeyIndex: the cache's map from an object's key ("ns\0name") to its slot,
// an open-addressing hash table whose keys are the objects' own bytes.
//
// Why not std::unordered_map: a get is the cache's most frequent call, and a
// node-based map costs a bucket load, a node load, a separate key string and,
// without cached hashes, a rehash of every node it walks past to find the end
// of the bucket: 1-2 us per get at 100k objects here, against ~60 ns for
// this table (bench/cache_bench.cc, cache_get).
//
// Layout: 16-byte cells {object, id, hash}, linear probing over a power-of-
// two array kept at most 3/4 full, deletion by backward shift (no
// tombstones, so probe lengths do not decay under churn). A lookup loads one
// cell line, compares the stored 32-bit hash, and only then the object's key:
// one miss on the table, one on the object, which a get reads anyway.
// Memory: 16 bytes per cell, 21-43 bytes per object.
// External synchronization needed (the cache's lock).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/cache/object.h"
#include "core/common/alloc.h"
#include "core/common/hash.h"

namespace berth {

class KeyIndex {
 public:
  struct Slot {
    const Object* object;  // nullptr: the cell is empty
    uint32_t id;
    uint32_t hash;  // low 32 bits of HashBytes(object->key())
  };

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity_bytes() const { return cells_.capacity() * sizeof(Slot); }

  // The slot of `key`, or nullptr. O(1) expected.
  const Slot* Find(std::string_view key) const { return FindIn(key, Hash(key)); }
  Slot* Find(std::string_view key) {
    return const_cast<Slot*>(static_cast<const KeyIndex*>(this)->FindIn(key, Hash(key)));
  }

  // Grows, if needed, so that `n` keys fit: an Insert up to that size then
  // cannot throw. std::bad_alloc leaves the table as it was.
  void Reserve(size_t n) {
    while (n * 4 > cells_.size() * 3) Grow();
  }

  // Adds `object` (whose key must be absent) at `id`. Amortized O(1); a
  // growth rehashes every cell (std::bad_alloc leaves the table as it was).
  void Insert(const Object* object, uint32_t id) {
    Reserve(size_ + 1);
    const uint32_t h = Hash(object->key());
    size_t i = h & mask_;
    while (cells_[i].object != nullptr) i = (i + 1) & mask_;
    cells_[i] = Slot{object, id, h};
    ++size_;
  }

  // Empties the cell `slot` (from Find) by moving later cells of its probe
  // run back into the hole, so no lookup crosses an empty cell it should not.
  void Erase(Slot* slot) {
    size_t hole = static_cast<size_t>(slot - cells_.data());
    size_t i = hole;
    for (;;) {
      i = (i + 1) & mask_;
      if (cells_[i].object == nullptr) break;
      const size_t home = cells_[i].hash & mask_;
      // Movable unless its home lies cyclically in (hole, i].
      const bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
      if (stays) continue;
      cells_[hole] = cells_[i];
      hole = i;
    }
    cells_[hole] = Slot{nullptr, 0, 0};
    --size_;
  }

 private:
  static uint32_t Hash(std::string_view key) { return static_cast<uint32_t>(HashBytes(key)); }

  const Slot* FindIn(std::string_view key, uint32_t h) const {
    if (size_ == 0) return nullptr;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& c = cells_[i];
      if (c.object == nullptr) return nullptr;
      if (c.hash == h && c.object->key() == key) return &c;
    }
  }

  void Grow() {
    const size_t cap = cells_.empty() ? 16 : cells_.size() * 2;
    std::vector<Slot, BulkAlloc<Slot>> next(cap, Slot{nullptr, 0, 0});
    const size_t mask = cap - 1;
    for (const Slot& c : cells_) {
      if (c.object == nullptr) continue;
      size_t i = c.hash & mask;
      while (next[i].object != nullptr) i = (i + 1) & mask;
      next[i] = c;
    }
    cells_.swap(next);
    mask_ = mask;
  }

  std::vector<Slot, BulkAlloc<Slot>> cells_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace berth
