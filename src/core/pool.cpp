#include "core/pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/common.hpp"
#include "core/op.hpp"

namespace gradstep::cpu {
namespace {

// The window of output (i, j) clipped to the image: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
};

inline Window window(const PoolGeometry& g, int64_t i, int64_t j) {
  const int64_t hs = i * g.SH - g.PT, ws = j * g.SW - g.PL;
  return {std::max<int64_t>(hs, 0), std::min(hs + g.KH, g.H), std::max<int64_t>(ws, 0),
          std::min(ws + g.KW, g.W)};
}

// body(plane) for the N·C planes, split across threads when the work is large enough.
template <class Body>
void for_planes(int64_t planes, int64_t work, Body&& body) {
  (void)work;
  parallel_for(planes, work >= kParallelMin, [&](int64_t pl) { body(pl); });
}

}  // namespace

// take ? a : b without a branch, through the bits: GCC turns a float `?:` inside these scans
// into a compare-and-jump, and on real data that jump is a coin flip (~12 ns per 2x2 window).
template <class T>
inline T select_bits(bool take, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const U mask = U(0) - static_cast<U>(take);
  const U r = (ua & mask) | (ub & ~mask);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

inline int64_t select_index(bool take, int64_t a, int64_t b) {
  const int64_t mask = -static_cast<int64_t>(take);
  return (a & mask) | (b & ~mask);
}

// One plane whose windows all lie inside the image (the usual unpadded pool). Row by row of the
// output, the window offsets (h, v) are visited in row-major order and each one updates the
// running max of every window in the row at once: the updates of different windows are
// independent, so they overlap (and vectorize), where a window-by-window scan is one long chain
// of dependent compare-selects (~10 ns per 2x2 window).
template <class T>
void maxpool_plane_inside(T* yp, int32_t* ap, const T* xp, const PoolGeometry& g, int64_t OH,
                          int64_t OW) {
  const int64_t SW = g.SW;
  for (int64_t i = 0; i < OH; ++i) {
    T* yr = yp + i * OW;
    int32_t* ar = ap + i * OW;
    const int64_t row0 = i * g.SH * g.W;
    for (int64_t j = 0; j < OW; ++j) {
      yr[j] = xp[row0 + j * SW];
      ar[j] = static_cast<int32_t>(row0 + j * SW);
    }
    for (int64_t h = 0; h < g.KH; ++h)
      for (int64_t v = (h == 0 ? 1 : 0); v < g.KW; ++v) {
        const int64_t off = row0 + h * g.W + v;
        const T* src = xp + off;
        for (int64_t j = 0; j < OW; ++j) {
          const T val = src[j * SW];
          // Ties keep the first; a NaN wins (PyTorch's rule: val > max || isnan(val)).
          const bool take = (val > yr[j]) | (val != val);
          yr[j] = select_bits(take, val, yr[j]);
          ar[j] = static_cast<int32_t>(select_index(take, off + j * SW, ar[j]));
        }
      }
  }
}

template <class T>
void maxpool_forward(T* y, int32_t* argmax, const T* x, int64_t N, const PoolGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), in = g.H * g.W, out = OH * OW;
  // Windows that lie inside the image (the usual unpadded pool) need no clipping.
  const bool inside = g.PT == 0 && g.PL == 0 && (OH - 1) * g.SH + g.KH <= g.H &&
                      (OW - 1) * g.SW + g.KW <= g.W;
  for_planes(N * g.C, N * g.C * out * g.KH * g.KW, [&](int64_t pl) {
    const T* xp = x + pl * in;
    T* yp = y + pl * out;
    int32_t* ap = argmax + pl * out;
    if (inside) {
      maxpool_plane_inside(yp, ap, xp, g, OH, OW);
      return;
    }
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        const Window w = window(g, i, j);
        T m = -INFINITY;
        // PyTorch starts from the window's first position, so an all -inf window still has one.
        int64_t a = (w.h0 < w.h1 && w.w0 < w.w1) ? w.h0 * g.W + w.w0 : -1;
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) {
            const T val = xp[h * g.W + v];
            const bool take = (val > m) | (val != val);  // as in maxpool_plane_inside
            m = select_bits(take, val, m);
            a = select_index(take, h * g.W + v, a);
          }
        yp[i * OW + j] = m;
        ap[i * OW + j] = static_cast<int32_t>(a);
      }
  });
}

template <class T>
void maxpool_backward(T* dx, const T* dy, const int32_t* argmax, int64_t N, const PoolGeometry& g) {
  const int64_t in = g.H * g.W, out = g.OH() * g.OW();
  for_planes(N * g.C, N * g.C * (in + out), [&](int64_t pl) {
    T* dxp = dx + pl * in;
    const T* dyp = dy + pl * out;
    const int32_t* ap = argmax + pl * out;
    std::fill(dxp, dxp + in, T(0));
    for (int64_t k = 0; k < out; ++k)
      if (ap[k] >= 0 && ap[k] < in) dxp[ap[k]] += dyp[k];
  });
}

template <class T>
void avgpool_forward(T* y, const T* x, int64_t N, const PoolGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), in = g.H * g.W, out = OH * OW;
  const double inv = 1.0 / static_cast<double>(g.KH * g.KW);
  for_planes(N * g.C, N * g.C * out * g.KH * g.KW, [&](int64_t pl) {
    const T* xp = x + pl * in;
    T* yp = y + pl * out;
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        const Window w = window(g, i, j);
        double s = 0.0;
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) s += xp[h * g.W + v];
        yp[i * OW + j] = static_cast<T>(s * inv);
      }
  });
}

template <class T>
void avgpool_backward(T* dx, const T* dy, int64_t N, const PoolGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), in = g.H * g.W, out = OH * OW;
  const T inv = static_cast<T>(1.0 / static_cast<double>(g.KH * g.KW));
  for_planes(N * g.C, N * g.C * out * g.KH * g.KW, [&](int64_t pl) {
    T* dxp = dx + pl * in;
    const T* dyp = dy + pl * out;
    std::fill(dxp, dxp + in, T(0));
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        const Window w = window(g, i, j);
        const T d = dyp[i * OW + j] * inv;
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t v = w.w0; v < w.w1; ++v) dxp[h * g.W + v] += d;
      }
  });
}

template <class T>
void global_avgpool_forward(T* y, const T* x, int64_t N, int64_t C, int64_t S) {
  const double inv = 1.0 / static_cast<double>(S);
  for_planes(N * C, N * C * S, [&](int64_t pl) {
    const T* xp = x + pl * S;
    double s = 0.0;
    for (int64_t k = 0; k < S; ++k) s += xp[k];
    y[pl] = static_cast<T>(s * inv);
  });
}

template <class T>
void global_avgpool_backward(T* dx, const T* dy, int64_t N, int64_t C, int64_t S) {
  const double inv = 1.0 / static_cast<double>(S);
  for_planes(N * C, N * C * S, [&](int64_t pl) {
    const T d = static_cast<T>(dy[pl] * inv);
    std::fill(dx + pl * S, dx + (pl + 1) * S, d);
  });
}

#define GS_INSTANTIATE(T)                                                                      \
  template void maxpool_forward<T>(T*, int32_t*, const T*, int64_t, const PoolGeometry&);      \
  template void maxpool_backward<T>(T*, const T*, const int32_t*, int64_t, const PoolGeometry&); \
  template void avgpool_forward<T>(T*, const T*, int64_t, const PoolGeometry&);                \
  template void avgpool_backward<T>(T*, const T*, int64_t, const PoolGeometry&);               \
  template void global_avgpool_forward<T>(T*, const T*, int64_t, int64_t, int64_t);            \
  template void global_avgpool_backward<T>(T*, const T*, int64_t, int64_t, int64_t);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

// ---- the pooling ops ----------------------------------------------------------------------------
//   MaxPool1D/AvgPool1D  (C, L) -> (C, OL);  attrs kernel (K), stride (S), padding (left, right)
//   MaxPool2D/AvgPool2D  (C, H, W) -> (C, OH, OW); kernel, stride (2), padding (top, left, bottom,
//                        right). MaxPool keeps argmax (N, C, OH, OW) in its int workspace.
//   GlobalAvgPool        (C, ...) -> (C)
namespace {

template <class T>
class PoolOp : public Op<T> {
 public:
  PoolOp(const OpAttrs& a, const Shape& in, int64_t sd, bool max) : max_(max) {
    const std::string& op = a.op;
    const auto k = a.ints("kernel", size_t(sd), 1), s = a.ints("stride", size_t(sd), 1);
    const auto p = a.ints("padding", size_t(2 * sd), 0);
    require_rank(op, in, sd + 1, sd == 1 ? "(channels, length)" : "(channels, height, width)");
    PoolGeometry& g = g_;
    g.C = in.dims[0];
    if (sd == 1) {
      g.H = 1, g.W = in.dims[1], g.KH = 1, g.KW = k[0], g.SH = 1, g.SW = s[0];
      g.PT = 0, g.PL = p[0], g.PB = 0, g.PR = p[1];
    } else {
      g.H = in.dims[1], g.W = in.dims[2], g.KH = k[0], g.KW = k[1], g.SH = s[0], g.SW = s[1];
      g.PT = p[0], g.PL = p[1], g.PB = p[2], g.PR = p[3];
    }
    if (g.H + g.PT + g.PB < g.KH || g.W + g.PL + g.PR < g.KW)
      throw std::invalid_argument(op + ": the input " + in.str() + " with its padding is smaller "
                                  "than the window");
    this->in_ = in;
    this->out_ = sd == 1 ? Shape{{g.C, g.OW()}} : Shape{{g.C, g.OH(), g.OW()}};
  }
  int64_t int_workspace(int64_t N) const override { return max_ ? N * this->out_.size() : 0; }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    if (max_) maxpool_forward<T>(y, a.iws, x, a.N, g_);
    else avgpool_forward<T>(y, x, a.N, g_);
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T*) override {
    if (!dx) return;
    if (max_) maxpool_backward<T>(dx, dy, a.iws, a.N, g_);
    else avgpool_backward<T>(dx, dy, a.N, g_);
  }

 private:
  bool max_;
  PoolGeometry g_{};
};

template <class T>
class MaxPool1DOp : public PoolOp<T> {
 public:
  MaxPool1DOp(const OpAttrs& a, const Shape& in) : PoolOp<T>(a, in, 1, true) {}
};
template <class T>
class MaxPool2DOp : public PoolOp<T> {
 public:
  MaxPool2DOp(const OpAttrs& a, const Shape& in) : PoolOp<T>(a, in, 2, true) {}
};
template <class T>
class AvgPool1DOp : public PoolOp<T> {
 public:
  AvgPool1DOp(const OpAttrs& a, const Shape& in) : PoolOp<T>(a, in, 1, false) {}
};
template <class T>
class AvgPool2DOp : public PoolOp<T> {
 public:
  AvgPool2DOp(const OpAttrs& a, const Shape& in) : PoolOp<T>(a, in, 2, false) {}
};

template <class T>
class GlobalAvgPoolOp : public Op<T> {
 public:
  GlobalAvgPoolOp(const OpAttrs& a, const Shape& in) {
    require_rank_between(a.op, in, 2, 3, "(channels, length) or (channels, height, width)");
    this->in_ = in;
    this->out_ = Shape{{in.dims[0]}};
  }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    global_avgpool_forward<T>(y, x, a.N, this->in_.dims[0], this->in_.size() / this->in_.dims[0]);
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T*) override {
    if (dx)
      global_avgpool_backward<T>(dx, dy, a.N, this->in_.dims[0], this->in_.size() / this->in_.dims[0]);
  }
};

}  // namespace

GS_REGISTER_OP("MaxPool1D", MaxPool1DOp);
GS_REGISTER_OP("MaxPool2D", MaxPool2DOp);
GS_REGISTER_OP("AvgPool1D", AvgPool1DOp);
GS_REGISTER_OP("AvgPool2D", AvgPool2DOp);
GS_REGISTER_OP("GlobalAvgPool", GlobalAvgPoolOp);

}  // namespace gradstep::cpu
