// Small-matrix GEMM kernels of our own, float32 and float64 (row-major, cblas semantics), for the
// shapes of the dense nets (batch <= 512, widths <= 1024) where OpenBLAS's packing of both operands on every call
// costs more than the product. Register-blocked micro-kernels, AVX-512 where the CPU has it, else
// AVX2 + FMA, chosen at run time; on other CPUs small_gemm_isa() is kNone and gemm uses OpenBLAS.
//
// Determinism: every C[i,j] is one FMA chain over k = 0..K-1 in a register, started at zero, then
// C[i,j] = alpha·acc + beta·C[i,j] (beta = 0: C is not read; a multiply and an add, not fused). Nothing depends on the tile, the
// edge, the block a caller splits the product into, the thread count or the instruction set (a
// float FMA is exactly rounded on both), so a row's result does not depend on its position in the
// batch, and the AVX2 and AVX-512 kernels give the same bits. (OpenBLAS, which splits K and the
// tiles differently for different shapes, gives none of this: a row computed alone differs from
// the same row computed in a batch in the last bits.)
#pragma once
#include <cstdint>

namespace gradstep::cpu {

enum class GemmIsa { kNone, kAvx2, kAvx512 };

// The best kernel this CPU runs (detected once), capped by the environment variable GRADSTEP_GEMM
// ("avx2": at most the AVX2 kernels; "blas" or anything else but "avx512": OpenBLAS only).
GemmIsa small_gemm_isa();

// Whether gemm should use small_gemm rather than OpenBLAS for this whole product (either float
// type). A rule on the shape alone (see gemm_kernels.cpp for the measurements behind it).
bool small_gemm_wins(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);

// C = alpha·op(A)·op(B) + beta·C with the given kernel (kNone, or one the CPU lacks, is refused:
// returns false and touches nothing). trans_a && trans_b is not implemented (returns false).
template <class T>
bool small_gemm(GemmIsa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace gradstep::cpu
