// norm: batch normalization over the batch axis, training mode (the CPU's core/batchnorm.cpp).
//   forward   μ = mean x, σ² = mean (x−μ)² (two passes, in double), x̂ = (x−μ)/√(σ²+ε), y = γx̂ + β;
//             running stats ← (1−m)·running + m·(μ, σ²·N/(N−1)) when N > 1
//   backward  dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/√(σ²+ε)·(dy − dβ/N − x̂·dγ/N)
// Column sums go through reduce.cuh's fixed-order chunks. Shapes: x, y, x̂, dy, dx (N,F).
// Write rule: forward overwrites y, x̂ and the stats; backward overwrites dx, dγ and dβ.
#include "cuda/ops.cuh"
#include "cuda/reduce.cuh"

namespace gradstep::cuda {
namespace {

template <class T>
__global__ void batchnorm_normalize_kernel(T* y, T* xhat, const T* x, const double* dstats,
                                           const T* gamma, const T* beta, int64_t N, int64_t F) {
  GS_GRID_STRIDE(i, N * F) {
    const int64_t f = i % F;
    const double h = (static_cast<double>(x[i]) - dstats[f]) * dstats[F + f];
    xhat[i] = static_cast<T>(h);
    y[i] = static_cast<T>(static_cast<double>(gamma[f]) * h + static_cast<double>(beta[f]));
  }
}

template <class T>
__global__ void batchnorm_dx_kernel(T* dx, const T* dy, const T* xhat, const double* sums,
                                    const T* invstd, const T* gamma, int64_t N, int64_t F) {
  const double dn = static_cast<double>(N);
  GS_GRID_STRIDE(i, N * F) {
    const int64_t f = i % F;
    const double a = static_cast<double>(gamma[f]) * static_cast<double>(invstd[f]);
    const double c1 = sums[f] / dn, c2 = sums[F + f] / dn;
    dx[i] = static_cast<T>(a * (static_cast<double>(dy[i]) - c1 - static_cast<double>(xhat[i]) * c2));
  }
}

}  // namespace

int64_t batchnorm_scratch(int64_t N, int64_t F) { return column_scratch(N, F) + 2 * F; }

template <class T>
void batchnorm_forward_train(cudaStream_t s, T* y, T* xhat, T* stats, double* dstats,
                             double* scratch, T* running_mean, T* running_var, const T* x,
                             const T* gamma, const T* beta, int64_t N, int64_t F, double momentum,
                             double eps) {
  const double dn = static_cast<double>(N);
  column_reduce(s, scratch, N, F,
                [=] __device__(int64_t r, int64_t c) { return static_cast<double>(x[r * F + c]); },
                [=] __device__(int64_t c, double v) { dstats[c] = v / dn; }, "batchnorm_forward");
  column_reduce(
      s, scratch, N, F,
      [=] __device__(int64_t r, int64_t c) {
        const double d = static_cast<double>(x[r * F + c]) - dstats[c];
        return d * d;
      },
      [=] __device__(int64_t c, double q) {
        const double m = dstats[c];
        const double r = 1.0 / sqrt(q / dn + eps);
        dstats[F + c] = r;
        stats[c] = static_cast<T>(m);
        stats[F + c] = static_cast<T>(r);
        if (N > 1) {
          running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * m);
          running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) +
                                          momentum * (q / (dn - 1.0)));
        }
      },
      "batchnorm_forward");
  batchnorm_normalize_kernel<<<grid_for(N * F), kBlock, 0, s>>>(y, xhat, x, dstats, gamma, beta, N, F);
  check_launch("batchnorm_forward");
}

template <class T>
void batchnorm_backward(cudaStream_t s, T* dx, T* dgamma, T* dbeta, double* scratch,
                        const T* dy, const T* xhat, const T* invstd, const T* gamma, int64_t N,
                        int64_t F) {
  double* sums = scratch + column_scratch(N, F);  // (2F): Σ dy, Σ dy·x̂
  column_reduce(s, scratch, N, F,
                [=] __device__(int64_t r, int64_t c) { return static_cast<double>(dy[r * F + c]); },
                [=] __device__(int64_t c, double v) {
                  sums[c] = v;
                  dbeta[c] = static_cast<T>(v);
                },
                "batchnorm_backward");
  column_reduce(s, scratch, N, F,
                [=] __device__(int64_t r, int64_t c) {
                  return static_cast<double>(dy[r * F + c]) * static_cast<double>(xhat[r * F + c]);
                },
                [=] __device__(int64_t c, double v) {
                  sums[F + c] = v;
                  dgamma[c] = static_cast<T>(v);
                },
                "batchnorm_backward");
  if (!dx) return;
  batchnorm_dx_kernel<<<grid_for(N * F), kBlock, 0, s>>>(dx, dy, xhat, sums, invstd, gamma, N, F);
  check_launch("batchnorm_backward");
}

#define GS_INSTANTIATE(T)                                                                       \
  template void batchnorm_forward_train<T>(cudaStream_t, T*, T*, T*, double*, double*, T*, T*,  \
                                           const T*, const T*, const T*, int64_t, int64_t,      \
                                           double, double);                                     \
  template void batchnorm_backward<T>(cudaStream_t, T*, T*, T*, double*, const T*, const T*,    \
                                      const T*, const T*, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cuda
