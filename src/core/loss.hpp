// loss: the mean losses and their gradients with respect to the prediction, PyTorch's numerics.
//   mse          forward  L = (1/n) Σ (p - t)²                     backward  dp = 2 (p - t) / n
//   bce          forward  L = -(1/n) Σ [t·max(log p, -100) + (1-t)·max(log1p(-p), -100)]
//                backward dp = (p - t) / max(p (1-p), ε) / n,  ε = T(1e-12)   (torch's clamps)
//   bce_logits   forward  L = (1/n) Σ [max(x, 0) - t·x + log1p(e^-|x|)]
//                backward dx = (σ(x) - t) / n
//   softmax_xent forward  L = (1/N) Σ_n [lse(x_n) - x_{n,y_n}],
//                         lse(x) = m + log Σ_k e^(x_k - m),  m = max_k x_k
//                backward dx = (softmax(x) - onehot(y)) / N
//   ..._soft     forward  L = -(1/N) Σ_n Σ_k t_nk (x_nk - lse(x_n))
//                backward dx = (softmax(x)·Σ_k t_nk - t) / N
//   nll          forward  L = -(1/N) Σ_n max(log p_{n,y_n}, -100)
//                backward dp = -1 / (N p) at the label where log p >= -100, else 0; 0 off the label
// Shapes: n elements of any shape (p, t, x flat); N rows, K classes for the row-wise losses;
// labels (N) int64 in [0, K) (the caller checks the range: kernels index with them unchecked).
// Sample weights (optional, every kernel): w (N) per-sample weights in double, null = all 1. The
// value becomes (1/n) Σ w_{sample(i)}·term_i (Keras's sum_over_batch_size: Σ w·loss / N, not
// / Σ w) and the gradient is each sample's gradient times its weight; with w null the bits are
// the unweighted ones. The elementwise losses take row = elements per sample (sample(i) = i / row),
// so a sample's loss is the mean over its row, as Keras's per-sample loss is.
// Forwards return the mean as double; every per-element term is computed in double and the sum is
// accumulated in double over fixed chunks (bounds depend only on n), so the result is the same for
// any thread count. Write rule: backward overwrites (=) its gradient, with the 1/n (1/N) folded in.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

// pred, target, dpred: (n)
template <class T>
double mse_forward(const T* pred, const T* target, int64_t n,
                     const double* w = nullptr, int64_t row = 1);
template <class T>
void mse_backward(T* dpred, const T* pred, const T* target, int64_t n,
                  const double* w = nullptr, int64_t row = 1);

// prob (n) in [0, 1], target (n) in [0, 1], dprob (n). Matches torch.nn.functional.
// binary_cross_entropy: log clamped at -100 (p = 0 or 1 gives a finite loss) and the backward's
// denominator clamped at T(1e-12) (finite gradient at p = 0 or 1).
template <class T>
double bce_forward(const T* prob, const T* target, int64_t n,
                     const double* w = nullptr, int64_t row = 1);
template <class T>
void bce_backward(T* dprob, const T* prob, const T* target, int64_t n,
                  const double* w = nullptr, int64_t row = 1);

// logits (n), target (n) in [0, 1], dlogits (n). Fused sigmoid + BCE (torch's
// binary_cross_entropy_with_logits): exact for any finite logit, ±1000 included.
template <class T>
double bce_logits_forward(const T* logits, const T* target, int64_t n,
                     const double* w = nullptr, int64_t row = 1);
template <class T>
void bce_logits_backward(T* dlogits, const T* logits, const T* target, int64_t n,
                  const double* w = nullptr, int64_t row = 1);

// probs (N,K) is written by forward (the softmax) and read by backward; logits (N,K), not aliased
// by probs; labels (N) int64 in [0,K) (checked before); dlogits (N,K) may alias probs (in place).
template <class T>
double softmax_xent_forward(T* probs, const T* logits, const int64_t* labels, int64_t N, int64_t K,
                  const double* w = nullptr);
template <class T>
void softmax_xent_backward(T* dlogits, const T* probs, const int64_t* labels, int64_t N, int64_t K,
                  const double* w = nullptr);

// Soft labels: target (N,K) class probabilities (torch's cross_entropy with probabilities; rows are
// not required to sum to 1, and the gradient is exact for the formula above either way).
// probs (N,K) written by forward (not aliasing logits); dlogits (N,K) may alias probs (in place).
template <class T>
double softmax_xent_soft_forward(T* probs, const T* logits, const T* target, int64_t N, int64_t K,
                  const double* w = nullptr);
template <class T>
void softmax_xent_soft_backward(T* dlogits, const T* probs, const T* target, int64_t N, int64_t K,
                  const double* w = nullptr);

// prob (N,K) probabilities (a Softmax layer's output), labels (N) int64 in [0,K) (checked before),
// dprob (N,K). Equals torch's F.nll_loss(torch.log(p).clamp(min=-100), y), value and gradient,
// except at p = 0 exactly, where torch's gradient is 0·inf = NaN and this one is 0 (the derivative
// of the clamped, locally constant loss).
template <class T>
double nll_forward(const T* prob, const int64_t* labels, int64_t N, int64_t K,
                  const double* w = nullptr);
template <class T>
void nll_backward(T* dprob, const T* prob, const int64_t* labels, int64_t N, int64_t K,
                  const double* w = nullptr);

}  // namespace gradstep::cpu
