// conv: the Conv1D/Conv2D op (core/conv.hpp) on the GPU as im2col + cuBLAS GEMMs (the GEMMs are
// the network's; this file has the unfold/fold and bias kernels).
//   im2col   col (N, C·KH·KW, OH·OW): col[n, (c,kh,kw), (i,j)] = x[n, c, i·SH-PT+kh·DH, j·SW-PL+kw·DW]
//            or 0 in the padding
//   col2im   dx[n, c, h, w] = Σ over (kh, kw) in order of the dcol entries that unfold to (h, w)
//            (a gather: no atomics, a fixed order)
//   bias     y[n, o, :] = b[o];  db[o] = Σ_n Σ_l dy[n, o, l] in double, in order
// A 1-D conv is a 2-D one of height 1. Write rule: every function overwrites its outputs.
#include "cuda/ops.cuh"

namespace gradstep::cuda {
namespace {

template <class T>
__global__ void im2col_kernel(T* col, const T* x, int64_t total, ConvShape g, int64_t OH, int64_t OW) {
  GS_GRID_STRIDE(e, total) {
    const int64_t L = OH * OW, R = g.C * g.KH * g.KW;
    const int64_t n = e / (R * L), r = (e / L) % R, l = e % L;
    const int64_t c = r / (g.KH * g.KW), kh = (r / g.KW) % g.KH, kw = r % g.KW;
    const int64_t ih = (l / OW) * g.SH - g.PT + kh * g.DH, iw = (l % OW) * g.SW - g.PL + kw * g.DW;
    col[e] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? x[((n * g.C + c) * g.H + ih) * g.W + iw] : T(0);
  }
}

template <class T>
__global__ void col2im_kernel(T* dx, const T* dcol, int64_t total, ConvShape g, int64_t OH, int64_t OW) {
  GS_GRID_STRIDE(e, total) {
    const int64_t L = OH * OW, R = g.C * g.KH * g.KW;
    const int64_t n = e / (g.C * g.H * g.W), c = (e / (g.H * g.W)) % g.C;
    const int64_t h = (e / g.W) % g.H, w = e % g.W;
    T acc = T(0);
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t ti = h + g.PT - kh * g.DH;  // = i·SH
      if (ti < 0 || ti % g.SH != 0 || ti / g.SH >= OH) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t tj = w + g.PL - kw * g.DW;
        if (tj < 0 || tj % g.SW != 0 || tj / g.SW >= OW) continue;
        const int64_t r = (c * g.KH + kh) * g.KW + kw, l = (ti / g.SH) * OW + tj / g.SW;
        acc += dcol[(n * R + r) * L + l];
      }
    }
    dx[e] = acc;
  }
}

template <class T>
__global__ void fill_planes_kernel(T* y, const T* b, int64_t total, int64_t O, int64_t L) {
  GS_GRID_STRIDE(e, total) { y[e] = b[(e / L) % O]; }
}

template <class T>
__global__ void plane_sum_kernel(T* db, const T* dy, int64_t N, int64_t O, int64_t L) {
  GS_GRID_STRIDE(o, O) {
    double s = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) s += dy[(n * O + o) * L + l];
    db[o] = static_cast<T>(s);
  }
}

}  // namespace

template <class T>
void conv_im2col(cudaStream_t s, T* col, const T* x, int64_t N, const ConvShape& g) {
  const int64_t total = N * g.C * g.KH * g.KW * g.OH() * g.OW();
  if (total <= 0) return;
  im2col_kernel<<<grid_for(total), kBlock, 0, s>>>(col, x, total, g, g.OH(), g.OW());
  check_launch("conv_im2col");
}

template <class T>
void conv_col2im(cudaStream_t s, T* dx, const T* dcol, int64_t N, const ConvShape& g) {
  const int64_t total = N * g.C * g.H * g.W;
  if (total <= 0) return;
  col2im_kernel<<<grid_for(total), kBlock, 0, s>>>(dx, dcol, total, g, g.OH(), g.OW());
  check_launch("conv_col2im");
}

template <class T>
void conv_fill_bias(cudaStream_t s, T* y, const T* b, int64_t N, int64_t O, int64_t L) {
  if (N * O * L <= 0) return;
  fill_planes_kernel<<<grid_for(N * O * L), kBlock, 0, s>>>(y, b, N * O * L, O, L);
  check_launch("conv_fill_bias");
}

template <class T>
void conv_bias_grad(cudaStream_t s, T* db, const T* dy, int64_t N, int64_t O, int64_t L) {
  if (O <= 0) return;
  plane_sum_kernel<<<grid_for(O), kBlock, 0, s>>>(db, dy, N, O, L);
  check_launch("conv_bias_grad");
}

#define GS_INSTANTIATE(T)                                                                     \
  template void conv_im2col<T>(cudaStream_t, T*, const T*, int64_t, const ConvShape&);        \
  template void conv_col2im<T>(cudaStream_t, T*, const T*, int64_t, const ConvShape&);        \
  template void conv_fill_bias<T>(cudaStream_t, T*, const T*, int64_t, int64_t, int64_t);     \
  template void conv_bias_grad<T>(cudaStream_t, T*, const T*, int64_t, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cuda
