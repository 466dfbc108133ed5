// network: a model as a list of ops (core/op.hpp) plus a fused loss and an optimizer.
//   forward_backward  every op's forward, the loss and its gradient, every op's backward:
//                     returns the mean loss plus the ops' penalties (L2), leaves the gradients
//                     in the flat gradient buffer
//   update            the optimizer over the flat parameter buffer (one pass)
// The two halves are separate so that data parallelism can all-reduce the flat gradient buffer
// between them; a training step is both.
// Activations and scratch live in a workspace sized for the largest batch seen and reused, so a
// step allocates nothing after the first of its size. The workspace is replaced all at once (a
// failed allocation leaves the old one, and the last batch's outputs, as they were).
// Shape letters: N rows of the batch, K outputs of the last op per sample, P flat parameter count.
//   train_batches     a run of mini-batches of one epoch (fit's fast path): gathers each batch's
//                     rows in the epoch's order, then forward_backward and update, as that many
//                     train steps would; keeps the running loss sum and the accuracy counts
// Write rule: forward_backward overwrites (=) every gradient slot; update changes params and the
// optimizer state in place. The ops run the same code as a lone layer (OpRunner in the bindings),
// so a fused step gives the same bits as the layer-by-layer path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/clip.hpp"
#include "core/op.hpp"
#include "core/optim.hpp"

namespace gradstep::cpu {

enum class LossKind : int { kSoftmaxXent, kSoftmaxXentSoft, kMSE, kBCE, kBCELogits, kNLL };
enum class OptKind : int { kSGD, kRMSprop, kAdam };

// "softmax_xent", "softmax_xent_soft", "mse", "bce", "bce_logits", "nll"; std::invalid_argument else.
LossKind parse_loss(const std::string& name);
// True for the losses that take class labels (N) instead of targets (N, K).
bool loss_takes_labels(LossKind k);
// "sgd", "rmsprop", "adam"; std::invalid_argument else.
OptKind parse_optimizer(const std::string& name);

// One op of a network and where its tensors live (pointers into the caller's flat buffers).
template <class T>
struct NetOp {
  std::unique_ptr<Op<T>> op;
  std::vector<const T*> w;  // param_slots() order
  std::vector<T*> dw;
  std::vector<T*> buf;      // buffer_slots() order
};

template <class T>
struct OptArgs {
  OptKind kind;
  SGDHyper sgd;
  RMSpropHyper rmsprop;
  AdamHyper adam;
  T* state0;     // (P) momentum buffer / square_avg / exp_avg (null when unused)
  T* state1;     // (P) RMSprop momentum buffer / exp_avg_sq (null when unused)
  int64_t step;  // the optimizer's step number, >= 1
  ClipArgs clip;  // applied to the whole flat gradient buffer before the rule (0 = off)
};

// How train_batches counts "accuracy", as the Python losses' predicted_classes / target_classes
// read outputs and targets (python/gradstep/_engine.py, accuracy_rule, picks the rule):
enum class AccuracyRule : int {
  kNone = 0,
  kArgmaxVsLabels = 1,     // argmax of the output row == the label (N decisions)
  kArgmaxVsArgmax = 2,     // argmax of the output row == argmax of the target row (N)
  kThresholdVsLabels = 3,  // (first output > threshold) == the label (N)
  kThresholdVsHalf = 4,    // each output: (output > threshold) == (target >= 0.5) (N·K)
};

// One epoch's training data for train_batches (pointers into the caller's arrays).
template <class T>
struct EpochData {
  const T* x = nullptr;             // (rows, x_row)
  int64_t rows = 0, x_row = 0;
  const int64_t* labels = nullptr;  // (rows) class labels, for the losses that take them
  const T* target = nullptr;        // (rows, K) targets, for the others
  const double* weights = nullptr;  // (rows) per-sample loss weights, or null
  const int64_t* order = nullptr;   // (rows) the epoch's row order (a permutation), or null: 0, 1, ...
  int64_t batch = 1;                // batch b holds positions [b·batch, min(rows, (b+1)·batch))
};

struct BatchesResult {
  int64_t batches = 0;                 // batches run
  double loss_sum = 0;                 // the running sum, continued: += loss · rows, batch by batch
  double last_loss = 0;                // the last batch's loss
  int64_t correct = 0, decisions = 0;  // accuracy counts (0, 0 without a rule)
};

// Statistics of one op's output over the last batch, for the training monitor (diagnostics).
struct ActivationStats {
  double mean = 0, std = 0, min = 0, max = 0;
  double dead_units = 0;      // fraction of units (columns) <= 0 for every row of the batch
  double zero = 0;            // fraction of entries <= 0
  double saturated_tanh = 0;  // fraction of entries with |y| > 0.99
  double saturated_sigmoid = 0;  // fraction of entries with y < 0.01 or y > 0.99
};

// One pass over y (N,F), serial and in row order: it runs once per monitored batch, not per step.
template <class T>
ActivationStats activation_stats(const T* y, int64_t N, int64_t F);

template <class T>
class Network {
 public:
  // ops[i]'s input shape must be ops[i-1]'s output shape (std::invalid_argument otherwise);
  // params, grads: the flat buffers (P) the ops' pointers lie in.
  Network(std::vector<NetOp<T>> ops, LossKind loss, T* params, T* grads, int64_t P);
  // x (N, in_shape); labels (N) in [0, K) for label losses, else target (N, K); seeds: one per op
  // with needs_seed(), in order; weights (N) per-sample loss weights or null (core/loss.hpp). The
  // caller has checked shapes, label ranges and weights.
  double forward_backward(const T* x, const int64_t* labels, const T* target, int64_t N,
                          const uint64_t* seeds, const double* weights = nullptr);
  void update(const OptArgs<T>& o);
  // Every op's forward in evaluation mode (BatchNorm's running statistics, no dropout) on x (N
  // rows): output() then holds the outputs, as a lone layer's forward(training=False) chain gives.
  void infer(const T* x, int64_t N);
  // Throws std::invalid_argument unless batches [b0, b1) of `d` can run: 0 <= b0 < b1 <= number of
  // batches, every batch at least min_batch() rows, every order entry, label (in [0, K)) and
  // weight (finite, >= 0) that those batches use valid. `d`'s array sizes are the caller's to check.
  void check_batches(const EpochData<T>& d, int64_t b0, int64_t b1) const;
  // Batches [b0, b1) of an epoch, each exactly a train step (forward_backward, then update) on the
  // batch's rows gathered in order: the optimizer step is o.step for b0, one more per batch; seeds
  // (b1 - b0) × seeds_needed(), one row per batch. loss_sum continues the caller's running sum in
  // the order fit adds (sum += loss · rows). outputs (nullable): each batch's outputs, stored from
  // row 0 for position b0·batch on. stop_nonfinite: return right after a batch whose loss is not
  // finite. Runs check_batches first; the workspace and gather buffers are sized before any step,
  // so a failed allocation changes nothing.
  BatchesResult train_batches(const EpochData<T>& d, int64_t b0, int64_t b1, const uint64_t* seeds,
                              OptArgs<T> o, double loss_sum, AccuracyRule acc, double threshold,
                              T* outputs, bool stop_nonfinite);

  const Shape& in_shape() const { return ops_.front().op->in_shape(); }
  const Shape& out_shape() const { return ops_.back().op->out_shape(); }
  size_t num_ops() const { return ops_.size(); }
  const Op<T>& op(size_t i) const { return *ops_[i].op; }
  int64_t seeds_needed() const { return n_seeds_; }
  int64_t min_batch() const { return min_batch_; }
  LossKind loss() const { return loss_; }
  // Rows of the last completed forward_backward (0 before the first, or after the workspace was
  // replaced): output() and layer_stats() describe that batch.
  int64_t last_batch() const { return last_N_; }
  const T* output() const { return ws_.acts.back().data(); }
  ActivationStats layer_stats(size_t i) const {
    return activation_stats<T>(ws_.acts[i].data(), last_N_, ops_[i].op->out_shape().size());
  }
  int64_t batch_capacity() const { return ws_.capacity; }
  size_t workspace_bytes() const;

 private:
  struct Workspace {
    int64_t capacity = 0;
    std::vector<std::vector<T>> acts, scratch;
    std::vector<std::vector<int32_t>> iscratch;
    std::vector<T> grad_a, grad_b, loss_scratch;
  };
  void reserve(int64_t N);
  OpArgs<T> args(size_t i, int64_t N, uint64_t seed, bool training = true) const;
  // Every op's forward on x (N rows) into ws_.acts; returns the ops' penalty terms (0 unless
  // training).
  double forward_ops(const T* x, int64_t N, const uint64_t* seeds, bool training);

  std::vector<NetOp<T>> ops_;
  LossKind loss_;
  T* params_;
  T* grads_;
  int64_t P_;
  int64_t n_seeds_ = 0, min_batch_ = 1, last_N_ = 0;
  Workspace ws_;
  // train_batches' gathered batch (reused; sized for the largest batch seen).
  std::vector<T> gather_x_, gather_target_;
  std::vector<int64_t> gather_labels_;
  std::vector<double> gather_weights_;
};

}  // namespace gradstep::cpu
