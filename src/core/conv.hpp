// conv: 2-D (and 1-D) convolution as PyTorch's conv2d/conv1d computes it (cross-correlation),
// with stride, dilation and zero padding that may differ per side.
//   forward   y[n,o,i,j] = b[o] + Σ_{c,p,q} w[o,c,p,q] · x[n, c, i·SH - PT + p·DH, j·SW - PL + q·DW]
//             (x is 0 outside the image)
//   backward  dw[o,c,p,q] = Σ_{n,i,j} dy[n,o,i,j] · x[n,c,i·SH-PT+p·DH, j·SW-PL+q·DW] (+ l2·w),
//             db[o] = Σ_{n,i,j} dy[n,o,i,j],  dx = the adjoint of the forward map applied to dy.
// Shape letters: N images, C in-channels, H×W input, O out-channels, KH×KW kernel, OH×OW output.
// Layout is PyTorch's: x (N,C,H,W), w (O,C,KH,KW), b (O), y (N,O,OH,OW). A 1-D convolution is
// H = KH = 1, SH = DH = 1, PT = PB = 0. Asymmetric pads give PyTorch's padding="same" with an
// even kernel (the extra zero at the end: PB = PT + 1 or PR = PL + 1).
//
// How it runs (the design note of issue 8): images are cut into chunks of B images (B depends on
// the geometry only: enough images for ~kChunkCols output columns), the chunks into at most
// kConvGroups contiguous groups (depending on N only), and one thread runs a group. Per chunk the
// input is unfolded (im2col) into a (C·KH·KW, B·OH·OW) matrix in the group's own slot of the
// workspace, small enough to stay in cache, and consumed at once by one BLAS product:
//   forward  y_chunk = w (O, CKK) · col;  dx: dcol = wᵀ · dy_chunk, folded back (col2im);
//   dw: each group sums w-gradients of its chunks in chunk order (BLAS beta = 1), and the group
//   partials are added in group order. Every summation order is thus fixed by the shapes, so the
//   results are bit-identical for any thread count. A 1×1 kernel with stride 1 and no padding
//   skips the unfolding (the image already is the matrix).
// Write rule: conv_forward overwrites (=) y; conv_backward overwrites (=) dx, dw and db.
//
// Contract change against issue 8's op interface: conv_backward takes a trailing `l2` (default 0),
// as dense_backward does: dw = Σ dy·x + l2·w, seeded before the products accumulate onto it.
#pragma once
#include <cstdint>

namespace gradstep::cpu {

struct ConvGeometry {
  int64_t C, H, W;     // input channels and size
  int64_t O;           // output channels
  int64_t KH, KW;      // kernel
  int64_t SH, SW;      // stride (>= 1)
  int64_t DH, DW;      // dilation (>= 1)
  int64_t PT, PL, PB, PR;  // zero padding: top, left, bottom, right (>= 0)
  int64_t OH() const { return (H + PT + PB - DH * (KH - 1) - 1) / SH + 1; }
  int64_t OW() const { return (W + PL + PR - DW * (KW - 1) - 1) / SW + 1; }
};

// Scratch, in elements of T, that conv_forward and conv_backward need for N images (the caller
// owns it; the same size serves both).
int64_t conv_workspace_elems(const ConvGeometry& g, int64_t N);

// y (N,O,OH,OW); ws (conv_workspace_elems); x (N,C,H,W); w (O,C,KH,KW); b (O) or null.
template <class T>
void conv_forward(T* y, T* ws, const T* x, const T* w, const T* b, int64_t N,
                  const ConvGeometry& g);

// dx (N,C,H,W) or null; dw (O,C,KH,KW); db (O) or null; ws (conv_workspace_elems);
// dy (N,O,OH,OW); x (N,C,H,W); w (O,C,KH,KW).
template <class T>
void conv_backward(T* dx, T* dw, T* db, T* ws, const T* dy, const T* x, const T* w, int64_t N,
                   const ConvGeometry& g, T l2 = T(0));

// Plain references: direct loops over the formulas above, no workspace (tests compare).
template <class T>
void conv_forward_ref(T* y, const T* x, const T* w, const T* b, int64_t N, const ConvGeometry& g);

template <class T>
void conv_backward_ref(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t N,
                       const ConvGeometry& g, T l2 = T(0));

}  // namespace gradstep::cpu
