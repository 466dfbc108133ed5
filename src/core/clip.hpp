// clip: gradient clipping over a flat gradient buffer, before the optimizer's update.
//   by value  g = clamp(g, -v, v)                                  (torch's clip_grad_value_)
//   by norm   ‖g‖ = √(Σ g²) over the whole buffer (all parameters: one global norm);
//             c = min(1, max_norm / (‖g‖ + 1e-6));  g ·= c        (torch's clip_grad_norm_)
// (No derivatives: these rewrite gradients that the backward passes wrote.)
// Shapes: g is a flat run of P elements (one parameter, or a whole arena with its zero padding,
// which contributes nothing to the norm and stays zero).
// Write rule: g is rewritten in place, as torch's clip_*_ functions do.
//
// Numerics: the squares are summed in double over fixed chunks whose bounds depend on P only,
// added in chunk order, so the norm is the same for any thread count. √ of the double sum is
// rounded once to T; the coefficient follows torch's ops in T: (1 / (‖g‖ + T(1e-6))) · T(max_norm)
// (Python's `max_norm / tensor` is reciprocal-then-multiply), clamped at 1, then one multiply per
// element. torch sums each tensor's squares in double, rounds each tensor's norm to T and takes
// the norm of those norms, so against torch the norm agrees to rounding (not always to the bit).
// A NaN or inf gradient makes the norm NaN/inf and the coefficient NaN/0, as in torch.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

// Σ g[i]² for i in [0, P), in double, the same for any thread count.
template <class T>
double grad_sq_sum(const T* g, int64_t P);

// The clipping coefficient min(1, max_norm / (√sq_sum + 1e-6)) in T, as above.
template <class T>
T clip_coef(double sq_sum, double max_norm);

// g ·= c elementwise (skipped when c == 1: multiplying by 1 changes no bit).
template <class T>
void scale_grads(T* g, int64_t P, T c);

// g = clamp(g, -v, v) elementwise (NaN stays NaN), v > 0.
template <class T>
void clip_grad_value(T* g, int64_t P, double v);

// The whole norm clip over one buffer: returns the norm before clipping (double).
template <class T>
double clip_grad_norm(T* g, int64_t P, double max_norm);

// What an optimizer step clips with: 0 = off. Both may be set: value first, then the norm.
struct ClipArgs {
  double clipnorm = 0.0, clipvalue = 0.0;
};

// Applies `c` to one flat gradient buffer (the fused step's update does this before the rule).
template <class T>
void clip_grads(T* g, int64_t P, const ClipArgs& c);

}  // namespace gradstep::cpu
