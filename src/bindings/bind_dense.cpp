#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/dense.hpp"

namespace gradstep::bind {

void bind_dense(py::module_& m) {
  // y = dense_forward(x (N,I), W (I,O), b (O,) or None) -> (N,O)
  m.def("dense_forward", [](const py::array& x, const py::array& W, const py::object& b) {
    return dispatch(x, "dense_forward", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "dense_forward";
      const T* px = in<T>(x, fn, "x", {kAny, kAny});
      const int64_t N = dim(x, 0), I = dim(x, 1);
      const T* pW = in<T>(W, fn, "W", {I, kAny});
      const int64_t O = dim(W, 1);
      const T* pb = in_or_null<T>(b, fn, "b", {O});
      auto y = empty<T>({N, O});
      T* py_ = y.mutable_data();
      py::gil_scoped_release nogil;
      cpu::dense_forward<T>(py_, px, pW, pb, N, I, O);
      return y;
    });
  }, py::arg("x"), py::arg("W"), py::arg("b"));

  // dx = dense_backward(dy (N,O), x (N,I), W (I,O), dW out (I,O), db out (O,) or None, need_dx)
  m.def("dense_backward", [](const py::array& dy, const py::array& x, const py::array& W,
                             py::array dW, const py::object& db, bool need_dx, double l2) {
    return dispatch(dy, "dense_backward", "dy", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const char* fn = "dense_backward";
      const T* px = in<T>(x, fn, "x", {kAny, kAny});
      const int64_t N = dim(x, 0), I = dim(x, 1);
      const T* pW = in<T>(W, fn, "W", {I, kAny});
      const int64_t O = dim(W, 1);
      const T* pdy = in<T>(dy, fn, "dy", {N, O});
      T* pdW = out<T>(dW, fn, "dW", {I, O});
      T* pdb = out_or_null<T>(db, fn, "db", {O});
      py::object dx = py::none();
      T* pdx = nullptr;
      if (need_dx) {
        auto a = empty<T>({N, I});
        pdx = a.mutable_data();
        dx = a;
      }
      {
        py::gil_scoped_release nogil;
        cpu::dense_backward<T>(pdx, pdW, pdb, pdy, px, pW, N, I, O, static_cast<T>(l2));
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("W"), py::arg("dW"), py::arg("db"), py::arg("need_dx") = true,
        py::arg("l2") = 0.0);

  // Σ a² (double), for the L2 penalty (l2/2)·‖W‖².
  m.def("sum_squares", [](const py::array& a) {
    return dispatch(a, "sum_squares", "a", [&](auto tag) -> double {
      using T = decltype(tag);
      if (!(a.flags() & py::array::c_style))
        throw py::value_error("sum_squares: a must be C-contiguous");
      const T* p = static_cast<const T*>(a.data());
      const int64_t n = static_cast<int64_t>(a.size());
      py::gil_scoped_release nogil;
      return cpu::sum_squares<T>(p, n);
    });
  }, py::arg("a"));
}

}  // namespace gradstep::bind
