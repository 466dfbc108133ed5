#include "core/network.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>

#include "core/common.hpp"
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
OpArgs<T> Network<T>::args(size_t i, int64_t N, uint64_t seed, bool training) const {
  OpArgs<T> a;
  a.w = ops_[i].w.data();
  a.dw = ops_[i].dw.data();
  a.buf = ops_[i].buf.data();
  a.ws = const_cast<T*>(ws_.scratch[i].data());
  a.iws = const_cast<int32_t*>(ws_.iscratch[i].data());
  a.N = N;
  a.training = training;
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
  // Over the workspace's own vectors: before the first step it has none (not one per op).
  for (size_t i = 0; i < ws_.acts.size(); ++i) {
    n += ws_.acts[i].size() + ws_.scratch[i].size();
    ints += ws_.iscratch[i].size();
  }
  return n * sizeof(T) + ints * sizeof(int32_t);
}

template <class T>
double Network<T>::forward_backward(const T* x, const int64_t* labels, const T* target, int64_t N,
                                    const uint64_t* seeds, const double* weights) {
  if (N < min_batch_)
    throw std::invalid_argument("Network: a training batch needs at least " +
                                std::to_string(min_batch_) + " rows, got " + std::to_string(N));
  reserve(N);
  last_N_ = 0;
  double penalty = 0.0;

  // ---- forward --------------------------------------------------------------------------------
  penalty = forward_ops(x, N, seeds, true);

  // ---- loss -----------------------------------------------------------------------------------
  const int64_t K = out_shape().size();
  const T* out = ws_.acts.back().data();
  T* dy = ws_.grad_a.data();
  T* dnext = ws_.grad_b.data();
  T* probs = ws_.loss_scratch.data();
  double value = 0.0;
  switch (loss_) {
    case LossKind::kSoftmaxXent:
      value = softmax_xent_forward<T>(probs, out, labels, N, K, weights);
      softmax_xent_backward<T>(dy, probs, labels, N, K, weights);
      break;
    case LossKind::kSoftmaxXentSoft:
      value = softmax_xent_soft_forward<T>(probs, out, target, N, K, weights);
      softmax_xent_soft_backward<T>(dy, probs, target, N, K, weights);
      break;
    case LossKind::kMSE:
      value = mse_forward<T>(out, target, N * K, weights, K);
      mse_backward<T>(dy, out, target, N * K, weights, K);
      break;
    case LossKind::kBCE:
      value = bce_forward<T>(out, target, N * K, weights, K);
      bce_backward<T>(dy, out, target, N * K, weights, K);
      break;
    case LossKind::kBCELogits:
      value = bce_logits_forward<T>(out, target, N * K, weights, K);
      bce_logits_backward<T>(dy, out, target, N * K, weights, K);
      break;
    case LossKind::kNLL:
      value = nll_forward<T>(out, labels, N, K, weights);
      nll_backward<T>(dy, out, labels, N, K, weights);
      break;
  }

  // ---- backward -------------------------------------------------------------------------------
  size_t seed_i = static_cast<size_t>(n_seeds_);
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
void Network<T>::infer(const T* x, int64_t N) {
  if (N < 1) throw std::invalid_argument("Network: x must have at least one row");
  reserve(N);
  last_N_ = 0;
  forward_ops(x, N, nullptr, false);
  last_N_ = N;
}

// A chain of ops whose forward gives the same bits on any block of rows (a Dense on gradstep's
// kernels and its activation) runs block by block in one parallel region, each thread taking all
// the chain's ops over its rows with no barrier between them, instead of one region per op: a
// region costs ~1-2 µs of fork, join and imbalance, as much as a 20×128 layer's activation.
// kChainWork: gemm's threshold for cutting a product into blocks.
template <class T>
double Network<T>::forward_ops(const T* x, int64_t N, const uint64_t* seeds, bool training) {
  constexpr int64_t kChainWork = int64_t(1) << 19;
  double penalty = 0.0;
  size_t seed_i = 0;
  const T* in = x;
  const int team = team_size();
  const int64_t blocks = std::min<int64_t>(team, N);
  const int64_t per = blocks > 1 ? (N + blocks - 1) / blocks : N;
  const int64_t last = blocks > 1 ? N - (blocks - 1) * per : N;
  for (size_t i = 0; i < ops_.size();) {
    // A chain starts at an op big enough for a region of its own and takes the cheap ops after
    // it (its activation): it merges regions that would run anyway and never adds one (a
    // digits-sized net, whose products are all below kChainWork, ran 2x slower with its whole
    // forward as one region next to PyTorch's threads).
    size_t j = i;
    auto exact = [&](size_t k) {
      return ops_[k].op->rows_exact(N, per) && ops_[k].op->rows_exact(N, last);
    };
    if (blocks > 1 && last > 0 && exact(i) && ops_[i].op->forward_work(N) >= kChainWork) {
      ++j;
      while (j < ops_.size() && exact(j) && ops_[j].op->forward_work(N) < kChainWork) ++j;
    }
    if (j - i >= 2) {
      parallel_for(blocks, true, [&](int64_t b) {
        const int64_t r0 = b * per, rows = std::min(N, r0 + per) - r0;
        const T* src = in + r0 * ops_[i].op->in_shape().size();
        for (size_t k = i; k < j; ++k) {
          T* y = ws_.acts[k].data() + r0 * ops_[k].op->out_shape().size();
          ops_[k].op->forward(args(k, rows, 0, training), y, src);
          src = y;
        }
      });
      if (training)
        for (size_t k = i; k < j; ++k) penalty += ops_[k].op->penalty(args(k, N, 0, training));
      in = ws_.acts[j - 1].data();
      i = j;
      continue;
    }
    Op<T>& op = *ops_[i].op;
    const uint64_t seed = op.needs_seed() && seeds ? seeds[seed_i++] : 0;
    const OpArgs<T> a = args(i, N, seed, training);
    T* y = ws_.acts[i].data();
    op.forward(a, y, in);
    if (training) penalty += op.penalty(a);
    in = y;
    ++i;
  }
  return penalty;
}

template <class T>
void Network<T>::update(const OptArgs<T>& o) {
  clip_grads<T>(grads_, P_, o.clip);  // one global norm over every parameter's gradient
  switch (o.kind) {
    case OptKind::kSGD: sgd_step<T>(params_, o.state0, grads_, P_, o.sgd, o.step); break;
    case OptKind::kRMSprop:
      rmsprop_step<T>(params_, o.state0, o.state1, grads_, P_, o.rmsprop, o.step);
      break;
    case OptKind::kAdam: adam_step<T>(params_, o.state0, o.state1, grads_, P_, o.adam, o.step); break;
  }
}

namespace {
// np.argmax of one row: the first maximum, or the first NaN (numpy treats NaN as the maximum).
template <class T>
int64_t argmax_row(const T* row, int64_t K) {
  T best = row[0];
  int64_t at = 0;
  if (std::isnan(best)) return 0;
  for (int64_t k = 1; k < K; ++k)
    if (!(row[k] <= best)) {  // greater, or NaN
      best = row[k];
      at = k;
      if (std::isnan(best)) break;
    }
  return at;
}

// Correct decisions of one batch of outputs (N, K) under `rule` (see AccuracyRule).
template <class T>
int64_t count_correct(AccuracyRule rule, const T* out, const int64_t* labels, const T* target,
                      int64_t N, int64_t K, T threshold) {
  int64_t correct = 0;
  switch (rule) {
    case AccuracyRule::kNone: break;
    case AccuracyRule::kArgmaxVsLabels:
      for (int64_t n = 0; n < N; ++n) correct += argmax_row(out + n * K, K) == labels[n];
      break;
    case AccuracyRule::kArgmaxVsArgmax:
      for (int64_t n = 0; n < N; ++n)
        correct += argmax_row(out + n * K, K) == argmax_row(target + n * K, K);
      break;
    case AccuracyRule::kThresholdVsLabels:
      for (int64_t n = 0; n < N; ++n) correct += static_cast<int64_t>(out[n * K] > threshold) == labels[n];
      break;
    case AccuracyRule::kThresholdVsHalf:
      for (int64_t i = 0; i < N * K; ++i) correct += (out[i] > threshold) == (target[i] >= T(0.5));
      break;
  }
  return correct;
}

int64_t decisions_per_row(AccuracyRule rule, int64_t K) {
  if (rule == AccuracyRule::kNone) return 0;
  return rule == AccuracyRule::kThresholdVsHalf ? K : 1;
}

std::string str(int64_t v) { return std::to_string(v); }
}  // namespace

template <class T>
void Network<T>::check_batches(const EpochData<T>& d, int64_t b0, int64_t b1) const {
  if (d.rows < 1) throw std::invalid_argument("x must have at least one row");
  if (d.batch < 1) throw std::invalid_argument("batch_size must be >= 1, got " + str(d.batch));
  if (d.x_row != in_shape().size())
    throw std::invalid_argument("x must have " + str(in_shape().size()) + " values per row, got " +
                                str(d.x_row));
  if (loss_takes_labels(loss_) ? !d.labels : !d.target)
    throw std::invalid_argument(loss_takes_labels(loss_) ? "labels are required for this loss"
                                                         : "target is required for this loss");
  const int64_t n_batches = d.rows / d.batch + (d.rows % d.batch != 0);
  if (!(0 <= b0 && b0 < b1 && b1 <= n_batches))
    throw std::invalid_argument("the batch range [b0, b1) must satisfy 0 <= b0 < b1 <= " +
                                str(n_batches) + " (the number of batches), got [" + str(b0) +
                                ", " + str(b1) + ")");
  const int64_t first = b0 * d.batch;
  const int64_t end = b1 == n_batches ? d.rows : b1 * d.batch;
  const int64_t last_rows = end - (b1 - 1) * d.batch;  // the smallest batch is the last one
  if (std::min(last_rows, d.batch) < min_batch_)
    throw std::invalid_argument("a training batch needs at least " + str(min_batch_) +
                                " rows (BatchNorm: Expected more than 1 value per channel), batch " +
                                str(b1 - 1) + " has " + str(last_rows));
  const int64_t K = out_shape().size();
  for (int64_t p = first; p < end; ++p) {
    int64_t r = p;
    if (d.order) {
      r = d.order[p];
      if (r < 0 || r >= d.rows)
        throw std::invalid_argument("order must hold row indices in [0, " + str(d.rows) +
                                    "), got " + str(r) + " at position " + str(p));
    }
    if (d.labels && (d.labels[r] < 0 || d.labels[r] >= K))
      throw std::invalid_argument("labels must lie in [0, " + str(K) + "), got " +
                                  str(d.labels[r]) + " at row " + str(r));
    if (d.weights && !(d.weights[r] >= 0 && !std::isinf(d.weights[r])))
      throw std::invalid_argument("sample_weight must be finite and >= 0, got " +
                                  std::to_string(d.weights[r]) + " at row " + str(r));
  }
}

template <class T>
BatchesResult Network<T>::train_batches(const EpochData<T>& d, int64_t b0, int64_t b1,
                                        const uint64_t* seeds, OptArgs<T> o, double loss_sum,
                                        AccuracyRule acc, double threshold, T* outputs,
                                        bool stop_nonfinite) {
  check_batches(d, b0, b1);
  const int64_t K = out_shape().size();
  const int64_t B = std::min(d.batch, d.rows);  // rows of the largest batch
  // Everything allocated before the first step (the workspace as the first train step would size it).
  reserve(B);
  if (d.order) {
    gather_x_.resize(std::max(gather_x_.size(), elems(B, d.x_row)));
    if (d.labels) gather_labels_.resize(std::max(gather_labels_.size(), elems(B, 1)));
    if (d.target) gather_target_.resize(std::max(gather_target_.size(), elems(B, K)));
    if (d.weights) gather_weights_.resize(std::max(gather_weights_.size(), elems(B, 1)));
  }
  const T thr = static_cast<T>(threshold);
  BatchesResult res;
  res.loss_sum = loss_sum;
  const int64_t step0 = o.step;
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t lo = b * d.batch;
    const int64_t n = std::min(d.batch, d.rows - lo);
    const T* x = d.x + lo * d.x_row;
    const int64_t* labels = d.labels ? d.labels + lo : nullptr;
    const T* target = d.target ? d.target + lo * K : nullptr;
    const double* weights = d.weights ? d.weights + lo : nullptr;
    if (d.order) {  // gather the batch's rows, as fit's np.take into its batch buffers
      const int64_t* rows = d.order + lo;
      const size_t xb = static_cast<size_t>(d.x_row) * sizeof(T);
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(gather_x_.data() + i * d.x_row, d.x + rows[i] * d.x_row, xb);
      x = gather_x_.data();
      if (d.labels) {
        for (int64_t i = 0; i < n; ++i) gather_labels_[i] = d.labels[rows[i]];
        labels = gather_labels_.data();
      }
      if (d.target) {
        for (int64_t i = 0; i < n; ++i)
          std::memcpy(gather_target_.data() + i * K, d.target + rows[i] * K, K * sizeof(T));
        target = gather_target_.data();
      }
      if (d.weights) {
        for (int64_t i = 0; i < n; ++i) gather_weights_[i] = d.weights[rows[i]];
        weights = gather_weights_.data();
      }
    }
    const double value =
        forward_backward(x, labels, target, n, seeds + (b - b0) * n_seeds_, weights);
    o.step = step0 + (b - b0);
    update(o);
    res.loss_sum += value * static_cast<double>(n);  // fit's sums["loss"] += value * (hi - lo)
    res.last_loss = value;
    res.batches += 1;
    const T* out = output();
    res.correct += count_correct<T>(acc, out, labels, target, n, K, thr);
    res.decisions += n * decisions_per_row(acc, K);
    if (outputs) std::memcpy(outputs + (lo - b0 * d.batch) * K, out, static_cast<size_t>(n * K) * sizeof(T));
    if (stop_nonfinite && !std::isfinite(value)) break;
  }
  return res;
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
