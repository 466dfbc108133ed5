// dropout: inverted dropout with a counter-based mask.
//   forward   keep_i = u_i >= p,  mask_i = keep_i ? 1/(1-p) : 0,  y = x·mask
//   backward  dx = dy·mask
// u_i in [0,1) is the top 53 bits of the i-th output of a SplitMix64 stream seeded with `seed`,
// computed from (seed, i) alone: the mask is bit-identical for any thread count, and the same
// seed gives the same mask. Each element is kept with probability 1 - p (to 2⁻⁵³).
// Shapes: x, y, mask, dy, dx hold n elements (any shape, flattened in C order).
// Write rule: forward overwrites (=) y and mask; backward overwrites (=) dx.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

// y (n), mask (n) (0 or 1/(1-p) in T), x (n); 0 <= p < 1 (checked by the binding).
template <class T>
void dropout_forward(T* y, T* mask, const T* x, int64_t n, T p, uint64_t seed);

// dx (n), dy (n), mask (n) from dropout_forward.
template <class T>
void dropout_backward(T* dx, const T* dy, const T* mask, int64_t n);

}  // namespace gradstep::cpu
