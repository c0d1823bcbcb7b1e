// The burst the reference controller was measured on, replayed against Berth
// (through the C ABI) and against the naive reference model (a mutex-guarded
// slice that is copied, counted and scanned on every claim), side by side.
//
// Each burst: a pool of 600 warm sandboxes spread unevenly over 50 nodes, 70%
// ready; 300 claims arrive at once from many threads while a warmer thread
// flips the rest to ready as they warm up. Printed: claim latency
// percentiles (every claim arrives at the burst's start, so this includes
// queueing for the pool, as the reference controller's P99 did), the
// duration of the hand-out call itself, the burst's wall time, and how
// evenly the hand-outs drained the nodes. Before the bursts, a single-threaded all-ready replay checks that
// Berth hands out exactly the key the reference picks.
//
// Usage: berth_burst_demo [--bursts N] [--threads T]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
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

constexpr int kPoolSize = 600;
constexpr int kNodes = 50;
constexpr int kClaims = 300;
const std::string kPool = "default/warm-pool";
const std::string kNs = "default";

struct Sandbox {
  std::string name, node;
  bool ready;
};

// The same pool for both sides. Node weights are skewed so that spreading
// matters: a few nodes hold many sandboxes.
std::vector<Sandbox> MakePool(uint64_t seed, double ready_share) {
  std::mt19937_64 rng(seed);
  std::vector<double> weights(kNodes);
  for (double& w : weights) w = 1.0 + 8.0 * std::pow(static_cast<double>(rng() % 1000) / 1000.0, 3);
  std::discrete_distribution<int> pick(weights.begin(), weights.end());
  std::uniform_real_distribution<double> coin(0, 1);
  std::vector<Sandbox> pool;
  for (int i = 0; i < kPoolSize; ++i) {
    pool.push_back({"sandbox-" + std::to_string(seed) + "-" + std::to_string(i),
                    "node-" + std::to_string(pick(rng)), coin(rng) < ready_share});
  }
  return pool;
}

void Check(berth_status s) {
  if (s != BERTH_OK && s != BERTH_EMPTY) {
    std::fprintf(stderr, "berth: %s: %s\n", berth_status_name(s), berth_last_error(nullptr));
    std::exit(1);
  }
}

// One side of the comparison. Thread-safe.
class Side {
 public:
  virtual ~Side() = default;
  virtual void Reset(const std::vector<Sandbox>& pool) = 0;
  // Hands out one sandbox; false if none is left.
  virtual bool Claim(std::string* name, std::string* node) = 0;
  // The sandbox warmed up; applies only while it is still in the pool.
  virtual void MarkReady(const Sandbox& s) = 0;
};

class BerthSide final : public Side {
 public:
  BerthSide() { Check(berth_engine_new(&e_)); }
  ~BerthSide() override { berth_engine_free(e_); }
  void Reset(const std::vector<Sandbox>& pool) override {
    Check(berth_pool_remove_pool(nullptr, e_, kPool.data(), kPool.size()));
    for (const Sandbox& s : pool) {
      Check(berth_pool_add(nullptr, e_, kPool.data(), kPool.size(), kNs.data(), kNs.size(),
                           s.name.data(), s.name.size(), s.node.data(), s.node.size(), s.ready));
    }
  }
  bool Claim(std::string* name, std::string* node) override {
    berth_pool_key k;
    berth_status s = berth_pool_pop_spread(&k, e_, kPool.data(), kPool.size());
    Check(s);
    if (s != BERTH_OK) return false;
    name->assign(k.name, k.name_len);
    node->assign(k.node, k.node_len);
    return true;
  }
  void MarkReady(const Sandbox& s) override {
    Check(berth_pool_update(nullptr, e_, kPool.data(), kPool.size(), kNs.data(), kNs.size(),
                            s.name.data(), s.name.size(), s.node.data(), s.node.size(), 1));
  }

 private:
  berth_engine* e_ = nullptr;
};

// The reference controller: one mutex around the slice, every claim scans.
class NaiveSide final : public Side {
 public:
  void Reset(const std::vector<Sandbox>& pool) override {
    std::lock_guard<std::mutex> l(mu_);
    pool_ = NaivePool();
    for (const Sandbox& s : pool) pool_.Add(kNs, s.name, s.node, s.ready);
  }
  bool Claim(std::string* name, std::string* node) override {
    std::lock_guard<std::mutex> l(mu_);
    auto k = pool_.PopSpread();
    if (!k) return false;
    *name = k->name;
    *node = k->node;
    return true;
  }
  void MarkReady(const Sandbox& s) override {
    std::lock_guard<std::mutex> l(mu_);
    pool_.Update(kNs, s.name, s.node, true);
  }

 private:
  std::mutex mu_;
  NaivePool pool_;
};

struct BurstResult {
  std::vector<double> latencies_us;  // per claim: burst start (arrival) -> hand-out
  std::vector<double> call_us;       // per claim: duration of the hand-out call
  std::vector<double> wall_ms;       // one per burst
  std::vector<double> spread_cv;     // per burst: coefficient of variation of keys per node after
  std::vector<double> max_node_share;  // per burst: largest node's share of what is left
  int duplicates = 0;
};

// Remaining keys per node after the burst: the better the spread, the more
// even (lower coefficient of variation) what is left.
void RecordSpread(const std::vector<Sandbox>& pool, const std::vector<std::string>& taken_nodes,
                  BurstResult* r) {
  std::map<std::string, int> left;
  for (const Sandbox& s : pool) ++left[s.node];
  for (const std::string& n : taken_nodes) --left[n];
  double sum = 0, sq = 0, mx = 0;
  for (const auto& [n, c] : left) {
    sum += c;
    sq += static_cast<double>(c) * c;
    mx = std::max(mx, static_cast<double>(c));
  }
  const double k = static_cast<double>(left.size());
  const double mean = sum / k;
  r->spread_cv.push_back(std::sqrt(std::max(0.0, sq / k - mean * mean)) / mean);
  r->max_node_share.push_back(mx / sum);
}

void RunBurst(Side& side, const std::vector<Sandbox>& pool, int threads, BurstResult* r) {
  side.Reset(pool);
  std::vector<const Sandbox*> cold;
  for (const Sandbox& s : pool) {
    if (!s.ready) cold.push_back(&s);
  }
  std::atomic<int> ready_threads{0};
  std::atomic<bool> go{false};
  std::atomic<int> next_claim{0};
  Clock::time_point burst_start;
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads)), call(static_cast<size_t>(threads));
  std::vector<std::vector<std::string>> names(static_cast<size_t>(threads)), nodes(static_cast<size_t>(threads));
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      ready_threads.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      std::string name, node;
      while (next_claim.fetch_add(1) < kClaims) {
        auto start = Clock::now();
        if (!side.Claim(&name, &node)) break;
        auto done = Clock::now();
        // Every claim of the burst arrived at burst_start; its latency
        // includes waiting for a worker and for the pool.
        lat[t].push_back(std::chrono::duration<double, std::micro>(done - burst_start).count());
        call[t].push_back(std::chrono::duration<double, std::micro>(done - start).count());
        names[t].push_back(name);
        nodes[t].push_back(node);
      }
    });
  }
  // The warmer: sandboxes become ready one by one during the burst.
  std::thread warmer([&] {
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (const Sandbox* s : cold) {
      side.MarkReady(*s);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  while (ready_threads.load() < threads) std::this_thread::yield();
  burst_start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : ts) t.join();
  r->wall_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - burst_start).count());
  warmer.join();
  std::vector<std::string> all_names, all_nodes;
  for (int t = 0; t < threads; ++t) {
    r->latencies_us.insert(r->latencies_us.end(), lat[t].begin(), lat[t].end());
    r->call_us.insert(r->call_us.end(), call[t].begin(), call[t].end());
    all_names.insert(all_names.end(), names[t].begin(), names[t].end());
    all_nodes.insert(all_nodes.end(), nodes[t].begin(), nodes[t].end());
  }
  std::sort(all_names.begin(), all_names.end());
  r->duplicates += static_cast<int>(all_names.end() - std::unique(all_names.begin(), all_names.end()));
  RecordSpread(pool, all_nodes, r);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// Single-threaded, all ready, with re-adds: Berth must pick exactly what the
// reference picks, claim after claim.
int ExactnessReplay(uint64_t seed) {
  std::vector<Sandbox> pool = MakePool(seed, 1.0);
  BerthSide berth;
  NaivePool naive;
  berth.Reset(pool);
  for (const Sandbox& s : pool) naive.Add(kNs, s.name, s.node, true);
  int same = 0;
  for (int i = 0; i < kClaims; ++i) {
    std::string name, node;
    berth.Claim(&name, &node);
    auto want = naive.PopSpread();
    same += (want && want->name == name && want->node == node) ? 1 : 0;
  }
  return same;
}

}  // namespace

int main(int argc, char** argv) {
  int bursts = 20;
  int threads = 32;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--bursts") == 0 && i + 1 < argc) {
      bursts = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--bursts N] [--threads T]\n", argv[0]);
      return 2;
    }
  }
  std::printf("Berth burst demo: %d claims from %d threads against a warm pool of %d sandboxes\n"
              "on %d nodes (uneven), 70%% ready, a warmer flipping the rest during the burst;\n"
              "%d bursts per side, %u hardware threads.\n\n",
              kClaims, threads, kPoolSize, kNodes, bursts, std::thread::hardware_concurrency());

  const int same = ExactnessReplay(7);
  std::printf("Exactness: with every sandbox ready, Berth handed out the reference's pick for %d/%d claims.\n\n",
              same, kClaims);

  BerthSide berth_side;
  NaiveSide naive_side;
  BurstResult br, nr;
  for (int b = 0; b < bursts; ++b) {
    std::vector<Sandbox> pool = MakePool(1000 + static_cast<uint64_t>(b), 0.7);
    // Alternate which side goes first so neither gets a warmer machine.
    if (b % 2 == 0) {
      RunBurst(berth_side, pool, threads, &br);
      RunBurst(naive_side, pool, threads, &nr);
    } else {
      RunBurst(naive_side, pool, threads, &nr);
      RunBurst(berth_side, pool, threads, &br);
    }
  }

  auto row = [](const char* what, double b, double n, const char* unit) {
    std::printf("  %-40s %10.2f %-3s %14.2f %-3s %8.1fx\n", what, b, unit, n, unit, b > 0 ? n / b : 0);
  };
  std::printf("  %-40s %14s %18s %9s\n", "", "Berth", "naive reference", "ratio");
  row("claim latency P50 (arrival->hand-out)", Percentile(br.latencies_us, 50), Percentile(nr.latencies_us, 50), "us");
  row("claim latency P90", Percentile(br.latencies_us, 90), Percentile(nr.latencies_us, 90), "us");
  row("claim latency P99", Percentile(br.latencies_us, 99), Percentile(nr.latencies_us, 99), "us");
  row("hand-out call P50", Percentile(br.call_us, 50), Percentile(nr.call_us, 50), "us");
  row("hand-out call P99", Percentile(br.call_us, 99), Percentile(nr.call_us, 99), "us");
  row("burst wall time (mean)", Mean(br.wall_ms), Mean(nr.wall_ms), "ms");
  std::printf("  %-40s %14.3f %18.3f\n", "spread: CV of keys per node after", Mean(br.spread_cv), Mean(nr.spread_cv));
  std::printf("  %-40s %13.1f%% %17.1f%%\n", "spread: largest node's share after", 100 * Mean(br.max_node_share),
              100 * Mean(nr.max_node_share));
  std::printf("  %-40s %14d %18d\n", "claims handed out", static_cast<int>(br.latencies_us.size()),
              static_cast<int>(nr.latencies_us.size()));
  std::printf("  %-40s %14d %18d\n", "duplicate hand-outs", br.duplicates, nr.duplicates);
  std::printf("\n(spread: lower CV = what is left is more even across nodes; before the burst the\n"
              " pools average a CV of %.3f. Both sides apply the same NodeSpread rule, so the\n"
              " spread matches; the latency is where they differ.)\n",
              [] {
                double s = 0;
                for (int b = 0; b < 5; ++b) {
                  BurstResult r;
                  RecordSpread(MakePool(1000 + static_cast<uint64_t>(b), 0.7), {}, &r);
                  s += r.spread_cv[0];
                }
                return s / 5;
              }());
  return (same == kClaims && br.duplicates == 0) ? 0 : 1;
}
