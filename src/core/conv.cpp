#include "core/conv.hpp"

#include <algorithm>
#include <cstring>

#include "core/common.hpp"
#include "core/dense.hpp"
#include "core/gemm.hpp"
#include "core/op.hpp"

namespace gradstep::cpu {
namespace {

// Output columns per chunk: small images are unfolded several at a time so that one BLAS call
// gets a matrix wide enough to run at full speed (a 16x9x64 product per 8x8 image is mostly call
// overhead), while the unfolded chunk still fits in L2 next to the weights.
constexpr int64_t kChunkCols = 256;
// At most this many groups of chunks run in parallel. It bounds the workspace (one unfolding slot
// per group) and the w-gradient partials that are added at the end; it depends on nothing but
// the batch, so the summation order of dw never depends on the thread count.
constexpr int64_t kConvGroups = 8;
// Convolutions below this many multiply-adds run on one thread: a parallel region costs a few
// microseconds.
constexpr int64_t kConvParallelMacs = int64_t(1) << 16;

// How a batch is cut up; a function of the geometry and N alone.
struct Plan {
  int64_t K;       // C·KH·KW, rows of the unfolded matrix
  int64_t P;       // OH·OW, columns per image
  int64_t B;       // images per chunk
  int64_t chunks;  // ceil(N / B)
  int64_t groups;  // min(chunks, kConvGroups)
  bool direct;     // 1x1 kernel, stride 1, no padding: the image is its own unfolded matrix
  int64_t col, out, slot;  // elements: unfolded chunk (and its gradient), O·B·P scratch, one slot
};

Plan make_plan(const ConvGeometry& g, int64_t N) {
  Plan p{};
  p.K = g.C * g.KH * g.KW;
  p.P = g.OH() * g.OW();
  p.direct = g.KH == 1 && g.KW == 1 && g.SH == 1 && g.SW == 1 && g.PT == 0 && g.PL == 0 &&
             g.PB == 0 && g.PR == 0;
  const int64_t n = std::max<int64_t>(N, 1);
  p.B = p.direct ? 1 : std::min(n, std::max<int64_t>(1, (kChunkCols + p.P - 1) / p.P));
  p.chunks = (n + p.B - 1) / p.B;
  p.groups = std::min(p.chunks, kConvGroups);
  p.col = p.direct ? 0 : p.K * p.B * p.P;
  p.out = p.B > 1 ? g.O * p.B * p.P : 0;
  p.slot = 2 * p.col + p.out;  // col, dcol, out
  return p;
}

// [lo, hi): the output positions o with 0 <= o·stride + off < size (off = k·dilation - pad).
inline void valid_range(int64_t off, int64_t stride, int64_t size, int64_t out, int64_t& lo,
                        int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = size - 1 - off < 0 ? 0 : (size - 1 - off) / stride + 1;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// GCC turns the short copy and zero loops below into memmove/memset calls
// (-ftree-loop-distribute-patterns); on rows of 4-28 values the call costs more than the copy.
#if defined(__GNUC__) && !defined(__clang__)
#define GS_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define GS_NO_LIBCALLS
#endif

// Unfolds nb images x (nb, C,H,W) (image stride in_img) into col: rows (c,kh,kw) of row stride
// ld, image i in columns [i·OH·OW, (i+1)·OH·OW). The kernel offset is the outer loop and the
// images the inner one, so the valid span of each offset is worked out once per chunk, and the
// inner loops are plain copies (stride 1) or gathers with no bounds test per element.
template <class T>
GS_NO_LIBCALLS void im2col(T* __restrict col, int64_t ld, const T* __restrict x, int64_t nb,
                           int64_t in_img, const ConvGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), SW = g.SW, P = OH * OW;
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t offh = kh * g.DH - g.PT;
      int64_t h_lo, h_hi;
      valid_range(offh, g.SH, g.H, OH, h_lo, h_hi);
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t offw = kw * g.DW - g.PL;
        int64_t w_lo, w_hi;
        valid_range(offw, SW, g.W, OW, w_lo, w_hi);
        T* row = col + ((c * g.KH + kh) * g.KW + kw) * ld;
        for (int64_t i = 0; i < nb; ++i) {
          T* dst = row + i * P;
          const T* xc = x + i * in_img + c * g.H * g.W;
          for (int64_t k = 0; k < h_lo * OW; ++k) dst[k] = T(0);
          for (int64_t oh = h_lo; oh < h_hi; ++oh) {
            T* d = dst + oh * OW;
            const T* s = xc + (oh * g.SH + offh) * g.W + offw;
            for (int64_t ow = 0; ow < w_lo; ++ow) d[ow] = T(0);
            if (SW == 1) {
              for (int64_t ow = w_lo; ow < w_hi; ++ow) d[ow] = s[ow];
            } else {
              for (int64_t ow = w_lo; ow < w_hi; ++ow) d[ow] = s[ow * SW];
            }
            for (int64_t ow = w_hi; ow < OW; ++ow) d[ow] = T(0);
          }
          for (int64_t k = h_hi * OW; k < P; ++k) dst[k] = T(0);
        }
      }
    }
  }
}

// The adjoint of im2col: dx (nb, C,H,W) = Σ over the kernel offsets of the columns of dcol placed
// back where they were read from. Overwrites dx; every element's additions run in (kh, kw, oh)
// order, whatever the chunk size.
template <class T>
GS_NO_LIBCALLS void col2im(T* __restrict dx, const T* __restrict dcol, int64_t ld, int64_t nb,
                           int64_t in_img, const ConvGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW(), SW = g.SW, P = OH * OW;
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t k = 0; k < g.C * g.H * g.W; ++k) dx[i * in_img + k] = T(0);
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t offh = kh * g.DH - g.PT;
      int64_t h_lo, h_hi;
      valid_range(offh, g.SH, g.H, OH, h_lo, h_hi);
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t offw = kw * g.DW - g.PL;
        int64_t w_lo, w_hi;
        valid_range(offw, SW, g.W, OW, w_lo, w_hi);
        const T* row = dcol + ((c * g.KH + kh) * g.KW + kw) * ld;
        for (int64_t i = 0; i < nb; ++i) {
          const T* src = row + i * P;
          T* dxc = dx + i * in_img + c * g.H * g.W;
          for (int64_t oh = h_lo; oh < h_hi; ++oh) {
            const T* s = src + oh * OW;
            T* d = dxc + (oh * g.SH + offh) * g.W + offw;
            if (SW == 1) {
              for (int64_t ow = w_lo; ow < w_hi; ++ow) d[ow] += s[ow];
            } else {
              for (int64_t ow = w_lo; ow < w_hi; ++ow) d[ow * SW] += s[ow];
            }
          }
        }
      }
    }
  }
}

// body(group, slot) for every group, groups split across threads; slot is the calling thread's
// index (its scratch), group decides which chunks it runs and where its dw partial goes.
template <class Body>
void for_groups(const Plan& p, bool parallel, Body&& body) {
  parallel_for(p.groups, parallel, [&](int64_t grp, int slot) { body(grp, int64_t(slot)); });
}

// Chunks [c0, c1) of group grp: a balanced, shape-only partition.
inline void group_chunks(const Plan& p, int64_t grp, int64_t& c0, int64_t& c1) {
  c0 = grp * p.chunks / p.groups;
  c1 = (grp + 1) * p.chunks / p.groups;
}

}  // namespace

int64_t conv_workspace_elems(const ConvGeometry& g, int64_t N) {
  const Plan p = make_plan(g, N);
  return p.groups * p.slot + (p.groups - 1) * g.O * p.K;
}

template <class T>
void conv_forward(T* y, T* ws, const T* x, const T* w, const T* b, int64_t N,
                  const ConvGeometry& g) {
  if (N <= 0) return;
  const Plan p = make_plan(g, N);
  const int64_t O = g.O, K = p.K, P = p.P, in_img = g.C * g.H * g.W, out_img = O * P;
  const bool parallel = N * O * K * P >= kConvParallelMacs;
  for_groups(p, parallel, [&](int64_t grp, int64_t slot) {
    T* col = ws + slot * p.slot;
    T* out = col + 2 * p.col;
    int64_t c0, c1;
    group_chunks(p, grp, c0, c1);
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t n0 = ch * p.B, nb = std::min(p.B, N - n0), cols = nb * P;
      const T* a = p.direct ? x + n0 * in_img : col;
      if (!p.direct) im2col(col, cols, x + n0 * in_img, nb, in_img, g);
      if (nb == 1) {
        // Straight into y: seed it with the bias rows and let the product accumulate (beta = 1).
        T* yn = y + n0 * out_img;
        if (b)
          for (int64_t o = 0; o < O; ++o) std::fill(yn + o * P, yn + (o + 1) * P, b[o]);
        gemm_whole<T>(false, false, O, P, K, T(1), w, K, a, P, b ? T(1) : T(0), yn, P);
      } else {
        // One product for the chunk, then each image's (O, P) block moves to its place in y.
        gemm_whole<T>(false, false, O, cols, K, T(1), w, K, a, cols, T(0), out, cols);
        for (int64_t i = 0; i < nb; ++i)
          for (int64_t o = 0; o < O; ++o) {
            const T* s = out + o * cols + i * P;
            T* d = y + (n0 + i) * out_img + o * P;
            if (b) {
              const T bo = b[o];
              for (int64_t j = 0; j < P; ++j) d[j] = s[j] + bo;
            } else {
              std::memcpy(d, s, static_cast<size_t>(P) * sizeof(T));
            }
          }
      }
    }
  });
}

template <class T>
void conv_backward(T* dx, T* dw, T* db, T* ws, const T* dy, const T* x, const T* w, int64_t N,
                   const ConvGeometry& g, T l2) {
  const Plan p = make_plan(g, N);
  const int64_t O = g.O, K = p.K, P = p.P, in_img = g.C * g.H * g.W, out_img = O * P;
  const int64_t wsize = O * K;
  if (l2 != T(0)) {
    parallel_for(wsize, wsize >= kParallelMin, [&](int64_t i) { dw[i] = l2 * w[i]; });
  } else if (N <= 0) {
    std::fill(dw, dw + wsize, T(0));
  }
  if (db) {
    // Per output channel over images then positions, in double, channels split across threads.
    // Eight interleaved accumulators, added in a fixed order at the end: one running sum is a
    // chain of dependent adds (4 cycles each: 2.7 ms of LeNet's conv1 at batch 512), and the
    // result still depends on nothing but the shapes.
    constexpr int kLanes = 8;
    parallel_for(O, N * out_img >= kParallelMin, [&](int64_t o) {
      double acc[kLanes] = {};
      for (int64_t n = 0; n < N; ++n) {
        const T* r = dy + n * out_img + o * P;
        int64_t j = 0;
        for (; j + kLanes <= P; j += kLanes)
          for (int l = 0; l < kLanes; ++l) acc[l] += r[j + l];
        for (; j < P; ++j) acc[j % kLanes] += r[j];
      }
      double s = 0.0;
      for (int l = 0; l < kLanes; ++l) s += acc[l];
      db[o] = static_cast<T>(s);
    });
  }
  if (N <= 0) return;
  T* partials = ws + p.groups * p.slot;  // (groups-1) × (O, K): the w-gradients of groups 1..
  const bool parallel = N * O * K * P >= kConvParallelMacs;
  for_groups(p, parallel, [&](int64_t grp, int64_t slot) {
    T* col = ws + slot * p.slot;
    T* dcol = col + p.col;
    T* dyc = col + 2 * p.col;
    T* dwg = grp == 0 ? dw : partials + (grp - 1) * wsize;
    bool first = !(grp == 0 && l2 != T(0));  // group 0 accumulates onto l2·w
    int64_t c0, c1;
    group_chunks(p, grp, c0, c1);
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t n0 = ch * p.B, nb = std::min(p.B, N - n0), cols = nb * P;
      const T* a = p.direct ? x + n0 * in_img : col;
      if (!p.direct) im2col(col, cols, x + n0 * in_img, nb, in_img, g);
      // The chunk's output gradient as one (O, nb·P) matrix: a view of dy for a single image,
      // else gathered image by image.
      const T* d = dy + n0 * out_img;
      if (nb > 1) {
        for (int64_t i = 0; i < nb; ++i)
          for (int64_t o = 0; o < O; ++o)
            std::memcpy(dyc + o * cols + i * P, dy + (n0 + i) * out_img + o * P,
                        static_cast<size_t>(P) * sizeof(T));
        d = dyc;
      }
      // dw_group (+)= dy_chunk (O, cols) · colᵀ (cols, K)
      gemm_whole<T>(false, true, O, K, cols, T(1), d, cols, a, cols, first ? T(0) : T(1), dwg, K);
      first = false;
      if (!dx) continue;
      if (p.direct) {
        gemm_whole<T>(true, false, K, P, O, T(1), w, K, d, P, T(0), dx + n0 * in_img, P);
      } else {
        gemm_whole<T>(true, false, K, cols, O, T(1), w, K, d, cols, T(0), dcol, cols);
        col2im(dx + n0 * in_img, dcol, cols, nb, in_img, g);
      }
    }
  });
  // dw = group 0 + group 1 + ... in group order, for every element.
  if (p.groups > 1) {
    parallel_for(wsize, (wsize * p.groups) >= kParallelMin, [&](int64_t i) {
      T s = dw[i];
      for (int64_t grp = 1; grp < p.groups; ++grp) s += partials[(grp - 1) * wsize + i];
      dw[i] = s;
    });
  }
}

// ---- plain references -------------------------------------------------------------------------

template <class T>
void conv_forward_ref(T* y, const T* x, const T* w, const T* b, int64_t N, const ConvGeometry& g) {
  const int64_t OH = g.OH(), OW = g.OW();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double s = b ? static_cast<double>(b[o]) : 0.0;
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t kh = 0; kh < g.KH; ++kh) {
              const int64_t ih = i * g.SH - g.PT + kh * g.DH;
              if (ih < 0 || ih >= g.H) continue;
              for (int64_t kw = 0; kw < g.KW; ++kw) {
                const int64_t iw = j * g.SW - g.PL + kw * g.DW;
                if (iw < 0 || iw >= g.W) continue;
                s += static_cast<double>(w[((o * g.C + c) * g.KH + kh) * g.KW + kw]) *
                     x[((n * g.C + c) * g.H + ih) * g.W + iw];
              }
            }
          y[((n * g.O + o) * OH + i) * OW + j] = static_cast<T>(s);
        }
}

template <class T>
void conv_backward_ref(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t N,
                       const ConvGeometry& g, T l2) {
  const int64_t OH = g.OH(), OW = g.OW();
  for (int64_t i = 0; i < g.O * g.C * g.KH * g.KW; ++i) dw[i] = l2 * w[i];
  if (db) std::fill(db, db + g.O, T(0));
  if (dx) std::fill(dx, dx + N * g.C * g.H * g.W, T(0));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          const T d = dy[((n * g.O + o) * OH + i) * OW + j];
          if (db) db[o] += d;
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t kh = 0; kh < g.KH; ++kh) {
              const int64_t ih = i * g.SH - g.PT + kh * g.DH;
              if (ih < 0 || ih >= g.H) continue;
              for (int64_t kw = 0; kw < g.KW; ++kw) {
                const int64_t iw = j * g.SW - g.PL + kw * g.DW;
                if (iw < 0 || iw >= g.W) continue;
                const int64_t xi = ((n * g.C + c) * g.H + ih) * g.W + iw;
                const int64_t wi = ((o * g.C + c) * g.KH + kh) * g.KW + kw;
                dw[wi] += d * x[xi];
                if (dx) dx[xi] += d * w[wi];
              }
            }
        }
}

#define GS_INSTANTIATE(T)                                                                    \
  template void conv_forward<T>(T*, T*, const T*, const T*, const T*, int64_t,               \
                                const ConvGeometry&);                                        \
  template void conv_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, int64_t,      \
                                 const ConvGeometry&, T);                                    \
  template void conv_forward_ref<T>(T*, const T*, const T*, const T*, int64_t,               \
                                    const ConvGeometry&);                                    \
  template void conv_backward_ref<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,      \
                                     const ConvGeometry&, T);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

// ---- the Conv1D and Conv2D ops ---------------------------------------------------------------------
//   Conv1D  (C, L) -> (O, OL);  weight (O, C, K)       attrs kernel (K), stride (S), dilation (D),
//                                                     padding (left, right)
//   Conv2D  (C, H, W) -> (O, OH, OW); weight (O, C, KH, KW); kernel/stride/dilation (2),
//                                                     padding (top, left, bottom, right)
// Both: in_channels, out_channels, bias (slot "bias" (O) when set), l2. Workspace: the kernels'.
namespace {

template <class T>
class ConvOp : public Op<T> {
 public:
  ConvOp(const OpAttrs& a, const Shape& in, int64_t sd) {
    const std::string& op = a.op;
    const int64_t C = a.integer("in_channels", 1), O = a.integer("out_channels", 1);
    const auto k = a.ints("kernel", size_t(sd), 1), s = a.ints("stride", size_t(sd), 1);
    const auto d = a.ints("dilation", size_t(sd), 1), p = a.ints("padding", size_t(2 * sd), 0);
    bias_ = a.flag_or("bias", true);
    l2_ = a.real_or("l2", 0.0);
    if (l2_ < 0) throw std::invalid_argument(op + ": l2 must be >= 0");
    require_rank(op, in, sd + 1, sd == 1 ? "(channels, length)" : "(channels, height, width)");
    if (in.dims[0] != C)
      throw std::invalid_argument(op + ": expects " + std::to_string(C) + " input channels, got " +
                                  std::to_string(in.dims[0]) + " (input shape " + in.str() + ")");
    ConvGeometry& g = g_;
    g.C = C;
    g.O = O;
    if (sd == 1) {
      g.H = 1, g.W = in.dims[1], g.KH = 1, g.KW = k[0], g.SH = 1, g.SW = s[0], g.DH = 1, g.DW = d[0];
      g.PT = 0, g.PL = p[0], g.PB = 0, g.PR = p[1];
    } else {
      g.H = in.dims[1], g.W = in.dims[2], g.KH = k[0], g.KW = k[1], g.SH = s[0], g.SW = s[1];
      g.DH = d[0], g.DW = d[1], g.PT = p[0], g.PL = p[1], g.PB = p[2], g.PR = p[3];
    }
    const int64_t eh = g.DH * (g.KH - 1) + 1, ew = g.DW * (g.KW - 1) + 1;
    if (g.H + g.PT + g.PB < eh || g.W + g.PL + g.PR < ew)
      throw std::invalid_argument(op + ": the input " + in.str() + " with its padding is smaller "
                                  "than the dilated kernel (" + (sd == 1 ? std::to_string(ew)
                                  : std::to_string(eh) + "x" + std::to_string(ew)) + ")");
    this->in_ = in;
    this->out_ = sd == 1 ? Shape{{O, g.OW()}} : Shape{{O, g.OH(), g.OW()}};
    std::vector<int64_t> wshape{O, C};
    for (int64_t v : k) wshape.push_back(v);
    this->params_.push_back({"weight", wshape});
    if (bias_) this->params_.push_back({"bias", {O}});
  }
  int64_t workspace(int64_t N) const override { return conv_workspace_elems(g_, N); }
  double penalty(const OpArgs<T>& a) const override {
    return l2_ != 0.0 ? 0.5 * l2_ * sum_squares<T>(a.w[0], this->params_[0].size()) : 0.0;
  }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    conv_forward<T>(y, a.ws, x, a.w[0], bias_ ? a.w[1] : nullptr, a.N, g_);
  }
  // A null dx (the network's first op) skips the input gradient.
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T*) override {
    conv_backward<T>(dx, a.dw[0], bias_ ? a.dw[1] : nullptr, a.ws, dy, x, a.w[0], a.N, g_,
                     static_cast<T>(l2_));
  }

 private:
  ConvGeometry g_{};
  bool bias_;
  double l2_;
};

template <class T>
class Conv1DOp : public ConvOp<T> {
 public:
  Conv1DOp(const OpAttrs& a, const Shape& in) : ConvOp<T>(a, in, 1) {}
};

template <class T>
class Conv2DOp : public ConvOp<T> {
 public:
  Conv2DOp(const OpAttrs& a, const Shape& in) : ConvOp<T>(a, in, 2) {}
};

}  // namespace

GS_REGISTER_OP("Conv1D", Conv1DOp);
GS_REGISTER_OP("Conv2D", Conv2DOp);

}  // namespace gradstep::cpu
