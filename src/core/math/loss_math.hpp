// loss_math: the per-element (per-row for softmax) arithmetic of the losses, in double, shared by
// the CPU kernels (core/loss.cpp) and the CUDA kernels (cuda/loss.cu). The reductions around them
// differ (fixed-order chunks on the CPU, fixed-order trees on the GPU), so loss values agree to
// rounding; the gradients are per-element and agree to the platforms' exp/log.
// See loss.hpp for the math.
#pragma once
#include <cmath>

#include "core/math/hd.hpp"

namespace gradstep::math {

constexpr double kLogClamp = -100.0;  // torch's clamp of log in binary_cross_entropy

GS_HD double mse_term(double p, double t) {
  const double d = p - t;
  return d * d;
}
GS_HD double mse_grad(double p, double t, double scale /* 2/n */) { return scale * (p - t); }

// Clamp each log before multiplying by its weight, as torch does: 0·(-inf) would be NaN. The log
// goes first in fmax-like order so that a NaN probability stays NaN.
GS_HD double clamped_log(double v) {
  const double l = v;
  return l > kLogClamp || l != l ? l : kLogClamp;
}
GS_HD double bce_term(double p, double t) {
  return (t - 1.0) * clamped_log(std::log1p(-p)) - t * clamped_log(std::log(p));
}
// eps: torch's epsilon as a scalar_t (float32 clamps at float(1e-12)).
GS_HD double bce_grad(double p, double t, double eps, double n) {
  const double q = (1.0 - p) * p;
  return (p - t) / (q > eps || q != q ? q : eps) / n;
}

// torch's form (1-t)·x - logsigmoid(x) with logsigmoid(x) = min(x,0) - log1p(e^-|x|): the exp
// never overflows, and for |x| = 1000 the log1p term is exactly 0.
GS_HD double bce_logits_term(double x, double t) {
  return (1.0 - t) * x - (x < 0.0 ? x : 0.0) + std::log1p(std::exp(-std::fabs(x)));
}
GS_HD double bce_logits_grad(double x, double t, double n) {
  const double e = std::exp(-std::fabs(x));  // in (0, 1]: both branches are stable
  const double sig = x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  return (sig - t) / n;
}

// NLL on probabilities: the clamped log-likelihood of one row's label, and its gradient. Where the
// clamp is active the loss is flat: gradient 0 (also at p = 0, where -1/p would be -inf). `!(<)`
// lets a NaN probability through, so NaN propagates.
GS_HD double nll_term(double p) { return clamped_log(std::log(p)); }
GS_HD double nll_grad(double p, double n) {
  return !(std::log(p) < kLogClamp) ? -1.0 / (n * p) : 0.0;
}

}  // namespace gradstep::math
