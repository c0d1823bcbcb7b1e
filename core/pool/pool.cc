#include "core/pool/pool.h"

#include <algorithm>
#include <cassert>

#include "core/common/text.h"

namespace berth {

Status CheckPoolName(std::string_view pool) {
  return CheckName("pool name", pool, kMaxPoolLen, /*allow_empty=*/false);
}

Status CheckKeyName(std::string_view ns, std::string_view name) {
  if (Status s = CheckName("key namespace", ns, kMaxNamespaceLen, true); !s.ok()) return s;
  return CheckName("key name", name, kMaxNameLen, false);
}

Status CheckKey(const KeyView& key) {
  if (Status s = CheckKeyName(key.ns, key.name); !s.ok()) return s;
  return CheckName("node name", key.node, kMaxNodeLen, true);
}

namespace {

using Composite = Joined<kMaxNamespaceLen + 1 + kMaxNameLen>;

}  // namespace

// ---- NodeHeap -------------------------------------------------------------

bool WarmPool::BySeq::operator()(const Entry* a, const Entry* b) const { return a->seq < b->seq; }

void WarmPool::NodeHeap::Place(size_t i, const Item& item) {
  v_[i] = item;
  item.node->heap_pos[kind_] = static_cast<int32_t>(i);
}

void WarmPool::NodeHeap::SiftUp(size_t i) {
  const Item item = v_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!Better(item, v_[parent])) break;
    Place(i, v_[parent]);
    i = parent;
  }
  Place(i, item);
}

void WarmPool::NodeHeap::SiftDown(size_t i) {
  const Item item = v_[i];
  const size_t size = v_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && Better(v_[child + 1], v_[child])) ++child;
    if (!Better(v_[child], item)) break;
    Place(i, v_[child]);
    i = child;
  }
  Place(i, item);
}

void WarmPool::NodeHeap::Erase(Node* n) {
  size_t i = static_cast<size_t>(n->heap_pos[kind_]);
  n->heap_pos[kind_] = -1;
  const Item last = v_.back();
  v_.pop_back();
  if (last.node == n) return;
  Place(i, last);
  SiftUp(i);
  SiftDown(static_cast<size_t>(last.node->heap_pos[kind_]));
}

void WarmPool::NodeHeap::Update(Node* n) {
  const int32_t pos = n->heap_pos[kind_];
  Item item{0, UINT64_MAX, n};
  if (kind_ == kAny) {
    for (const EntrySet& keys : n->keys) {
      if (!keys.empty()) item.oldest = std::min(item.oldest, (*keys.begin())->seq);
    }
  } else if (!n->keys[kind_].empty()) {
    item.count = n->count;
    item.oldest = (*n->keys[kind_].begin())->seq;
  }
  if (item.oldest == UINT64_MAX) {  // no key of this heap's class
    if (pos >= 0) Erase(n);
    return;
  }
  if (pos < 0) {
    v_.push_back(item);
    Place(v_.size() - 1, item);
    SiftUp(v_.size() - 1);
    return;
  }
  const Item before = v_[static_cast<size_t>(pos)];
  if (before.count == item.count && before.oldest == item.oldest) return;  // unchanged
  Place(static_cast<size_t>(pos), item);
  if (Better(item, before)) {
    SiftUp(static_cast<size_t>(pos));
  } else {
    SiftDown(static_cast<size_t>(pos));
  }
}

// ---- WarmPool -------------------------------------------------------------

WarmPool::WarmPool() = default;
WarmPool::~WarmPool() = default;

WarmPool::Node* WarmPool::Intern(std::string_view node) {
  if (node.empty()) return &unscheduled_;
  auto it = nodes_.find(node);
  if (it != nodes_.end()) return it->second.get();
  auto n = MakeBulkUnique<Node>();
  n->name.assign(node.data(), node.size());
  // Heaps hold at most every node (+ the unscheduled one in kAny), so with
  // room reserved here their updates never allocate.
  for (NodeHeap& h : heap_) h.Reserve(nodes_.size() + 2);
  Node* raw = n.get();
  nodes_.emplace(BulkString(node.data(), node.size()), std::move(n));
  return raw;
}

void WarmPool::DropIfUnused(Node* n) {
  if (n == &unscheduled_ || n->count != 0 || n->pins != 0) return;
  assert(n->heap_pos[kReady] < 0 && n->heap_pos[kUnready] < 0 && n->heap_pos[kAny] < 0);
  nodes_.erase(nodes_.find(std::string_view(n->name)));
}

// A departed entry pins its node so PutBack can restore it; this lets go.
void WarmPool::Unpin(Entry* e) {
  Node* n = e->node;
  e->node = nullptr;
  --n->pins;
  DropIfUnused(n);
}

void WarmPool::UpdateHeaps(Node* n) {
  if (n != &unscheduled_) {
    // The count changed too, so the node moves in both NodeSpread heaps.
    heap_[kReady].Update(n);
    heap_[kUnready].Update(n);
  }
  heap_[kAny].Update(n);
}

// Mutations are ordered so that everything that can allocate (and so throw)
// runs before any state changes: interning a node, inserting into an age set,
// growing the ring. Heaps never allocate (Intern reserves room for each node).

WarmPool::EntrySet::iterator WarmPool::InsertByAge(Entry* e, Node* n, bool ready) {
  EntrySet& set = n->keys[Class(ready)];
  // Appending the youngest key is the common case; the end hint makes it O(1).
  const bool youngest = set.empty() || (*set.rbegin())->seq < e->seq;
  if (!e->spare.empty()) {
    assert(e->spare.value() == e);
    return youngest ? set.insert(set.end(), std::move(e->spare))
                    : set.insert(std::move(e->spare)).position;
  }
  return youngest ? set.emplace_hint(set.end(), e) : set.insert(e).first;
}

void WarmPool::Count(Node* n, bool ready, int delta) {
  keys_ += delta;
  if (ready) ready_keys_ += delta;
  if (n != &unscheduled_) {
    if (n->count == 0) ++active_nodes_;
    n->count += delta;
    if (n->count == 0) --active_nodes_;
    scheduled_keys_ += delta;
  }
  UpdateHeaps(n);
}

void WarmPool::Unlink(Entry* e) {
  e->spare = e->node->keys[Class(e->ready)].extract(e->in_node);
  Count(e->node, e->ready, -1);
}

WarmPool::Entry** WarmPool::SlotFor(uint64_t stamp) {
  if (ring_.empty()) ring_.assign(16, nullptr);
  for (;;) {
    Entry** slot = &ring_[stamp & (ring_.size() - 1)];
    // At full size an occupied slot holds the hand-out kPutBackWindow ago,
    // which the caller expires.
    if (*slot == nullptr || ring_.size() >= kPutBackWindow) return slot;
    // Still inside the window: make room. Live stamps have distinct residues
    // modulo size(), hence also modulo 2 * size().
    std::vector<Entry*, BulkAlloc<Entry*>> bigger(ring_.size() * 2, nullptr);
    for (Entry* x : ring_) {
      if (x != nullptr) bigger[x->stamp & (bigger.size() - 1)] = x;
    }
    ring_.swap(bigger);
  }
}

void WarmPool::Return(Entry* e) {
  Entry*& slot = ring_[e->stamp & (ring_.size() - 1)];
  assert(slot == e);
  slot = nullptr;
  --departed_;
}

// Sets node/ready of a linked entry in place; its age stays.
void WarmPool::Move(Entry* e, const KeyView& key) {
  Node* old = e->node;
  const bool was_ready = e->ready;
  Node* target = Intern(key.node);  // may throw; nothing changed yet
  if (target == old && was_ready == key.ready) return;
  e->spare = old->keys[Class(was_ready)].extract(e->in_node);
  auto pos = InsertByAge(e, target, key.ready);  // reuses the node: cannot throw
  Count(old, was_ready, -1);
  e->node = target;
  e->ready = key.ready;
  e->in_node = pos;
  Count(target, key.ready, +1);
  if (old != target) DropIfUnused(old);
}

bool WarmPool::Update(const KeyView& key) {
  Composite c(key.ns, key.name);
  auto it = entries_.find(c.view());
  if (it == entries_.end() || it->second.state != State::kLinked) return false;
  Move(&it->second, key);
  return true;
}

bool WarmPool::Add(const KeyView& key) {
  Composite c(key.ns, key.name);
  auto it = entries_.find(c.view());
  if (it != entries_.end() && it->second.state == State::kLinked) {
    Move(&it->second, key);
    return false;
  }
  Node* target = Intern(key.node);
  const bool fresh = it == entries_.end();
  if (fresh) {
    it = entries_.try_emplace(BulkString(c.view().data(), c.view().size())).first;
    it->second.key = &it->first;
    it->second.ns_len = c.first_len();
    it->second.state = State::kDeparted;  // not linked yet
  }
  Entry* e = &it->second;
  const uint64_t seq = next_seq_;
  const uint64_t old_seq = e->seq;
  e->seq = seq;
  EntrySet::iterator pos;
  try {
    pos = InsertByAge(e, target, key.ready);
  } catch (...) {
    e->seq = old_seq;
    if (fresh) entries_.erase(it);
    DropIfUnused(target);
    throw;
  }
  ++next_seq_;
  if (!fresh) {  // it was handed out: a newer add wins over a stale put_back
    Return(e);
    Node* departed_from = e->node;
    --departed_from->pins;
    if (departed_from != target) DropIfUnused(departed_from);
  }
  e->node = target;
  e->ready = key.ready;
  e->in_node = pos;
  e->state = State::kLinked;
  Count(target, key.ready, +1);
  return true;
}

bool WarmPool::Remove(std::string_view ns, std::string_view name) {
  Composite c(ns, name);
  auto it = entries_.find(c.view());
  if (it == entries_.end() || it->second.state != State::kLinked) return false;
  Node* n = it->second.node;
  Unlink(&it->second);
  entries_.erase(it);
  DropIfUnused(n);
  return true;
}

void WarmPool::Take(Entry* e, HandOut* out) {
  const std::string_view key(*e->key);
  Node* n = e->node;
  out->seq = e->seq;
  out->ready = e->ready;
  out->ns.assign(key.substr(0, e->ns_len));
  out->name.assign(key.substr(e->ns_len + 1));
  out->node.assign(n->name);

  const uint64_t stamp = next_stamp_;
  Entry** slot = SlotFor(stamp);  // may throw; nothing changed yet
  ++next_stamp_;
  out->token = stamp;
  Unlink(e);
  e->state = State::kDeparted;
  e->stamp = stamp;
  ++n->pins;
  ++departed_;
  if (Entry* old = *slot; old != nullptr) {
    // Handed out kPutBackWindow hand-outs ago and never returned: forget it.
    assert(old->state == State::kDeparted && old->stamp + kPutBackWindow == stamp);
    --departed_;
    Unpin(old);
    entries_.erase(entries_.find(std::string_view(*old->key)));
  }
  *slot = e;
}

bool WarmPool::PopFifo(HandOut* out) {
  if (heap_[kAny].empty()) return false;
  Node* n = heap_[kAny].top();
  const EntrySet& ready = n->keys[kReady];
  const EntrySet& unready = n->keys[kUnready];
  Entry* oldest;
  if (ready.empty()) {
    oldest = *unready.begin();
  } else if (unready.empty()) {
    oldest = *ready.begin();
  } else {
    oldest = std::min(*ready.begin(), *unready.begin(), BySeq());
  }
  Take(oldest, out);
  return true;
}

bool WarmPool::PopSpread(HandOut* out) {
  for (int cls : {kReady, kUnready}) {
    if (!heap_[cls].empty()) {
      Take(*heap_[cls].top()->keys[cls].begin(), out);
      return true;
    }
    if (!unscheduled_.keys[cls].empty()) {
      Take(*unscheduled_.keys[cls].begin(), out);
      return true;
    }
  }
  return false;
}

bool WarmPool::PutBack(std::string_view ns, std::string_view name, uint64_t token) {
  Composite c(ns, name);
  auto it = entries_.find(c.view());
  if (it == entries_.end()) return false;
  Entry* e = &it->second;
  if (e->state != State::kDeparted || e->stamp != token) return false;
  assert(token + kPutBackWindow >= next_stamp_);  // older ones were expired
  auto pos = InsertByAge(e, e->node, e->ready);     // reuses the node: cannot throw
  Return(e);
  --e->node->pins;
  // Same seq, node and readiness as when handed out.
  e->in_node = pos;
  e->state = State::kLinked;
  Count(e->node, e->ready, +1);
  return true;
}

PoolStats WarmPool::Stats() const {
  PoolStats s;
  s.keys = keys_;
  s.ready_keys = ready_keys_;
  s.scheduled_keys = scheduled_keys_;
  s.nodes = active_nodes_;
  s.put_back_records = departed_;
  return s;
}

size_t WarmPool::ApproxBytes() const {
  // An entry: its map node (keys up to 15 bytes inline, a block beyond) and,
  // while linked, its node's set node; with allocator rounding.
  constexpr size_t kPerEntry = sizeof(EntryMap::value_type) + sizeof(void*) + 32 + 48;
  return entries_.size() * kPerEntry + entries_.bucket_count() * sizeof(void*) +
         nodes_.size() * sizeof(Node) + ring_.capacity() * sizeof(Entry*);
}

void WarmPool::ForEachKey(const std::function<void(const KeyInfo&)>& f) const {
  std::vector<const Entry*, Alloc<const Entry*>> linked;
  linked.reserve(keys_);
  for (const auto& [key, e] : entries_) {
    if (e.state == State::kLinked) linked.push_back(&e);
  }
  std::sort(linked.begin(), linked.end(), BySeq());
  for (const Entry* e : linked) {
    const std::string_view key(*e->key);
    f(KeyInfo{key.substr(0, e->ns_len), key.substr(e->ns_len + 1), e->node->name, e->ready,
              e->seq});
  }
}

void WarmPool::ForEachNode(const std::function<void(const NodeInfo&)>& f) const {
  std::vector<const Node*, Alloc<const Node*>> sorted;
  sorted.reserve(active_nodes_);
  for (const auto& [name, node] : nodes_) {
    if (node->count > 0) sorted.push_back(node.get());
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const Node* a, const Node* b) { return a->name < b->name; });
  for (const Node* n : sorted) f(NodeInfo{n->name, n->count, n->keys[kReady].size()});
}

}  // namespace berth
