#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/dropout.hpp"

namespace gradstep::bind {

void bind_dropout(py::module_& m) {
  // (y, mask) = dropout_forward(x (any shape), p in [0, 1), seed (uint64)); mask holds 0 or
  // 1/(1-p) in x's dtype and is a function of (seed, flat index) only.
  m.def("dropout_forward", [](const py::array& x, double p, uint64_t seed) {
    return dispatch(x, "dropout_forward", "x", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const char* fn = "dropout_forward";
      const T* px = in<T>(x, fn, "x", any_shape(x));  // elementwise: any C-contiguous shape
      if (!(p >= 0.0 && p < 1.0))
        throw py::value_error(std::string(fn) + ": p must be in [0, 1), got " + std::to_string(p));
      const int64_t n = static_cast<int64_t>(x.size());
      auto y = empty<T>(py_shape_of(x));
      auto mask = empty<T>(py_shape_of(x));
      T* py_ = y.mutable_data();
      T* pm = mask.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::dropout_forward<T>(py_, pm, px, n, static_cast<T>(p), seed);
      }
      return py::make_tuple(y, mask);
    });
  }, py::arg("x"), py::arg("p"), py::arg("seed"));

  // dx = dropout_backward(dy, mask) (same shape).
  m.def("dropout_backward", [](const py::array& dy, const py::array& mask) {
    return dispatch(dy, "dropout_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "dropout_backward";
      const T* pdy = in<T>(dy, fn, "dy", any_shape(dy));
      const T* pm = in<T>(mask, fn, "mask", shape_of(dy));
      const int64_t n = static_cast<int64_t>(dy.size());
      auto dx = empty<T>(py_shape_of(dy));
      T* pdx = dx.mutable_data();
      py::gil_scoped_release nogil;
      cpu::dropout_backward<T>(pdx, pdy, pm, n);
      return dx;
    });
  }, py::arg("dy"), py::arg("mask"));
}

}  // namespace gradstep::bind
