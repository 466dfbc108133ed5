// optim_math: the per-element arithmetic of the optimizer steps, shared by the CPU kernels
// (core/optim.cpp) and the CUDA kernel (cuda/optim.cu), with the hyperparameter constants both
// compute once per step on the host. See optim.hpp for the update rules and the rounding contract
// (torch's single-tensor path op by op; std::fma / fma exactly where torch fuses).
#pragma once
#include <cmath>

#include "core/math/hd.hpp"
#include "core/optim.hpp"

namespace gradstep::math {

using cpu::AdamHyper;
using cpu::RMSpropHyper;
using cpu::SGDHyper;

// ---- hyperparameters rounded to T once, as torch casts each Python scalar for its op ----------

template <class T>
struct SgdK {
  T wd, mom, damp1, neg_lr;  // weight_decay, momentum, 1 - dampening, -lr
  bool has_wd, has_mom, first, nesterov;
};

template <class T>
inline SgdK<T> sgd_consts(const SGDHyper& h, int64_t step) {
  return {T(h.weight_decay), T(h.momentum), T(1.0 - h.dampening), T(-h.lr),
          h.weight_decay != 0, h.momentum != 0, step <= 1, h.nesterov};
}

template <class T>
struct RmsK {
  T wd, alpha, c1, eps, mom, neg_lr;  // c1 = 1 - alpha
  bool has_wd, has_mom;
};

template <class T>
inline RmsK<T> rmsprop_consts(const RMSpropHyper& h) {
  return {T(h.weight_decay), T(h.alpha), T(1.0 - h.alpha), T(h.eps), T(h.momentum), T(-h.lr),
          h.weight_decay != 0, h.momentum > 0};
}

template <class T>
struct AdamK {
  T wd, decay, wt, wt_m1, beta2, c2, bc2s, eps, neg_ss;
  bool has_wd, decoupled, small;
};

template <class T>
inline AdamK<T> adam_consts(const AdamHyper& h, int64_t step) {
  // Host arithmetic in double, in torch's order: bias_correction1 = 1 - beta1**step,
  // step_size = lr / bias_correction1, bias_correction2_sqrt = (1 - beta2**step) ** 0.5
  // (Python's float ** is C pow, so pow(., 0.5) rather than sqrt).
  const double t = static_cast<double>(step);
  const double step_size = h.lr / (1.0 - std::pow(h.beta1, t));
  const double bc2_sqrt = std::pow(1.0 - std::pow(h.beta2, t), 0.5);
  AdamK<T> k;
  k.wd = T(h.weight_decay);
  k.decay = T(1.0 - h.lr * h.weight_decay);
  k.wt = T(1.0 - h.beta1);  // lerp weight
  // torch's lerp: w < 0.5 ? m + w(g - m) : g - (g - m)(1 - w), each one fused multiply-add.
  k.small = std::abs(k.wt) < T(0.5);
  k.wt_m1 = k.wt - T(1);
  k.beta2 = T(h.beta2);
  k.c2 = T(1.0 - h.beta2);
  k.bc2s = T(bc2_sqrt);
  k.eps = T(h.eps);
  k.neg_ss = T(-step_size);
  k.has_wd = h.weight_decay != 0;
  k.decoupled = h.decoupled;
  return k;
}

// ---- one element of each step: element i of the flat buffers (buf, sq, m, v as in the steps) ---
// Each line is one torch op of the single-tensor path; the comment names it.

template <class T>
GS_HD void sgd_element(T* w, T* buf, const T* g, int64_t i, const SgdK<T>& k) {
  using std::fma;
  T gi = g[i];
  if (k.has_wd) gi = fma(w[i], k.wd, gi);  // grad.add(param, alpha=wd)
  if (k.has_mom) {
    // first step: buf = grad.clone(); then buf.mul_(momentum).add_(grad, alpha=1-dampening)
    const T b = k.first ? gi : fma(gi, k.damp1, buf[i] * k.mom);
    buf[i] = b;
    gi = k.nesterov ? fma(b, k.mom, gi) : b;  // grad.add(buf, alpha=momentum)
  }
  w[i] = fma(gi, k.neg_lr, w[i]);  // param.add_(grad, alpha=-lr)
}

template <class T>
GS_HD void rmsprop_element(T* w, T* sq, T* buf, const T* g, int64_t i, const RmsK<T>& k) {
  using std::fma;
  using std::sqrt;
  const T wi = w[i];
  T gi = g[i];
  if (k.has_wd) gi = fma(wi, k.wd, gi);             // grad.add(param, alpha=wd)
  // square_avg.mul_(alpha).addcmul_(grad, grad, value=1-alpha)
  const T si = fma(k.c1 * gi, gi, sq[i] * k.alpha);
  sq[i] = si;
  const T avg = sqrt(si) + k.eps;                   // sq.sqrt().add_(eps)
  if (k.has_mom) {
    const T b = rounded(buf[i] * k.mom) + gi / avg;  // buf.mul_(momentum).addcdiv_(g, avg)
    buf[i] = b;
    w[i] = fma(b, k.neg_lr, wi);                    // param.add_(buf, alpha=-lr)
  } else {
    w[i] = wi + (k.neg_lr * gi) / avg;              // param.addcdiv_(g, avg, value=-lr)
  }
}

template <class T>
GS_HD void adam_element(T* w, T* m, T* v, const T* g, int64_t i, const AdamK<T>& k) {
  using std::fma;
  using std::sqrt;
  T wi = w[i], gi = g[i];
  if (k.has_wd) {
    if (k.decoupled) wi = rounded(wi * k.decay);    // param.mul_(1 - lr*wd)
    else gi = fma(wi, k.wd, gi);                    // grad.add(param, alpha=wd)
  }
  const T mi0 = m[i];
  const T diff = gi - mi0;                          // exp_avg.lerp_(grad, 1-beta1)
  const T mi = k.small ? fma(k.wt, diff, mi0) : fma(k.wt_m1, diff, gi);
  const T vi = fma(k.c2 * gi, gi, v[i] * k.beta2);  // v.mul_(beta2).addcmul_(g, g, 1-beta2)
  const T denom = sqrt(vi) / k.bc2s + k.eps;        // (v.sqrt() / bc2_sqrt).add_(eps)
  w[i] = wi + (k.neg_ss * mi) / denom;              // param.addcdiv_(m, denom, -step_size)
  m[i] = mi;
  v[i] = vi;
}

}  // namespace gradstep::math
