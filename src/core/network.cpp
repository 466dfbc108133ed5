#include "core/network.hpp"

#include <algorithm>
#include <cmath>
#include <new>
#include <stdexcept>

#include "core/loss.hpp"
#include "core/optim.hpp"

namespace gradstep::cpu {

LossKind parse_loss(const std::string& name) {
  if (name == "softmax_xent") return LossKind::kSoftmaxXent;
  if (name == "softmax_xent_soft") return LossKind::kSoftmaxXentSoft;
  if (name == "mse") return LossKind::kMSE;
  if (name == "bce") return LossKind::kBCE;
  if (name == "bce_logits") return LossKind::kBCELogits;
  if (name == "nll") return LossKind::kNLL;
  throw std::invalid_argument("Network: unknown loss '" + name +
                              "' (softmax_xent, softmax_xent_soft, mse, bce, bce_logits, nll)");
}

bool loss_takes_labels(LossKind k) { return k == LossKind::kSoftmaxXent || k == LossKind::kNLL; }

OptKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptKind::kSGD;
  if (name == "rmsprop") return OptKind::kRMSprop;
  if (name == "adam") return OptKind::kAdam;
  throw std::invalid_argument("Network: unknown optimizer '" + name + "' (sgd, rmsprop, adam)");
}

template <class T>
Network<T>::Network(std::vector<NetOp<T>> ops, LossKind loss, T* params, T* grads, int64_t P)
    : ops_(std::move(ops)), loss_(loss), params_(params), grads_(grads), P_(P) {
  if (ops_.empty()) throw std::invalid_argument("Network: at least one op is required");
  for (size_t i = 0; i < ops_.size(); ++i) {
    const Op<T>& op = *ops_[i].op;
    if (i > 0 && op.in_shape() != ops_[i - 1].op->out_shape())
      throw std::invalid_argument("Network: op " + std::to_string(i) + " takes " +
                                  op.in_shape().str() + " per sample, but op " +
                                  std::to_string(i - 1) + " gives " +
                                  ops_[i - 1].op->out_shape().str());
    if (ops_[i].w.size() != op.param_slots().size() || ops_[i].dw.size() != op.param_slots().size() ||
        ops_[i].buf.size() != op.buffer_slots().size())
      throw std::invalid_argument("Network: op " + std::to_string(i) +
                                  " got the wrong number of parameter or buffer pointers");
    n_seeds_ += op.needs_seed() ? 1 : 0;
    min_batch_ = std::max(min_batch_, op.min_training_batch());
  }
}

template <class T>
OpArgs<T> Network<T>::args(size_t i, int64_t N, uint64_t seed) const {
  OpArgs<T> a;
  a.w = ops_[i].w.data();
  a.dw = ops_[i].dw.data();
  a.buf = ops_[i].buf.data();
  a.ws = const_cast<T*>(ws_.scratch[i].data());
  a.iws = const_cast<int32_t*>(ws_.iscratch[i].data());
  a.N = N;
  a.training = true;
  a.seed = seed;
  return a;
}

namespace {
// N·per_row elements, refusing sizes no machine here could hold (and int64 overflow) up front.
size_t elems(int64_t N, int64_t per_row) {
  constexpr int64_t kMax = int64_t(1) << 40;
  if (per_row < 0 || (per_row > 0 && N > kMax / per_row)) throw std::bad_alloc();
  return static_cast<size_t>(N * per_row);
}
}  // namespace

template <class T>
void Network<T>::reserve(int64_t N) {
  if (N <= ws_.capacity) return;  // sized for the largest batch seen: no reallocation after
  // Built aside and swapped in whole: a bad_alloc leaves the current workspace untouched.
  Workspace w;
  const size_t n = ops_.size();
  w.acts.resize(n);
  w.scratch.resize(n);
  w.iscratch.resize(n);
  int64_t widest = in_shape().size();
  for (size_t i = 0; i < n; ++i) {
    const Op<T>& op = *ops_[i].op;
    // Every op's workspace formula multiplies N by its per-sample sizes: keep those products
    // far from int64 overflow (beyond them no allocation could succeed anyway).
    elems(N, std::max(op.in_shape().size(), op.out_shape().size()));
    widest = std::max(widest, op.out_shape().size());
    w.acts[i].assign(elems(N, op.out_shape().size()), T(0));
    w.scratch[i].assign(elems(1, op.workspace(N)), T(0));
    w.iscratch[i].assign(elems(1, op.int_workspace(N)), 0);
  }
  w.grad_a.assign(elems(N, widest), T(0));
  w.grad_b.assign(elems(N, widest), T(0));
  w.loss_scratch.assign(elems(N, out_shape().size()), T(0));
  w.capacity = N;
  std::swap(ws_, w);
  last_N_ = 0;  // the last batch's outputs went with the old workspace
}

template <class T>
size_t Network<T>::workspace_bytes() const {
  size_t n = ws_.grad_a.size() + ws_.grad_b.size() + ws_.loss_scratch.size(), ints = 0;
  for (size_t i = 0; i < ops_.size(); ++i) {
    n += ws_.acts[i].size() + ws_.scratch[i].size();
    ints += ws_.iscratch[i].size();
  }
  return n * sizeof(T) + ints * sizeof(int32_t);
}

template <class T>
double Network<T>::forward_backward(const T* x, const int64_t* labels, const T* target, int64_t N,
                                    const uint64_t* seeds) {
  if (N < min_batch_)
    throw std::invalid_argument("Network: a training batch needs at least " +
                                std::to_string(min_batch_) + " rows, got " + std::to_string(N));
  reserve(N);
  last_N_ = 0;
  double penalty = 0.0;

  // ---- forward --------------------------------------------------------------------------------
  size_t seed_i = 0;
  const T* in = x;
  for (size_t i = 0; i < ops_.size(); ++i) {
    Op<T>& op = *ops_[i].op;
    const uint64_t seed = op.needs_seed() ? seeds[seed_i++] : 0;
    const OpArgs<T> a = args(i, N, seed);
    T* y = ws_.acts[i].data();
    op.forward(a, y, in);
    penalty += op.penalty(a);
    in = y;
  }

  // ---- loss -----------------------------------------------------------------------------------
  const int64_t K = out_shape().size();
  const T* out = ws_.acts.back().data();
  T* dy = ws_.grad_a.data();
  T* dnext = ws_.grad_b.data();
  T* probs = ws_.loss_scratch.data();
  double value = 0.0;
  switch (loss_) {
    case LossKind::kSoftmaxXent:
      value = softmax_xent_forward<T>(probs, out, labels, N, K);
      softmax_xent_backward<T>(dy, probs, labels, N, K);
      break;
    case LossKind::kSoftmaxXentSoft:
      value = softmax_xent_soft_forward<T>(probs, out, target, N, K);
      softmax_xent_soft_backward<T>(dy, probs, target, N, K);
      break;
    case LossKind::kMSE:
      value = mse_forward<T>(out, target, N * K);
      mse_backward<T>(dy, out, target, N * K);
      break;
    case LossKind::kBCE:
      value = bce_forward<T>(out, target, N * K);
      bce_backward<T>(dy, out, target, N * K);
      break;
    case LossKind::kBCELogits:
      value = bce_logits_forward<T>(out, target, N * K);
      bce_logits_backward<T>(dy, out, target, N * K);
      break;
    case LossKind::kNLL:
      value = nll_forward<T>(out, labels, N, K);
      nll_backward<T>(dy, out, labels, N, K);
      break;
  }

  // ---- backward -------------------------------------------------------------------------------
  seed_i = static_cast<size_t>(n_seeds_);
  for (size_t i = ops_.size(); i-- > 0;) {
    Op<T>& op = *ops_[i].op;
    const uint64_t seed = op.needs_seed() ? seeds[--seed_i] : 0;
    const T* xin = i == 0 ? x : ws_.acts[i - 1].data();
    // The first op's input gradient is never needed: a null dx lets it skip the work.
    op.backward(args(i, N, seed), i > 0 ? dnext : nullptr, dy, xin, ws_.acts[i].data());
    std::swap(dy, dnext);
  }
  last_N_ = N;
  return value + penalty;
}

template <class T>
void Network<T>::update(const OptArgs<T>& o) {
  switch (o.kind) {
    case OptKind::kSGD: sgd_step<T>(params_, o.state0, grads_, P_, o.sgd, o.step); break;
    case OptKind::kRMSprop:
      rmsprop_step<T>(params_, o.state0, o.state1, grads_, P_, o.rmsprop, o.step);
      break;
    case OptKind::kAdam: adam_step<T>(params_, o.state0, o.state1, grads_, P_, o.adam, o.step); break;
  }
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
