#include "core/network.hpp"

#include <algorithm>
#include <cmath>

#include "core/activation.hpp"
#include "core/batchnorm.hpp"
#include "core/dense.hpp"
#include "core/dropout.hpp"
#include "core/loss.hpp"
#include "core/optim.hpp"

namespace gradstep::cpu {

template <class T>
Network<T>::Network(std::vector<LayerDesc> layers, LossOp loss, int64_t P)
    : layers_(std::move(layers)), loss_(loss), P_(P) {
  acts_.resize(layers_.size());
  extra_.resize(layers_.size());
  stats_.resize(layers_.size());
}

template <class T>
void Network<T>::reserve(int64_t N) {
  if (N <= capacity_) return;  // buffers are sized for the largest batch seen: no reallocation after
  // All new buffers are made first and swapped in only when every allocation succeeded: a
  // bad_alloc (MemoryError) leaves the workspace exactly as the last successful step left it.
  int64_t widest = layers_.front().in;
  std::vector<std::vector<T>> acts(layers_.size()), extra(layers_.size()), stats(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const LayerDesc& L = layers_[i];
    widest = std::max(widest, L.out);
    acts[i].assign(static_cast<size_t>(N * L.out), T(0));
    if (L.op == LayerOp::kDropout || L.op == LayerOp::kBatchNorm)
      extra[i].assign(static_cast<size_t>(N * L.out), T(0));
    if (L.op == LayerOp::kBatchNorm) stats[i].assign(static_cast<size_t>(2 * L.out), T(0));
  }
  std::vector<T> grad_a(static_cast<size_t>(N * widest), T(0));
  std::vector<T> grad_b(static_cast<size_t>(N * widest), T(0));
  std::vector<T> loss_scratch(static_cast<size_t>(N * layers_.back().out), T(0));
  // Keep what the last step wrote (output() and layer_stats() read it until the next step).
  for (size_t i = 0; i < layers_.size(); ++i) std::copy(acts_[i].begin(), acts_[i].end(), acts[i].begin());
  acts_.swap(acts);
  extra_.swap(extra);
  stats_.swap(stats);
  grad_a_.swap(grad_a);
  grad_b_.swap(grad_b);
  loss_scratch_.swap(loss_scratch);
  capacity_ = N;
}

template <class T>
size_t Network<T>::workspace_bytes() const {
  size_t n = grad_a_.size() + grad_b_.size() + loss_scratch_.size();
  for (size_t i = 0; i < layers_.size(); ++i) n += acts_[i].size() + extra_[i].size() + stats_[i].size();
  return n * sizeof(T);
}

template <class T>
double Network<T>::train_step(const StepArgs<T>& a) {
  const int64_t N = a.N;
  reserve(N);
  T* params = a.params;
  T* grads = a.grads;
  double penalty = 0.0;

  // ---- forward --------------------------------------------------------------------------------
  size_t bn = 0, drop = 0;
  const T* x = a.x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const LayerDesc& L = layers_[i];
    T* y = acts_[i].data();
    const int64_t n = N * L.out;
    switch (L.op) {
      case LayerOp::kDense:
        dense_forward<T>(y, x, params + L.w, L.b >= 0 ? params + L.b : nullptr, N, L.in, L.out);
        if (L.l2 != 0.0) penalty += 0.5 * L.l2 * sum_squares<T>(params + L.w, L.in * L.out);
        break;
      case LayerOp::kSigmoid: sigmoid_forward<T>(y, x, n); break;
      case LayerOp::kTanh: tanh_forward<T>(y, x, n); break;
      case LayerOp::kReLU: relu_forward<T>(y, x, n); break;
      case LayerOp::kLeakyReLU: leaky_relu_forward<T>(y, x, n, static_cast<T>(L.alpha)); break;
      case LayerOp::kELU: elu_forward<T>(y, x, n, static_cast<T>(L.alpha)); break;
      case LayerOp::kIdentity: std::copy(x, x + n, y); break;
      case LayerOp::kDropout:
        dropout_forward<T>(y, extra_[i].data(), x, n, static_cast<T>(L.alpha), a.dropout_seeds[drop++]);
        break;
      case LayerOp::kBatchNorm: {
        T* mean = stats_[i].data();
        batchnorm_forward_train<T>(y, extra_[i].data(), mean, mean + L.out, a.running_mean[bn],
                                   a.running_var[bn], x, params + L.w, params + L.b, N, L.out,
                                   static_cast<T>(L.alpha), static_cast<T>(L.eps));
        ++bn;
        break;
      }
    }
    x = y;
  }

  // ---- loss -----------------------------------------------------------------------------------
  const int64_t K = layers_.back().out;
  const T* out = acts_.back().data();
  T* dy = grad_a_.data();
  T* dnext = grad_b_.data();
  double value = 0.0;
  switch (loss_) {
    case LossOp::kSoftmaxXent:
      value = softmax_xent_forward<T>(loss_scratch_.data(), out, a.labels, N, K);
      softmax_xent_backward<T>(dy, loss_scratch_.data(), a.labels, N, K);
      break;
    case LossOp::kSoftmaxXentSoft:
      value = softmax_xent_soft_forward<T>(loss_scratch_.data(), out, a.target, N, K);
      softmax_xent_soft_backward<T>(dy, loss_scratch_.data(), a.target, N, K);
      break;
    case LossOp::kMSE:
      value = mse_forward<T>(out, a.target, N * K);
      mse_backward<T>(dy, out, a.target, N * K);
      break;
    case LossOp::kBCE:
      value = bce_forward<T>(out, a.target, N * K);
      bce_backward<T>(dy, out, a.target, N * K);
      break;
    case LossOp::kBCELogits:
      value = bce_logits_forward<T>(out, a.target, N * K);
      bce_logits_backward<T>(dy, out, a.target, N * K);
      break;
    case LossOp::kNLL:
      value = nll_forward<T>(out, a.labels, N, K);
      nll_backward<T>(dy, out, a.labels, N, K);
      break;
  }

  // ---- backward -------------------------------------------------------------------------------
  for (size_t i = layers_.size(); i-- > 0;) {
    const LayerDesc& L = layers_[i];
    const T* xin = i == 0 ? a.x : acts_[i - 1].data();
    const T* y = acts_[i].data();
    const int64_t n = N * L.out;
    // The first layer's input gradient is never needed: skip it (Dense skips its dx GEMM).
    const bool need_dx = i > 0;
    switch (L.op) {
      case LayerOp::kDense:
        dense_backward<T>(need_dx ? dnext : nullptr, grads + L.w, L.b >= 0 ? grads + L.b : nullptr,
                          dy, xin, params + L.w, N, L.in, L.out, static_cast<T>(L.l2));
        break;
      case LayerOp::kSigmoid: sigmoid_backward<T>(dnext, dy, y, n); break;
      case LayerOp::kTanh: tanh_backward<T>(dnext, dy, y, n); break;
      case LayerOp::kReLU: relu_backward<T>(dnext, dy, y, n); break;
      case LayerOp::kLeakyReLU: leaky_relu_backward<T>(dnext, dy, xin, n, static_cast<T>(L.alpha)); break;
      case LayerOp::kELU: elu_backward<T>(dnext, dy, xin, y, n, static_cast<T>(L.alpha)); break;
      case LayerOp::kIdentity: std::copy(dy, dy + n, dnext); break;
      case LayerOp::kDropout: dropout_backward<T>(dnext, dy, extra_[i].data(), n); break;
      case LayerOp::kBatchNorm:
        batchnorm_backward<T>(dnext, grads + L.w, grads + L.b, dy, extra_[i].data(),
                              stats_[i].data() + L.out, params + L.w, N, L.out);
        break;
    }
    std::swap(dy, dnext);
  }

  // ---- update ---------------------------------------------------------------------------------
  switch (a.opt) {
    case OptOp::kSGD: sgd_step<T>(params, a.state0, grads, P_, a.sgd, a.step); break;
    case OptOp::kRMSprop: rmsprop_step<T>(params, a.state0, a.state1, grads, P_, a.rmsprop, a.step); break;
    case OptOp::kAdam: adam_step<T>(params, a.state0, a.state1, grads, P_, a.adam, a.step); break;
  }
  return value + penalty;
}

template <class T>
ActivationStats activation_stats(const T* y, int64_t N, int64_t F) {
  ActivationStats s;
  if (N < 1 || F < 1) return s;
  std::vector<unsigned char> alive(static_cast<size_t>(F), 0);
  double sum = 0, sum2 = 0, lo = y[0], hi = y[0];
  int64_t zero = 0, sat_tanh = 0, sat_sig = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T* row = y + n * F;
    for (int64_t f = 0; f < F; ++f) {
      const double v = row[f];
      sum += v;
      sum2 += v * v;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      zero += v <= 0;
      alive[static_cast<size_t>(f)] |= v > 0;
      sat_tanh += std::abs(v) > 0.99;
      sat_sig += v < 0.01 || v > 0.99;
    }
  }
  const double count = static_cast<double>(N * F);
  s.mean = sum / count;
  s.std = std::sqrt(std::max(0.0, sum2 / count - s.mean * s.mean));
  s.min = lo;
  s.max = hi;
  int64_t dead = 0;
  for (unsigned char a : alive) dead += !a;
  s.dead_units = static_cast<double>(dead) / static_cast<double>(F);
  s.zero = static_cast<double>(zero) / count;
  s.saturated_tanh = static_cast<double>(sat_tanh) / count;
  s.saturated_sigmoid = static_cast<double>(sat_sig) / count;
  return s;
}

template ActivationStats activation_stats<float>(const float*, int64_t, int64_t);
template ActivationStats activation_stats<double>(const double*, int64_t, int64_t);
template class Network<float>;
template class Network<double>;

}  // namespace gradstep::cpu
