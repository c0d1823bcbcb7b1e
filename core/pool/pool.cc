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

// "ns\0name": unambiguous because validated names contain no NUL.
class Composite {
 public:
  Composite(std::string_view ns, std::string_view name)
      : len_(ns.size() + 1 + name.size()), ns_len_(static_cast<uint32_t>(ns.size())) {
    std::memcpy(buf_, ns.data(), ns.size());
    buf_[ns.size()] = '\0';
    std::memcpy(buf_ + ns.size() + 1, name.data(), name.size());
  }
  std::string_view view() const { return {buf_, len_}; }
  uint32_t ns_len() const { return ns_len_; }

 private:
  char buf_[kMaxNamespaceLen + 1 + kMaxNameLen];
  size_t len_;
  uint32_t ns_len_;
};

}  // namespace

// ---- NodeHeap -------------------------------------------------------------

bool WarmPool::NodeHeap::Better(const Node* a, const Node* b) const {
  if (a->count != b->count) return a->count > b->count;
  return (*a->keys[cls_].begin())->seq < (*b->keys[cls_].begin())->seq;
}

void WarmPool::NodeHeap::Place(size_t i, Node* n) {
  v_[i] = n;
  n->heap_pos[cls_] = static_cast<int32_t>(i);
}

void WarmPool::NodeHeap::SiftUp(size_t i) {
  Node* n = v_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!Better(n, v_[parent])) break;
    Place(i, v_[parent]);
    i = parent;
  }
  Place(i, n);
}

void WarmPool::NodeHeap::SiftDown(size_t i) {
  Node* n = v_[i];
  const size_t size = v_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && Better(v_[child + 1], v_[child])) ++child;
    if (!Better(v_[child], n)) break;
    Place(i, v_[child]);
    i = child;
  }
  Place(i, n);
}

void WarmPool::NodeHeap::Erase(Node* n) {
  size_t i = static_cast<size_t>(n->heap_pos[cls_]);
  n->heap_pos[cls_] = -1;
  Node* last = v_.back();
  v_.pop_back();
  if (last == n) return;
  Place(i, last);
  SiftUp(i);
  SiftDown(static_cast<size_t>(last->heap_pos[cls_]));
}

void WarmPool::NodeHeap::Update(Node* n) {
  const bool has_keys = !n->keys[cls_].empty();
  const int32_t pos = n->heap_pos[cls_];
  if (!has_keys) {
    if (pos >= 0) Erase(n);
    return;
  }
  if (pos < 0) {
    v_.push_back(n);
    Place(v_.size() - 1, n);
    SiftUp(v_.size() - 1);
    return;
  }
  SiftUp(static_cast<size_t>(pos));
  SiftDown(static_cast<size_t>(n->heap_pos[cls_]));
}

// ---- WarmPool -------------------------------------------------------------

WarmPool::WarmPool() = default;
WarmPool::~WarmPool() = default;

WarmPool::Node* WarmPool::Intern(std::string_view node) {
  if (node.empty()) return &unscheduled_;
  auto it = nodes_.find(node);
  if (it != nodes_.end()) return it->second.get();
  auto n = MakeMiUnique<Node>();
  n->name.assign(node.data(), node.size());
  Node* raw = n.get();
  nodes_.emplace(String(node.data(), node.size()), std::move(n));
  return raw;
}

void WarmPool::DropIfEmpty(Node* n) {
  if (n == &unscheduled_ || n->count != 0) return;
  assert(n->heap_pos[kReady] < 0 && n->heap_pos[kUnready] < 0);
  nodes_.erase(nodes_.find(std::string_view(n->name)));
}

void WarmPool::Link(Entry* e) {
  Node* n = e->node;
  // Appending the youngest key is the common case; the end hint makes it O(1).
  auto insert = [e](EntrySet& set) {
    if (set.empty() || (*set.rbegin())->seq < e->seq) {
      set.emplace_hint(set.end(), e);
    } else {
      set.insert(e);
    }
  };
  insert(n->keys[Class(e->ready)]);
  insert(all_);
  if (e->ready) ++ready_keys_;
  if (n != &unscheduled_) {
    ++n->count;
    ++scheduled_keys_;
    // The count changed, so the node moves in both heaps.
    heap_[kReady].Update(n);
    heap_[kUnready].Update(n);
  }
}

void WarmPool::Unlink(Entry* e) {
  Node* n = e->node;
  n->keys[Class(e->ready)].erase(e);
  all_.erase(e);
  if (e->ready) --ready_keys_;
  if (n != &unscheduled_) {
    --n->count;
    --scheduled_keys_;
    heap_[kReady].Update(n);
    heap_[kUnready].Update(n);
  }
}

WarmPool::Entry* WarmPool::Insert(std::string_view composite, uint32_t ns_len, uint64_t seq,
                                  Node* node, bool ready) {
  auto [it, inserted] = entries_.try_emplace(String(composite.data(), composite.size()));
  assert(inserted);
  (void)inserted;
  Entry* e = &it->second;
  *e = Entry{seq, node, ready, ns_len, &it->first};
  Link(e);
  return e;
}

void WarmPool::ConsumeDeparture(std::string_view composite) {
  if (departures_.empty()) return;
  auto it = departures_.find(composite);
  if (it != departures_.end() && !it->second.consumed) {
    it->second.consumed = true;
    --live_departures_;
  }
}

bool WarmPool::Add(const KeyView& key) {
  Composite c(key.ns, key.name);
  auto it = entries_.find(c.view());
  if (it != entries_.end()) {
    Entry* e = &it->second;
    Node* old = e->node;
    Node* target = Intern(key.node);
    if (target == old && e->ready == key.ready) return false;
    Unlink(e);
    e->node = target;
    e->ready = key.ready;
    Link(e);
    if (old != target) DropIfEmpty(old);
    return false;
  }
  Insert(c.view(), c.ns_len(), next_seq_++, Intern(key.node), key.ready);
  ConsumeDeparture(c.view());  // a newer add wins over a stale put_back
  return true;
}

bool WarmPool::Remove(std::string_view ns, std::string_view name) {
  Composite c(ns, name);
  auto it = entries_.find(c.view());
  if (it == entries_.end()) return false;
  Entry* e = &it->second;
  Unlink(e);
  DropIfEmpty(e->node);
  entries_.erase(it);
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

  // Record the departure for PutBack before the node can be dropped.
  const uint64_t stamp = next_stamp_++;
  out->token = stamp;
  auto [dit, fresh] = departures_.try_emplace(String(key.data(), key.size()));
  Departure& d = dit->second;
  d.stamp = stamp;
  d.seq = e->seq;
  d.ready = e->ready;
  d.consumed = false;
  d.node = n->name;
  ++live_departures_;
  (void)fresh;
  departure_fifo_.emplace_back(stamp, &*dit);
  // Expire hand-outs that fell out of the window. A record is erased when its
  // latest hand-out expires; older FIFO entries for it are skipped.
  while (departure_fifo_.front().first + kPutBackWindow < next_stamp_) {
    auto [old_stamp, rec] = departure_fifo_.front();
    departure_fifo_.pop_front();
    if (rec->second.stamp != old_stamp) continue;
    if (!rec->second.consumed) --live_departures_;
    departures_.erase(rec->first);
  }

  Unlink(e);
  DropIfEmpty(n);
  entries_.erase(entries_.find(key));
}

bool WarmPool::PopFifo(HandOut* out) {
  if (all_.empty()) return false;
  Take(*all_.begin(), out);
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
  auto it = departures_.find(c.view());
  if (it == departures_.end()) return false;
  Departure& d = it->second;
  if (d.consumed || d.stamp != token) return false;
  if (entries_.find(c.view()) != entries_.end()) return false;  // unreachable: adds consume
  Insert(c.view(), c.ns_len(), d.seq, Intern(d.node), d.ready);
  d.consumed = true;
  --live_departures_;
  return true;
}

PoolStats WarmPool::Stats() const {
  PoolStats s;
  s.keys = entries_.size();
  s.ready_keys = ready_keys_;
  s.scheduled_keys = scheduled_keys_;
  s.nodes = nodes_.size();
  s.put_back_records = live_departures_;
  return s;
}

void WarmPool::ForEachKey(const std::function<void(const KeyInfo&)>& f) const {
  for (const Entry* e : all_) {
    const std::string_view key(*e->key);
    f(KeyInfo{key.substr(0, e->ns_len), key.substr(e->ns_len + 1), e->node->name, e->ready,
              e->seq});
  }
}

void WarmPool::ForEachNode(const std::function<void(const NodeInfo&)>& f) const {
  std::vector<const Node*, Alloc<const Node*>> sorted;
  sorted.reserve(nodes_.size());
  for (const auto& [name, node] : nodes_) sorted.push_back(node.get());
  std::sort(sorted.begin(), sorted.end(),
            [](const Node* a, const Node* b) { return a->name < b->name; });
  for (const Node* n : sorted) f(NodeInfo{n->name, n->count, n->keys[kReady].size()});
}

}  // namespace berth
