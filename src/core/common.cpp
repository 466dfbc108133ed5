#include "core/common.hpp"

#include "core/gemm.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace gradstep::cpu {
namespace {
int cpu_count() {
#ifdef _OPENMP
  return std::max(1, omp_get_num_procs());
#else
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
#endif
}
int default_threads() {
#ifdef _OPENMP
  // Honours OMP_NUM_THREADS, bounded like set_num_threads (OMP_NUM_THREADS=100000 must not crash).
  return std::clamp(omp_get_max_threads(), 1, max_threads());
#else
  return cpu_count();
#endif
}
std::atomic<int> g_num_threads{0};
}  // namespace

int num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    init_blas_threads();
    n = default_threads();
    g_num_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

int max_threads() { return kThreadsPerCpu * cpu_count(); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  if (n > max_threads())
    throw std::invalid_argument("set_num_threads: n must be <= " + std::to_string(max_threads()) +
                                " (" + std::to_string(kThreadsPerCpu) + " per CPU, " +
                                std::to_string(cpu_count()) + " CPUs), got " + std::to_string(n));
  init_blas_threads();  // OpenBLAS stays single-threaded: gemm splits the work over OpenMP threads
  g_num_threads.store(n, std::memory_order_relaxed);
}

}  // namespace gradstep::cpu
