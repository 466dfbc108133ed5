// optim: optimizer steps over flat buffers (SGD with momentum / Nesterov, RMSprop, Adam, AdamW).
//   SGD      g' = g + λw;  b = g' (step 1) | μb + (1−τ)g';  w −= lr·(nesterov ? g' + μb : b)
//   RMSprop  g' = g + λw;  s = αs + (1−α)g'²;  a = √s + ε;  w −= lr·g'/a
//            (with momentum: b = μb + g'/a, w −= lr·b)
//   Adam     g' = g + λw (AdamW: w ·= 1 − lr·λ instead);  m = lerp(m, g', 1−β₁);
//            v = β₂v + (1−β₂)g'²;  w −= (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε)
// (No derivatives here: these consume the gradients the backward passes wrote.)
// Shapes: every buffer is a flat run of P elements (one parameter, or a whole arena with its zero
// padding, which every rule keeps at zero as long as ε > 0 for RMSprop and Adam).
// Write rule: a step updates w and its state buffers in place; g is only read.
//
// Numerics follow torch.optim's single-tensor (foreach=False) CPU path operation by operation:
// hyperparameters are rounded to T the way torch casts a Python scalar, each torch op rounds once,
// and where torch's AVX2/AVX512 kernels fuse a multiply-add (add(alpha=), addcmul, lerp) we use
// std::fma. With a correctly rounded sqrt in both, the results are bit-identical to those torch
// builds' in float32 and float64. torch's own CPU sqrt (MKL's, in the wheel tested) can be one ulp
// off, so against stock torch RMSprop and Adam agree to rounding only; SGD (no sqrt) is
// bit-identical. Bias corrections are computed once per call, on the host, before the loop.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

struct SGDHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
};

struct RMSpropHyper {
  double lr, alpha, eps, momentum, weight_decay;
};

struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;  // true = AdamW (decay applied to w, not added to g)
};

// w (P) updated; momentum_buf (P) updated, required when h.momentum != 0 and may be null otherwise
// (a null buffer with momentum != 0 leaves everything untouched); g (P) read.
// step: 1-based index of this step; step 1 initializes the momentum buffer with g' as torch does.
template <class T>
void sgd_step(T* w, T* momentum_buf, const T* g, int64_t P, const SGDHyper& h, int64_t step);

// w (P), square_avg (P) updated; momentum_buf (P) as for sgd_step (required when momentum != 0);
// g (P) read. step is accepted for symmetry; torch's RMSprop (centered=False) does not use it.
template <class T>
void rmsprop_step(T* w, T* square_avg, T* momentum_buf, const T* g, int64_t P,
                  const RMSpropHyper& h, int64_t step);

// w (P), m (P) first moment, v (P) second moment updated; g (P) read. step >= 1 (step < 1 is a
// no-op).
template <class T>
void adam_step(T* w, T* m, T* v, const T* g, int64_t P, const AdamHyper& h, int64_t step);

// Plain serial references of the three steps: one scalar loop with the same rounding sequence.
// The steps above run a SIMD version (AVX + FMA, chosen at run time) where the CPU has one, in
// parallel; tests check that both give bit-identical results.
template <class T>
void sgd_step_ref(T* w, T* momentum_buf, const T* g, int64_t P, const SGDHyper& h, int64_t step);
template <class T>
void rmsprop_step_ref(T* w, T* square_avg, T* momentum_buf, const T* g, int64_t P,
                      const RMSpropHyper& h, int64_t step);
template <class T>
void adam_step_ref(T* w, T* m, T* v, const T* g, int64_t P, const AdamHyper& h, int64_t step);

// Whether the steps use the AVX + FMA path on this CPU.
bool optim_has_simd();

}  // namespace gradstep::cpu
