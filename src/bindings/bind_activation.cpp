#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/activation.hpp"

namespace gradstep::bind {

namespace {

// The result array: a new one shaped like `like`, or `out` (checked: dtype T, that shape,
// C-contiguous, writable). `out` may be the input itself, for an in-place call; a view that only
// partly overlaps an input is not detected and gives unspecified values.
template <class T>
py::array result(const py::object& out, const py::array& like, const char* fn, T** ptr) {
  if (out.is_none()) {
    auto a = empty<T>(py_shape_of(like));
    *ptr = a.mutable_data();
    return a;
  }
  py::array a = py::cast<py::array>(out);
  *ptr = bind::out<T>(a, fn, "out", shape_of(like));
  return a;
}

// y = fn(x, *scalars): an elementwise forward over x of any shape. kernel(y, x, n, T(scalar)...).
template <class Kernel>
void def_forward(py::module_& m, const char* fn, Kernel kernel) {
  m.def(fn, [fn, kernel](const py::array& x, const py::object& out) {
    return dispatch(x, fn, "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const T* px = in<T>(x, fn, "x", shape_of(x));
      T* py_ = nullptr;
      py::array y = result<T>(out, x, fn, &py_);
      const int64_t n = static_cast<int64_t>(x.size());
      py::gil_scoped_release nogil;
      kernel(py_, px, n);
      return y;
    });
  }, py::arg("x"), py::kw_only(), py::arg("out") = py::none());
}

template <class Kernel>
void def_forward_alpha(py::module_& m, const char* fn, Kernel kernel) {
  m.def(fn, [fn, kernel](const py::array& x, double alpha, const py::object& out) {
    return dispatch(x, fn, "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const T* px = in<T>(x, fn, "x", shape_of(x));
      T* py_ = nullptr;
      py::array y = result<T>(out, x, fn, &py_);
      const int64_t n = static_cast<int64_t>(x.size());
      py::gil_scoped_release nogil;
      kernel(py_, px, n, static_cast<T>(alpha));
      return y;
    });
  }, py::arg("x"), py::arg("alpha"), py::kw_only(), py::arg("out") = py::none());
}

// dx = fn(dy, saved): an elementwise backward; `saved` (x or y) has dy's shape and dtype.
template <class Kernel>
void def_backward(py::module_& m, const char* fn, const char* saved_name, Kernel kernel) {
  m.def(fn, [fn, saved_name, kernel](const py::array& dy, const py::array& saved,
                                     const py::object& out) {
    return dispatch(dy, fn, "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const T* pdy = in<T>(dy, fn, "dy", shape_of(dy));
      const T* ps = in<T>(saved, fn, saved_name, shape_of(dy));
      T* pdx = nullptr;
      py::array dx = result<T>(out, dy, fn, &pdx);
      const int64_t n = static_cast<int64_t>(dy.size());
      py::gil_scoped_release nogil;
      kernel(pdx, pdy, ps, n);
      return dx;
    });
  }, py::arg("dy"), py::arg(saved_name), py::kw_only(), py::arg("out") = py::none());
}

// Checks a 2-D (N, F) input and returns N, F.
template <class T>
const T* in_2d(const py::array& a, const char* fn, const char* name, int64_t& N, int64_t& F) {
  const T* p = in<T>(a, fn, name, {kAny, kAny});
  N = dim(a, 0);
  F = dim(a, 1);
  return p;
}

}  // namespace

void bind_activation(py::module_& m) {
  // Elementwise forwards: y = op(x[, alpha], out=None), x of any shape (float32 or float64).
  def_forward(m, "sigmoid_forward", [](auto* y, const auto* x, int64_t n) {
    cpu::sigmoid_forward(y, x, n);
  });
  def_forward(m, "tanh_forward", [](auto* y, const auto* x, int64_t n) {
    cpu::tanh_forward(y, x, n);
  });
  def_forward(m, "relu_forward", [](auto* y, const auto* x, int64_t n) {
    cpu::relu_forward(y, x, n);
  });
  def_forward_alpha(m, "leaky_relu_forward", [](auto* y, const auto* x, int64_t n, auto alpha) {
    cpu::leaky_relu_forward(y, x, n, alpha);
  });
  def_forward_alpha(m, "elu_forward", [](auto* y, const auto* x, int64_t n, auto alpha) {
    cpu::elu_forward(y, x, n, alpha);
  });
  def_forward(m, "vexp", [](auto* y, const auto* x, int64_t n) { cpu::vexp(y, x, n); });
  def_forward(m, "vexpm1", [](auto* y, const auto* x, int64_t n) { cpu::vexpm1(y, x, n); });

  // Elementwise backwards: dx = op_backward(dy, saved, out=None), saved being y or x.
  def_backward(m, "sigmoid_backward", "y", [](auto* dx, const auto* dy, const auto* y, int64_t n) {
    cpu::sigmoid_backward(dx, dy, y, n);
  });
  def_backward(m, "tanh_backward", "y", [](auto* dx, const auto* dy, const auto* y, int64_t n) {
    cpu::tanh_backward(dx, dy, y, n);
  });
  def_backward(m, "relu_backward", "y", [](auto* dx, const auto* dy, const auto* y, int64_t n) {
    cpu::relu_backward(dx, dy, y, n);
  });

  // dx = leaky_relu_backward(dy, x, alpha, out=None)
  m.def("leaky_relu_backward", [](const py::array& dy, const py::array& x, double alpha,
                                  const py::object& out) {
    return dispatch(dy, "leaky_relu_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "leaky_relu_backward";
      const T* pdy = in<T>(dy, fn, "dy", shape_of(dy));
      const T* px = in<T>(x, fn, "x", shape_of(dy));
      T* pdx = nullptr;
      py::array dx = result<T>(out, dy, fn, &pdx);
      const int64_t n = static_cast<int64_t>(dy.size());
      py::gil_scoped_release nogil;
      cpu::leaky_relu_backward<T>(pdx, pdy, px, n, static_cast<T>(alpha));
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("alpha"), py::kw_only(), py::arg("out") = py::none());

  // dx = elu_backward(dy, x, y, alpha, out=None)
  m.def("elu_backward", [](const py::array& dy, const py::array& x, const py::array& y,
                           double alpha, const py::object& out) {
    return dispatch(dy, "elu_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "elu_backward";
      const T* pdy = in<T>(dy, fn, "dy", shape_of(dy));
      const T* px = in<T>(x, fn, "x", shape_of(dy));
      const T* py_ = in<T>(y, fn, "y", shape_of(dy));
      T* pdx = nullptr;
      py::array dx = result<T>(out, dy, fn, &pdx);
      const int64_t n = static_cast<int64_t>(dy.size());
      py::gil_scoped_release nogil;
      cpu::elu_backward<T>(pdx, pdy, px, py_, n, static_cast<T>(alpha));
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("alpha"), py::kw_only(),
        py::arg("out") = py::none());

  // y = prelu_forward(x (N,F), alpha (C,)) with C = 1 or F
  m.def("prelu_forward", [](const py::array& x, const py::array& alpha) {
    return dispatch(x, "prelu_forward", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "prelu_forward";
      int64_t N, F;
      const T* px = in_2d<T>(x, fn, "x", N, F);
      const T* pa = in<T>(alpha, fn, "alpha", {kAny});
      const int64_t C = dim(alpha, 0);
      if (C != 1 && C != F)
        throw py::value_error(std::string(fn) + ": alpha must have shape (1,) or (" +
                              std::to_string(F) + ",) for x of shape " + shape_str(x) + ", got " +
                              shape_str(alpha));
      auto y = empty<T>({N, F});
      T* py_ = y.mutable_data();
      py::gil_scoped_release nogil;
      cpu::prelu_forward<T>(py_, px, pa, N, F, C);
      return y;
    });
  }, py::arg("x"), py::arg("alpha"));

  // dx = prelu_backward(dy (N,F), x (N,F), alpha (C,), dalpha out (C,))
  m.def("prelu_backward", [](const py::array& dy, const py::array& x, const py::array& alpha,
                             py::array dalpha) {
    return dispatch(dy, "prelu_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "prelu_backward";
      int64_t N, F;
      const T* px = in_2d<T>(x, fn, "x", N, F);
      const T* pdy = in<T>(dy, fn, "dy", {N, F});
      const T* pa = in<T>(alpha, fn, "alpha", {kAny});
      const int64_t C = dim(alpha, 0);
      if (C != 1 && C != F)
        throw py::value_error(std::string(fn) + ": alpha must have shape (1,) or (" +
                              std::to_string(F) + ",) for x of shape " + shape_str(x) + ", got " +
                              shape_str(alpha));
      T* pda = out<T>(dalpha, fn, "dalpha", {C});
      auto dx = empty<T>({N, F});
      T* pdx = dx.mutable_data();
      py::gil_scoped_release nogil;
      cpu::prelu_backward<T>(pdx, pda, pdy, px, pa, N, F, C);
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("alpha"), py::arg("dalpha"));

  // y = softmax_forward(x (N,K)) over the last axis; softmax_forward_ref is the plain version.
  for (const char* name : {"softmax_forward", "softmax_forward_ref"}) {
    const bool ref = std::string(name) == "softmax_forward_ref";
    m.def(name, [name, ref](const py::array& x) {
      return dispatch(x, name, "x", [&](auto tag) -> py::array {
        using T = decltype(tag);
        int64_t N, K;
        const T* px = in_2d<T>(x, name, "x", N, K);
        auto y = empty<T>({N, K});
        T* py_ = y.mutable_data();
        py::gil_scoped_release nogil;
        if (ref)
          cpu::softmax_forward_ref<T>(py_, px, N, K);
        else
          cpu::softmax_forward<T>(py_, px, N, K);
        return y;
      });
    }, py::arg("x"));
  }

  // dx = softmax_backward(dy (N,K), y (N,K))
  m.def("softmax_backward", [](const py::array& dy, const py::array& y) {
    return dispatch(dy, "softmax_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "softmax_backward";
      int64_t N, K;
      const T* py_ = in_2d<T>(y, fn, "y", N, K);
      const T* pdy = in<T>(dy, fn, "dy", {N, K});
      auto dx = empty<T>({N, K});
      T* pdx = dx.mutable_data();
      py::gil_scoped_release nogil;
      cpu::softmax_backward<T>(pdx, pdy, py_, N, K);
      return dx;
    });
  }, py::arg("dy"), py::arg("y"));
}

}  // namespace gradstep::bind
