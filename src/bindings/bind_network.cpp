// gradstep._core.Network: a model's ops, fused loss and optimizer; a training step in one call
// (train_step) or in two halves (forward_backward, then update), so that data parallelism can
// all-reduce the flat gradient buffer between them.
// The handle keeps references to the arrays it writes every step (the flat parameter, gradient and
// optimizer-state buffers, the ops' buffers such as BatchNorm's running statistics), checked in
// full at construction; each step checks the batch and that those arrays are still writable, so
// the Python cost per mini-batch is a few microseconds and a step allocates nothing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "bindings/op_spec.hpp"
#include "bindings/weights.hpp"
#include "core/network.hpp"

namespace gradstep::bind {
namespace {

py::dict stats_dict(const cpu::ActivationStats& s) {
  py::dict d;
  d["mean"] = s.mean;
  d["std"] = s.std;
  d["min"] = s.min;
  d["max"] = s.max;
  d["dead_units"] = s.dead_units;
  d["zero"] = s.zero;
  d["saturated_tanh"] = s.saturated_tanh;
  d["saturated_sigmoid"] = s.saturated_sigmoid;
  return d;
}

// py::cast with a TypeError naming the argument (pybind11's own cast_error becomes RuntimeError).
template <class V>
V cast_arg(const py::handle& h, const char* fn, const char* name) {
  try {
    return py::cast<V>(h);
  } catch (const py::cast_error&) {
    throw py::type_error(std::string(fn) + ": " + name + " has the wrong type (" +
                         std::string(py::str(py::type::handle_of(h).attr("__name__"))) + ")");
  }
}

// The first NaN or inf among a[0..n) (flat index), or -1: a batch check that costs a fraction of a
// microsecond for a digits batch (~2 µs for 32 MNIST rows). Reads the exponent bits (robust to any
// floating-point flags) from the value's top 32 bits, OR-ing "all exponent bits set" over a block:
// an equality compare and an OR, which the compiler vectorizes with baseline SSE2 (a max of the
// masked bits would need SSE4.1 and ran 5x slower). Only a bad block is searched element by element.
template <class T>
int64_t first_nonfinite(const T* a, int64_t n) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr uint32_t kExp = sizeof(T) == 4 ? 0x7f800000u : 0x7ff00000u;  // in the top 32 bits
  constexpr int64_t kBlock = 512;
  for (int64_t s = 0; s < n; s += kBlock) {
    const int64_t e = std::min(n, s + kBlock);
    uint32_t hit = 0;
    for (int64_t i = s; i < e; ++i) {
      U bits;
      std::memcpy(&bits, a + i, sizeof bits);
      hit |= (static_cast<uint32_t>(bits >> (8 * sizeof(U) - 32)) & kExp) == kExp;
    }
    if (hit)
      for (int64_t i = s; i < e; ++i)
        if (!std::isfinite(a[i])) return i;
  }
  return -1;
}

// ValueError "<name> holds NaN or inf (first at row r, column c)" for the first bad entry of the
// (N, ...) array at p, columns counted over each row flattened: the text of the Python
// _checks.check_finite, which train_step used to run on every batch before calling the network.
template <class T>
void refuse_nonfinite(const T* p, int64_t rows, int64_t row_size, const char* name) {
  const int64_t bad = first_nonfinite(p, rows * row_size);
  if (bad < 0) return;
  throw py::value_error(std::string(name) + " holds NaN or inf (first at row " +
                        std::to_string(bad / row_size) + ", column " +
                        std::to_string(bad % row_size) + ")");
}

// Held for a whole call (the GIL is released inside it): a second Python thread using the same
// network gets an error, never a workspace being reallocated under it.
std::unique_lock<std::mutex> exclusive(std::mutex& m, const char* fn) {
  std::unique_lock<std::mutex> lock(m, std::try_to_lock);
  if (!lock.owns_lock())
    throw py::value_error(std::string(fn) + ": this network is running a step in another thread");
  return lock;
}

template <class T>
struct NetImpl {
  using value_type = T;
  std::unique_ptr<cpu::Network<T>> net;
  std::vector<int64_t> x_shape, y_shape;  // (kAny, in...), (kAny, out...)
  std::vector<uint64_t> seed_buf;

  // x checked against the input shape; returns N.
  const T* batch(const py::array& x, const char* fn, int64_t& N) {
    const T* px = in<T>(x, fn, "x", x_shape);
    N = dim(x, 0);
    if (N < 1) throw py::value_error(std::string(fn) + ": x must have at least one row");
    if (N < net->min_batch())
      throw py::value_error(std::string(fn) + ": a training batch needs at least " +
                            std::to_string(net->min_batch()) +
                            " rows (BatchNorm: Expected more than 1 value per channel), got " +
                            std::to_string(N));
    return px;
  }
};

struct NetworkHandle {
  bool f64 = false;
  NetImpl<float> n32;
  NetImpl<double> n64;
  cpu::LossKind loss;
  cpu::OptKind opt;
  int64_t P = 0, K = 0;
  py::array params, grads;
  std::vector<py::array> buffers;  // every op's buffers, in order
  std::vector<std::vector<int64_t>> buffer_shapes;
  py::object state0, state1;
  std::mutex busy;

  template <class F>
  auto visit(F&& f) {
    if (f64) return f(n64);
    return f(n32);
  }

  // The arrays a step writes are Python objects the caller still holds: one may have been made
  // read-only, or retyped or reshaped in place, since construction. Checked again before every
  // step (no allocation); the pointers the ops hold stay valid because the handle keeps the
  // arrays, whose memory numpy cannot move while they are referenced.
  template <class T>
  void recheck(const char* fn) const {
    check_array<T>(params, fn, "params", {P});
    check_array<T>(grads, fn, "grads", {P});
    if (!params.writeable() || !grads.writeable())
      throw py::value_error(std::string(fn) + ": params and grads must be writable");
    for (size_t i = 0; i < buffers.size(); ++i) {
      check_array<T>(buffers[i], fn, "an op's buffer (e.g. BatchNorm running_mean)", buffer_shapes[i]);
      if (!buffers[i].writeable())
        throw py::value_error(std::string(fn) + ": an op's buffer (e.g. BatchNorm running_mean) "
                              "has been made read-only");
    }
    for (const py::object* s : {&state0, &state1})
      if (!s->is_none()) {
        py::array a = py::reinterpret_borrow<py::array>(*s);
        check_array<T>(a, fn, "the optimizer state", {P});
        if (!a.writeable()) throw py::value_error(std::string(fn) + ": the optimizer state must be writable");
      }
  }

  // The loss's targets, whichever it takes: labels (N,) int64 into pl, or a target (N, y_shape)
  // of T into pt; the other must be None. Shapes and dtypes only: the label range is the caller's
  // (every row for one batch, the rows an epoch's chunk uses for train_batches).
  template <class T>
  void loss_targets(const NetImpl<T>& impl, const py::object& labels, const py::object& target,
                    int64_t N, const char* fn, const int64_t*& pl, const T*& pt) const {
    const std::string f(fn);
    if (cpu::loss_takes_labels(loss)) {
      if (labels.is_none()) throw py::value_error(f + ": labels are required for this loss");
      if (!target.is_none()) throw py::value_error(f + ": this loss takes labels; target must be None");
      if (!py::isinstance<py::array>(labels)) throw py::type_error(f + ": labels must be a numpy array of int64");
      py::array lab = py::reinterpret_borrow<py::array>(labels);
      if (!lab.dtype().equal(py::dtype::of<int64_t>()))
        throw py::type_error(f + ": labels must have dtype int64, got " + std::string(py::str(lab.dtype())));
      check_array<int64_t>(lab, fn, "labels", {N});
      pl = static_cast<const int64_t*>(lab.data());
    } else {
      if (target.is_none()) throw py::value_error(f + ": target is required for this loss");
      if (!labels.is_none()) throw py::value_error(f + ": this loss takes a target; labels must be None");
      if (!py::isinstance<py::array>(target)) throw py::type_error(f + ": target must be a numpy array");
      py::array t = py::reinterpret_borrow<py::array>(target);
      pt = in<T>(t, fn, "target", impl.y_shape);
      if (dim(t, 0) != N)
        throw py::value_error(f + ": target must have " + std::to_string(N) + " rows (as x), got " +
                              std::to_string(dim(t, 0)));
    }
  }

  template <class T>
  double forward_backward(NetImpl<T>& impl, const py::array& x, const py::object& labels,
                          const py::object& target, const py::sequence& seeds,
                          const py::object& sample_weight, const char* fn,
                          bool check_finite = false) {
    int64_t N = 0;
    const T* px = impl.batch(x, fn, N);
    const int64_t* pl = nullptr;
    const T* pt = nullptr;
    loss_targets(impl, labels, target, N, fn, pl, pt);
    if (pl)
      for (int64_t i = 0; i < N; ++i)
        if (pl[i] < 0 || pl[i] >= K)
          throw py::value_error(std::string(fn) + ": labels must lie in [0, " + std::to_string(K) +
                                "), got " + std::to_string(pl[i]));
    if (check_finite) {  // train_step's names for them: x is its xb, the target its yb
      refuse_nonfinite(px, N, impl.net->in_shape().size(), "train_step: xb");
      if (pt) refuse_nonfinite(pt, N, K, "train_step: yb");
    }
    if (static_cast<int64_t>(py::len(seeds)) != impl.net->seeds_needed())
      throw py::value_error(std::string(fn) + ": expected " +
                            std::to_string(impl.net->seeds_needed()) + " dropout seeds, got " +
                            std::to_string(py::len(seeds)));
    for (size_t i = 0; i < impl.seed_buf.size(); ++i)
      impl.seed_buf[i] = cast_arg<uint64_t>(seeds[i], fn, "dropout_seeds");
    const double* pw = weights_in(sample_weight, fn, N);
    recheck<T>(fn);
    py::gil_scoped_release nogil;
    return impl.net->forward_backward(px, pl, pt, N, impl.seed_buf.data(), pw);
  }

  template <class T>
  cpu::OptArgs<T> opt_args(const py::sequence& hyper_seq, int64_t step, const char* fn,
                           const py::object& clip) {
    double hyper[6] = {0, 0, 0, 0, 0, 0};
    const size_t n_hyper = static_cast<size_t>(py::len(hyper_seq));
    const size_t needed = opt == cpu::OptKind::kAdam ? 6 : 5;
    if (n_hyper != needed)
      throw py::value_error(std::string(fn) + ": expected " + std::to_string(needed) +
                            " hyperparameters, got " + std::to_string(n_hyper));
    for (size_t i = 0; i < n_hyper; ++i) hyper[i] = cast_arg<double>(hyper_seq[i], fn, "hyper");
    if (step < 1) throw py::value_error(std::string(fn) + ": step must be >= 1");
    cpu::OptArgs<T> o{};
    // clip: None or (clipnorm, clipvalue), each > 0 or 0 for off (the optimizer's clipping).
    if (!clip.is_none()) {
      std::vector<double> c;
      try {
        c = py::cast<std::vector<double>>(clip);
      } catch (const py::cast_error&) {
        throw py::type_error(std::string(fn) + ": clip must be a pair of numbers or None");
      }
      if (c.size() != 2 || !(c[0] >= 0) || !(c[1] >= 0) || std::isinf(c[0]) || std::isinf(c[1]))
        throw py::value_error(std::string(fn) + ": clip must be (clipnorm, clipvalue), each finite "
                              "and >= 0 (0 = off)");
      o.clip = {c[0], c[1]};
    }
    o.kind = opt;
    o.step = step;
    o.state0 = state0.is_none() ? nullptr : static_cast<T*>(py::reinterpret_borrow<py::array>(state0).mutable_data());
    o.state1 = state1.is_none() ? nullptr : static_cast<T*>(py::reinterpret_borrow<py::array>(state1).mutable_data());
    const double* h = hyper;
    switch (opt) {
      case cpu::OptKind::kSGD: o.sgd = {h[0], h[1], h[2], h[3], h[4] != 0.0}; break;
      case cpu::OptKind::kRMSprop: o.rmsprop = {h[0], h[1], h[2], h[3], h[4]}; break;
      case cpu::OptKind::kAdam: o.adam = {h[0], h[1], h[2], h[3], h[4], h[5] != 0.0}; break;
    }
    // The update dereferences the state buffers a momentum needs: they must exist.
    if (opt == cpu::OptKind::kSGD && o.sgd.momentum != 0.0 && !o.state0)
      throw py::value_error(std::string(fn) + ": SGD momentum != 0 needs the state0 buffer");
    if (opt == cpu::OptKind::kRMSprop && o.rmsprop.momentum > 0.0 && !o.state1)
      throw py::value_error(std::string(fn) + ": RMSprop momentum > 0 needs the state1 buffer");
    return o;
  }

  template <class T>
  void update(NetImpl<T>& impl, const py::sequence& hyper, int64_t step, const py::object& clip,
              const char* fn) {
    const cpu::OptArgs<T> o = opt_args<T>(hyper, step, fn, clip);
    recheck<T>(fn);
    py::gil_scoped_release nogil;
    impl.net->update(o);
  }

  // Network.train_batches: see its binding below. Every array is checked here (dtype, shape,
  // layout) and every index, label and weight the batches use by the core's check_batches, all
  // before the first step; then the batches run with the GIL released.
  template <class T>
  py::tuple train_batches(NetImpl<T>& impl, const py::array& x, const py::object& labels,
                          const py::object& target, const py::object& sample_weight,
                          const py::object& order, int64_t batch_size, int64_t b0, int64_t b1,
                          const py::array& seeds, const py::sequence& hyper, int64_t step,
                          const py::object& clip, double loss_sum, int accuracy, double threshold,
                          const py::object& outputs, bool stop_nonfinite) {
    const char* fn = "Network.train_batches";
    const std::string f(fn);
    cpu::OptArgs<T> o = opt_args<T>(hyper, step, fn, clip);
    cpu::EpochData<T> d;
    d.x = in<T>(x, fn, "x", impl.x_shape);
    d.rows = dim(x, 0);
    d.x_row = impl.net->in_shape().size();
    if (d.rows < 1) throw py::value_error(f + ": x must have at least one row");
    if (batch_size < 1) throw py::value_error(f + ": batch_size must be >= 1, got " + std::to_string(batch_size));
    d.batch = batch_size;
    const bool takes_labels = cpu::loss_takes_labels(loss);
    loss_targets(impl, labels, target, d.rows, fn, d.labels, d.target);
    d.weights = weights_in(sample_weight, fn, d.rows);
    if (!order.is_none()) {
      if (!py::isinstance<py::array>(order)) throw py::type_error(f + ": order must be a numpy array of int64 or None");
      py::array ord = py::reinterpret_borrow<py::array>(order);
      if (!ord.dtype().equal(py::dtype::of<int64_t>()))
        throw py::type_error(f + ": order must have dtype int64, got " + std::string(py::str(ord.dtype())));
      check_array<int64_t>(ord, fn, "order", {d.rows});
      d.order = static_cast<const int64_t*>(ord.data());
    }
    if (!seeds.dtype().equal(py::dtype::of<uint64_t>()))
      throw py::type_error(f + ": dropout_seeds must have dtype uint64, got " + std::string(py::str(seeds.dtype())));
    const int64_t n_batches = d.rows / d.batch + (d.rows % d.batch != 0);
    if (!(0 <= b0 && b0 < b1 && b1 <= n_batches))
      throw py::value_error(f + ": the batch range [b0, b1) must satisfy 0 <= b0 < b1 <= " +
                            std::to_string(n_batches) + " (the number of batches), got [" +
                            std::to_string(b0) + ", " + std::to_string(b1) + ")");
    check_array<uint64_t>(seeds, fn, "dropout_seeds", {b1 - b0, impl.net->seeds_needed()});
    const uint64_t* ps = static_cast<const uint64_t*>(seeds.data());
    if (accuracy < 0 || accuracy > static_cast<int>(cpu::AccuracyRule::kThresholdVsHalf))
      throw py::value_error(f + ": accuracy must be a rule number in [0, 4], got " + std::to_string(accuracy));
    const auto rule = static_cast<cpu::AccuracyRule>(accuracy);
    const bool rule_labels = rule == cpu::AccuracyRule::kArgmaxVsLabels ||
                             rule == cpu::AccuracyRule::kThresholdVsLabels;
    if (rule != cpu::AccuracyRule::kNone && rule_labels != takes_labels)
      throw py::value_error(f + ": accuracy rule " + std::to_string(accuracy) + " needs " +
                            (rule_labels ? "labels" : "a target") + ", and this loss takes " +
                            (takes_labels ? "labels" : "a target"));
    if (!std::isfinite(threshold)) throw py::value_error(f + ": threshold must be finite");
    T* pout = nullptr;
    if (!outputs.is_none()) {
      if (!py::isinstance<py::array>(outputs)) throw py::type_error(f + ": outputs must be a numpy array or None");
      py::array a = py::reinterpret_borrow<py::array>(outputs);
      const int64_t end = b1 == n_batches ? d.rows : b1 * d.batch;
      std::vector<int64_t> shape = impl.y_shape;
      shape[0] = end - b0 * d.batch;
      pout = out<T>(a, fn, "outputs", shape);
    }
    try {
      impl.net->check_batches(d, b0, b1);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(f + ": " + e.what());
    }
    recheck<T>(fn);
    cpu::BatchesResult r;
    {
      py::gil_scoped_release nogil;
      r = impl.net->train_batches(d, b0, b1, ps, o, loss_sum, rule, threshold, pout, stop_nonfinite);
    }
    return py::make_tuple(r.batches, r.loss_sum, r.last_loss, r.correct, r.decisions);
  }
};

template <class T>
void check_state(const py::object& o, const char* name, int64_t P) {
  if (o.is_none()) return;
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string("Network: ") + name + " must be a numpy array or None");
  py::array a = py::reinterpret_borrow<py::array>(o);
  check_array<T>(a, "Network", name, {P});
  if (!a.writeable()) throw py::value_error(std::string("Network: ") + name + " must be writable");
}

// ops: [(kind, attrs, slots [(name, offset, shape)], buffers [array])]
template <class T>
void build(NetworkHandle& h, NetImpl<T>& impl, const py::list& ops, const py::sequence& in_shape) {
  check_array<T>(h.params, "Network", "params", {kAny});
  h.P = dim(h.params, 0);
  py::array g = h.grads;
  out<T>(g, "Network", "grads", {h.P});
  out<T>(h.params, "Network", "params", {h.P});
  check_state<T>(h.state0, "state0", h.P);
  check_state<T>(h.state1, "state1", h.P);
  T* params = static_cast<T*>(h.params.mutable_data());
  T* grads = static_cast<T*>(h.grads.mutable_data());
  std::vector<cpu::NetOp<T>> net_ops;
  cpu::Shape shape;
  try {
    shape = shape_from(in_shape, "Network");
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    py::tuple t = py::cast<py::tuple>(ops[i]);
    if (t.size() != 4) throw py::value_error("Network: each op is (kind, attrs, slots, buffers)");
    const std::string kind = py::cast<std::string>(t[0]);
    const std::string who = "Network: op " + std::to_string(i) + " (" + kind + ")";
    cpu::NetOp<T> n;
    try {
      n.op = cpu::make_op<T>(kind, attrs_from(py::cast<py::dict>(t[1]), kind), shape);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(who + ": " + e.what());
    }
    for (int64_t off : check_slots<T>(*n.op, slots_from(py::cast<py::sequence>(t[2]), kind), h.P, who)) {
      n.w.push_back(params + off);
      n.dw.push_back(grads + off);
    }
    auto bufs = py::cast<std::vector<py::array>>(t[3]);
    n.buf = buffer_ptrs<T>(*n.op, bufs, "Network");
    for (size_t b = 0; b < bufs.size(); ++b) {
      h.buffers.push_back(bufs[b]);
      h.buffer_shapes.push_back(n.op->buffer_slots()[b].shape);
    }
    shape = n.op->out_shape();
    net_ops.push_back(std::move(n));
  }
  try {
    impl.net = std::make_unique<cpu::Network<T>>(std::move(net_ops), h.loss, params, grads, h.P);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  impl.x_shape = {kAny};
  for (int64_t d : impl.net->in_shape().dims) impl.x_shape.push_back(d);
  impl.y_shape = {kAny};
  for (int64_t d : impl.net->out_shape().dims) impl.y_shape.push_back(d);
  impl.seed_buf.assign(static_cast<size_t>(impl.net->seeds_needed()), 0);
  h.K = impl.net->out_shape().size();
}

}  // namespace

void bind_network(py::module_& m) {
  // The same statistics for any 2-D array (the layer-by-layer path's activations).
  m.def("activation_stats", [](const py::array& y) {
    return dispatch(y, "activation_stats", "y", [&](auto tag) -> py::dict {
      using T = decltype(tag);
      const T* p = in<T>(y, "activation_stats", "y", {kAny, kAny});
      const int64_t N = dim(y, 0), F = dim(y, 1);
      cpu::ActivationStats s;
      {
        py::gil_scoped_release nogil;
        s = cpu::activation_stats<T>(p, N, F);
      }
      return stats_dict(s);
    });
  }, py::arg("y"));

  py::class_<NetworkHandle>(m, "Network")
      .def(py::init([](const py::list& ops, const py::sequence& in_shape, const std::string& loss,
                       const std::string& opt, py::array params, py::array grads,
                       py::object state0, py::object state1) {
             if (ops.empty()) throw py::value_error("Network: at least one op is required");
             auto h = std::make_unique<NetworkHandle>();
             try {
               h->loss = cpu::parse_loss(loss);
               h->opt = cpu::parse_optimizer(opt);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
             h->f64 = params.dtype().equal(py::dtype::of<double>());
             h->params = params;
             h->grads = grads;
             h->state0 = state0;
             h->state1 = state1;
             const bool needs0 = h->opt != cpu::OptKind::kSGD;
             const bool needs1 = h->opt == cpu::OptKind::kAdam;
             if ((needs0 && state0.is_none()) || (needs1 && state1.is_none()))
               throw py::value_error("Network: the optimizer's state buffers are missing");
             try {
               if (h->f64) build<double>(*h, h->n64, ops, in_shape);
               else build<float>(*h, h->n32, ops, in_shape);
             } catch (const py::cast_error& e) {
               throw py::type_error(std::string("Network: each op must be (kind: str, attrs: dict, "
                                                "slots: [(name, offset, shape)], buffers: [array]): ") +
                                    e.what());
             }
             return h;
           }),
           py::arg("ops"), py::arg("in_shape"), py::arg("loss"), py::arg("opt"), py::arg("params"),
           py::arg("grads"), py::arg("state0"), py::arg("state1"))
      // loss = forward_backward(x, labels or None, target or None, dropout_seeds): the gradients
      // are left in the flat grads buffer; no parameter changes.
      // sample_weight: None or float64 (N,) per-sample loss weights (core/loss.hpp).
      .def("forward_backward", [](NetworkHandle& h, const py::array& x, const py::object& labels,
                                  const py::object& target, const py::sequence& seeds,
                                  const py::object& sample_weight) {
             auto lock = exclusive(h.busy, "Network.forward_backward");
             return h.visit([&](auto& impl) {
               return h.forward_backward(impl, x, labels, target, seeds, sample_weight,
                                         "Network.forward_backward");
             });
           },
           py::arg("x"), py::arg("labels"), py::arg("target"), py::arg("dropout_seeds"),
           py::arg("sample_weight") = py::none())
      // update(hyper, step, clip=None): the optimizer over the flat buffers, from the grads
      // buffer as it is, after clipping it in place (clip = (clipnorm, clipvalue), 0 = off).
      .def("update", [](NetworkHandle& h, const py::sequence& hyper, int64_t step,
                        const py::object& clip) {
             auto lock = exclusive(h.busy, "Network.update");
             h.visit([&](auto& impl) { h.update(impl, hyper, step, clip, "Network.update"); });
           },
           py::arg("hyper"), py::arg("step"), py::arg("clip") = py::none())
      // loss = train_step(x, labels or None, target or None, dropout_seeds, hyper, step): both.
      // check_finite: refuse a NaN or inf in x or the target with the ValueError of
      // Sequential.train_step ("train_step: xb holds NaN or inf (first at row r, column c)"),
      // before anything is written.
      .def("train_step", [](NetworkHandle& h, const py::array& x, const py::object& labels,
                            const py::object& target, const py::sequence& seeds,
                            const py::sequence& hyper, int64_t step, const py::object& clip,
                            const py::object& sample_weight, bool check_finite) {
             auto lock = exclusive(h.busy, "Network.train_step");
             return h.visit([&](auto& impl) {
               using T = typename std::remove_reference_t<decltype(impl)>::value_type;
               const char* fn = "Network.train_step";
               const cpu::OptArgs<T> o = h.opt_args<T>(hyper, step, fn, clip);  // checked first
               const double v =
                   h.forward_backward(impl, x, labels, target, seeds, sample_weight, fn, check_finite);
               py::gil_scoped_release nogil;
               impl.net->update(o);
               return v;
             });
           },
           py::arg("x"), py::arg("labels"), py::arg("target"), py::arg("dropout_seeds"),
           py::arg("hyper"), py::arg("step"), py::arg("clip") = py::none(),
           py::arg("sample_weight") = py::none(), py::arg("check_finite") = false)
      // (batches, loss_sum, last_loss, correct, decisions) = train_batches(x, labels or None,
      //     target or None, sample_weight or None, order or None, batch_size, b0, b1,
      //     dropout_seeds, hyper, step, clip, loss_sum, accuracy=0, threshold=0.5, outputs=None,
      //     stop_nonfinite=False)
      // Batches [b0, b1) of an epoch over the whole training set in one call (fit's fast path),
      // with the GIL released: batch b is the rows order[b·batch_size : (b+1)·batch_size] (rows
      // in order when order is None), and each batch is exactly a train_step on those rows, at
      // optimizer step `step` for b0 and one more per batch. dropout_seeds: uint64
      // (b1 - b0, seeds needed), one row per batch. loss_sum continues the caller's running sum
      // (+= loss·rows per batch); accuracy: a rule number (core/network.hpp AccuracyRule, 0 =
      // none) counting correct decisions with `threshold`; outputs: None, or an array that
      // receives every batch's outputs (rows from position b0·batch_size on). stop_nonfinite:
      // return right after a batch whose loss is NaN or infinite.
      .def("train_batches", [](NetworkHandle& h, const py::array& x, const py::object& labels,
                               const py::object& target, const py::object& sample_weight,
                               const py::object& order, int64_t batch_size, int64_t b0, int64_t b1,
                               const py::array& seeds, const py::sequence& hyper, int64_t step,
                               const py::object& clip, double loss_sum, int accuracy,
                               double threshold, const py::object& outputs, bool stop_nonfinite) {
             auto lock = exclusive(h.busy, "Network.train_batches");
             return h.visit([&](auto& impl) {
               return h.train_batches(impl, x, labels, target, sample_weight, order, batch_size, b0,
                                      b1, seeds, hyper, step, clip, loss_sum, accuracy, threshold,
                                      outputs, stop_nonfinite);
             });
           },
           py::arg("x"), py::arg("labels"), py::arg("target"), py::arg("sample_weight"),
           py::arg("order"), py::arg("batch_size"), py::arg("b0"), py::arg("b1"),
           py::arg("dropout_seeds"), py::arg("hyper"), py::arg("step"), py::arg("clip") = py::none(),
           py::arg("loss_sum") = 0.0, py::arg("accuracy") = 0, py::arg("threshold") = 0.5,
           py::arg("outputs") = py::none(), py::arg("stop_nonfinite") = false)
      // outputs = infer(x): the network's outputs (N, out...) in evaluation mode (BatchNorm's
      // running statistics, no dropout), the same bits as the layers' forward(training=False).
      // The outputs of a training step (output()) are replaced.
      .def("infer", [](NetworkHandle& h, const py::array& x) -> py::array {
        auto lock = exclusive(h.busy, "Network.infer");
        return h.visit([&](auto& impl) -> py::array {
          using T = typename std::remove_reference_t<decltype(impl)>::value_type;
          const char* fn = "Network.infer";
          const T* px = in<T>(x, fn, "x", impl.x_shape);
          const int64_t N = dim(x, 0);
          if (N < 1) throw py::value_error(std::string(fn) + ": x must have at least one row");
          h.recheck<T>(fn);
          std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(N)};
          for (int64_t d : impl.net->out_shape().dims) shape.push_back(static_cast<py::ssize_t>(d));
          auto a = empty<T>(shape);
          {
            py::gil_scoped_release nogil;
            impl.net->infer(px, N);
            std::copy(impl.net->output(), impl.net->output() + N * h.K, a.mutable_data());
          }
          return a;
        });
      }, py::arg("x"))
      // A copy of the last completed batch's outputs (N, out...), for the training metrics.
      .def("output", [](NetworkHandle& h) -> py::array {
        auto lock = exclusive(h.busy, "Network.output");
        return h.visit([&](auto& impl) -> py::array {
          using T = typename std::remove_reference_t<decltype(impl)>::value_type;
          const int64_t N = impl.net->last_batch();
          if (N == 0) throw py::value_error("Network.output: no completed step since the last change of batch size");
          std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(N)};
          for (int64_t d : impl.net->out_shape().dims) shape.push_back(static_cast<py::ssize_t>(d));
          auto a = empty<T>(shape);
          std::copy(impl.net->output(), impl.net->output() + N * h.K, a.mutable_data());
          return a;
        });
      })
      // Statistics of op i's output over the last completed batch, for the training monitor.
      .def("layer_stats", [](NetworkHandle& h, int64_t i) {
        auto lock = exclusive(h.busy, "Network.layer_stats");
        return h.visit([&](auto& impl) {
          if (impl.net->last_batch() == 0)
            throw py::value_error("Network.layer_stats: no completed step since the last change of batch size");
          if (i < 0 || i >= static_cast<int64_t>(impl.net->num_ops()))
            throw py::index_error("Network.layer_stats: layer index out of range");
          return stats_dict(impl.net->layer_stats(static_cast<size_t>(i)));
        });
      }, py::arg("i"))
      .def_property_readonly("last_batch", [](NetworkHandle& h) {
        return h.visit([](auto& impl) { return impl.net->last_batch(); });
      })
      .def_property_readonly("out_shape", [](NetworkHandle& h) {
        return h.visit([](auto& impl) { return shape_tuple(impl.net->out_shape().dims); });
      })
      .def_property_readonly("workspace_bytes", [](NetworkHandle& h) {
        auto lock = exclusive(h.busy, "Network.workspace_bytes");  // a step may swap the workspace
        return h.visit([](auto& impl) { return impl.net->workspace_bytes(); });
      });
}

}  // namespace gradstep::bind
