// NaivePool: a deliberately naive model of the warm-pool queue, written the
// way the reference controller works: one vector of keys in age order; every
// hand-out copies it, counts keys per node, and scans. O(N) per operation.
// It is the oracle of the differential tests and the baseline of the
// benchmarks and the demo. External synchronization needed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace berth::testing {

struct NaiveKey {
  std::string ns, name, node;
  bool ready = false;
  uint64_t seq = 0;
  uint64_t token = 0;  // set on hand-out
  bool operator==(const NaiveKey&) const = default;
};

class NaivePool {
 public:
  explicit NaivePool(uint64_t put_back_window = 4096) : window_(put_back_window) {}

  // True if inserted, false if updated in place (age kept).
  bool Add(const std::string& ns, const std::string& name, const std::string& node, bool ready) {
    for (auto& k : keys_) {
      if (k.ns == ns && k.name == name) {
        k.node = node;
        k.ready = ready;
        return false;
      }
    }
    keys_.push_back(NaiveKey{ns, name, node, ready, next_seq_++, 0});
    if (auto it = departures_.find(ns + '\0' + name); it != departures_.end()) {
      it->second.consumed = true;
    }
    return true;
  }

  // Updates in place only if present; never inserts.
  bool Update(const std::string& ns, const std::string& name, const std::string& node, bool ready) {
    for (auto& k : keys_) {
      if (k.ns == ns && k.name == name) {
        k.node = node;
        k.ready = ready;
        return true;
      }
    }
    return false;
  }

  bool Remove(const std::string& ns, const std::string& name) {
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i].ns == ns && keys_[i].name == name) {
        keys_.erase(keys_.begin() + static_cast<long>(i));
        return true;
      }
    }
    return false;
  }

  std::optional<NaiveKey> PopFifo() {
    if (keys_.empty()) return std::nullopt;
    return Take(0);
  }

  // The reference NodeSpread: snapshot, count keys per node, scan oldest
  // first for the first candidate on a node with a strictly larger count.
  std::optional<NaiveKey> PopSpread() {
    const std::vector<NaiveKey> snapshot = keys_;
    std::unordered_map<std::string, int> counts;
    for (const auto& k : snapshot) {
      if (!k.node.empty()) ++counts[k.node];
    }
    for (bool ready : {true, false}) {
      long best = -1;
      for (size_t i = 0; i < snapshot.size(); ++i) {
        const auto& k = snapshot[i];
        if (k.ready != ready || k.node.empty()) continue;
        if (best < 0 || counts[k.node] > counts[snapshot[static_cast<size_t>(best)].node]) {
          best = static_cast<long>(i);
        }
      }
      if (best >= 0) return Take(static_cast<size_t>(best));
      for (size_t i = 0; i < snapshot.size(); ++i) {
        if (snapshot[i].ready == ready) return Take(i);
      }
    }
    return std::nullopt;
  }

  bool PutBack(const std::string& ns, const std::string& name, uint64_t token) {
    auto it = departures_.find(ns + '\0' + name);
    if (it == departures_.end()) return false;
    Departure& d = it->second;
    if (d.consumed || d.key.token != token || token + window_ < next_stamp_) return false;
    d.consumed = true;
    size_t pos = 0;
    while (pos < keys_.size() && keys_[pos].seq < d.key.seq) ++pos;
    NaiveKey k = d.key;
    k.token = 0;
    keys_.insert(keys_.begin() + static_cast<long>(pos), k);
    return true;
  }

  const std::vector<NaiveKey>& keys() const { return keys_; }
  size_t size() const { return keys_.size(); }
  size_t ready_keys() const {
    size_t n = 0;
    for (const auto& k : keys_) n += k.ready ? 1 : 0;
    return n;
  }
  size_t scheduled_keys() const {
    size_t n = 0;
    for (const auto& k : keys_) n += k.node.empty() ? 0 : 1;
    return n;
  }
  std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> NodeCounts() const {
    std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> out;
    for (const auto& k : keys_) {
      if (k.node.empty()) continue;
      auto& c = out[k.node];
      ++c.first;
      c.second += k.ready ? 1 : 0;
    }
    return out;
  }
  size_t put_back_records() const {
    size_t n = 0;
    for (const auto& [name, d] : departures_) {
      n += (!d.consumed && d.key.token + window_ >= next_stamp_) ? 1 : 0;
    }
    return n;
  }

 private:
  struct Departure {
    NaiveKey key;
    bool consumed = false;
  };

  NaiveKey Take(size_t i) {
    NaiveKey k = keys_[i];
    keys_.erase(keys_.begin() + static_cast<long>(i));
    k.token = next_stamp_++;
    departures_[k.ns + '\0' + k.name] = Departure{k, false};
    return k;
  }

  uint64_t window_;
  std::vector<NaiveKey> keys_;
  uint64_t next_seq_ = 1;
  uint64_t next_stamp_ = 1;
  std::unordered_map<std::string, Departure> departures_;
};

}  // namespace berth::testing
