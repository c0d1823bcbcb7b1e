// Warm-pool benchmark: Berth (through the C ABI, as a binding calls it) and
// the naive reference model (one mutex-guarded vector, snapshot-count-scan)
// run the same workload in the same process. Writes one JSON record per
// figure: {"name","n","m","threads","berth_ns_per_op","baseline_ns_per_op",
// "ratio"} with ratio = baseline / berth.
//
// Usage: berth_pool_bench [--out FILE] [--quick] [--only NAME-PART]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.h"
#include "capi/berth.h"
#include "tests/support/naive_pool.h"

namespace {

using Clock = std::chrono::steady_clock;
using berth::bench::Measure;
using berth::bench::Report;
using berth::bench::TimeRounds;
using berth::testing::NaivePool;

struct Key {
  std::string ns, name, node;
};

std::vector<Key> MakeKeys(size_t n, size_t m, const char* prefix = "sb") {
  std::vector<Key> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    keys.push_back({"default", std::string(prefix) + "-" + std::to_string(i),
                    "gke-pool-node-" + std::to_string(i % m)});
  }
  return keys;
}

const std::string kPool = "default/warm-pool";

void Check(berth_status s) {
  if (s != BERTH_OK && s != BERTH_EMPTY) {
    std::fprintf(stderr, "berth call failed: %s: %s\n", berth_status_name(s), berth_last_error(nullptr));
    std::exit(1);
  }
}

void BerthAdd(berth_engine* e, const Key& k, const std::string& node) {
  Check(berth_pool_add(nullptr, e, kPool.data(), kPool.size(), k.ns.data(), k.ns.size(),
                       k.name.data(), k.name.size(), node.data(), node.size(), 1));
}

// Guards the naive model the way the reference controller guards its slice.
struct LockedNaive {
  std::mutex mu;
  NaivePool pool;
};

void Workloads(size_t n, size_t m) {
  const std::vector<Key> keys = MakeKeys(n, m);
  std::mt19937_64 rng(n * 31 + m);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);

  // add: fill an empty pool to N keys; ns per add. Dropping the full pool
  // between rounds is not timed.
  {
    berth_engine* e;
    Check(berth_engine_new(&e));
    double b = TimeRounds(n, [&] { Check(berth_pool_remove_pool(nullptr, e, kPool.data(), kPool.size())); },
                          [&](size_t i) { BerthAdd(e, keys[i], keys[i].node); });
    berth_engine_free(e);
    LockedNaive naive;
    double base = Measure([&](size_t i) {
      std::lock_guard<std::mutex> l(naive.mu);
      naive.pool.Add(keys[i].ns, keys[i].name, keys[i].node, true);
    }, n, n);
    Report("pool_add", n, m, 1, b, base);
  }

  // update: re-add an existing key with another node; pool stays at N.
  {
    berth_engine* e;
    Check(berth_engine_new(&e));
    LockedNaive naive;
    for (const Key& k : keys) {
      BerthAdd(e, k, k.node);
      naive.pool.Add(k.ns, k.name, k.node, true);
    }
    auto other = [&](size_t i) -> const std::string& { return keys[(order[i % n] + i / n + 1) % n].node; };
    double b = Measure([&](size_t i) { BerthAdd(e, keys[order[i % n]], other(i)); });
    double base = Measure([&](size_t i) {
      const Key& k = keys[order[i % n]];
      std::lock_guard<std::mutex> l(naive.mu);
      naive.pool.Add(k.ns, k.name, other(i), true);
    }, 1, 20 * n);
    Report("pool_update", n, m, 1, b, base);
    berth_engine_free(e);
  }

  // remove: drain a full pool in random order; ns per remove. The refill
  // between rounds is not timed.
  {
    berth_engine* e;
    Check(berth_engine_new(&e));
    double b = TimeRounds(n, [&] { for (const Key& k : keys) BerthAdd(e, k, k.node); },
                          [&](size_t i) {
                            const Key& k = keys[order[i]];
                            Check(berth_pool_remove(nullptr, e, kPool.data(), kPool.size(), k.ns.data(),
                                                    k.ns.size(), k.name.data(), k.name.size()));
                          });
    berth_engine_free(e);
    LockedNaive naive;
    for (const Key& k : keys) naive.pool.Add(k.ns, k.name, k.node, true);
    double base = Measure([&](size_t i) {
      const Key& k = keys[order[i]];
      std::lock_guard<std::mutex> l(naive.mu);
      naive.pool.Remove(k.ns, k.name);
    }, 1, n);
    Report("pool_remove", n, m, 1, b, base);
  }
}

// pop_spread + re-add of the handed-out key (pool stays at N), from T threads.
void PopSpread(size_t n, size_t m, size_t threads) {
  const std::vector<Key> keys = MakeKeys(n, m);
  berth_engine* e;
  Check(berth_engine_new(&e));
  LockedNaive naive;
  for (const Key& k : keys) {
    BerthAdd(e, k, k.node);
    naive.pool.Add(k.ns, k.name, k.node, true);
  }
  // Every thread runs pairs until min_seconds have passed; ns per op is wall
  // time over all threads' pairs (so 2 threads at full speed halve it).
  auto run = [&](auto&& pair) {
    std::atomic<bool> stop{false};
    std::atomic<size_t> total{0};
    std::vector<std::thread> ts;
    auto start = Clock::now();
    for (size_t t = 0; t < threads; ++t) {
      ts.emplace_back([&] {
        size_t local = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          pair();
          ++local;
        }
        total.fetch_add(local);
      });
    }
    std::this_thread::sleep_until(start + std::chrono::duration<double>(berth::bench::g_min_seconds));
    stop = true;
    for (auto& t : ts) t.join();
    double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
    return ns / static_cast<double>(total.load());
  };
  double b = run([&] {
    berth_pool_key k;
    Check(berth_pool_pop_spread(&k, e, kPool.data(), kPool.size()));
    Check(berth_pool_add(nullptr, e, kPool.data(), kPool.size(), k.namespace_, k.namespace_len,
                         k.name, k.name_len, k.node, k.node_len, k.ready));
  });
  double base = run([&] {
    std::lock_guard<std::mutex> l(naive.mu);
    auto k = naive.pool.PopSpread();
    naive.pool.Add(k->ns, k->name, k->node, k->ready);
  });
  Report("pool_pop_spread", n, m, threads, b, base);
  berth_engine_free(e);
}

// Scaling on one pool: the pop_spread + re-add pair from `threads` threads
// against 1 thread, both Berth, timed in alternating rounds (so load from
// elsewhere on the machine hits both alike); the median round of each.
// Recorded as pool_pop_spread_scaling with berth = ns per pair of wall time
// at `threads`, baseline = the same at 1 thread, so ratio = total throughput
// at `threads` / throughput at 1 thread: >= 1 means no collapse.
void PopSpreadScaling(size_t n, size_t m, size_t threads) {
  const std::vector<Key> keys = MakeKeys(n, m);
  berth_engine* e;
  Check(berth_engine_new(&e));
  for (const Key& k : keys) BerthAdd(e, k, k.node);
  auto run = [&](size_t t, double seconds) {
    std::atomic<bool> stop{false};
    std::atomic<size_t> total{0};
    std::vector<std::thread> ts;
    auto start = Clock::now();
    for (size_t i = 0; i < t; ++i) {
      ts.emplace_back([&] {
        size_t local = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          berth_pool_key k;
          Check(berth_pool_pop_spread(&k, e, kPool.data(), kPool.size()));
          Check(berth_pool_add(nullptr, e, kPool.data(), kPool.size(), k.namespace_,
                               k.namespace_len, k.name, k.name_len, k.node, k.node_len, k.ready));
          ++local;
        }
        total.fetch_add(local);
      });
    }
    std::this_thread::sleep_until(start + std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& x : ts) x.join();
    return std::chrono::duration<double, std::nano>(Clock::now() - start).count() /
           static_cast<double>(total.load());
  };
  constexpr int kRounds = 5;
  const double round = berth::bench::g_min_seconds / 2;
  run(threads, round);  // warm-up
  std::vector<double> one, many;
  for (int r = 0; r < kRounds; ++r) {
    one.push_back(run(1, round));
    many.push_back(run(threads, round));
  }
  std::sort(one.begin(), one.end());
  std::sort(many.begin(), many.end());
  Report("pool_pop_spread_scaling", n, m, threads, many[kRounds / 2], one[kRounds / 2]);
  berth_engine_free(e);
}

}  // namespace

int main(int argc, char** argv) {
  const char* out = "build/bench/pool.json";
  if (!berth::bench::ParseArgs(argc, argv, &out)) return 2;
  const std::pair<size_t, size_t> shapes[] = {{600, 50}, {2000, 100}, {10000, 100}, {50000, 500}};
  if (berth::bench::Wanted("pool_add pool_update pool_remove")) {
    for (auto [n, m] : shapes) Workloads(n, m);
  }
  if (berth::bench::Wanted("pool_pop_spread")) {
    for (auto [n, m] : shapes) PopSpread(n, m, 1);
    for (size_t t : {2, 8}) PopSpread(10000, 100, t);
  }
  if (berth::bench::Wanted("pool_pop_spread_scaling")) PopSpreadScaling(10000, 100, 8);
  berth::bench::WriteJson(out);
  return 0;
}
