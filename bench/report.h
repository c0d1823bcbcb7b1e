// Shared by the C++ benchmarks: timing loops, the record every figure is
// reported as, and the JSON file they are written to. One record:
// {"name","n","m","threads","berth_ns_per_op","baseline_ns_per_op","ratio"},
// ratio = baseline / berth. Single-threaded use (the benchmark's main).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace berth::bench {

inline double g_min_seconds = 0.4;  // per figure and side
inline std::string g_only;          // run only figures whose name contains this

// Times `step(i)` for i = 0, 1, ... until at least min_seconds passed and at
// least min_ops ran (max_ops caps the slow baselines). Returns ns per op.
template <class F>
double Measure(F&& step, size_t min_ops = 1, size_t max_ops = SIZE_MAX) {
  using Clock = std::chrono::steady_clock;
  size_t ops = 0;
  const auto start = Clock::now();
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
  using Clock = std::chrono::steady_clock;
  double total = 0;
  size_t ops = 0;
  while (total < g_min_seconds * 1e9) {
    setup();
    const auto start = Clock::now();
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
inline std::vector<Record> g_records;

inline bool Wanted(const char* names) { return std::string(names).find(g_only) != std::string::npos; }

inline void Report(const std::string& name, size_t n, size_t m, size_t threads, double berth_ns,
                   double baseline_ns) {
  g_records.push_back({name, n, m, threads, berth_ns, baseline_ns});
  std::printf("%-28s n=%-6zu m=%-4zu threads=%zu  berth %10.1f ns/op  baseline %12.1f ns/op  x%.1f\n",
              name.c_str(), n, m, threads, berth_ns, baseline_ns, baseline_ns / berth_ns);
  std::fflush(stdout);
}

// [--out FILE] [--quick] [--only NAME-PART]; false (after printing usage) on
// anything else.
inline bool ParseArgs(int argc, char** argv, const char** out) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
      *out = argv[++i];
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      g_only = argv[++i];
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      g_min_seconds = 0.05;
    } else {
      std::fprintf(stderr, "usage: %s [--out FILE] [--quick] [--only NAME-PART]\n", argv[0]);
      return false;
    }
  }
  return true;
}

inline void WriteJson(const char* path) {
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
  std::printf("wrote %s\n", path);
}

}  // namespace berth::bench
