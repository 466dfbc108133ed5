// op: the one interface every layer kind runs through (Caffe's Layer, ggml's ops).
// An op is built for one per-sample input shape, (F), (C,L) or (C,H,W), and knows
//   - its shape rule: the output shape, or std::invalid_argument naming what is wrong;
//   - its parameter slots in the flat arena (name, shape) and its buffers (state that is not
//     trained, e.g. BatchNorm's running statistics);
//   - the workspace it needs for a batch of N (saved masks, statistics, argmax, scratch);
//   - forward and backward over raw pointers, batch-first, C-contiguous.
// A network is a list of ops (core/network.hpp); a Python layer object is a handle on one op, so
// `layer.forward` on its own and the fused step run the same code.
// Ops are registered by name (GS_REGISTER_OP in the op's own family file); Python layer classes
// name their op, and the package checks at import that both sides list the same kinds.
// Nothing here is device-specific: a CUDA backend implements the same op list on device buffers.
// Write rule: forward overwrites (=) y and what it saves in its workspace; backward overwrites (=)
// dx (when not null) and the op's parameter gradients.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace gradstep::cpu {

// A per-sample shape: (F), (C,L) or (C,H,W) (rank 1 to 3, every entry >= 1).
struct Shape {
  std::vector<int64_t> dims;
  int64_t rank() const { return static_cast<int64_t>(dims.size()); }
  int64_t size() const;         // product of the dims
  std::string str() const;      // "(3, 8, 8)"
  bool operator==(const Shape& o) const { return dims == o.dims; }
  bool operator!=(const Shape& o) const { return dims != o.dims; }
};

// A named tensor of an op: a parameter slot or a buffer.
struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  int64_t size() const;
};

// An op's configuration, as the Python layer gives it: name -> one or more numbers.
// The getters throw std::invalid_argument naming the op and the attribute.
class OpAttrs {
 public:
  std::string op;  // the op kind, for messages
  std::map<std::string, std::vector<double>> values;

  double real(const std::string& key) const;
  double real_or(const std::string& key, double fallback) const;
  int64_t integer(const std::string& key, int64_t min) const;
  int64_t integer_or(const std::string& key, int64_t fallback, int64_t min) const;
  std::vector<int64_t> ints(const std::string& key, size_t count, int64_t min) const;
  bool flag_or(const std::string& key, bool fallback) const;
};

// What one forward or backward call of an op sees besides its input and output.
template <class T>
struct OpArgs {
  const T* const* w = nullptr;  // the op's parameter slots, in param_slots() order
  T* const* dw = nullptr;       // their gradients
  T* const* buf = nullptr;      // its buffers, in buffer_slots() order
  T* ws = nullptr;              // workspace(N) elements, kept from forward to backward
  int32_t* iws = nullptr;       // int_workspace(N) elements, likewise
  int64_t N = 0;                // batch rows
  bool training = true;         // the forward's mode (backward gets the same)
  uint64_t seed = 0;            // for ops that draw random numbers (needs_seed())
};

template <class T>
class Op {
 public:
  virtual ~Op() = default;
  const Shape& in_shape() const { return in_; }
  const Shape& out_shape() const { return out_; }
  const std::vector<Slot>& param_slots() const { return params_; }
  const std::vector<Slot>& buffer_slots() const { return buffers_; }
  // Scratch kept between forward and backward of one batch of N rows, in T and int32 elements.
  virtual int64_t workspace(int64_t /*N*/) const { return 0; }
  virtual int64_t int_workspace(int64_t /*N*/) const { return 0; }
  virtual bool needs_seed() const { return false; }
  // The smallest batch a training forward accepts (BatchNorm: 2).
  virtual int64_t min_training_batch() const { return 1; }
  // The regularization term this op adds to the loss (Dense's (l2/2)·‖W‖²).
  virtual double penalty(const OpArgs<T>& /*a*/) const { return 0.0; }
  // True when a forward of a block of `rows` rows of an N-row batch, run on those rows alone,
  // writes exactly those rows of the whole batch's forward (the same bits), and the op needs no
  // workspace, seed or batch statistics: the network then runs a chain of such ops block by block
  // in one parallel region (see Network::forward_ops).
  virtual bool rows_exact(int64_t /*N*/, int64_t /*rows*/) const { return false; }
  // About how many multiply-adds or element passes a forward of N rows costs.
  virtual int64_t forward_work(int64_t N) const { return N * out_.size(); }
  // y (N, out_shape); x (N, in_shape).
  virtual void forward(const OpArgs<T>& a, T* y, const T* x) = 0;
  // dx (N, in_shape) or null (the network's first op); dy, y (N, out_shape); x (N, in_shape):
  // the same x and y as the forward of this batch.
  virtual void backward(const OpArgs<T>& a, T* dx, const T* dy, const T* x, const T* y) = 0;

 protected:
  Shape in_, out_;
  std::vector<Slot> params_, buffers_;
};

template <class T>
using OpFactory = std::function<std::unique_ptr<Op<T>>(const OpAttrs&, const Shape&)>;

// Registers an op kind (at static-initialization time, through GS_REGISTER_OP); returns true.
bool register_op(const std::string& kind, OpFactory<float> f32, OpFactory<double> f64);
// The registered kinds, sorted.
std::vector<std::string> op_kinds();
// Builds an op of `kind` for per-sample input shape `in`; std::invalid_argument when the kind is
// unknown, an attribute is missing or out of range, or the shape rule rejects `in`.
template <class T>
std::unique_ptr<Op<T>> make_op(const std::string& kind, const OpAttrs& attrs, const Shape& in);

// Shape-rule helpers for the ops: throw std::invalid_argument("<op>: ...").
void require_rank(const std::string& op, const Shape& in, int64_t rank, const char* layout);
void require_rank_between(const std::string& op, const Shape& in, int64_t lo, int64_t hi,
                          const char* layouts);

}  // namespace gradstep::cpu

// In an op family's .cpp: GS_REGISTER_OP("Dense", DenseOp) with DenseOp<T> a class template whose
// constructor takes (const OpAttrs&, const Shape& in).
#define GS_REGISTER_OP(KIND, CLS)                                                              \
  static const bool gs_op_registered_##CLS = ::gradstep::cpu::register_op(                    \
      KIND,                                                                                    \
      [](const ::gradstep::cpu::OpAttrs& a, const ::gradstep::cpu::Shape& s)                   \
          -> std::unique_ptr<::gradstep::cpu::Op<float>> { return std::make_unique<CLS<float>>(a, s); }, \
      [](const ::gradstep::cpu::OpAttrs& a, const ::gradstep::cpu::Shape& s)                   \
          -> std::unique_ptr<::gradstep::cpu::Op<double>> { return std::make_unique<CLS<double>>(a, s); })
