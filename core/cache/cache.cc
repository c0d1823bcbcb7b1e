#include "core/cache/cache.h"

#include <algorithm>
#include <bit>
#include <iterator>
#include <mutex>

#include "core/common/text.h"
#include "core/pool/pool.h"

namespace berth {

namespace {

using ObjectKey = Joined<kMaxNamespaceLen + 1 + kMaxNameLen>;
using LabelKey = Joined<kMaxLabelPrefixLen + 1 + kMaxLabelNameLen + 1 + kMaxLabelValueLen>;

// Sorts items by key ("ns\0name", i.e. by namespace then name), where
// key_of(item) gives an item's key. Each item is tagged with its first 16
// key bytes as two big-endian integers, so most comparisons never touch the
// objects (chasing each object twice per comparison was most of the cost).
// O(k log k) for k items.
template <class V, class KeyOf>
void SortByKey(V* items, KeyOf key_of) {
  struct Tagged {
    uint64_t hi, lo;
    uint32_t index;
  };
  auto load = [](std::string_view key, size_t at) {
    uint64_t v = 0;
    for (size_t i = 0; i < 8; ++i) {
      v = (v << 8) | (at + i < key.size() ? static_cast<uint8_t>(key[at + i]) : 0);
    }
    return v;
  };
  std::vector<Tagged, Alloc<Tagged>> tags(items->size());
  for (uint32_t i = 0; i < tags.size(); ++i) {
    const std::string_view key = key_of((*items)[i]);
    tags[i] = {load(key, 0), load(key, 8), i};
  }
  std::sort(tags.begin(), tags.end(), [&](const Tagged& a, const Tagged& b) {
    if (a.hi != b.hi) return a.hi < b.hi;
    if (a.lo != b.lo) return a.lo < b.lo;
    return key_of((*items)[a.index]) < key_of((*items)[b.index]);
  });
  V sorted;
  sorted.reserve(items->size());
  for (const Tagged& t : tags) sorted.push_back(std::move((*items)[t.index]));
  items->swap(sorted);
}

void SortByKey(std::vector<ObjectRef>* objects) {
  SortByKey(objects, [](const ObjectRef& o) { return o->key(); });
}

bool SameLabels(const Object& a, const Object& b) {
  if (a.label_count() != b.label_count()) return false;
  for (size_t i = 0; i < a.label_count(); ++i) {
    const LabelPair x = a.label(i), y = b.label(i);
    if (x.key != y.key || x.value != y.value) return false;
  }
  return true;
}

}  // namespace

// ---- Index ------------------------------------------------------------------

const Object* ObjectCache::Index::Find(std::string_view key) const {
  const KeyIndex::Slot* slot = by_key.Find(key);
  return slot == nullptr ? nullptr : slot->object;
}

uint32_t ObjectCache::Index::Add(StringMap<Posting>& map, std::string_view key, uint32_t id,
                                 uint32_t which) {
  auto it = map.find(key);
  if (it == map.end()) it = map.try_emplace(BulkString(key.data(), key.size())).first;
  it->second.push_back({id, which, entries[id].gen});
  ++live_members;
  return static_cast<uint32_t>(it->second.size() - 1);
}

void ObjectCache::Index::Remove(StringMap<Posting>& map, std::string_view key, uint32_t pos) {
  auto it = map.find(key);
  Posting& members = it->second;
  if (pos + 1 != members.size()) {  // move the last member into the hole
    const Member moved = members.back();
    members[pos] = moved;
    if (Live(moved)) entries[moved.id].pos[moved.which] = pos;
  }
  members.pop_back();
  --live_members;
  if (members.empty()) map.erase(it);
}

void ObjectCache::Index::Compact() {
  for (StringMap<Posting>* map : {&by_ns, &by_label, &by_label_key}) {
    for (auto it = map->begin(); it != map->end();) {
      Posting& members = it->second;
      size_t kept = 0;
      for (const Member& m : members) {
        if (!Live(m)) continue;
        entries[m.id].pos[m.which] = static_cast<uint32_t>(kept);
        members[kept++] = m;
      }
      members.resize(kept);
      it = members.empty() ? map->erase(it) : std::next(it);
    }
  }
  dead_members = 0;
}

void ObjectCache::Index::Put(ObjectRef object) {
  KeyIndex::Slot* slot = by_key.Find(object->key());
  if (slot == nullptr) {
    uint32_t id;
    if (free_ids.empty()) {
      id = static_cast<uint32_t>(entries.size());
      entries.emplace_back();
      key_order.rank.push_back(KeyOrder::kUnranked);
    } else {
      id = free_ids.back();
      free_ids.pop_back();  // unranked by its Erase
    }
    key_order.unranked.push_back(id);
    if (key_order.unranked.size() > 2 * entries.size() + 1024) {
      // Keys added and deleted without a Build in between: keep each live
      // unranked id once. Amortized O(log k) per add.
      Ids& u = key_order.unranked;
      std::sort(u.begin(), u.end());
      u.erase(std::unique(u.begin(), u.end()), u.end());
      std::erase_if(u, [&](uint32_t x) { return x != id && !entries[x].object; });
    }
    const Object& o = *object;
    // The key table points at the object without owning it, so the object
    // is owned before the pointer is published, and the table grows first:
    // a bad_alloc can never leave a cell pointing at a freed object.
    by_key.Reserve(by_key.size() + 1);
    Entry& e = entries[id];
    e.pos.resize(1 + 2 * o.label_count());
    e.object = std::move(object);
    by_key.Insert(&o, id);
    object_bytes += o.footprint();
    e.pos[0] = Add(by_ns, o.ns(), id, 0);
    for (uint32_t i = 0; i < o.label_count(); ++i) {
      const LabelPair l = o.label(i);
      e.pos[1 + 2 * i] = Add(by_label, LabelKey(l.key, l.value).view(), id, 1 + 2 * i);
      e.pos[2 + 2 * i] = Add(by_label_key, l.key, id, 2 + 2 * i);
    }
    return;
  }
  // Same key, so same namespace: only the labels that changed move between
  // postings (a sorted merge of old and new labels); the rest keep their
  // places, re-numbered to the new object's label order.
  const uint32_t id = slot->id;
  Entry& e = entries[id];
  const Object& old = *e.object;
  const Object& now = *object;
  object_bytes = object_bytes - old.footprint() + now.footprint();
  if (SameLabels(old, now)) {  // the common update (status, payload): no posting moves
    slot->object = &now;  // same key: the cell stays where it is
    e.object = std::move(object);
    return;
  }
  std::vector<uint32_t, BulkAlloc<uint32_t>> pos(1 + 2 * now.label_count());
  pos[0] = e.pos[0];
  // Label indices in `now`: new key=value members, new key members, and
  // kept members whose index moved (their back-references need fixing).
  std::vector<uint32_t, Alloc<uint32_t>> added_values, added_keys, moved_values, moved_keys;
  uint32_t i = 0, j = 0;
  while (i < old.label_count() || j < now.label_count()) {
    const bool take_old =
        j == now.label_count() || (i < old.label_count() && old.label(i).key < now.label(j).key);
    const bool take_new =
        i == old.label_count() || (j < now.label_count() && now.label(j).key < old.label(i).key);
    if (take_old) {  // key gone
      const LabelPair l = old.label(i);
      Remove(by_label, LabelKey(l.key, l.value).view(), e.pos[1 + 2 * i]);
      Remove(by_label_key, l.key, e.pos[2 + 2 * i]);
      ++i;
    } else if (take_new) {  // key added
      added_values.push_back(j);
      added_keys.push_back(j);
      ++j;
    } else {  // same key; the value may differ
      const LabelPair a = old.label(i), b = now.label(j);
      pos[2 + 2 * j] = e.pos[2 + 2 * i];
      if (i != j) moved_keys.push_back(j);
      if (a.value != b.value) {
        Remove(by_label, LabelKey(a.key, a.value).view(), e.pos[1 + 2 * i]);
        added_values.push_back(j);
      } else {
        pos[1 + 2 * j] = e.pos[1 + 2 * i];
        if (i != j) moved_values.push_back(j);
      }
      ++i;
      ++j;
    }
  }
  // Removals above moved other objects' members, never this object's kept
  // ones (each posting holds an object once).
  slot->object = &now;
  e.object = std::move(object);
  e.pos = std::move(pos);
  for (uint32_t k : moved_values) {
    const LabelPair l = now.label(k);
    by_label.find(LabelKey(l.key, l.value).view())->second[e.pos[1 + 2 * k]].which = 1 + 2 * k;
  }
  for (uint32_t k : moved_keys) {
    by_label_key.find(now.label(k).key)->second[e.pos[2 + 2 * k]].which = 2 + 2 * k;
  }
  for (uint32_t k : added_values) {
    const LabelPair l = now.label(k);
    e.pos[1 + 2 * k] = Add(by_label, LabelKey(l.key, l.value).view(), id, 1 + 2 * k);
  }
  for (uint32_t k : added_keys) e.pos[2 + 2 * k] = Add(by_label_key, now.label(k).key, id, 2 + 2 * k);
}

void ObjectCache::Index::Erase(std::string_view key) {
  KeyIndex::Slot* slot = by_key.Find(key);
  if (slot == nullptr) return;
  const uint32_t id = slot->id;
  by_key.Erase(slot);
  Entry& e = entries[id];
  const size_t members = 1 + 2 * e.object->label_count();
  object_bytes -= e.object->footprint();
  erased_bytes += e.object->footprint();
  e.object = ObjectRef();
  ++e.gen;  // its members in the postings are dead from here on
  key_order.rank[id] = KeyOrder::kUnranked;  // its place in the order is a hole now
  free_ids.push_back(id);
  live_members -= members;
  dead_members += members;
  if (dead_members > live_members + 1024) Compact();
}

size_t ObjectCache::Index::ApproxBytes() const {
  // A slot: its entry and its position record (rounded up by the allocator).
  constexpr size_t kPerSlot = sizeof(Entry) + 32;
  return object_bytes + erased_bytes + entries.capacity() * kPerSlot + by_key.capacity_bytes() +
         (live_members + dead_members) * sizeof(Member) +
         (key_order.rank.capacity() + key_order.order.capacity() + key_order.unranked.capacity()) *
             sizeof(uint32_t);
}

void ObjectCache::Index::BuildOrder() const {
  KeyOrder& ko = key_order;
  if (ko.Ready()) return;
  constexpr uint32_t kTaken = KeyOrder::kUnranked - 1;
  auto key_of = [&](uint32_t id) { return entries[id].object->key(); };
  // The new keys, each once, sorted: O(k log k).
  Ids fresh = std::move(ko.unranked);
  ko.unranked = Ids();
  std::erase_if(fresh, [&](uint32_t id) {
    if (!entries[id].object || ko.rank[id] != KeyOrder::kUnranked) return true;
    ko.rank[id] = kTaken;
    return false;
  });
  SortByKey(&fresh, key_of);
  // The old order without its holes: O(n), no keys read.
  size_t kept = 0;
  for (size_t i = 0; i < ko.order.size(); ++i) {
    const uint32_t id = ko.order[i];
    if (ko.rank[id] == i) ko.order[kept++] = id;
  }
  ko.order.resize(kept);
  // Merge. Few new keys: each finds its place by binary search (k log n
  // comparisons); many: one linear merge (n + k comparisons).
  Ids merged;
  auto less = [&](uint32_t a, uint32_t b) { return key_of(a) < key_of(b); };
  if (kept == 0) {  // a relist
    merged.swap(fresh);
  } else if (fresh.size() * (std::bit_width(kept) + 1) < kept + fresh.size()) {
    merged.reserve(kept + fresh.size());
    auto from = ko.order.begin();
    for (uint32_t id : fresh) {
      auto at = std::upper_bound(from, ko.order.end(), id, less);
      merged.insert(merged.end(), from, at);
      merged.push_back(id);
      from = at;
    }
    merged.insert(merged.end(), from, ko.order.end());
  } else {
    merged.reserve(kept + fresh.size());
    std::merge(ko.order.begin(), ko.order.end(), fresh.begin(), fresh.end(),
               std::back_inserter(merged), less);
  }
  ko.order.swap(merged);
  for (size_t i = 0; i < ko.order.size(); ++i) ko.rank[ko.order[i]] = static_cast<uint32_t>(i);
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
    by_key.emplace(Key(key.data(), key.size()), Entry{rv, seq});
  }
  fifo.emplace_back(Key(key.data(), key.size()), seq);
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

size_t ObjectCache::Tombstones::ApproxBytes() const {
  // A map node and a FIFO record, each with its own copy of the key (a block
  // beyond 15 bytes).
  constexpr size_t kPerNode = sizeof(StringMap<Entry, Heap::kTombstones>::value_type) +
                              2 * sizeof(void*) + 32;
  constexpr size_t kPerRecord = sizeof(decltype(fifo)::value_type) + 32;
  return by_key.size() * kPerNode + fifo.size() * kPerRecord;
}

// ---- ObjectCache --------------------------------------------------------------

ObjectCache::ObjectCache(size_t tombstone_limit) : tombstone_limit_(tombstone_limit) {}

ObjectCache::~ObjectCache() {
  release_at_end_.bytes = index_.ApproxBytes() + tombstones_.ApproxBytes();
}

void ObjectCache::TakeIfEmptiedLocked(std::optional<Index>* dropped) {
  // Below this many slots the arrays are cheap to regrow.
  constexpr size_t kMinSlots = 1024;
  if (!index_.by_key.empty() || index_.entries.empty()) return;
  if (index_.entries.size() < kMinSlots && index_.ApproxBytes() < kReleaseMinBytes) return;
  dropped->emplace(std::move(index_));
  index_ = Index();
}

void ObjectCache::Drop(std::optional<Index> dropped) {
  if (!dropped) return;
  const size_t bytes = dropped->ApproxBytes();
  dropped.reset();
  ReleaseFreedMemory(bytes);
}

bool ObjectCache::UpsertLocked(ObjectRef object) {
  const std::string_view key = object->key();
  const uint64_t rv = object->rv();
  if (const Object* cur = index_.Find(key)) {
    if (cur->rv() >= rv) {
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
  if (const Object* cur = index_.Find(key.view())) {
    const uint64_t cur_rv = cur->rv();
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
  const bool applied = UpsertLocked(std::move(object));
  NoteOrderLocked();
  return applied;
}

bool ObjectCache::Delete(std::string_view ns, std::string_view name, uint64_t rv) {
  std::optional<Index> dropped;
  bool applied;
  {
    std::unique_lock lock(mu_);
    applied = DeleteLocked(ns, name, rv);
    TakeIfEmptiedLocked(&dropped);
    NoteOrderLocked();
  }
  Drop(std::move(dropped));
  return applied;
}

size_t ObjectCache::Apply(std::span<const CacheEvent> events) {
  std::optional<Index> dropped;
  size_t applied = 0;
  {
    std::unique_lock lock(mu_);
    for (const CacheEvent& e : events) {
      const bool changed = e.type == CacheEvent::Type::kUpsert ? UpsertLocked(e.object)
                                                               : DeleteLocked(e.ns, e.name, e.rv);
      applied += changed ? 1 : 0;
    }
    TakeIfEmptiedLocked(&dropped);
    NoteOrderLocked();
  }
  Drop(std::move(dropped));
  return applied;
}

void ObjectCache::Replace(std::span<const ObjectRef> objects, uint64_t list_rv) {
  // Build the new contents without holding the lock.
  Index fresh;
  uint64_t newest = list_rv;
  for (const ObjectRef& o : objects) {
    newest = std::max(newest, o->rv());
    const Object* have = fresh.Find(o->key());
    if (have == nullptr || have->rv() <= o->rv()) fresh.Put(o);
  }
  fresh.BuildOrder();  // here, so no reader pays for sorting a whole relist
  Tombstones fresh_tombstones;
  {
    std::unique_lock lock(mu_);
    // What happened after the list was taken stays: newer objects...
    for (const Index::Entry& e : index_.entries) {
      const ObjectRef& o = e.object;
      if (!o || o->rv() <= list_rv) continue;
      const Object* have = fresh.Find(o->key());
      if (have == nullptr || have->rv() < o->rv()) fresh.Put(o);
    }
    // ...and newer deletions, in their original order.
    for (const auto& [key, seq] : tombstones_.fifo) {
      const Tombstones::Entry* t = tombstones_.Find(key);
      if (t == nullptr || t->seq != seq || t->rv <= list_rv) continue;
      if (const Object* have = fresh.Find(key); have != nullptr && have->rv() <= t->rv) {
        fresh.Erase(key);
      }
      fresh_tombstones.Put(key, t->rv, tombstone_limit_);
    }
    std::swap(index_, fresh);
    std::swap(tombstones_, fresh_tombstones);
    NoteOrderLocked();
    synced_ = true;
    max_rv_ = std::max(max_rv_, newest);
  }
  // The old contents are freed here, after the lock is released, and their
  // memory goes back to the OS.
  Drop(std::move(fresh));
}

void ObjectCache::TakeRefs(std::span<const uint64_t> bits, const KeyOrder& ko, size_t count,
                           std::vector<ObjectRef>* out) const {
  // The objects first, in rank order; then a reference to each. Taking one
  // is an atomic increment on an object nowhere near the last one, and the
  // locked instruction stalls until its cache miss is served, so the next
  // objects are prefetched to have their misses overlap: most of a broad
  // list's time otherwise.
  std::vector<const Object*, Alloc<const Object*>> objects;
  objects.reserve(count);
  for (size_t w = 0; w < bits.size(); ++w) {
    for (uint64_t b = bits[w]; b != 0; b &= b - 1) {
      const size_t r = w * 64 + static_cast<size_t>(std::countr_zero(b));
      objects.push_back(index_.entries[ko.order[r]].object.get());
    }
  }
  constexpr size_t kAhead = 16;
  out->reserve(out->size() + objects.size());
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i + kAhead < objects.size()) __builtin_prefetch(objects[i + kAhead], 1);
    out->push_back(ObjectRef::Share(objects[i]));
  }
}

void ObjectCache::EnsureOrder() const {
  if (order_ready_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(order_mu_);
  if (order_ready_.load(std::memory_order_relaxed)) return;  // another reader built it
  index_.BuildOrder();
  order_ready_.store(true, std::memory_order_release);
}

Status ObjectCache::List(std::string_view ns, const Selector* selector,
                         std::vector<ObjectRef>* out, uint64_t* resource_version) const {
  // Ranks of the matches, with their index in *out: sorted after unlocking.
  std::vector<uint64_t, Alloc<uint64_t>> by_rank;
  bool sort_by_key = false;
  out->clear();
  {
    std::shared_lock lock(mu_);
    if (!synced_) return {Code::kNotSynced, "the cache has not synced yet"};
    *resource_version = max_rv_;
    // Pick the smallest candidate set: the namespace, or the postings of one
    // requirement that needs a label (=, ==, in: one posting per value;
    // exists, >, <: the key's posting). Without one, every object.
    std::vector<const Posting*> best;
    size_t best_size = SIZE_MAX;
    bool everything = true;
    // What the candidate set already guarantees, so matches need not check
    // it: the namespace, or one requirement (=, ==, in, exists: every
    // member of their postings satisfies them).
    bool ns_given = false;
    const Requirement* given = nullptr;
    auto consider = [&](std::vector<const Posting*> sets, bool is_ns, const Requirement* r) {
      size_t n = 0;
      for (const Posting* s : sets) n += s->size();
      if (n < best_size) {
        best = std::move(sets);
        best_size = n;
        everything = false;
        ns_given = is_ns;
        given = r;
      }
    };
    if (!ns.empty()) {
      auto it = index_.by_ns.find(ns);
      if (it == index_.by_ns.end()) return {};
      consider({&it->second}, true, nullptr);
    }
    if (selector != nullptr) {
      for (const Requirement& r : selector->requirements()) {
        std::vector<const Posting*> sets;
        switch (r.op) {
          case SelectorOp::kEquals:
          case SelectorOp::kDoubleEquals:
          case SelectorOp::kIn:
            for (const std::string& v : r.values) {
              auto it = index_.by_label.find(LabelKey(r.key, v).view());
              if (it != index_.by_label.end()) sets.push_back(&it->second);
            }
            consider(std::move(sets), false, &r);
            break;
          case SelectorOp::kExists:
          case SelectorOp::kGreaterThan:
          case SelectorOp::kLessThan: {
            auto it = index_.by_label_key.find(r.key);
            if (it != index_.by_label_key.end()) sets.push_back(&it->second);
            // Having the key is all `exists` asks; > and < still compare.
            consider(std::move(sets), false, r.op == SelectorOp::kExists ? &r : nullptr);
            break;
          }
          case SelectorOp::kNotEquals:
          case SelectorOp::kNotIn:
          case SelectorOp::kDoesNotExist:
            break;  // satisfied by objects without the label: no posting narrows it
        }
      }
    }
    auto matches = [&](const Object& o) {
      if (!ns_given && !ns.empty() && o.ns() != ns) return false;
      if (selector != nullptr) {
        for (const Requirement& r : selector->requirements()) {
          if (&r != given && !r.Matches(o)) return false;
        }
      }
      return true;
    };
    const bool checks = (!ns_given && !ns.empty()) ||
                        (selector != nullptr && selector->requirements().size() > (given ? 1 : 0));
    const size_t live = index_.by_key.size();
    // Key order or key comparisons. A candidate set of more than 1/16 of the
    // objects is worth completing the order for (O(n) plus the new keys);
    // with the order complete, all but the smallest sets use it.
    if (everything || best_size * 16 >= live) EnsureOrder();
    const bool ranked = order_ready_.load(std::memory_order_acquire);
    const KeyOrder& ko = index_.key_order;
    if (everything) {
      // Every object is a candidate: read them in key order. O(n).
      for (size_t i = 0; i < ko.order.size(); ++i) {
        const uint32_t id = ko.order[i];
        if (ko.rank[id] != i) continue;  // a hole
        const ObjectRef& o = index_.entries[id].object;
        if (!checks || matches(*o)) out->push_back(o);
      }
    } else if (ranked && best_size * 64 >= ko.order.size()) {
      // A broad list: mark matches by rank, read them out in rank order.
      // O(candidates + n/64), and no key is compared.
      std::vector<uint64_t, Alloc<uint64_t>> bits((ko.order.size() + 63) / 64);
      size_t count = 0;
      for (const Posting* s : best) {
        for (const Member& m : *s) {
          if (!index_.Live(m)) continue;
          if (checks && !matches(*index_.entries[m.id].object)) continue;
          const uint32_t r = ko.rank[m.id];
          bits[r / 64] |= uint64_t{1} << (r % 64);
          ++count;
        }
      }
      TakeRefs(bits, ko, count, out);
    } else {
      // A small list: collect, then sort by rank (or by key if the order is
      // incomplete) after unlocking. O(k log k).
      sort_by_key = !ranked;
      for (const Posting* s : best) {
        for (const Member& m : *s) {
          if (!index_.Live(m)) continue;
          const ObjectRef& o = index_.entries[m.id].object;
          if (checks && !matches(*o)) continue;
          if (ranked) by_rank.push_back(uint64_t{ko.rank[m.id]} << 32 | out->size());
          out->push_back(o);
        }
      }
    }
  }
  if (sort_by_key) {
    SortByKey(out);
  } else if (!by_rank.empty()) {
    std::sort(by_rank.begin(), by_rank.end());
    std::vector<ObjectRef> sorted;
    sorted.reserve(out->size());
    for (uint64_t t : by_rank) sorted.push_back(std::move((*out)[static_cast<uint32_t>(t)]));
    out->swap(sorted);
  }
  return {};
}

Status ObjectCache::Get(std::string_view ns, std::string_view name, ObjectRef* out,
                        uint64_t* resource_version) const {
  const ObjectKey key(ns, name);
  std::shared_lock lock(mu_);
  if (!synced_) return {Code::kNotSynced, "the cache has not synced yet"};
  if (resource_version != nullptr) *resource_version = max_rv_;
  *out = ObjectRef::Share(index_.Find(key.view()));
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
