// activation: the elementwise nonlinearities, PReLU and softmax.
//   sigmoid     y = 1/(1+e^-x)                  dx = dy·(1−y)·y
//   tanh        y = tanh x                      dx = dy·(1−y²)
//   relu        y = max(x, 0)                   dx = dy where y > 0, else 0
//   leaky_relu  y = x if x > 0 else α·x         dx = dy if x > 0 else α·dy
//   elu         y = x if x > 0 else α·(e^x−1)   dx = dy if x > 0 else dy·(y+α)
//   prelu       y = x if x > 0 else a_c·x       dx = dy if x > 0 else a_c·dy,  da_c = Σ_{x≤0} x·dy
//   softmax     y_k = e^(x_k−max x)/Σ_j e^(x_j−max x) per row      dx = y·(dy − Σ_k dy_k·y_k)
// At the kinks (x = 0) the slopes are PyTorch's: 0 for relu, α for leaky_relu, elu and prelu.
// Shapes: n elements (any shape, flattened) for the elementwise ops; x, y, dy, dx (N,F) and alpha
// (C) with C = 1 (one shared slope) or C = F (one per feature) for prelu; x, y, dy, dx (N,K) for
// softmax (over the last axis).
// Write rule: every backward overwrites (=) dx and dalpha; nothing accumulates across calls.
// Aliasing: the elementwise ops allow y == x and dx == dy (in place); prelu and softmax do not.
//
// float32 transcendentals use the vectorizable functions in `vmath` below (gcc without
// -ffast-math never vectorizes a call to std::exp); float64 uses the std:: functions.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/math/activation_math.hpp"

namespace gradstep::cpu {

namespace vmath = ::gradstep::math::vmath;

template <class T>
void sigmoid_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
// Uses the saved output y.
template <class T>
void sigmoid_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* y /*(n)*/, int64_t n);

template <class T>
void tanh_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
// Uses the saved output y.
template <class T>
void tanh_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* y /*(n)*/, int64_t n);

template <class T>
void relu_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
// Uses the saved output y: dx = y <= 0 ? 0 : dy (a select, so an infinite dy where y <= 0 gives 0).
template <class T>
void relu_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* y /*(n)*/, int64_t n);

template <class T>
void leaky_relu_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n, T alpha);
template <class T>
void leaky_relu_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* x /*(n)*/, int64_t n,
                         T alpha);

template <class T>
void elu_forward(T* y /*(n)*/, const T* x /*(n)*/, int64_t n, T alpha);
// Uses x for the branch and the saved output y for the slope α·e^x = y + α (no second exp, as
// PyTorch's in-place ELU does); its absolute error is at most about one ulp of α.
template <class T>
void elu_backward(T* dx /*(n)*/, const T* dy /*(n)*/, const T* x /*(n)*/, const T* y /*(n)*/,
                  int64_t n, T alpha);

// C = 1 (alpha[0] for every element) or C = F (alpha[f] for column f).
template <class T>
void prelu_forward(T* y /*(N,F)*/, const T* x /*(N,F)*/, const T* alpha /*(C)*/, int64_t N,
                   int64_t F, int64_t C);
// dalpha is summed in double in a fixed order (independent of the thread count).
template <class T>
void prelu_backward(T* dx /*(N,F)*/, T* dalpha /*(C)*/, const T* dy /*(N,F)*/,
                    const T* x /*(N,F)*/, const T* alpha /*(C)*/, int64_t N, int64_t F, int64_t C);

// Max-subtracted, so logits of any finite size are safe; the row sum is accumulated in double.
template <class T>
void softmax_forward(T* y /*(N,K)*/, const T* x /*(N,K)*/, int64_t N, int64_t K);
// The plain version softmax_forward is checked against (serial loops, std::exp).
template <class T>
void softmax_forward_ref(T* y /*(N,K)*/, const T* x /*(N,K)*/, int64_t N, int64_t K);
template <class T>
void softmax_backward(T* dx /*(N,K)*/, const T* dy /*(N,K)*/, const T* y /*(N,K)*/, int64_t N,
                      int64_t K);

// Elementwise e^x and e^x − 1 (float: vmath::exp_f / expm1_f; double: std::), exposed so the tests
// can measure the float functions' accuracy. y == x allowed.
template <class T>
void vexp(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);
template <class T>
void vexpm1(T* y /*(n)*/, const T* x /*(n)*/, int64_t n);

// The branch-free float32 functions (exp_f, expm1_f, tanh_f, sigmoid_f) live in
// core/math/activation_math.hpp, shared with the CUDA kernels; `vmath` here is that namespace.
}  // namespace gradstep::cpu
