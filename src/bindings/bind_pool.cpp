// Bindings of the pool family: max/average pooling of (N,C,L) or (N,C,H,W) input, and global
// average pooling of (N,C,...) input. kernel_size and stride hold one value per spatial axis,
// padding two per axis, leading sides first ((left, right) or (top, left, bottom, right)). As in
// PyTorch, each pad is at most half the window, so no window lies wholly in the padding.
// Backward calls take the input shape, since the output gradient alone does not determine it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/pool.hpp"

namespace gradstep::bind {
namespace {

using Ints = std::vector<int64_t>;

struct PoolCall {
  cpu::PoolGeometry g;
  int64_t N;
  Ints y_shape;
};

PoolCall pool_call(const char* fn, const Ints& x_shape, const char* x_name, const Ints& kernel,
                   const Ints& stride, const Ints& padding) {
  const size_t rank = x_shape.size();
  if (rank != 3 && rank != 4)
    throw py::value_error(std::string(fn) + ": " + x_name + " must be 3-D (N, C, L) or 4-D "
                          "(N, C, H, W), got shape " + shape_str(x_shape));
  for (int64_t d : x_shape)
    if (d < 0 || d > std::numeric_limits<int>::max())
      throw py::value_error(std::string(fn) + ": " + x_name + " has an invalid shape " +
                            shape_str(x_shape));
  const size_t sd = rank - 2;
  check_ints(kernel, fn, "kernel_size", sd, 1);
  check_ints(stride, fn, "stride", sd, 1);
  check_ints(padding, fn, "padding", 2 * sd, 0);
  PoolCall c{};
  cpu::PoolGeometry& g = c.g;
  c.N = x_shape[0];
  g.C = x_shape[1];
  if (rank == 3) {
    g.H = 1, g.W = x_shape[2], g.KH = 1, g.KW = kernel[0], g.SH = 1, g.SW = stride[0];
    g.PT = 0, g.PL = padding[0], g.PB = 0, g.PR = padding[1];
  } else {
    g.H = x_shape[2], g.W = x_shape[3], g.KH = kernel[0], g.KW = kernel[1];
    g.SH = stride[0], g.SW = stride[1];
    g.PT = padding[0], g.PL = padding[1], g.PB = padding[2], g.PR = padding[3];
  }
  if (g.C < 1 || g.H < 1 || g.W < 1)
    throw py::value_error(std::string(fn) + ": " + x_name + " must have at least one channel "
                          "and position, got shape " + shape_str(x_shape));
  if (2 * std::max(g.PT, g.PB) > g.KH || 2 * std::max(g.PL, g.PR) > g.KW)
    throw py::value_error(std::string(fn) + ": padding " + shape_str(padding) + " must be at "
                          "most half of kernel_size " + shape_str(kernel));
  if (g.H + g.PT + g.PB < g.KH || g.W + g.PL + g.PR < g.KW)
    throw py::value_error(std::string(fn) + ": " + x_name + " of shape " + shape_str(x_shape) +
                          " padded by " + shape_str(padding) + " is smaller than kernel_size " +
                          shape_str(kernel));
  c.y_shape = rank == 3 ? Ints{c.N, g.C, g.OW()} : Ints{c.N, g.C, g.OH(), g.OW()};
  check_elems(saturating_prod(c.y_shape), fn, "the output");
  check_elems(saturating_prod(x_shape), fn, x_name);
  return c;
}

std::vector<py::ssize_t> py_shape(const Ints& s) { return std::vector<py::ssize_t>(s.begin(), s.end()); }

// (N, C, S) of a global-pool input shape (N, C, ...).
void global_dims(const char* fn, const char* name, const Ints& s, int64_t& N, int64_t& C,
                 int64_t& S) {
  if (s.size() < 3)
    throw py::value_error(std::string(fn) + ": " + name + " must be at least 3-D (N, C, ...), "
                          "got shape " + shape_str(s));
  S = 1;
  for (size_t i = 2; i < s.size(); ++i) S *= s[i];
  N = s[0], C = s[1];
  if (C < 1 || S < 1)
    throw py::value_error(std::string(fn) + ": " + name + " must have at least one channel and "
                          "position, got shape " + shape_str(s));
}

void check_shape_arg(const char* fn, const Ints& s) {
  for (int64_t d : s)
    if (d < 0 || d > std::numeric_limits<int>::max())
      throw py::value_error(std::string(fn) + ": input_shape has an invalid entry: " + shape_str(s));
  check_elems(saturating_prod(s), fn, "the input gradient");
}

}  // namespace

void bind_pool(py::module_& m) {
  // (y, argmax int32) = maxpool_forward(x, kernel_size, stride, padding)
  m.def("maxpool_forward", [](const py::array& x, const Ints& kernel, const Ints& stride,
                              const Ints& padding) {
    return dispatch(x, "maxpool_forward", "x", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const char* fn = "maxpool_forward";
      const PoolCall c = pool_call(fn, shape_of(x), "x", kernel, stride, padding);
      const T* px = in<T>(x, fn, "x", shape_of(x));
      auto y = empty<T>(py_shape(c.y_shape));
      auto arg = empty<int32_t>(py_shape(c.y_shape));
      T* py_ = y.mutable_data();
      int32_t* pa = arg.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::maxpool_forward<T>(py_, pa, px, c.N, c.g);
      }
      return py::make_tuple(y, arg);
    });
  }, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"));

  // dx = maxpool_backward(dy, argmax, input_shape, kernel_size, stride, padding)
  m.def("maxpool_backward", [](const py::array& dy, const py::array& argmax, const Ints& input_shape,
                               const Ints& kernel, const Ints& stride, const Ints& padding) {
    return dispatch(dy, "maxpool_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "maxpool_backward";
      const PoolCall c = pool_call(fn, input_shape, "input_shape", kernel, stride, padding);
      const T* pdy = in<T>(dy, fn, "dy", c.y_shape);
      if (!argmax.dtype().equal(py::dtype::of<int32_t>()))
        throw py::type_error(std::string(fn) + ": argmax must have dtype int32, got " +
                             std::string(py::str(argmax.dtype())));
      bool ok = argmax.ndim() == static_cast<py::ssize_t>(c.y_shape.size());
      for (size_t i = 0; ok && i < c.y_shape.size(); ++i) ok = argmax.shape(i) == c.y_shape[i];
      if (!ok)
        throw py::value_error(std::string(fn) + ": argmax must have shape " +
                              shape_str(c.y_shape) + ", got " + shape_str(argmax));
      if (!(argmax.flags() & py::array::c_style))
        throw py::value_error(std::string(fn) + ": argmax must be C-contiguous");
      const int32_t* pa = static_cast<const int32_t*>(argmax.data());
      auto dx = empty<T>(py_shape(input_shape));
      T* pdx = dx.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::maxpool_backward<T>(pdx, pdy, pa, c.N, c.g);  // skips indices outside the plane
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("argmax"), py::arg("input_shape"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"));

  // y = avgpool_forward(x, kernel_size, stride, padding)
  m.def("avgpool_forward", [](const py::array& x, const Ints& kernel, const Ints& stride,
                              const Ints& padding) {
    return dispatch(x, "avgpool_forward", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "avgpool_forward";
      const PoolCall c = pool_call(fn, shape_of(x), "x", kernel, stride, padding);
      const T* px = in<T>(x, fn, "x", shape_of(x));
      auto y = empty<T>(py_shape(c.y_shape));
      T* py_ = y.mutable_data();
      py::gil_scoped_release nogil;
      cpu::avgpool_forward<T>(py_, px, c.N, c.g);
      return y;
    });
  }, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"));

  // dx = avgpool_backward(dy, input_shape, kernel_size, stride, padding)
  m.def("avgpool_backward", [](const py::array& dy, const Ints& input_shape, const Ints& kernel,
                               const Ints& stride, const Ints& padding) {
    return dispatch(dy, "avgpool_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "avgpool_backward";
      const PoolCall c = pool_call(fn, input_shape, "input_shape", kernel, stride, padding);
      const T* pdy = in<T>(dy, fn, "dy", c.y_shape);
      auto dx = empty<T>(py_shape(input_shape));
      T* pdx = dx.mutable_data();
      py::gil_scoped_release nogil;
      cpu::avgpool_backward<T>(pdx, pdy, c.N, c.g);
      return dx;
    });
  }, py::arg("dy"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"));

  // y (N,C) = global_avgpool_forward(x (N,C,...))
  m.def("global_avgpool_forward", [](const py::array& x) {
    return dispatch(x, "global_avgpool_forward", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "global_avgpool_forward";
      int64_t N, C, S;
      global_dims(fn, "x", shape_of(x), N, C, S);
      const T* px = in<T>(x, fn, "x", shape_of(x));
      auto y = empty<T>({N, C});
      T* py_ = y.mutable_data();
      py::gil_scoped_release nogil;
      cpu::global_avgpool_forward<T>(py_, px, N, C, S);
      return y;
    });
  }, py::arg("x"));

  // dx (input_shape) = global_avgpool_backward(dy (N,C), input_shape)
  m.def("global_avgpool_backward", [](const py::array& dy, const Ints& input_shape) {
    return dispatch(dy, "global_avgpool_backward", "dy", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "global_avgpool_backward";
      int64_t N, C, S;
      check_shape_arg(fn, input_shape);
      global_dims(fn, "input_shape", input_shape, N, C, S);
      const T* pdy = in<T>(dy, fn, "dy", {N, C});
      auto dx = empty<T>(py_shape(input_shape));
      T* pdx = dx.mutable_data();
      py::gil_scoped_release nogil;
      cpu::global_avgpool_backward<T>(pdx, pdy, N, C, S);
      return dx;
    });
  }, py::arg("dy"), py::arg("input_shape"));
}

}  // namespace gradstep::bind
