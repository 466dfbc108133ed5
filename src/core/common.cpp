#include "core/common.hpp"

#include "core/gemm.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
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

void ContentionGovernor::region(int64_t own_ns, int64_t wait_ns, int64_t now_ns) {
  regions_.fetch_add(1, std::memory_order_relaxed);
  waited_ns_.fetch_add(wait_ns, std::memory_order_relaxed);
  const int64_t balance = balance_.load(std::memory_order_relaxed) + (own_ns - wait_ns);
  if (balance >= kCreditNs) {
    balance_.store(kCreditNs, std::memory_order_relaxed);
    paid_off_.store(true, std::memory_order_relaxed);
    return;
  }
  if (balance >= -kDebtNs) {
    balance_.store(balance, std::memory_order_relaxed);
    return;
  }
  // The threads cost more than they saved: one thread for a while. If they paid off since the last
  // back-off, the contention is new (first back-off); if not, it is still there (twice as long).
  balance_.store(0, std::memory_order_relaxed);
  stalls_.fetch_add(1, std::memory_order_relaxed);
  stalled_ns_.fetch_add(wait_ns, std::memory_order_relaxed);
  const bool fresh = paid_off_.exchange(false, std::memory_order_relaxed);
  int64_t backoff = backoff_.load(std::memory_order_relaxed);
  backoff = fresh ? kMinBackoffNs : std::min(2 * backoff, kMaxBackoffNs);
  backoff_.store(backoff, std::memory_order_relaxed);
  solo_until_.store(now_ns + backoff, std::memory_order_relaxed);
}

ContentionGovernor& governor() {
  static ContentionGovernor g;
  return g;
}

bool governor_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("GRADSTEP_YIELD");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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
