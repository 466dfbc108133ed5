// network: a whole training step of a Sequential model as one call.
//   forward through every layer, the fused loss, backward, and the optimizer update over the flat
//   parameter buffer, with activations and scratch in a workspace reused across steps.
// Shape letters: N rows of the batch, F features of a layer's output, P flat parameter count.
// Write rule: a step overwrites (=) the whole gradient buffer, then updates params in place.
// The per-layer kernels are the ones the Python layers call, in the same order with the same
// arithmetic, so a fused step gives bit-identical results to the layer-by-layer path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/optim.hpp"

namespace gradstep::cpu {

enum class LayerOp : int {
  kDense = 0, kSigmoid, kTanh, kReLU, kLeakyReLU, kELU, kIdentity, kDropout, kBatchNorm,
};
enum class LossOp : int { kSoftmaxXent = 0, kSoftmaxXentSoft, kMSE, kBCE, kBCELogits, kNLL };
enum class OptOp : int { kSGD = 0, kRMSprop, kAdam };

struct LayerDesc {
  LayerOp op;
  int64_t in = 0, out = 0;  // feature counts
  int64_t w = -1, b = -1;   // offsets into the flat buffers (Dense weight/bias, BatchNorm gamma/beta)
  double alpha = 0.0;       // LeakyReLU/ELU slope, Dropout p, BatchNorm momentum
  double eps = 0.0;         // BatchNorm eps
  double l2 = 0.0;          // Dense L2 strength
};

// What one step needs besides the network's own workspace: all pointers owned by the caller.
template <class T>
struct StepArgs {
  T* params;                            // (P) flat parameters, updated in place
  T* grads;                             // (P) flat gradients, overwritten
  const T* x;                           // (N, in) input batch
  const int64_t* labels;                // (N) class labels, or null
  const T* target;                      // (N, out) targets (MSE/BCE/soft labels), or null
  int64_t N;
  T* const* running_mean;       // one (F) buffer per BatchNorm layer, in order
  T* const* running_var;        // one (F) buffer per BatchNorm layer, in order
  const uint64_t* dropout_seeds;  // one per Dropout layer, in order
  OptOp opt;
  SGDHyper sgd;
  RMSpropHyper rmsprop;
  AdamHyper adam;
  T* state0;  // (P) momentum buffer / square_avg / exp_avg (null when unused)
  T* state1;  // (P) RMSprop momentum buffer / exp_avg_sq (null when unused)
  int64_t step;  // the optimizer's step number, >= 1
};

// Statistics of one layer's output over the last batch, for the training monitor (diagnostics).
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
  Network(std::vector<LayerDesc> layers, LossOp loss, int64_t P);
  // One training step; returns the mean loss plus the L2 terms. Sizes and labels are checked by
  // the caller. Allocates only when N exceeds every batch size seen so far.
  double train_step(const StepArgs<T>& a);
  // The step's two halves (data parallelism all-reduces the gradient buffer between them):
  // forward, loss and backward (grads overwritten; the optimizer fields of `a` are not read), and
  // the optimizer update of params from grads as they are (only the optimizer fields, params and
  // grads of `a` are read). train_step = forward_backward, then update.
  double forward_backward(const StepArgs<T>& a);
  void update(const StepArgs<T>& a);
  // The last step's output layer activations (N, out): logits for fused losses.
  const T* output() const { return acts_.empty() ? nullptr : acts_.back().data(); }
  int64_t out_features() const { return layers_.back().out; }
  // Layer i's output over the last batch of `N` rows (i < number of layers).
  ActivationStats layer_stats(size_t i, int64_t N) const {
    return activation_stats<T>(acts_[i].data(), N, layers_[i].out);
  }
  size_t num_layers() const { return layers_.size(); }
  int64_t batch_capacity() const { return capacity_; }
  size_t workspace_bytes() const;

 private:
  void reserve(int64_t N);
  std::vector<LayerDesc> layers_;
  LossOp loss_;
  int64_t P_;
  int64_t capacity_ = 0;
  // acts_[i] is layer i's output (N, out_i); extra_[i] holds a Dropout mask or BatchNorm's xhat,
  // stats_[i] BatchNorm's batch mean and inverse std (2·F).
  std::vector<std::vector<T>> acts_, extra_, stats_;
  std::vector<T> grad_a_, grad_b_, loss_scratch_;
};

}  // namespace gradstep::cpu
