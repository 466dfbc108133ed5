#include "core/batchnorm.hpp"

#include <algorithm>
#include <cmath>

#include "core/common.hpp"
#include "core/op.hpp"

namespace gradstep::cpu {
namespace {

// Features per column block. Each block keeps its per-feature sums on the stack (kernels do not
// allocate) and reads rows of kCols contiguous values; results do not depend on this size, since
// every column is summed over rows in row order whatever the blocking.
constexpr int64_t kCols = 32;

// body(f0, f1) over column blocks [f0, f1), the blocks split across threads (static schedule).
template <class Body>
void for_column_blocks(int64_t N, int64_t F, Body&& body) {
  (void)N;  // only the OpenMP size test reads it
  const int64_t blocks = (F + kCols - 1) / kCols;
  parallel_for(blocks, N * F >= kParallelMin && blocks > 1, [&](int64_t blk) { body(blk * kCols, std::min(F, blk * kCols + kCols)); });
}

}  // namespace

template <class T>
void batchnorm_forward_train(T* y, T* xhat, T* mean, T* invstd, T* running_mean, T* running_var,
                             const T* x, const T* gamma, const T* beta, int64_t N, int64_t F,
                             T momentum, T eps) {
  const double mom = momentum, e = eps, dn = static_cast<double>(N);
  for_column_blocks(N, F, [&](int64_t f0, int64_t f1) {
    const int64_t w = f1 - f0;
    double s[kCols] = {}, q[kCols] = {}, m[kCols], r[kCols], g[kCols], b[kCols];
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = x + n * F + f0;
      for (int64_t j = 0; j < w; ++j) s[j] += xr[j];
    }
    for (int64_t j = 0; j < w; ++j) m[j] = s[j] / dn;
    // Two passes (mean, then squared deviations) rather than E[x²] - μ²: no cancellation when
    // |μ| is large against σ, and σ² can never come out negative.
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = x + n * F + f0;
      for (int64_t j = 0; j < w; ++j) {
        const double d = static_cast<double>(xr[j]) - m[j];
        q[j] += d * d;
      }
    }
    for (int64_t j = 0; j < w; ++j) {
      const int64_t f = f0 + j;
      r[j] = 1.0 / std::sqrt(q[j] / dn + e);
      g[j] = gamma[f];
      b[j] = beta[f];
      mean[f] = static_cast<T>(m[j]);
      invstd[f] = static_cast<T>(r[j]);
      if (N > 1) {
        running_mean[f] = static_cast<T>((1.0 - mom) * running_mean[f] + mom * m[j]);
        running_var[f] = static_cast<T>((1.0 - mom) * running_var[f] + mom * (q[j] / (dn - 1.0)));
      }
    }
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = x + n * F + f0;
      T* hr = xhat + n * F + f0;
      T* yr = y + n * F + f0;
      for (int64_t j = 0; j < w; ++j) {
        const double h = (static_cast<double>(xr[j]) - m[j]) * r[j];
        hr[j] = static_cast<T>(h);
        yr[j] = static_cast<T>(g[j] * h + b[j]);
      }
    }
  });
}

template <class T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* xhat, const T* invstd,
                        const T* gamma, int64_t N, int64_t F) {
  const double dn = static_cast<double>(N);
  for_column_blocks(N, F, [&](int64_t f0, int64_t f1) {
    const int64_t w = f1 - f0;
    double sb[kCols] = {}, sg[kCols] = {}, a[kCols], c1[kCols], c2[kCols];
    for (int64_t n = 0; n < N; ++n) {
      const T* dr = dy + n * F + f0;
      const T* hr = xhat + n * F + f0;
      for (int64_t j = 0; j < w; ++j) {
        sb[j] += dr[j];
        sg[j] += static_cast<double>(dr[j]) * hr[j];
      }
    }
    for (int64_t j = 0; j < w; ++j) {
      const int64_t f = f0 + j;
      dbeta[f] = static_cast<T>(sb[j]);
      dgamma[f] = static_cast<T>(sg[j]);
      a[j] = static_cast<double>(gamma[f]) * invstd[f];
      c1[j] = sb[j] / dn;
      c2[j] = sg[j] / dn;
    }
    if (!dx) return;
    for (int64_t n = 0; n < N; ++n) {
      const T* dr = dy + n * F + f0;
      const T* hr = xhat + n * F + f0;
      T* out = dx + n * F + f0;
      for (int64_t j = 0; j < w; ++j)
        out[j] = static_cast<T>(a[j] * (static_cast<double>(dr[j]) - c1[j] - hr[j] * c2[j]));
    }
  });
}

template <class T>
void batchnorm_forward_eval(T* y, const T* x, const T* gamma, const T* beta, const T* running_mean,
                            const T* running_var, int64_t N, int64_t F, T eps) {
  const double e = eps;
  for_column_blocks(N, F, [&](int64_t f0, int64_t f1) {
    const int64_t w = f1 - f0;
    double m[kCols], r[kCols], g[kCols], b[kCols];
    for (int64_t j = 0; j < w; ++j) {
      const int64_t f = f0 + j;
      m[j] = running_mean[f];
      r[j] = 1.0 / std::sqrt(static_cast<double>(running_var[f]) + e);
      g[j] = gamma[f];
      b[j] = beta[f];
    }
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = x + n * F + f0;
      T* yr = y + n * F + f0;
      for (int64_t j = 0; j < w; ++j)
        yr[j] = static_cast<T>(g[j] * ((static_cast<double>(xr[j]) - m[j]) * r[j]) + b[j]);
    }
  });
}

template <class T>
void batchnorm_backward_eval(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma,
                             const T* running_mean, const T* running_var, int64_t N, int64_t F,
                             T eps) {
  const double e = eps;
  for_column_blocks(N, F, [&](int64_t f0, int64_t f1) {
    const int64_t w = f1 - f0;
    double sb[kCols] = {}, sg[kCols] = {}, m[kCols], r[kCols], a[kCols];
    for (int64_t j = 0; j < w; ++j) {
      const int64_t f = f0 + j;
      m[j] = running_mean[f];
      r[j] = 1.0 / std::sqrt(static_cast<double>(running_var[f]) + e);
      a[j] = static_cast<double>(gamma[f]) * r[j];
    }
    for (int64_t n = 0; n < N; ++n) {
      const T* dr = dy + n * F + f0;
      const T* xr = x + n * F + f0;
      for (int64_t j = 0; j < w; ++j) {
        sb[j] += dr[j];
        sg[j] += static_cast<double>(dr[j]) * ((static_cast<double>(xr[j]) - m[j]) * r[j]);
      }
    }
    for (int64_t j = 0; j < w; ++j) {
      dbeta[f0 + j] = static_cast<T>(sb[j]);
      dgamma[f0 + j] = static_cast<T>(sg[j]);
    }
    if (!dx) return;
    // The running statistics are constants here, so the input gradient is a plain per-feature
    // scale: no terms through the batch mean and variance.
    for (int64_t n = 0; n < N; ++n) {
      const T* dr = dy + n * F + f0;
      T* out = dx + n * F + f0;
      for (int64_t j = 0; j < w; ++j) out[j] = static_cast<T>(a[j] * dr[j]);
    }
  });
}

// ---- spatial (N,C,S) ----------------------------------------------------------------------------
namespace {

// body(c) for every channel, channels split across threads.
template <class Body>
void for_channels(int64_t N, int64_t C, int64_t S, Body&& body) {
  (void)N;
  (void)S;
  parallel_for(C, N * C * S >= kParallelMin && C > 1, [&](int64_t c) { body(c); });
}

// Σ over the channel's N·S values of f(i) (i the flat index), images then positions, in double.
template <class F>
double channel_sum(int64_t N, int64_t C, int64_t S, int64_t c, F&& f) {
  double s = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t base = (n * C + c) * S;
    for (int64_t k = 0; k < S; ++k) s += f(base + k);
  }
  return s;
}

}  // namespace

template <class T>
void batchnorm_spatial_forward_train(T* y, T* xhat, T* mean, T* invstd, T* running_mean,
                                     T* running_var, const T* x, const T* gamma, const T* beta,
                                     int64_t N, int64_t C, int64_t S, T momentum, T eps) {
  const double mom = momentum, e = eps, M = static_cast<double>(N * S);
  for_channels(N, C, S, [&](int64_t c) {
    const double m = channel_sum(N, C, S, c, [&](int64_t i) { return static_cast<double>(x[i]); }) / M;
    // Two passes, as in the (N,F) kernel: no cancellation, never a negative variance.
    const double q = channel_sum(N, C, S, c, [&](int64_t i) {
      const double d = static_cast<double>(x[i]) - m;
      return d * d;
    });
    const double r = 1.0 / std::sqrt(q / M + e), gm = gamma[c], bt = beta[c];
    mean[c] = static_cast<T>(m);
    invstd[c] = static_cast<T>(r);
    if (M > 1.0) {
      running_mean[c] = static_cast<T>((1.0 - mom) * running_mean[c] + mom * m);
      running_var[c] = static_cast<T>((1.0 - mom) * running_var[c] + mom * (q / (M - 1.0)));
    }
    for (int64_t n = 0; n < N; ++n) {
      const int64_t base = (n * C + c) * S;
      for (int64_t k = 0; k < S; ++k) {
        const double h = (static_cast<double>(x[base + k]) - m) * r;
        xhat[base + k] = static_cast<T>(h);
        y[base + k] = static_cast<T>(gm * h + bt);
      }
    }
  });
}

template <class T>
void batchnorm_spatial_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* xhat,
                                const T* invstd, const T* gamma, int64_t N, int64_t C, int64_t S) {
  const double M = static_cast<double>(N * S);
  for_channels(N, C, S, [&](int64_t c) {
    const double sb = channel_sum(N, C, S, c, [&](int64_t i) { return static_cast<double>(dy[i]); });
    const double sg = channel_sum(N, C, S, c, [&](int64_t i) {
      return static_cast<double>(dy[i]) * static_cast<double>(xhat[i]);
    });
    dbeta[c] = static_cast<T>(sb);
    dgamma[c] = static_cast<T>(sg);
    if (!dx) return;
    const double a = static_cast<double>(gamma[c]) * invstd[c], c1 = sb / M, c2 = sg / M;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t base = (n * C + c) * S;
      for (int64_t k = 0; k < S; ++k)
        dx[base + k] = static_cast<T>(
            a * (static_cast<double>(dy[base + k]) - c1 - static_cast<double>(xhat[base + k]) * c2));
    }
  });
}

template <class T>
void batchnorm_spatial_forward_eval(T* y, const T* x, const T* gamma, const T* beta,
                                    const T* running_mean, const T* running_var, int64_t N,
                                    int64_t C, int64_t S, T eps) {
  const double e = eps;
  for_channels(N, C, S, [&](int64_t c) {
    const double m = running_mean[c], r = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + e);
    const double gm = gamma[c], bt = beta[c];
    for (int64_t n = 0; n < N; ++n) {
      const int64_t base = (n * C + c) * S;
      for (int64_t k = 0; k < S; ++k)
        y[base + k] = static_cast<T>(gm * ((static_cast<double>(x[base + k]) - m) * r) + bt);
    }
  });
}

template <class T>
void batchnorm_spatial_backward_eval(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x,
                                     const T* gamma, const T* running_mean, const T* running_var,
                                     int64_t N, int64_t C, int64_t S, T eps) {
  const double e = eps;
  for_channels(N, C, S, [&](int64_t c) {
    const double m = running_mean[c], r = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + e);
    dbeta[c] = static_cast<T>(
        channel_sum(N, C, S, c, [&](int64_t i) { return static_cast<double>(dy[i]); }));
    dgamma[c] = static_cast<T>(channel_sum(N, C, S, c, [&](int64_t i) {
      return static_cast<double>(dy[i]) * ((static_cast<double>(x[i]) - m) * r);
    }));
    if (!dx) return;
    const double a = static_cast<double>(gamma[c]) * r;  // running statistics are constants here
    for (int64_t n = 0; n < N; ++n) {
      const int64_t base = (n * C + c) * S;
      for (int64_t k = 0; k < S; ++k) dx[base + k] = static_cast<T>(a * dy[base + k]);
    }
  });
}

#define GS_INSTANTIATE(T)                                                                        \
  template void batchnorm_forward_train<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, \
                                           int64_t, int64_t, T, T);                              \
  template void batchnorm_forward_eval<T>(T*, const T*, const T*, const T*, const T*, const T*,  \
                                          int64_t, int64_t, T);                                  \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                      int64_t, int64_t);                                         \
  template void batchnorm_backward_eval<T>(T*, T*, T*, const T*, const T*, const T*, const T*,   \
                                           const T*, int64_t, int64_t, T);                   \
  template void batchnorm_spatial_forward_train<T>(T*, T*, T*, T*, T*, T*, const T*, const T*,   \
                                                   const T*, int64_t, int64_t, int64_t, T, T);   \
  template void batchnorm_spatial_backward<T>(T*, T*, T*, const T*, const T*, const T*,          \
                                              const T*, int64_t, int64_t, int64_t);              \
  template void batchnorm_spatial_forward_eval<T>(T*, const T*, const T*, const T*, const T*,    \
                                                  const T*, int64_t, int64_t, int64_t, T);       \
  template void batchnorm_spatial_backward_eval<T>(T*, T*, T*, const T*, const T*, const T*,     \
                                                   const T*, const T*, int64_t, int64_t,         \
                                                   int64_t, T);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

// ---- the BatchNorm op: (F) -> (F), or per channel on (C, L) / (C, H, W) (BatchNorm1d/2d) -------
// Slots gamma, beta (C); buffers running_mean, running_var (C). Workspace (training): xhat
// (N, C·S), then the batch mean and inverse std (C each). In evaluation mode it normalizes, and
// back-propagates, with the running statistics.
namespace {

template <class T>
class BatchNormOp : public Op<T> {
 public:
  BatchNormOp(const OpAttrs& a, const Shape& in) {
    C_ = a.integer("num_features", 1);
    momentum_ = a.real("momentum");
    eps_ = a.real("eps");
    if (!(momentum_ >= 0.0 && momentum_ <= 1.0))
      throw std::invalid_argument("BatchNorm: momentum must be in [0, 1]");
    if (!(eps_ > 0.0)) throw std::invalid_argument("BatchNorm: eps must be > 0");
    if (in.dims[0] != C_)
      throw std::invalid_argument("BatchNorm: expects " + std::to_string(C_) + (in.rank() == 1 ? " input features" : " channels") +
                                  ", got " + std::to_string(in.dims[0]) + " (input shape " + in.str() + ")");
    S_ = in.size() / C_;
    spatial_ = in.rank() > 1;
    this->in_ = in;
    this->out_ = in;
    this->params_ = {{"gamma", {C_}}, {"beta", {C_}}};
    this->buffers_ = {{"running_mean", {C_}}, {"running_var", {C_}}};
  }
  int64_t workspace(int64_t N) const override { return N * C_ * S_ + 2 * C_; }
  // The unbiased variance needs two values per channel: N·S >= 2.
  int64_t min_training_batch() const override { return S_ >= 2 ? 1 : 2; }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    const T m = static_cast<T>(momentum_), e = static_cast<T>(eps_);
    if (a.training) {
      T* mean = a.ws + a.N * C_ * S_;
      if (spatial_)
        batchnorm_spatial_forward_train<T>(y, a.ws, mean, mean + C_, a.buf[0], a.buf[1], x, a.w[0],
                                           a.w[1], a.N, C_, S_, m, e);
      else
        batchnorm_forward_train<T>(y, a.ws, mean, mean + C_, a.buf[0], a.buf[1], x, a.w[0], a.w[1],
                                   a.N, C_, m, e);
    } else if (spatial_) {
      batchnorm_spatial_forward_eval<T>(y, x, a.w[0], a.w[1], a.buf[0], a.buf[1], a.N, C_, S_, e);
    } else {
      batchnorm_forward_eval<T>(y, x, a.w[0], a.w[1], a.buf[0], a.buf[1], a.N, C_, e);
    }
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T*) override {
    const T e = static_cast<T>(eps_);
    const T* invstd = a.ws + a.N * C_ * S_ + C_;
    if (a.training && spatial_)
      batchnorm_spatial_backward<T>(dx, a.dw[0], a.dw[1], dy, a.ws, invstd, a.w[0], a.N, C_, S_);
    else if (a.training)
      batchnorm_backward<T>(dx, a.dw[0], a.dw[1], dy, a.ws, invstd, a.w[0], a.N, C_);
    else if (spatial_)
      batchnorm_spatial_backward_eval<T>(dx, a.dw[0], a.dw[1], dy, x, a.w[0], a.buf[0], a.buf[1], a.N,
                                         C_, S_, e);
    else
      batchnorm_backward_eval<T>(dx, a.dw[0], a.dw[1], dy, x, a.w[0], a.buf[0], a.buf[1], a.N, C_, e);
  }

 private:
  int64_t C_, S_;
  bool spatial_;
  double momentum_, eps_;
};

}  // namespace

GS_REGISTER_OP("BatchNorm", BatchNormOp);

}  // namespace gradstep::cpu
