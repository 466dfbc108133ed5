// Why the gemm wrapper splits the work itself: OpenBLAS's own threading partitions a product
// differently for 1 and 2 threads, and its results then differ in the last bit (seen on
// (250,48)x(48,128) float32). gradstep promises bit-identical results for any thread count, so
// OpenBLAS always runs single-threaded, and the product is cut into blocks that depend only on the
// shape; OpenMP hands the blocks to threads. This also leaves one thread pool in the process
// (OpenMP's), so OpenBLAS's pthreads and libgomp's workers never spin against each other.
#include "core/gemm.hpp"

#include <cblas.h>

#include <algorithm>

#include "core/common.hpp"
#include "core/gemm_kernels.hpp"

namespace gradstep::cpu {
namespace {

// Products below this many multiply-adds run as one call: a block must be big enough to pay for
// the parallel region and the re-packing of the shared operand (a few microseconds).
constexpr int64_t kBlockMacs = int64_t(1) << 19;
// OpenBLAS packs the operand a block shares with the others again in every block (K x the other
// side), so more blocks cost more copying: two blocks measured fastest on 2 cores (4 or 16 blocks
// made batch-128 steps 3-45% slower). Its products are therefore cut in two where each half pays
// for itself, and into more blocks only when each still has at least kWideBlockSide rows or
// columns (re-packing then costs a few percent), so that machines with 4-64 cores use them on wide
// products. That count is a power of two (2 threads share it evenly) and depends on the shape
// alone, never on the thread count: the bits are the same on any machine.
constexpr int64_t kWideBlockSide = 256;
constexpr int64_t kMaxBlocks = 64;
constexpr int64_t kBlockAlign = 16;  // block edges on whole micro-kernel tiles

// `ours`: small_gemm_wins(...) for the whole product (not the block), so that one product never
// mixes the two implementations and a row's result does not depend on the batch around it.
inline void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                 bool ours) {
  if (ours && small_gemm(small_gemm_isa(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
    return;
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                    static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

inline void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                 int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc,
                 bool ours) {
  if (ours && small_gemm(small_gemm_isa(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
    return;
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                    static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

}  // namespace

void init_blas_threads() { scipy_openblas_set_num_threads(1); }

int64_t gemm_blocks(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K) {
  const int64_t macs = M * N * std::max<int64_t>(K, 1), side = std::max(M, N);
  if (small_gemm_wins(trans_a, trans_b, M, N, K)) {
    // Our kernels compute every element the same way in any block and copy no shared operand
    // (nt transposes only its own panels), so the product is cut into one block per thread of the
    // team, each still worth a parallel region: all the cores, without changing a bit.
    const int64_t useful = std::min<int64_t>({macs / kBlockMacs, side / kBlockAlign, kMaxBlocks});
    return std::max<int64_t>(1, std::min<int64_t>(team_size(), useful));
  }
  // OpenBLAS packs the shared operand again in every block, and its edge tiles change the bits
  // with the block's position: the count depends on the shape alone (see kWideBlockSide).
  int64_t blocks = std::min<int64_t>({macs / kBlockMacs, 2, side / kBlockAlign});
  if (blocks < 2) return 1;
  const int64_t wide = std::min<int64_t>({macs / kBlockMacs, kMaxBlocks, side / kWideBlockSide});
  while (blocks * 2 <= wide) blocks *= 2;
  return blocks;
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const bool ours = small_gemm_wins(trans_a, trans_b, M, N, K);
  // Split the longer side of C into gemm_blocks(...) blocks (see there).
  const bool split_rows = M > N;
  const int64_t side = split_rows ? M : N;
  int64_t blocks = gemm_blocks(trans_a, trans_b, M, N, K);
  if (blocks <= 1) {
    num_threads();  // makes sure OpenBLAS's pool was set to one thread
    blas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ours);
    return;
  }
  const int64_t per = ((side + blocks - 1) / blocks + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
  blocks = (side + per - 1) / per;
  parallel_for(blocks, num_threads() > 1, [&](int64_t blk) {
    const int64_t s0 = blk * per, len = std::min(side, s0 + per) - s0;
    if (split_rows) {
      // Rows s0.. of C and of op(A): A is (M,K) row-major, or (K,M) when transposed.
      const T* a = trans_a ? A + s0 : A + s0 * lda;
      blas(trans_a, trans_b, len, N, K, alpha, a, lda, B, ldb, beta, C + s0 * ldc, ldc, ours);
    } else {
      // Columns s0.. of C and of op(B): B is (K,N) row-major, or (N,K) when transposed.
      const T* b = trans_b ? B + s0 * ldb : B + s0;
      blas(trans_a, trans_b, M, len, K, alpha, A, lda, b, ldb, beta, C + s0, ldc, ours);
    }
  });
}

template <class T>
void gemm_whole(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  num_threads();  // makes sure OpenBLAS's pool was set to one thread
  blas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
       small_gemm_wins(trans_a, trans_b, M, N, K));
}

template void gemm_whole<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                const float*, int64_t, float, float*, int64_t);
template void gemm_whole<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                 int64_t, const double*, int64_t, double, double*, int64_t);
template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace gradstep::cpu
