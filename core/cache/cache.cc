#include "core/cache/cache.h"

#include <algorithm>
#include <mutex>

#include "core/common/text.h"
#include "core/pool/pool.h"

namespace berth {

namespace {

using ObjectKey = Joined<kMaxNamespaceLen + 1 + kMaxNameLen>;
using LabelKey = Joined<kMaxLabelPrefixLen + 1 + kMaxLabelNameLen + 1 + kMaxLabelValueLen>;

template <class Map>
auto& Posting(Map& m, std::string_view key) {
  auto it = m.find(key);
  if (it == m.end()) it = m.try_emplace(String(key.data(), key.size())).first;
  return it->second;
}

template <class Map>
void Drop(Map& m, std::string_view key, uint32_t id) {
  auto it = m.find(key);
  if (it == m.end()) return;
  it->second.erase(id);
  if (it->second.empty()) m.erase(it);
}

}  // namespace

// ---- Index ------------------------------------------------------------------

const ObjectRef* ObjectCache::Index::Find(std::string_view key) const {
  auto it = by_key.find(key);
  return it == by_key.end() ? nullptr : &slots[it->second];
}

void ObjectCache::Index::Link(uint32_t id, const Object& o) {
  Posting(by_ns, o.ns()).insert(id);
  for (size_t i = 0; i < o.label_count(); ++i) {
    const LabelPair l = o.label(i);
    Posting(by_label, LabelKey(l.key, l.value).view()).insert(id);
    Posting(by_label_key, l.key).insert(id);
  }
}

void ObjectCache::Index::Unlink(uint32_t id, const Object& o) {
  Drop(by_ns, o.ns(), id);
  for (size_t i = 0; i < o.label_count(); ++i) {
    const LabelPair l = o.label(i);
    Drop(by_label, LabelKey(l.key, l.value).view(), id);
    Drop(by_label_key, l.key, id);
  }
}

void ObjectCache::Index::Put(ObjectRef object) {
  auto it = by_key.find(object->key());
  if (it == by_key.end()) {
    uint32_t id;
    if (free_ids.empty()) {
      id = static_cast<uint32_t>(slots.size());
      slots.emplace_back();
    } else {
      id = free_ids.back();
      free_ids.pop_back();
    }
    by_key.emplace(String(object->key().data(), object->key().size()), id);
    Link(id, *object);
    slots[id] = std::move(object);
    return;
  }
  // Same key, so same namespace: only the labels that changed move between
  // postings (a sorted merge of old and new labels).
  const uint32_t id = it->second;
  const Object& old = *slots[id];
  const Object& now = *object;
  size_t i = 0, j = 0;
  while (i < old.label_count() || j < now.label_count()) {
    const bool take_old =
        j == now.label_count() || (i < old.label_count() && old.label(i).key < now.label(j).key);
    const bool take_new =
        i == old.label_count() || (j < now.label_count() && now.label(j).key < old.label(i).key);
    if (take_old) {  // key gone
      const LabelPair l = old.label(i++);
      Drop(by_label, LabelKey(l.key, l.value).view(), id);
      Drop(by_label_key, l.key, id);
    } else if (take_new) {  // key added
      const LabelPair l = now.label(j++);
      Posting(by_label, LabelKey(l.key, l.value).view()).insert(id);
      Posting(by_label_key, l.key).insert(id);
    } else {  // same key; the value may differ
      const LabelPair a = old.label(i++), b = now.label(j++);
      if (a.value != b.value) {
        Drop(by_label, LabelKey(a.key, a.value).view(), id);
        Posting(by_label, LabelKey(b.key, b.value).view()).insert(id);
      }
    }
  }
  slots[id] = std::move(object);
}

void ObjectCache::Index::Erase(std::string_view key) {
  auto it = by_key.find(key);
  if (it == by_key.end()) return;
  const uint32_t id = it->second;
  by_key.erase(it);
  Unlink(id, *slots[id]);
  slots[id] = ObjectRef();
  free_ids.push_back(id);
}

// ---- Tombstones --------------------------------------------------------------

const ObjectCache::Tombstones::Entry* ObjectCache::Tombstones::Find(std::string_view key) const {
  auto it = by_key.find(key);
  return it == by_key.end() ? nullptr : &it->second;
}

void ObjectCache::Tombstones::Put(std::string_view key, uint64_t rv, size_t limit) {
  const uint64_t seq = next_seq++;
  auto it = by_key.find(key);
  if (it != by_key.end()) {
    it->second = Entry{rv, seq};
  } else {
    by_key.emplace(String(key.data(), key.size()), Entry{rv, seq});
  }
  fifo.emplace_back(String(key.data(), key.size()), seq);
  // Forget the oldest beyond the limit; FIFO entries whose tombstone was
  // replaced or erased since are skipped.
  while (by_key.size() > limit) {
    auto& [k, s] = fifo.front();
    auto f = by_key.find(std::string_view(k));
    if (f != by_key.end() && f->second.seq == s) by_key.erase(f);
    fifo.pop_front();
  }
  if (fifo.size() > 2 * by_key.size() + 64) {  // too many skipped entries: compact
    decltype(fifo) live;
    for (auto& e : fifo) {
      auto f = by_key.find(std::string_view(e.first));
      if (f != by_key.end() && f->second.seq == e.second) live.push_back(std::move(e));
    }
    fifo.swap(live);
  }
}

void ObjectCache::Tombstones::Erase(std::string_view key) {
  auto it = by_key.find(key);
  if (it != by_key.end()) by_key.erase(it);
}

// ---- ObjectCache --------------------------------------------------------------

ObjectCache::ObjectCache(size_t tombstone_limit) : tombstone_limit_(tombstone_limit) {}
ObjectCache::~ObjectCache() = default;

bool ObjectCache::UpsertLocked(ObjectRef object) {
  const std::string_view key = object->key();
  const uint64_t rv = object->rv();
  if (const ObjectRef* cur = index_.Find(key)) {
    if ((*cur)->rv() >= rv) {
      ++ignored_;
      return false;
    }
  } else if (const Tombstones::Entry* t = tombstones_.Find(key)) {
    if (t->rv >= rv) {  // deleted at or after this version: no resurrection
      ++ignored_;
      return false;
    }
    tombstones_.Erase(key);
  }
  index_.Put(std::move(object));
  ++applied_;
  max_rv_ = std::max(max_rv_, rv);
  return true;
}

bool ObjectCache::DeleteLocked(std::string_view ns, std::string_view name, uint64_t rv) {
  const ObjectKey key(ns, name);
  if (const ObjectRef* cur = index_.Find(key.view())) {
    const uint64_t cur_rv = (*cur)->rv();
    if (rv != 0 && cur_rv > rv) {  // the object was re-created after this delete
      ++ignored_;
      return false;
    }
    const uint64_t at = rv == 0 ? cur_rv : rv;
    index_.Erase(key.view());
    tombstones_.Put(key.view(), at, tombstone_limit_);
    ++applied_;
    max_rv_ = std::max(max_rv_, at);
    return true;
  }
  const Tombstones::Entry* t = tombstones_.Find(key.view());
  if (rv == 0 || (t != nullptr && t->rv >= rv)) {
    ++ignored_;
    return false;
  }
  tombstones_.Put(key.view(), rv, tombstone_limit_);
  ++applied_;
  max_rv_ = std::max(max_rv_, rv);
  return true;
}

bool ObjectCache::Upsert(ObjectRef object) {
  std::unique_lock lock(mu_);
  return UpsertLocked(std::move(object));
}

bool ObjectCache::Delete(std::string_view ns, std::string_view name, uint64_t rv) {
  std::unique_lock lock(mu_);
  return DeleteLocked(ns, name, rv);
}

size_t ObjectCache::Apply(std::span<const CacheEvent> events) {
  std::unique_lock lock(mu_);
  size_t applied = 0;
  for (const CacheEvent& e : events) {
    const bool changed = e.type == CacheEvent::Type::kUpsert ? UpsertLocked(e.object)
                                                             : DeleteLocked(e.ns, e.name, e.rv);
    applied += changed ? 1 : 0;
  }
  return applied;
}

void ObjectCache::Replace(std::span<const ObjectRef> objects, uint64_t list_rv) {
  // Build the new contents without holding the lock.
  Index fresh;
  for (const ObjectRef& o : objects) {
    const ObjectRef* have = fresh.Find(o->key());
    if (have == nullptr || (*have)->rv() <= o->rv()) fresh.Put(o);
  }
  Tombstones fresh_tombstones;
  {
    std::unique_lock lock(mu_);
    // What happened after the list was taken stays: newer objects...
    for (const ObjectRef& o : index_.slots) {
      if (!o || o->rv() <= list_rv) continue;
      const ObjectRef* have = fresh.Find(o->key());
      if (have == nullptr || (*have)->rv() < o->rv()) fresh.Put(o);
    }
    // ...and newer deletions, in their original order.
    for (const auto& [key, seq] : tombstones_.fifo) {
      const Tombstones::Entry* t = tombstones_.Find(key);
      if (t == nullptr || t->seq != seq || t->rv <= list_rv) continue;
      if (const ObjectRef* have = fresh.Find(key); have != nullptr && (*have)->rv() <= t->rv) {
        fresh.Erase(key);
      }
      fresh_tombstones.Put(key, t->rv, tombstone_limit_);
    }
    std::swap(index_, fresh);
    std::swap(tombstones_, fresh_tombstones);
    synced_ = true;
    max_rv_ = std::max(max_rv_, list_rv);
  }
  // The old contents are freed here, after the lock is released.
}

Status ObjectCache::List(std::string_view ns, const Selector* selector,
                         std::vector<ObjectRef>* out, uint64_t* resource_version) const {
  {
    std::shared_lock lock(mu_);
    if (!synced_) return {Code::kNotSynced, "the cache has not synced yet"};
    *resource_version = max_rv_;
    // Pick the smallest candidate set: the namespace, or the postings of one
    // requirement that needs a label (=, ==, in: one posting per value;
    // exists, >, <: the key's posting). Without one, every object.
    std::vector<const IdSet*> best;
    size_t best_size = SIZE_MAX;
    bool everything = true;
    auto consider = [&](std::vector<const IdSet*> sets) {
      size_t n = 0;
      for (const IdSet* s : sets) n += s->size();
      if (n < best_size) {
        best = std::move(sets);
        best_size = n;
        everything = false;
      }
    };
    if (!ns.empty()) {
      auto it = index_.by_ns.find(ns);
      if (it == index_.by_ns.end()) return {};
      consider({&it->second});
    }
    if (selector != nullptr) {
      for (const Requirement& r : selector->requirements()) {
        std::vector<const IdSet*> sets;
        switch (r.op) {
          case SelectorOp::kEquals:
          case SelectorOp::kDoubleEquals:
          case SelectorOp::kIn:
            for (const std::string& v : r.values) {
              auto it = index_.by_label.find(LabelKey(r.key, v).view());
              if (it != index_.by_label.end()) sets.push_back(&it->second);
            }
            consider(std::move(sets));
            break;
          case SelectorOp::kExists:
          case SelectorOp::kGreaterThan:
          case SelectorOp::kLessThan: {
            auto it = index_.by_label_key.find(r.key);
            if (it != index_.by_label_key.end()) sets.push_back(&it->second);
            consider(std::move(sets));
            break;
          }
          case SelectorOp::kNotEquals:
          case SelectorOp::kNotIn:
          case SelectorOp::kDoesNotExist:
            break;  // satisfied by objects without the label: no posting narrows it
        }
      }
    }
    auto visit = [&](uint32_t id) {
      const ObjectRef& o = index_.slots[id];
      if (!ns.empty() && o->ns() != ns) return;
      if (selector != nullptr && !selector->Matches(*o)) return;
      out->push_back(o);
    };
    if (everything) {
      for (uint32_t id = 0; id < index_.slots.size(); ++id) {
        if (index_.slots[id]) visit(id);
      }
    } else {
      for (const IdSet* s : best) {
        for (uint32_t id : *s) visit(id);
      }
    }
  }
  std::sort(out->begin(), out->end(),
            [](const ObjectRef& a, const ObjectRef& b) { return a->key() < b->key(); });
  return {};
}

Status ObjectCache::Get(std::string_view ns, std::string_view name, ObjectRef* out,
                        uint64_t* resource_version) const {
  const ObjectKey key(ns, name);
  std::shared_lock lock(mu_);
  if (!synced_) return {Code::kNotSynced, "the cache has not synced yet"};
  if (resource_version != nullptr) *resource_version = max_rv_;
  const ObjectRef* o = index_.Find(key.view());
  *out = o == nullptr ? ObjectRef() : *o;
  return {};
}

CacheStats ObjectCache::Stats() const {
  std::shared_lock lock(mu_);
  CacheStats s;
  s.objects = index_.by_key.size();
  s.tombstones = tombstones_.by_key.size();
  s.resource_version = max_rv_;
  s.applied = applied_;
  s.ignored = ignored_;
  s.synced = synced_;
  return s;
}

}  // namespace berth
