// Shared pieces of the gradstep C++ core: the thread count, the OpenMP size threshold and the
// parallel-loop macro. No Python in here (bindings.cpp is the only file that knows about Python).
//
// Threads: one global count governs every OpenMP region (passed as num_threads(n), because
// omp_set_num_threads only applies to the calling thread) and OpenBLAS's own pool.
// Determinism: no float atomics and no reduction(+:) on results anywhere in the core, so every
// kernel gives bit-identical results for any thread count.
#pragma once
#include <cstdint>

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

}  // namespace gradstep::cpu

#define GS_PRAGMA(x) _Pragma(#x)
#ifdef _OPENMP
// An OpenMP parallel for over a loop of `count` independent iterations (static schedule, so
// each thread owns a fixed, disjoint slice).
#define GS_PARALLEL_FOR(count) \
  GS_PRAGMA(omp parallel for schedule(static) num_threads(::gradstep::cpu::num_threads()) if((count) >= ::gradstep::cpu::kParallelMin))
#else
#define GS_PARALLEL_FOR(count)
#endif
