// batchnorm: batch normalization over the rows of (N,F) (PyTorch's BatchNorm1d on 2-D input).
//   forward (training)  μ = mean_rows x,  σ² = mean_rows (x-μ)² (biased),  r = 1/√(σ²+eps),
//                       x̂ = (x-μ)·r,  y = γ·x̂ + β;
//                       running ← (1-momentum)·running + momentum·batch, with the UNBIASED
//                       variance σ²·N/(N-1) for running_var (as PyTorch does)
//   backward (training) dβ = Σ_rows dy,  dγ = Σ_rows dy·x̂,  dx = γ·r·(dy - dβ/N - x̂·dγ/N)
//   forward (eval)      y = γ·(x - running_mean)/√(running_var+eps) + β
//   backward (eval)     dx = dy·γ/√(running_var+eps),  dγ = Σ_rows dy·x̂,  dβ = Σ_rows dy
// Shapes: x, y, xhat, dy, dx (N,F); gamma, beta, mean, invstd, running_mean, running_var,
// dgamma, dbeta (F).
// Column statistics are summed over rows in row order, in double, with columns split across
// threads, so every result is bit-identical for any thread count. A constant feature gives
// σ² = 0 and r = 1/√eps: finite output and gradients.
// The spatial variants (PyTorch's BatchNorm1d on (N,C,L), BatchNorm2d on (N,C,H,W)) take x as
// (N,C,S), S the flattened spatial size: the same formulas per channel, with the statistics over
// the N·S values of a channel (summed in double, images then positions, channels split across
// threads). The running variance uses M = N·S: σ²·M/(M-1).
// Write rule: forward overwrites (=) y, xhat, mean, invstd and updates running_mean/running_var
// in place; backward overwrites (=) dx, dgamma and dbeta; nothing accumulates across calls.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

// y, xhat (N,F); mean, invstd (F) saved for backward; running_mean, running_var (F) updated in
// place; x (N,F); gamma, beta (F). N >= 2 (the unbiased variance needs it; the binding checks it):
// with N < 2 the running statistics are left unchanged.
template <class T>
void batchnorm_forward_train(T* y, T* xhat, T* mean, T* invstd, T* running_mean, T* running_var,
                             const T* x, const T* gamma, const T* beta, int64_t N, int64_t F,
                             T momentum, T eps);

// dx (N,F) or null; dgamma, dbeta (F); dy, xhat (N,F); invstd, gamma (F) (xhat and invstd as
// batchnorm_forward_train saved them).
template <class T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* xhat, const T* invstd,
                        const T* gamma, int64_t N, int64_t F);

// y (N,F); x (N,F); gamma, beta, running_mean, running_var (F).
template <class T>
void batchnorm_forward_eval(T* y, const T* x, const T* gamma, const T* beta, const T* running_mean,
                            const T* running_var, int64_t N, int64_t F, T eps);

// dx (N,F) or null; dgamma, dbeta (F); dy, x (N,F); gamma, running_mean, running_var (F).
template <class T>
void batchnorm_backward_eval(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                             const T* running_mean, const T* running_var, int64_t N, int64_t F,
                             T eps);

// ---- spatial: x, y, xhat, dy, dx (N,C,S); per-channel vectors (C) -------------------------------
// With N·S < 2 the running statistics are left unchanged (the binding refuses it in training).
template <class T>
void batchnorm_spatial_forward_train(T* y, T* xhat, T* mean, T* invstd, T* running_mean,
                                     T* running_var, const T* x, const T* gamma, const T* beta,
                                     int64_t N, int64_t C, int64_t S, T momentum, T eps);

template <class T>
void batchnorm_spatial_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* xhat,
                                const T* invstd, const T* gamma, int64_t N, int64_t C, int64_t S);

template <class T>
void batchnorm_spatial_forward_eval(T* y, const T* x, const T* gamma, const T* beta,
                                    const T* running_mean, const T* running_var, int64_t N,
                                    int64_t C, int64_t S, T eps);

template <class T>
void batchnorm_spatial_backward_eval(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x,
                                     const T* gamma, const T* running_mean, const T* running_var,
                                     int64_t N, int64_t C, int64_t S, T eps);

}  // namespace gradstep::cpu
