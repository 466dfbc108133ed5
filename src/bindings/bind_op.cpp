// The op interface from Python: the registered kinds, an op's shape rule and slots (op_info), and
// OpRunner, the handle a lone layer runs its op through (forward keeps what backward needs), the
// same op code the fused network step runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "bindings/op_spec.hpp"
#include "core/op.hpp"

namespace gradstep::bind {
namespace {

template <class T>
struct Runner {
  using value_type = T;
  std::unique_ptr<cpu::Op<T>> op;
  std::vector<int64_t> offsets;
  std::vector<int64_t> x_shape, y_shape;  // (kAny, in...), (kAny, out...)
  std::vector<T> ws;
  std::vector<int32_t> iws;
  py::object x, y;  // the last forward's input and output (what backward reads)
  int64_t N = 0;
  bool training = true;

  // Pointers to the op's slots in `params`/`grads` (flat, dtype T), checked first.
  void slot_ptrs(const py::array& params, const py::array& grads, const char* fn,
                 std::vector<const T*>& w, std::vector<T*>& dw) {
    const auto& slots = op->param_slots();
    if (slots.empty()) return;
    const T* p = in<T>(params, fn, "params", {kAny});
    py::array g = grads;
    T* pg = out<T>(g, fn, "grads", {dim(params, 0)});
    const int64_t P = dim(params, 0);
    for (size_t i = 0; i < slots.size(); ++i) {
      if (offsets[i] + slots[i].size() > P)
        throw py::value_error(std::string(fn) + ": parameter slot '" + slots[i].name +
                              "' lies outside params");
      w.push_back(p + offsets[i]);
      dw.push_back(pg + offsets[i]);
    }
  }

  cpu::OpArgs<T> args(const std::vector<const T*>& w, const std::vector<T*>& dw,
                      const std::vector<T*>& bufs, uint64_t seed) {
    cpu::OpArgs<T> a;
    a.w = w.data();
    a.dw = dw.data();
    a.buf = bufs.data();
    a.ws = ws.data();
    a.iws = iws.data();
    a.N = N;
    a.training = training;
    a.seed = seed;
    return a;
  }

  py::array forward(const py::array& xa, const py::array& params, const py::array& grads,
                    const std::vector<py::array>& buffers, bool train, uint64_t seed) {
    const char* fn = "OpRunner.forward";
    const T* px = in<T>(xa, fn, "x", x_shape);
    const int64_t n = dim(xa, 0);
    if (n < 1) throw py::value_error("OpRunner.forward: x must have at least one row");
    if (train && n < op->min_training_batch())
      throw py::value_error("OpRunner.forward: a training batch needs at least " +
                            std::to_string(op->min_training_batch()) + " rows, got " +
                            std::to_string(n));
    std::vector<const T*> w;
    std::vector<T*> dw;
    slot_ptrs(params, grads, fn, w, dw);
    std::vector<T*> bufs = buffer_ptrs<T>(*op, buffers, fn);
    std::vector<py::ssize_t> ys{static_cast<py::ssize_t>(n)};
    for (int64_t d : op->out_shape().dims) ys.push_back(static_cast<py::ssize_t>(d));
    auto ya = empty<T>(ys);
    // Forget the previous batch before anything can fail below (a failed resize keeps no stale N).
    x = py::none();
    y = py::none();
    N = 0;
    const int64_t per_row = std::max(op->in_shape().size(), op->out_shape().size());
    if (n > (int64_t(1) << 40) / per_row) throw std::bad_alloc();  // keeps workspace(n) exact
    ws.assign(static_cast<size_t>(op->workspace(n)), T(0));
    iws.assign(static_cast<size_t>(op->int_workspace(n)), 0);
    N = n;
    training = train;
    T* py_ = ya.mutable_data();
    {
      const cpu::OpArgs<T> a = args(w, dw, bufs, seed);
      py::gil_scoped_release nogil;
      op->forward(a, py_, px);
    }
    x = xa;
    y = ya;
    return ya;
  }

  py::array backward(const py::array& dy, const py::array& params, const py::array& grads,
                     const std::vector<py::array>& buffers) {
    const char* fn = "OpRunner.backward";
    if (N == 0) throw py::value_error("OpRunner.backward: call forward before backward");
    std::vector<int64_t> want = y_shape;
    want[0] = N;
    const T* pdy = in<T>(dy, fn, "dy", want);
    std::vector<const T*> w;
    std::vector<T*> dw;
    slot_ptrs(params, grads, fn, w, dw);
    std::vector<T*> bufs = buffer_ptrs<T>(*op, buffers, fn);
    py::array xa = py::cast<py::array>(x), ya = py::cast<py::array>(y);
    std::vector<py::ssize_t> xs(xa.shape(), xa.shape() + xa.ndim());
    auto dx = empty<T>(xs);
    T* pdx = dx.mutable_data();
    const T* px = static_cast<const T*>(xa.data());
    const T* py_ = static_cast<const T*>(ya.data());
    {
      const cpu::OpArgs<T> a = args(w, dw, bufs, 0);
      py::gil_scoped_release nogil;
      op->backward(a, pdx, pdy, px, py_);
    }
    return dx;
  }
};

struct OpRunner {
  bool f64 = false;
  std::mutex busy;  // one call at a time (the GIL is released inside forward and backward)
  std::unique_ptr<Runner<float>> r32;
  std::unique_ptr<Runner<double>> r64;
  template <class F>
  auto visit(F&& f) {
    std::unique_lock<std::mutex> lock(busy, std::try_to_lock);
    if (!lock.owns_lock())
      throw py::value_error("OpRunner: this layer's op is running in another thread");
    if (f64) return f(*r64);
    return f(*r32);
  }
};

// pybind11's cast_error (a RuntimeError) as a TypeError that says what was expected.
template <class F>
auto typed(const char* what, F&& f) {
  try {
    return f();
  } catch (const py::cast_error& e) {
    throw py::type_error(std::string(what) + ": " + e.what());
  }
}

template <class T>
std::unique_ptr<Runner<T>> make_runner(const std::string& kind, const py::dict& attrs,
                                       const py::sequence& in_shape, const py::sequence& slots) {
  auto r = std::make_unique<Runner<T>>();
  try {
    r->op = cpu::make_op<T>(kind, attrs_from(attrs, kind), shape_from(in_shape, kind));
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  r->offsets = typed("OpRunner: slots must be [(name, offset, shape)]", [&] {
    return check_slots<T>(*r->op, slots_from(slots, kind), int64_t(1) << 40, "OpRunner");
  });
  r->x_shape = {kAny};
  for (int64_t d : r->op->in_shape().dims) r->x_shape.push_back(d);
  r->y_shape = {kAny};
  for (int64_t d : r->op->out_shape().dims) r->y_shape.push_back(d);
  return r;
}

}  // namespace

void bind_op(py::module_& m) {
  m.def("op_kinds", [] { return cpu::op_kinds(); });

  // {"out_shape", "params": [(name, shape)], "buffers": [(name, shape)], "needs_seed",
  //  "min_training_batch"} of op `kind` built for per-sample shape `in_shape` (ValueError when the
  // shape rule or an attribute rejects it).
  m.def("op_info", [](const std::string& kind, const py::dict& attrs, const py::sequence& in_shape) {
    std::unique_ptr<cpu::Op<float>> op;
    try {
      op = cpu::make_op<float>(kind, attrs_from(attrs, kind), shape_from(in_shape, kind));
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    } catch (const py::cast_error& e) {
      throw py::type_error(std::string("op_info: ") + e.what());
    }
    auto slots = [](const std::vector<cpu::Slot>& s) {
      py::list l;
      for (const auto& x : s) l.append(py::make_tuple(x.name, shape_tuple(x.shape)));
      return l;
    };
    py::dict d;
    d["out_shape"] = shape_tuple(op->out_shape().dims);
    d["params"] = slots(op->param_slots());
    d["buffers"] = slots(op->buffer_slots());
    d["needs_seed"] = op->needs_seed();
    d["min_training_batch"] = op->min_training_batch();
    return d;
  }, py::arg("kind"), py::arg("attrs"), py::arg("in_shape"));

  py::class_<OpRunner>(m, "OpRunner")
      // OpRunner(kind, attrs, in_shape, dtype, slots [(name, offset, shape)])
      .def(py::init([](const std::string& kind, const py::dict& attrs, const py::sequence& in_shape,
                       const py::object& dtype, const py::sequence& slots) {
             auto h = std::make_unique<OpRunner>();
             py::dtype dt = py::dtype::from_args(dtype);
             if (dt.equal(py::dtype::of<double>())) {
               h->f64 = true;
               h->r64 = make_runner<double>(kind, attrs, in_shape, slots);
             } else if (dt.equal(py::dtype::of<float>())) {
               h->r32 = make_runner<float>(kind, attrs, in_shape, slots);
             } else {
               throw py::type_error("OpRunner: dtype must be float32 or float64");
             }
             return h;
           }),
           py::arg("kind"), py::arg("attrs"), py::arg("in_shape"), py::arg("dtype"), py::arg("slots"))
      .def("forward", [](OpRunner& h, const py::array& x, const py::array& params,
                         const py::array& grads, const std::vector<py::array>& buffers,
                         bool training, uint64_t seed) {
             return h.visit([&](auto& r) { return r.forward(x, params, grads, buffers, training, seed); });
           },
           py::arg("x"), py::arg("params"), py::arg("grads"), py::arg("buffers"),
           py::arg("training"), py::arg("seed") = 0)
      .def("backward", [](OpRunner& h, const py::array& dy, const py::array& params,
                          const py::array& grads, const std::vector<py::array>& buffers) {
             return h.visit([&](auto& r) { return r.backward(dy, params, grads, buffers); });
           },
           py::arg("dy"), py::arg("params"), py::arg("grads"), py::arg("buffers"))
      // A copy of the int32 workspace the last forward filled (Maxout: the winning piece per output).
      .def("int_workspace", [](OpRunner& h) {
        return h.visit([](auto& r) {
          if (r.N == 0) throw py::value_error("OpRunner.int_workspace: no forward has run");
          py::array_t<int32_t> a(static_cast<py::ssize_t>(r.iws.size()));
          std::copy(r.iws.begin(), r.iws.end(), a.mutable_data());
          return a;
        });
      })
      .def_property_readonly("needs_seed", [](OpRunner& h) {
        return h.visit([](auto& r) { return r.op->needs_seed(); });
      })
      .def_property_readonly("out_shape", [](OpRunner& h) {
        return h.visit([](auto& r) { return shape_tuple(r.op->out_shape().dims); });
      })
      .def("penalty", [](OpRunner& h, const py::array& params) {
        return h.visit([&](auto& r) -> double {
          using T = typename std::remove_reference_t<decltype(r)>::value_type;
          std::vector<const T*> w;
          const auto& slots = r.op->param_slots();
          if (slots.empty()) return 0.0;
          const T* p = in<T>(params, "OpRunner.penalty", "params", {kAny});
          for (size_t i = 0; i < slots.size(); ++i) {
            if (r.offsets[i] + slots[i].size() > dim(params, 0))
              throw py::value_error("OpRunner.penalty: a parameter slot lies outside params");
            w.push_back(p + r.offsets[i]);
          }
          cpu::OpArgs<T> a;
          a.w = w.data();
          return r.op->penalty(a);
        });
      }, py::arg("params"));
}

}  // namespace gradstep::bind
