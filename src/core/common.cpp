#include "core/common.hpp"

#include "core/gemm.hpp"

#include <atomic>
#include <thread>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace gradstep::cpu {
namespace {
int default_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();  // honours OMP_NUM_THREADS
#else
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
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

void set_num_threads(int n) {
  if (n < 1) n = 1;  // validated in Python; never abort here
  init_blas_threads();  // OpenBLAS stays single-threaded: gemm splits the work over OpenMP threads
  g_num_threads.store(n, std::memory_order_relaxed);
}

}  // namespace gradstep::cpu
