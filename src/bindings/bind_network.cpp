// gradstep._core.Network: a whole training step (forward, loss, backward, update) in one call.
// The handle keeps references to the arrays it writes every step (the flat parameter, gradient and
// optimizer-state buffers, BatchNorm running statistics), checked once at construction; each step
// then checks only the batch, so the Python cost per mini-batch is a few microseconds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/network.hpp"

namespace gradstep::bind {
namespace {

using LayerTuple = std::tuple<int, int64_t, int64_t, int64_t, int64_t, double, double, double>;

template <class T>
void check_buffer(const py::object& o, const char* name, int64_t P) {
  if (o.is_none()) return;
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string("Network: ") + name + " must be a numpy array or None");
  py::array a = py::reinterpret_borrow<py::array>(o);
  check_array<T>(a, "Network", name, {P});
  if (!a.writeable()) throw py::value_error(std::string("Network: ") + name + " must be writable");
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

struct NetworkHandle {
  bool f64 = false;
  std::unique_ptr<cpu::Network<float>> net32;
  std::unique_ptr<cpu::Network<double>> net64;
  std::vector<cpu::LayerDesc> layers;
  cpu::LossOp loss;
  cpu::OptOp opt;
  py::array params, grads;
  std::vector<py::array> running_mean, running_var;
  py::object state0, state1;
  // Filled once at construction and reused by every step, so a step allocates nothing.
  std::vector<void*> rm_ptrs, rv_ptrs;
  std::vector<uint64_t> seed_buf;
  int64_t P = 0;
  size_t n_dropout = 0;
  int64_t last_N = 0;  // rows of the last *successful* step (what output/layer_stats may read)
  // Held for a whole step (the GIL is released inside it) and by output/layer_stats: a second
  // Python thread using the same handle gets an error, never a workspace being reallocated.
  std::mutex busy;

  // The arrays the handle writes every step are Python objects the caller still holds: one may
  // have been made read-only (or retyped in place) since construction. Check them again, and
  // take their pointers afresh, before every step; it costs no allocation.
  template <class T>
  void recheck_buffers() {
    check_array<T>(params, "Network.train_step", "params", {P});
    check_array<T>(grads, "Network.train_step", "grads", {P});
    if (!params.writeable() || !grads.writeable())
      throw py::value_error("Network.train_step: params and grads must be writable");
    check_buffer<T>(state0, "state0", P);
    check_buffer<T>(state1, "state1", P);
    size_t bn = 0;
    for (const auto& d : layers)
      if (d.op == cpu::LayerOp::kBatchNorm) {
        check_array<T>(running_mean[bn], "Network.train_step", "running_mean", {d.out});
        check_array<T>(running_var[bn], "Network.train_step", "running_var", {d.out});
        if (!running_mean[bn].writeable() || !running_var[bn].writeable())
          throw py::value_error("Network.train_step: BatchNorm running_mean and running_var must "
                                "be writable (the step updates them)");
        rm_ptrs[bn] = running_mean[bn].mutable_data();
        rv_ptrs[bn] = running_var[bn].mutable_data();
        ++bn;
      }
  }

  template <class T>
  double step_impl(cpu::Network<T>& net, const py::array& x, const py::object& labels,
                   const py::object& target, const py::sequence& seeds,
                   const py::sequence& hyper_seq, int64_t step) {
    const char* fn = "Network.train_step";
    recheck_buffers<T>();
    const int64_t I = layers.front().in, K = layers.back().out;
    const T* px = in<T>(x, fn, "x", {kAny, I});
    const int64_t N = dim(x, 0);
    if (N < 1) throw py::value_error("Network.train_step: x must have at least one row");
    cpu::StepArgs<T> a{};
    a.params = static_cast<T*>(params.mutable_data());
    a.grads = static_cast<T*>(grads.mutable_data());
    a.x = px;
    a.N = N;
    a.labels = nullptr;
    a.target = nullptr;
    const bool wants_labels = loss == cpu::LossOp::kSoftmaxXent || loss == cpu::LossOp::kNLL;
    if (wants_labels) {
      if (labels.is_none()) throw py::value_error("Network.train_step: labels are required for this loss");
      if (!py::isinstance<py::array>(labels))
        throw py::type_error("Network.train_step: labels must be a numpy array of int64");
      py::array lab = py::reinterpret_borrow<py::array>(labels);
      if (!lab.dtype().equal(py::dtype::of<int64_t>()))
        throw py::type_error("Network.train_step: labels must have dtype int64");
      check_array<int64_t>(lab, fn, "labels", {N});
      const int64_t* pl = static_cast<const int64_t*>(lab.data());
      for (int64_t i = 0; i < N; ++i)
        if (pl[i] < 0 || pl[i] >= K)
          throw py::value_error("Network.train_step: labels must lie in [0, " + std::to_string(K) +
                                "), got " + std::to_string(pl[i]));
      a.labels = pl;
    } else {
      if (target.is_none()) throw py::value_error("Network.train_step: target is required for this loss");
      if (!py::isinstance<py::array>(target))
        throw py::type_error("Network.train_step: target must be a numpy array");
      a.target = in<T>(py::reinterpret_borrow<py::array>(target), fn, "target", {N, K});
    }
    if (static_cast<size_t>(py::len(seeds)) != n_dropout)
      throw py::value_error("Network.train_step: expected " + std::to_string(n_dropout) +
                            " dropout seeds, got " + std::to_string(py::len(seeds)));
    for (size_t i = 0; i < n_dropout; ++i) seed_buf[i] = cast_arg<uint64_t>(seeds[i], fn, "dropout_seeds");
    a.dropout_seeds = seed_buf.data();
    a.running_mean = reinterpret_cast<T* const*>(rm_ptrs.data());
    a.running_var = reinterpret_cast<T* const*>(rv_ptrs.data());
    double hyper[6] = {0, 0, 0, 0, 0, 0};
    const size_t n_hyper = static_cast<size_t>(py::len(hyper_seq));
    for (size_t i = 0; i < n_hyper && i < 6; ++i) hyper[i] = cast_arg<double>(hyper_seq[i], fn, "hyper");
    if (step < 1) throw py::value_error("Network.train_step: step must be >= 1");
    a.step = step;
    a.opt = opt;
    a.state0 = state0.is_none() ? nullptr : static_cast<T*>(py::reinterpret_borrow<py::array>(state0).mutable_data());
    a.state1 = state1.is_none() ? nullptr : static_cast<T*>(py::reinterpret_borrow<py::array>(state1).mutable_data());
    const size_t needed = opt == cpu::OptOp::kAdam ? 6 : 5;
    if (n_hyper != needed)
      throw py::value_error("Network.train_step: expected " + std::to_string(needed) +
                            " hyperparameters, got " + std::to_string(n_hyper));
    auto h = [&](size_t i) { return hyper[i]; };
    switch (opt) {
      case cpu::OptOp::kSGD: a.sgd = {h(0), h(1), h(2), h(3), h(4) != 0.0}; break;
      case cpu::OptOp::kRMSprop: a.rmsprop = {h(0), h(1), h(2), h(3), h(4)}; break;
      case cpu::OptOp::kAdam: a.adam = {h(0), h(1), h(2), h(3), h(4), h(5) != 0.0}; break;
    }
    // The kernels dereference the state buffers a momentum needs: they must exist.
    if (opt == cpu::OptOp::kSGD && a.sgd.momentum != 0.0 && !a.state0)
      throw py::value_error("Network.train_step: SGD momentum != 0 needs the state0 buffer");
    if (opt == cpu::OptOp::kRMSprop && a.rmsprop.momentum > 0.0 && !a.state1)
      throw py::value_error("Network.train_step: RMSprop momentum > 0 needs the state1 buffer");
    double value;
    {
      py::gil_scoped_release nogil;
      value = net.train_step(a);
    }
    last_N = N;  // only now: a step that threw (MemoryError) leaves the last good batch readable
    return value;
  }
};

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
      .def(py::init([](const std::vector<LayerTuple>& specs, int loss, int opt, py::array params,
                       py::array grads, std::vector<py::array> running_mean,
                       std::vector<py::array> running_var, py::object state0, py::object state1) {
             if (specs.empty()) throw py::value_error("Network: at least one layer is required");
             if (loss < 0 || loss > static_cast<int>(cpu::LossOp::kNLL)) throw py::value_error("Network: unknown loss");
             if (opt < 0 || opt > static_cast<int>(cpu::OptOp::kAdam)) throw py::value_error("Network: unknown optimizer");
             auto h = std::make_unique<NetworkHandle>();
             h->f64 = params.dtype().equal(py::dtype::of<double>());
             if (params.ndim() != 1)
               throw py::value_error("Network: params must be 1-D, got shape " + shape_str(params));
             h->P = static_cast<int64_t>(params.size());
             size_t n_bn = 0;
             int64_t prev_out = -1;
             for (const auto& t : specs) {
               cpu::LayerDesc d;
               int op = std::get<0>(t);
               if (op < 0 || op > static_cast<int>(cpu::LayerOp::kBatchNorm))
                 throw py::value_error("Network: unknown layer op " + std::to_string(op));
               d.op = static_cast<cpu::LayerOp>(op);
               d.in = std::get<1>(t);
               d.out = std::get<2>(t);
               d.w = std::get<3>(t);
               d.b = std::get<4>(t);
               d.alpha = std::get<5>(t);
               d.eps = std::get<6>(t);
               d.l2 = std::get<7>(t);
               constexpr int64_t kMaxDim = std::numeric_limits<int>::max();  // as check_array
               if (d.in < 1 || d.out < 1 || d.in > kMaxDim || d.out > kMaxDim ||
                   (prev_out >= 0 && d.in != prev_out))
                 throw py::value_error("Network: layer feature counts do not chain");
               // Only Dense changes the width; the other ops read and write n = N * out values
               // of an input that has N * in.
               if (d.op != cpu::LayerOp::kDense && d.in != d.out)
                 throw py::value_error("Network: layer " + std::to_string(h->layers.size()) +
                                       " keeps its width (in == out), got in=" + std::to_string(d.in) +
                                       ", out=" + std::to_string(d.out));
               const bool finite = std::isfinite(d.alpha) && std::isfinite(d.eps) && std::isfinite(d.l2);
               if (!finite || d.l2 < 0 ||
                   (d.op == cpu::LayerOp::kDropout && !(d.alpha >= 0 && d.alpha < 1)) ||
                   (d.op == cpu::LayerOp::kBatchNorm && !(d.alpha >= 0 && d.alpha <= 1 && d.eps > 0)))
                 throw py::value_error("Network: layer " + std::to_string(h->layers.size()) +
                                       " has an invalid hyperparameter (Dropout p in [0, 1), "
                                       "BatchNorm momentum in [0, 1] and eps > 0, l2 >= 0, all finite)");
               // Parameter slots must lie inside the flat buffer (in, out < 2**31: no overflow).
               const int64_t wsize = d.op == cpu::LayerOp::kDense ? d.in * d.out
                                     : d.op == cpu::LayerOp::kBatchNorm ? d.out : 0;
               const int64_t bsize = d.out;
               if (wsize && (d.w < 0 || d.w > h->P || wsize > h->P - d.w))
                 throw py::value_error("Network: a weight slot lies outside the parameter buffer");
               if (d.b >= 0 && (d.b > h->P || bsize > h->P - d.b))
                 throw py::value_error("Network: a bias slot lies outside the parameter buffer");
               if (d.op == cpu::LayerOp::kBatchNorm && d.b < 0)
                 throw py::value_error("Network: BatchNorm needs a beta slot");
               if (d.op == cpu::LayerOp::kDropout) ++h->n_dropout;
               if (d.op == cpu::LayerOp::kBatchNorm) ++n_bn;
               prev_out = d.out;
               h->layers.push_back(d);
             }
             if (running_mean.size() != n_bn || running_var.size() != n_bn)
               throw py::value_error("Network: one running_mean and running_var per BatchNorm layer");
             auto check_all = [&](auto tag) {
               using T = decltype(tag);
               check_array<T>(params, "Network", "params", {h->P});
               check_array<T>(grads, "Network", "grads", {h->P});
               if (!params.writeable() || !grads.writeable())
                 throw py::value_error("Network: params and grads must be writable");
               check_buffer<T>(state0, "state0", h->P);
               check_buffer<T>(state1, "state1", h->P);
               size_t bn = 0;
               for (const auto& d : h->layers)
                 if (d.op == cpu::LayerOp::kBatchNorm) {
                   check_array<T>(running_mean[bn], "Network", "running_mean", {d.out});
                   check_array<T>(running_var[bn], "Network", "running_var", {d.out});
                   if (!running_mean[bn].writeable() || !running_var[bn].writeable())
                     throw py::value_error("Network: running_mean and running_var must be writable");
                   ++bn;
                 }
             };
             if (h->f64) check_all(double{}); else check_all(float{});
             const bool needs0 = opt != static_cast<int>(cpu::OptOp::kSGD);
             const bool needs1 = opt == static_cast<int>(cpu::OptOp::kAdam);
             if ((needs0 && state0.is_none()) || (needs1 && state1.is_none()))
               throw py::value_error("Network: the optimizer's state buffers are missing");
             h->loss = static_cast<cpu::LossOp>(loss);
             h->opt = static_cast<cpu::OptOp>(opt);
             h->params = params;
             h->grads = grads;
             h->running_mean = running_mean;
             h->running_var = running_var;
             for (size_t i = 0; i < running_mean.size(); ++i) {
               h->rm_ptrs.push_back(h->running_mean[i].mutable_data());
               h->rv_ptrs.push_back(h->running_var[i].mutable_data());
             }
             h->seed_buf.assign(h->n_dropout, 0);
             h->state0 = state0;
             h->state1 = state1;
             if (h->f64) h->net64 = std::make_unique<cpu::Network<double>>(h->layers, h->loss, h->P);
             else h->net32 = std::make_unique<cpu::Network<float>>(h->layers, h->loss, h->P);
             return h;
           }),
           py::arg("layers"), py::arg("loss"), py::arg("opt"), py::arg("params"), py::arg("grads"),
           py::arg("running_mean"), py::arg("running_var"), py::arg("state0"), py::arg("state1"))
      // loss = train_step(x, labels or None, target or None, dropout_seeds, hyper, step)
      .def("train_step", [](NetworkHandle& h, const py::array& x, const py::object& labels,
                            const py::object& target, const py::sequence& seeds,
                            const py::sequence& hyper, int64_t step) {
             std::unique_lock<std::mutex> lock(h.busy, std::try_to_lock);
             if (!lock.owns_lock())
               throw py::value_error("Network.train_step: this network is running a step in another thread");
             if (h.f64) return h.step_impl<double>(*h.net64, x, labels, target, seeds, hyper, step);
             return h.step_impl<float>(*h.net32, x, labels, target, seeds, hyper, step);
           },
           py::arg("x"), py::arg("labels"), py::arg("target"), py::arg("dropout_seeds"),
           py::arg("hyper"), py::arg("step"))
      // A copy of the last step's outputs (N, out), for the training metrics.
      .def("output", [](NetworkHandle& h) -> py::array {
        std::unique_lock<std::mutex> lock(h.busy, std::try_to_lock);
        if (!lock.owns_lock())
          throw py::value_error("Network.output: this network is running a step in another thread");
        const int64_t K = h.layers.back().out;
        if (h.last_N == 0) throw py::value_error("Network.output: no step has run yet");
        if (h.f64) {
          auto a = empty<double>({h.last_N, K});
          std::copy(h.net64->output(), h.net64->output() + h.last_N * K, a.mutable_data());
          return a;
        }
        auto a = empty<float>({h.last_N, K});
        std::copy(h.net32->output(), h.net32->output() + h.last_N * K, a.mutable_data());
        return a;
      })
      // Statistics of layer i's output over the last batch (a dict), for the training monitor.
      .def("layer_stats", [](NetworkHandle& h, int64_t i) {
        std::unique_lock<std::mutex> lock(h.busy, std::try_to_lock);
        if (!lock.owns_lock())
          throw py::value_error("Network.layer_stats: this network is running a step in another thread");
        if (h.last_N == 0) throw py::value_error("Network.layer_stats: no step has run yet");
        if (i < 0 || i >= static_cast<int64_t>(h.layers.size()))
          throw py::index_error("Network.layer_stats: layer index out of range");
        cpu::ActivationStats s = h.f64 ? h.net64->layer_stats(static_cast<size_t>(i), h.last_N)
                                       : h.net32->layer_stats(static_cast<size_t>(i), h.last_N);
        return stats_dict(s);
      }, py::arg("i"))
      .def_property_readonly("workspace_bytes", [](NetworkHandle& h) {
        std::unique_lock<std::mutex> lock(h.busy, std::try_to_lock);
        if (!lock.owns_lock())
          throw py::value_error("Network.workspace_bytes: this network is running a step in another thread");
        return h.f64 ? h.net64->workspace_bytes() : h.net32->workspace_bytes();
      });
}

}  // namespace gradstep::bind
