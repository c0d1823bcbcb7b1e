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

#include "capi/berth.h"
#include "tests/support/naive_pool.h"

namespace {

using Clock = std::chrono::steady_clock;
using berth::testing::NaivePool;

double g_min_seconds = 0.4;  // per figure and side
std::string g_only;          // run only figures whose name contains this

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

// Times `step(i)` for i = 0, 1, ... until at least min_seconds passed and at
// least min_ops ran (max_ops caps the slow baselines). Returns ns per op.
template <class F>
double Measure(F&& step, size_t min_ops = 1, size_t max_ops = SIZE_MAX) {
  size_t ops = 0;
  auto start = Clock::now();
  double elapsed = 0;
  size_t batch = 1;
  while (ops < max_ops) {
    for (size_t i = 0; i < batch && ops < max_ops; ++i) step(ops++);
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (elapsed >= g_min_seconds && ops >= min_ops) break;
    if (batch < 4096) batch *= 2;
  }
  return elapsed * 1e9 / static_cast<double>(ops);
}

// Runs rounds of `setup()` (untimed) then `step(0..n-1)` (timed) until at
// least min_seconds of timed work; returns ns per step.
template <class S, class F>
double TimeRounds(size_t n, S&& setup, F&& step) {
  double total = 0;
  size_t ops = 0;
  while (total < g_min_seconds * 1e9) {
    setup();
    auto start = Clock::now();
    for (size_t i = 0; i < n; ++i) step(i);
    total += std::chrono::duration<double, std::nano>(Clock::now() - start).count();
    ops += n;
  }
  return total / static_cast<double>(ops);
}

struct Record {
  std::string name;
  size_t n, m, threads;
  double berth_ns, baseline_ns;
};
std::vector<Record> g_records;

void Report(const std::string& name, size_t n, size_t m, size_t threads, double berth_ns,
            double baseline_ns) {
  g_records.push_back({name, n, m, threads, berth_ns, baseline_ns});
  std::printf("%-22s n=%-6zu m=%-4zu threads=%zu  berth %10.1f ns/op  baseline %12.1f ns/op  x%.1f\n",
              name.c_str(), n, m, threads, berth_ns, baseline_ns, baseline_ns / berth_ns);
  std::fflush(stdout);
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
    std::this_thread::sleep_until(start + std::chrono::duration<double>(g_min_seconds));
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

void WriteJson(const char* path) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::perror(path);
    std::exit(1);
  }
  std::fprintf(f, "[\n");
  for (size_t i = 0; i < g_records.size(); ++i) {
    const Record& r = g_records[i];
    std::fprintf(f,
                 "  {\"name\": \"%s\", \"n\": %zu, \"m\": %zu, \"threads\": %zu, "
                 "\"berth_ns_per_op\": %.2f, \"baseline_ns_per_op\": %.2f, \"ratio\": %.2f}%s\n",
                 r.name.c_str(), r.n, r.m, r.threads, r.berth_ns, r.baseline_ns,
                 r.baseline_ns / r.berth_ns, i + 1 < g_records.size() ? "," : "");
  }
  std::fprintf(f, "]\n");
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  const char* out = "build/bench/pool.json";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      g_only = argv[++i];
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      g_min_seconds = 0.05;
    } else {
      std::fprintf(stderr, "usage: %s [--out FILE] [--quick] [--only NAME-PART]\n", argv[0]);
      return 2;
    }
  }
  const std::pair<size_t, size_t> shapes[] = {{600, 50}, {2000, 100}, {10000, 100}, {50000, 500}};
  auto wanted = [](const char* name) { return std::string(name).find(g_only) != std::string::npos; };
  if (wanted("pool_add pool_update pool_remove")) {
    for (auto [n, m] : shapes) Workloads(n, m);
  }
  if (wanted("pool_pop_spread")) {
    for (auto [n, m] : shapes) PopSpread(n, m, 1);
    for (size_t t : {2, 8}) PopSpread(10000, 100, t);
  }
  WriteJson(out);
  std::printf("wrote %s\n", out);
  return 0;
}
