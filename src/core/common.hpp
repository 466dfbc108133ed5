// Shared pieces of the gradstep C++ core: the thread count, the OpenMP size threshold and the
// parallel loop. No Python in here (bindings.cpp is the only file that knows about Python).
//
// Threads: one global count governs every OpenMP region (passed as num_threads(n), because
// omp_set_num_threads only applies to the calling thread) and OpenBLAS's own pool.
// Determinism: no float atomics and no reduction(+:) on results anywhere in the core, so every
// kernel gives bit-identical results for any thread count.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace gradstep::cpu {

// Elementwise loops run on one thread below this many elements: a parallel region costs a few
// microseconds, more than a 32k-element pass over data in cache takes.
constexpr int64_t kParallelMin = 1 << 15;

int num_threads();
// The most threads set_num_threads accepts: kThreadsPerCpu per CPU. Far more threads than cores
// only slows the kernels down, and tens of thousands make thread creation fail inside OpenMP
// (libgomp aborts the process, or a kernel crashes on a team it could not start).
constexpr int kThreadsPerCpu = 8;
int max_threads();
// 1 <= n <= max_threads(), else std::invalid_argument. OpenBLAS runs inside gemm's OpenMP blocks.
void set_num_threads(int n);

// ---- Threads that step aside when other processes want the cores -------------------------------
// A parallel region ends when its last thread arrives. When other processes compete for the cores,
// a worker that lost its core holds the region up for a whole scheduler slice (milliseconds, where
// the region's work takes microseconds): two threads then ran 5-10x slower than one (issue 13).
// So every region measures how long its starting thread waited for the others, to start and after
// finishing its own share. The second thread paid off in a region when that wait was shorter than
// the share (what one thread would have spent on the other half); the governor keeps the balance of
// these gains and losses (capped, so that old gains do not hide new contention). When it falls
// below -kDebtNs, one big stall or a run of small ones, every region runs on one thread for a
// back-off time, which doubles while each retry meets the contention again (up to kMaxBackoffNs)
// and starts over at kMinBackoffNs once the threads paid off again (the balance reached its cap).
// Which thread runs a block never changes what it computes, so the results stay bit-identical;
// only the speed adapts.
class ContentionGovernor {
 public:
  // Measured with _core._thread_governor() on the 2-core dev VM: quiet, the waits averaged 3-9 µs
  // a region; next to 2 busy processes one stalled region waited 1.7-4 ms.
  static constexpr int64_t kDebtNs = 200'000;           // far above a quiet machine's waits
  static constexpr int64_t kCreditNs = 500'000;         // the balance's cap
  static constexpr int64_t kMinBackoffNs = 20'000'000;  // a retry's stall: < 10-20% of this
  static constexpr int64_t kMaxBackoffNs = 1'000'000'000;
  // After a region that ran with more than one thread: own_ns from its start until the starting
  // thread finished its share, wait_ns from then until the last thread arrived.
  void region(int64_t own_ns, int64_t wait_ns, int64_t now_ns);
  // Threads a region started at now_ns may use, of `threads`.
  int team(int threads, int64_t now_ns) const {
    return now_ns < solo_until_.load(std::memory_order_relaxed) ? 1 : threads;
  }
  int64_t backoff_ns() const { return backoff_.load(std::memory_order_relaxed); }
  int64_t stalls() const { return stalls_.load(std::memory_order_relaxed); }  // back-offs begun
  // The waits of the regions that began back-offs.
  int64_t stalled_ns() const { return stalled_ns_.load(std::memory_order_relaxed); }
  int64_t regions() const { return regions_.load(std::memory_order_relaxed); }
  int64_t waited_ns() const { return waited_ns_.load(std::memory_order_relaxed); }  // all regions

 private:
  // Relaxed atomics: callers on several Python threads may race on them; a lost update only
  // changes a back-off time, never a result.
  std::atomic<int64_t> balance_{0}, solo_until_{0}, backoff_{kMinBackoffNs}, stalls_{0},
      stalled_ns_{0}, regions_{0}, waited_ns_{0};
  std::atomic<bool> paid_off_{true};
};

// The process's governor (set_num_threads leaves it alone; GRADSTEP_YIELD=0 turns it off).
ContentionGovernor& governor();
bool governor_enabled();
int64_t now_ns();  // steady clock

// Threads the next parallel region gets: num_threads(), or 1 while the governor says so.
inline int team_size() {
  const int n = num_threads();
  return n > 1 && governor_enabled() ? governor().team(n, now_ns()) : n;
}

// body(i) for i in [0, n): contiguous slices, one per thread of the team (static schedule), when
// worth_threads; else in order on the calling thread. A body taking (i, slot) also gets the index
// of the thread running it, 0 <= slot < min(n, num_threads()), for per-thread scratch. Iterations
// must be independent (each writes its own outputs), so the result is the same for any team.
template <class Body>
void parallel_for(int64_t n, bool worth_threads, Body&& body) {
  auto run = [&](int64_t i, int slot) {
    if constexpr (std::is_invocable_v<Body&, int64_t, int>) body(i, slot);
    else body(i);
  };
#ifdef _OPENMP
  const int team = worth_threads && n > 1 ? static_cast<int>(std::min<int64_t>(team_size(), n)) : 1;
  if (team > 1 && !omp_in_parallel()) {
    // The starting thread can wait twice: to enter the region (libgomp first waits until every
    // worker of the previous region is back in its pool) and, after its own share, for the others.
    const int64_t t0 = now_ns();
    int64_t own_start = t0, own_end = t0;
#pragma omp parallel num_threads(team)
    {
      const int slot = omp_get_thread_num();
      if (slot == 0) own_start = now_ns();
#pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < n; ++i) run(i, slot);
      if (slot == 0) own_end = now_ns();
    }
    const int64_t t1 = now_ns();
    if (governor_enabled())
      governor().region(own_end - own_start, (own_start - t0) + (t1 - own_end), t1);
    return;
  }
#else
  (void)worth_threads;
#endif
  for (int64_t i = 0; i < n; ++i) run(i, 0);
}

}  // namespace gradstep::cpu
