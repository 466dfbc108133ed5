// pool: max and average pooling over the spatial axes of (N,C,H,W) (1-D: H = KH = 1, PT = PB = 0),
// and global average pooling over (N,C,S), as PyTorch's max_pool2d / avg_pool2d /
// adaptive_avg_pool(1) compute them (ceil_mode=False, dilation 1).
//   max       y[n,c,i,j] = max over the window of x (padding counts as -inf); argmax keeps the
//             flat index ih·W + iw of the first maximum in row-major window order (PyTorch's tie
//             rule; a NaN wins, so it propagates); dx[argmax] += dy
//   average   y = Σ_window x / (KH·KW) (padding counts as zeros, count_include_pad=True: every
//             window lies inside the padded input, so the divisor is always KH·KW);
//             dx = Σ over the windows holding a position of dy / (KH·KW)
//   global    y[n,c] = Σ_s x[n,c,s] / S;  dx[n,c,s] = dy[n,c] / S
// Shape letters: N images, C channels, H×W input, KH×KW window, SH×SW stride, OH×OW output, S the
// flattened spatial size. Pads: PT top, PL left, PB bottom, PR right.
// Planes (n,c) are independent and split across threads; within a plane the order of every sum
// is fixed, so results are bit-identical for any thread count.
// Write rule: every forward overwrites (=) y (and argmax); every backward overwrites (=) dx.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

struct PoolGeometry {
  int64_t C, H, W;         // channels and input size
  int64_t KH, KW;          // window (>= 1)
  int64_t SH, SW;          // stride (>= 1)
  int64_t PT, PL, PB, PR;  // padding (>= 0)
  int64_t OH() const { return (H + PT + PB - KH) / SH + 1; }
  int64_t OW() const { return (W + PL + PR - KW) / SW + 1; }
};

// y, argmax (N,C,OH,OW); x (N,C,H,W). A window wholly in the padding gives -inf and argmax -1.
template <class T>
void maxpool_forward(T* y, int32_t* argmax, const T* x, int64_t N, const PoolGeometry& g);

// dx (N,C,H,W); dy, argmax (N,C,OH,OW). argmax entries outside [0, H·W) are skipped.
template <class T>
void maxpool_backward(T* dx, const T* dy, const int32_t* argmax, int64_t N, const PoolGeometry& g);

// y (N,C,OH,OW); x (N,C,H,W).
template <class T>
void avgpool_forward(T* y, const T* x, int64_t N, const PoolGeometry& g);

// dx (N,C,H,W); dy (N,C,OH,OW).
template <class T>
void avgpool_backward(T* dx, const T* dy, int64_t N, const PoolGeometry& g);

// y (N,C); x (N,C,S).
template <class T>
void global_avgpool_forward(T* y, const T* x, int64_t N, int64_t C, int64_t S);

// dx (N,C,S); dy (N,C).
template <class T>
void global_avgpool_backward(T* dx, const T* dy, int64_t N, int64_t C, int64_t S);

}  // namespace gradstep::cpu
