// dense: the fully connected layer.
//   forward   y = x·W + b
//   backward  dx = dy·Wᵀ,  dW = xᵀ·dy + l2·W,  db = Σ_rows dy
// (l2·W is the gradient of the L2 penalty (l2/2)·‖W‖², whose value sum_squares gives.)
// Shapes: x (N,I), W (I,O) (the public `weight` layout), b (O), y and dy (N,O), dx (N,I).
// Write rule: backward overwrites (=) dx, dW and db; nothing accumulates across calls.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

// b may be null (no bias).
template <class T>
void dense_forward(T* y, const T* x, const T* W, const T* b, int64_t N, int64_t I, int64_t O);

// dx and db may be null (first layer / no bias).
template <class T>
void dense_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t N,
                    int64_t I, int64_t O, T l2 = T(0));

// Σ a², accumulated in double in a fixed order.
template <class T>
double sum_squares(const T* a, int64_t n);

// db (O) = column sums of dy (N,O), summed row by row in a fixed order whatever the thread count.
template <class T>
void column_sum(T* out, const T* a, int64_t N, int64_t O);

}  // namespace gradstep::cpu
