// Shared helpers of the microbenchmarks: seeded inputs and throughput counters.
#pragma once
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/common.hpp"

namespace gsbench {

template <class T>
std::vector<T> randn(int64_t n, uint32_t seed = 0, T scale = T(1)) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(dist(gen)) * scale;
  return v;
}

// Threads from the benchmark's second argument (default 1), as gs.set_num_threads would.
inline void set_threads(benchmark::State& state, int arg_index) {
  gradstep::cpu::set_num_threads(state.range(arg_index) > 0 ? static_cast<int>(state.range(arg_index)) : 1);
}

inline void flops(benchmark::State& state, double per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(per_iter * 1e-9 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

inline void bytes(benchmark::State& state, double per_iter) {
  state.counters["GB/s"] = benchmark::Counter(per_iter * 1e-9 * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate);
}

}  // namespace gsbench
