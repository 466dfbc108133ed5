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
// Write rule: forward_backward overwrites (=) every gradient slot; update changes params and the
// optimizer state in place. The ops run the same code as a lone layer (OpRunner in the bindings),
// so a fused step gives the same bits as the layer-by-layer path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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
  // with needs_seed(), in order. The caller has checked shapes and label ranges.
  double forward_backward(const T* x, const int64_t* labels, const T* target, int64_t N,
                          const uint64_t* seeds);
  void update(const OptArgs<T>& o);

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
  OpArgs<T> args(size_t i, int64_t N, uint64_t seed) const;

  std::vector<NetOp<T>> ops_;
  LossKind loss_;
  T* params_;
  T* grads_;
  int64_t P_;
  int64_t n_seeds_ = 0, min_batch_ = 1, last_N_ = 0;
  Workspace ws_;
};

}  // namespace gradstep::cpu
