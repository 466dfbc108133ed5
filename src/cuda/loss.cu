// loss: the losses fused with their gradients (core/loss.hpp), one pass per row or element, the
// mean over the batch by reduce.cuh's fixed tree.
//   softmax_xent       p = softmax(x), L = log Σe^(x−m) − (x_y − m),  dx = (p − onehot)/N
//   softmax_xent_soft  L = −Σ t·(x − m − log Σe^(x−m)),  dx = (p·Σt − t)/N
//   mse, bce, bce_logits, nll: core/math/loss_math.hpp's terms and gradients
// The per-element math is the CPU's (core/math/loss_math.hpp; the softmax rows in double as
// loss.cpp's softmax_row). Shapes: out, dout, probs, target (N,K); labels, rows (N).
// Write rule: overwrites dout, probs, rows and *value.
#include "core/math/loss_math.hpp"
#include "cuda/ops.cuh"
#include "cuda/reduce.cuh"

namespace gradstep::cuda {
namespace {

// One warp per row: m = max x, s = Σ e^(x−m) in double, p = T(e/s); returns log s and m.
template <class T>
__device__ void softmax_row(T* p, const T* x, int64_t K, int lane, double& m, double& log_s) {
  T mx = x[0];
  for (int64_t k = lane; k < K; k += 32) mx = x[k] > mx ? x[k] : mx;
  m = static_cast<double>(warp_max(mx));
  double s = 0.0;
  for (int64_t k = lane; k < K; k += 32) s += exp(static_cast<double>(x[k]) - m);
  s = warp_sum(s);
  for (int64_t k = lane; k < K; k += 32) p[k] = static_cast<T>(exp(static_cast<double>(x[k]) - m) / s);
  log_s = log(s);
}

template <class T>
__global__ void softmax_xent_kernel(double* rows, T* dout, T* probs, const T* out,
                                    const int64_t* labels, const T* target, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (r >= N) return;
  const T* x = out + r * K;
  T* p = probs + r * K;
  T* d = dout + r * K;
  double m, log_s;
  softmax_row(p, x, K, lane, m, log_s);
  __syncwarp();
  const double nd = static_cast<double>(N);
  if (labels) {
    const int64_t y = labels[r];
    if (y < 0 || y >= K) {  // device-resident labels are not checked on the host: never read past
      for (int64_t k = lane; k < K; k += 32) d[k] = static_cast<T>(NAN);
      if (lane == 0) rows[r] = NAN;
      return;
    }
    for (int64_t k = lane; k < K; k += 32) {
      const double pk = static_cast<double>(p[k]);
      d[k] = static_cast<T>(k == y ? (pk - 1.0) / nd : pk / nd);
    }
    if (lane == 0) rows[r] = log_s - (static_cast<double>(x[y]) - m);
  } else {
    const T* t = target + r * K;
    double acc = 0.0, tsum = 0.0;
    for (int64_t k = lane; k < K; k += 32) {
      const double tk = static_cast<double>(t[k]);
      acc += tk * ((static_cast<double>(x[k]) - m) - log_s);
      tsum += tk;
    }
    acc = warp_sum(acc);
    tsum = warp_sum(tsum);
    for (int64_t k = lane; k < K; k += 32)
      d[k] = static_cast<T>((static_cast<double>(p[k]) * tsum - static_cast<double>(t[k])) / nd);
    if (lane == 0) rows[r] = -acc;
  }
}

// Elementwise losses: rows[i] = the term of element i, dout[i] its gradient.
template <class T>
__global__ void elementwise_loss_kernel(Loss kind, double* terms, T* dout, const T* out,
                                        const T* target, int64_t n, double eps) {
  const double nd = static_cast<double>(n);
  GS_GRID_STRIDE(i, n) {
    const double o = static_cast<double>(out[i]), t = static_cast<double>(target[i]);
    switch (kind) {
      case Loss::kMSE:
        terms[i] = math::mse_term(o, t);
        dout[i] = static_cast<T>(math::mse_grad(o, t, 2.0 / nd));
        break;
      case Loss::kBCE:
        terms[i] = math::bce_term(o, t);
        dout[i] = static_cast<T>(math::bce_grad(o, t, eps, nd));
        break;
      default:  // kBCELogits
        terms[i] = math::bce_logits_term(o, t);
        dout[i] = static_cast<T>(math::bce_logits_grad(o, t, nd));
        break;
    }
  }
}

template <class T>
__global__ void nll_kernel(double* rows, T* dout, const T* out, const int64_t* labels, int64_t N,
                           int64_t K) {
  const double nd = static_cast<double>(N);
  GS_GRID_STRIDE(i, N * K) {
    const int64_t r = i / K, k = i % K;
    const int64_t y = labels[r];
    if (y < 0 || y >= K) {  // as in softmax_xent_kernel
      dout[i] = static_cast<T>(NAN);
      if (k == 0) rows[r] = NAN;
      continue;
    }
    const double p = static_cast<double>(out[r * K + y]);
    dout[i] = k == y ? static_cast<T>(math::nll_grad(p, nd)) : T(0);
    if (k == 0) rows[r] = math::nll_term(p);
  }
}

__global__ void finalize_kernel(double* value, const double* loss, const double* penalty, int count) {
  double p = 0.0;
  for (int i = 0; i < count; ++i) p += penalty[i];
  *value = *loss + p;
}

}  // namespace

template <class T>
void loss_forward_backward(cudaStream_t s, Loss kind, double* value, T* dout, T* probs,
                           double* rows, const T* out, const int64_t* labels, const T* target,
                           int64_t N, int64_t K) {
  int64_t terms = N;
  double sign = 1.0;
  switch (kind) {
    case Loss::kSoftmaxXent:
    case Loss::kSoftmaxXentSoft:
      softmax_xent_kernel<<<grid_for(N * 32), kBlock, 0, s>>>(
          rows, dout, probs, out, kind == Loss::kSoftmaxXent ? labels : nullptr, target, N, K);
      break;
    case Loss::kNLL:
      nll_kernel<<<grid_for(N * K), kBlock, 0, s>>>(rows, dout, out, labels, N, K);
      sign = -1.0;
      break;
    default:
      terms = N * K;
      elementwise_loss_kernel<<<grid_for(N * K), kBlock, 0, s>>>(
          kind, rows, dout, out, target, N * K, static_cast<double>(static_cast<T>(1e-12)));
      break;
  }
  check_launch("loss");
  // The sum divided by the count (not times its inverse), as the CPU's mean.
  const double count = static_cast<double>(terms);
  block_reduce(s, terms, [=] __device__(int64_t i) { return rows[i]; },
               [=] __device__(double v) { *value = (sign * v) / count; }, "loss");
}

void finalize_value(cudaStream_t s, double* value, const double* loss, const double* penalty,
                    int count) {
  finalize_kernel<<<1, 1, 0, s>>>(value, loss, penalty, count);
  check_launch("finalize_value");
}

template void loss_forward_backward<float>(cudaStream_t, Loss, double*, float*, float*, double*,
                                           const float*, const int64_t*, const float*, int64_t,
                                           int64_t);
template void loss_forward_backward<double>(cudaStream_t, Loss, double*, double*, double*,
                                            double*, const double*, const int64_t*,
                                            const double*, int64_t, int64_t);

}  // namespace gradstep::cuda
