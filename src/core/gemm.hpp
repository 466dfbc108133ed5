// gemm: the one wrapper through which every matrix product goes (OpenBLAS's cblas, row-major).
//   C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C
// op(A) = A^T when trans_a (A is then stored (K,M)); likewise for B. Leading dimensions are
// those of the stored, row-major matrices. Sizes must fit in int (checked by the callers' bindings).
// Results are bit-identical for any thread count: see gemm.cpp.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

// Puts OpenBLAS's own pool at one thread: gemm parallelizes with OpenMP over shape-only blocks.
void init_blas_threads();

// How many blocks gemm cuts an (M,N,K) product into now (1: one call): from the shape alone for
// OpenBLAS's products, from the shape and the threads at hand for gradstep's own kernels (whose
// bits do not depend on the blocks).
int64_t gemm_blocks(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// The same product as one single-threaded BLAS call, never split: for callers that run two
// independent products side by side on two threads (dense_backward's dx and dW).
template <class T>
void gemm_whole(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace gradstep::cpu
