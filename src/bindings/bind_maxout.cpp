#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/maxout.hpp"

namespace gradstep::bind {
namespace {

// argmax is int32 (check_array's messages name float types only).
const int32_t* argmax_in(const py::array& a, const char* fn, int64_t N, int64_t O) {
  if (!a.dtype().equal(py::dtype::of<int32_t>()))
    throw py::type_error(std::string(fn) + ": argmax must have dtype int32, got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 2 || a.shape(0) != N || a.shape(1) != O)
    throw py::value_error(std::string(fn) + ": argmax must have shape " + shape_str({N, O}) +
                          ", got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(fn) + ": argmax must be C-contiguous");
  return static_cast<const int32_t*>(a.data());
}

}  // namespace

void bind_maxout(py::module_& m) {
  // (y (N,O), argmax (N,O) int32) = maxout_forward(x (N,I), W (P,I,O), b (P,O) or None).
  // The (P,N,O) scratch for the pieces' outputs is allocated here: kernels do not allocate.
  m.def("maxout_forward", [](const py::array& x, const py::array& W, const py::object& b) {
    return dispatch(x, "maxout_forward", "x", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const char* fn = "maxout_forward";
      const T* px = in<T>(x, fn, "x", {kAny, kAny});
      const int64_t N = dim(x, 0), I = dim(x, 1);
      const T* pW = in<T>(W, fn, "W", {kAny, I, kAny});
      const int64_t P = dim(W, 0), O = dim(W, 2);
      if (P < 1)
        throw py::value_error(std::string(fn) + ": W must hold at least one piece, got shape " +
                              shape_str(W));
      const T* pb = in_or_null<T>(b, fn, "b", {P, O});
      auto y = empty<T>({N, O});
      auto argmax = py::array_t<int32_t>(std::vector<py::ssize_t>{N, O});
      auto z = empty<T>({P, N, O});
      T* py_ = y.mutable_data();
      int32_t* pa = argmax.mutable_data();
      T* pz = z.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::maxout_forward<T>(py_, pa, pz, px, pW, pb, N, I, O, P);
      }
      return py::make_tuple(y, argmax);
    });
  }, py::arg("x"), py::arg("W"), py::arg("b"));

  // dx = maxout_backward(dy (N,O), x (N,I), W (P,I,O), argmax (N,O) int32, dW out (P,I,O),
  //                      db out (P,O) or None, need_dx); dx is None when need_dx is false.
  m.def("maxout_backward", [](const py::array& dy, const py::array& x, const py::array& W,
                              const py::array& argmax, py::array dW, const py::object& db,
                              bool need_dx) {
    return dispatch(dy, "maxout_backward", "dy", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const char* fn = "maxout_backward";
      const T* px = in<T>(x, fn, "x", {kAny, kAny});
      const int64_t N = dim(x, 0), I = dim(x, 1);
      const T* pW = in<T>(W, fn, "W", {kAny, I, kAny});
      const int64_t P = dim(W, 0), O = dim(W, 2);
      const T* pdy = in<T>(dy, fn, "dy", {N, O});
      const int32_t* pa = argmax_in(argmax, fn, N, O);
      T* pdW = out<T>(dW, fn, "dW", {P, I, O});
      T* pdb = out_or_null<T>(db, fn, "db", {P, O});
      py::object dx = py::none();
      T* pdx = nullptr;
      if (need_dx) {
        auto a = empty<T>({N, I});
        pdx = a.mutable_data();
        dx = a;
      }
      auto dz = empty<T>({P, N, O});
      T* pdz = dz.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::maxout_backward<T>(pdx, pdW, pdb, pdz, pdy, pa, px, pW, N, I, O, P);
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("W"), py::arg("argmax"), py::arg("dW"), py::arg("db"),
        py::arg("need_dx") = true);
}

}  // namespace gradstep::bind
