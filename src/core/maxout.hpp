// maxout: the maximum over P affine pieces (Goodfellow et al., 2013).
//   forward   z_k = x·W_k + b_k (k = 0..P-1),  y = max_k z_k,  argmax = the winning k
//   backward  dz_k = dy where argmax == k else 0,  dx = Σ_k dz_k·W_kᵀ,  dW_k = xᵀ·dz_k,
//             db_k = Σ_rows dz_k
// Ties go to the lowest k (a strict > comparison), so exactly one piece gets each gradient; a
// NaN piece wins over the ones before it and keeps the win, so NaN propagates as torch.max does.
// Shapes: x (N,I), W (P,I,O) (the public `weight` layout), b (P,O), z and dz (P,N,O) scratch,
// y, dy and argmax (N,O), dx (N,I). P is the number of pieces here (not a parameter count).
// Write rule: backward overwrites (=) dx, dW and db; nothing accumulates across calls.
// Kernels do not allocate: the caller passes the (P,N,O) scratch buffers z and dz.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

// y (N,O), argmax (N,O) int32 in [0,P), z (P,N,O) scratch (left holding the pieces' outputs),
// x (N,I), W (P,I,O), b (P,O) or null.
template <class T>
void maxout_forward(T* y, int32_t* argmax, T* z, const T* x, const T* W, const T* b, int64_t N,
                    int64_t I, int64_t O, int64_t P);

// dx (N,I) or null, dW (P,I,O), db (P,O) or null, dz (P,N,O) scratch, dy (N,O), argmax (N,O)
// from maxout_forward, x (N,I), W (P,I,O).
template <class T>
void maxout_backward(T* dx, T* dW, T* db, T* dz, const T* dy, const int32_t* argmax, const T* x,
                     const T* W, int64_t N, int64_t I, int64_t O, int64_t P);

}  // namespace gradstep::cpu
