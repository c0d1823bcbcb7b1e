// NaiveCache: a deliberately naive model of the object cache: a sorted map
// and a list of tombstones; every list scans and matches every object. The
// oracle of the cache tests and the baseline of the cache benchmark.
// External synchronization needed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/selector/selector.h"

namespace berth::testing {

struct NaiveObject {
  std::string ns, name;
  uint64_t rv = 0;
  Labels labels;
  std::string payload;
  std::string key() const { return ns + '\0' + name; }
  bool operator==(const NaiveObject&) const = default;
};

class NaiveCache {
 public:
  explicit NaiveCache(size_t tombstone_limit) : limit_(tombstone_limit) {}

  bool Upsert(const NaiveObject& o) {
    const std::string key = o.key();
    auto it = objects_.find(key);
    if (it != objects_.end()) {
      if (it->second.rv >= o.rv) return false;
    } else if (const uint64_t* t = Tombstone(key)) {
      if (*t >= o.rv) return false;
      EraseTombstone(key);
    }
    objects_[key] = o;
    return true;
  }

  bool Delete(const std::string& ns, const std::string& name, uint64_t rv) {
    const std::string key = ns + '\0' + name;
    auto it = objects_.find(key);
    if (it != objects_.end()) {
      if (rv != 0 && it->second.rv > rv) return false;
      const uint64_t at = rv == 0 ? it->second.rv : rv;
      objects_.erase(it);
      PutTombstone(key, at);
      return true;
    }
    const uint64_t* t = Tombstone(key);
    if (rv == 0 || (t != nullptr && *t >= rv)) return false;
    PutTombstone(key, rv);
    return true;
  }

  void Replace(const std::vector<NaiveObject>& list, uint64_t list_rv) {
    std::map<std::string, NaiveObject> fresh;
    for (const NaiveObject& o : list) {
      auto it = fresh.find(o.key());
      if (it == fresh.end() || it->second.rv <= o.rv) fresh[o.key()] = o;
    }
    for (const auto& [key, o] : objects_) {
      if (o.rv <= list_rv) continue;
      auto it = fresh.find(key);
      if (it == fresh.end() || it->second.rv < o.rv) fresh[key] = o;
    }
    std::vector<std::pair<std::string, uint64_t>> kept;
    for (const auto& [key, rv] : tombstones_) {
      if (rv <= list_rv) continue;
      auto it = fresh.find(key);
      if (it != fresh.end() && it->second.rv <= rv) fresh.erase(it);
      kept.emplace_back(key, rv);
    }
    objects_ = std::move(fresh);
    tombstones_ = std::move(kept);
    synced_ = true;
  }

  // Sorted by (namespace, name): the map's key order.
  std::vector<NaiveObject> List(const std::string& ns, const Selector* selector) const {
    std::vector<NaiveObject> out;
    for (const auto& [key, o] : objects_) {
      if (!ns.empty() && o.ns != ns) continue;
      if (selector != nullptr && !selector->Matches(o.labels)) continue;
      out.push_back(o);
    }
    return out;
  }

  const NaiveObject* Get(const std::string& ns, const std::string& name) const {
    auto it = objects_.find(ns + '\0' + name);
    return it == objects_.end() ? nullptr : &it->second;
  }

  size_t size() const { return objects_.size(); }
  size_t tombstones() const { return tombstones_.size(); }
  bool synced() const { return synced_; }

 private:
  const uint64_t* Tombstone(const std::string& key) const {
    for (const auto& [k, rv] : tombstones_) {
      if (k == key) return &rv;
    }
    return nullptr;
  }
  void EraseTombstone(const std::string& key) {
    std::erase_if(tombstones_, [&](const auto& t) { return t.first == key; });
  }
  // A re-deleted key moves to the back; the oldest is forgotten first.
  void PutTombstone(const std::string& key, uint64_t rv) {
    EraseTombstone(key);
    tombstones_.emplace_back(key, rv);
    while (tombstones_.size() > limit_) tombstones_.erase(tombstones_.begin());
  }

  size_t limit_;
  std::map<std::string, NaiveObject> objects_;
  std::vector<std::pair<std::string, uint64_t>> tombstones_;  // oldest first
  bool synced_ = false;
};

}  // namespace berth::testing
