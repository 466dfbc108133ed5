// Bindings of the conv family: 1-D input (N,C,L) with weights (O,C,K), or 2-D input (N,C,H,W)
// with weights (O,C,KH,KW). stride and dilation hold one value per spatial axis; padding two
// per axis, the leading sides first: (left, right) for 1-D, (top, left, bottom, right) for 2-D.
// Everything is validated before the GIL is released; the kernels then cannot read or write out
// of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/conv.hpp"

namespace gradstep::bind {
namespace {

using Ints = std::vector<int64_t>;

struct ConvCall {
  cpu::ConvGeometry g;
  int64_t N;
  std::vector<int64_t> y_shape;  // (N,O,OW) or (N,O,OH,OW)
};

// Checks x and w (dtype T) and the geometry arguments; returns the geometry.
template <class T>
ConvCall conv_call(const char* fn, const py::array& x, const py::array& w, const Ints& stride,
                   const Ints& padding, const Ints& dilation) {
  const auto rank = x.ndim();
  if (rank != 3 && rank != 4)
    throw py::value_error(std::string(fn) + ": x must be 3-D (N, C, L) or 4-D (N, C, H, W), got "
                          "shape " + shape_str(x));
  check_array<T>(x, fn, "x", any_shape(x));
  if (w.ndim() != rank)
    throw py::value_error(std::string(fn) + ": w must be " + std::to_string(rank) + "-D like x, "
                          "(out_channels, in_channels" + (rank == 3 ? ", k)" : ", kh, kw)") +
                          ", got shape " + shape_str(w));
  check_array<T>(w, fn, "w", any_shape(w));
  const size_t sd = static_cast<size_t>(rank - 2);
  check_ints(stride, fn, "stride", sd, 1);
  check_ints(dilation, fn, "dilation", sd, 1);
  check_ints(padding, fn, "padding", 2 * sd, 0);
  ConvCall c{};
  cpu::ConvGeometry& g = c.g;
  c.N = dim(x, 0);
  g.C = dim(x, 1);
  g.O = dim(w, 0);
  if (dim(w, 1) != g.C)
    throw py::value_error(std::string(fn) + ": w has " + std::to_string(dim(w, 1)) +
                          " input channels (shape " + shape_str(w) + ") but x has " +
                          std::to_string(g.C) + " channels (shape " + shape_str(x) + ")");
  if (rank == 3) {
    g.H = 1, g.W = dim(x, 2), g.KH = 1, g.KW = dim(w, 2);
    g.SH = 1, g.SW = stride[0], g.DH = 1, g.DW = dilation[0];
    g.PT = 0, g.PL = padding[0], g.PB = 0, g.PR = padding[1];
  } else {
    g.H = dim(x, 2), g.W = dim(x, 3), g.KH = dim(w, 2), g.KW = dim(w, 3);
    g.SH = stride[0], g.SW = stride[1], g.DH = dilation[0], g.DW = dilation[1];
    g.PT = padding[0], g.PL = padding[1], g.PB = padding[2], g.PR = padding[3];
  }
  if (g.C < 1 || g.H < 1 || g.W < 1)
    throw py::value_error(std::string(fn) + ": x must have at least one channel and position, "
                          "got shape " + shape_str(x));
  if (g.O < 1 || g.KH < 1 || g.KW < 1)
    throw py::value_error(std::string(fn) + ": w must have at least one output channel and a "
                          "kernel of size >= 1, got shape " + shape_str(w));
  const int64_t eh = g.DH * (g.KH - 1) + 1, ew = g.DW * (g.KW - 1) + 1;
  if (g.H + g.PT + g.PB < eh || g.W + g.PL + g.PR < ew)
    throw py::value_error(std::string(fn) + ": x of shape " + shape_str(x) + " padded by " +
                          shape_str(padding) + " is smaller than the dilated kernel (" +
                          (rank == 3 ? std::to_string(ew) : std::to_string(eh) + "x" + std::to_string(ew)) +
                          ") of w " + shape_str(w));
  c.y_shape = rank == 3 ? Ints{c.N, g.O, g.OW()} : Ints{c.N, g.O, g.OH(), g.OW()};
  check_elems(saturating_prod(c.y_shape), fn, "the output y");
  check_elems(saturating_prod({g.C * g.KH * g.KW, g.OH(), g.OW()}), fn, "one image's unfolding");
  check_elems(cpu::conv_workspace_elems(g, c.N), fn, "the workspace");
  return c;
}

template <class T>
std::vector<py::ssize_t> as_py_shape(const std::vector<int64_t>& s) {
  return std::vector<py::ssize_t>(s.begin(), s.end());
}

// The caller's workspace (a writable, C-contiguous 1-D array of T with at least `need` elements,
// kept by a layer across steps so that a step does not allocate it), or a new one in `owned`.
template <class T>
T* workspace(const py::object& ws, int64_t need, const char* fn, py::object& owned) {
  if (ws.is_none()) {
    auto a = empty<T>({static_cast<py::ssize_t>(need)});
    T* p = a.mutable_data();
    owned = a;
    return p;
  }
  py::array a = py::cast<py::array>(ws);
  T* p = out<T>(a, fn, "ws", {kAny});
  if (dim(a, 0) < need)
    throw py::value_error(std::string(fn) + ": ws must have at least " + std::to_string(need) +
                          " elements for this geometry, got " + std::to_string(dim(a, 0)));
  return p;
}

}  // namespace

void bind_conv(py::module_& m) {
  // Elements of the workspace conv_forward / conv_backward need for x and w.
  m.def("conv_workspace_elems", [](const py::array& x, const py::array& w, const Ints& stride,
                                   const Ints& padding, const Ints& dilation) {
    return dispatch(x, "conv_workspace_elems", "x", [&](auto tag) -> int64_t {
      using T = decltype(tag);
      const ConvCall c = conv_call<T>("conv_workspace_elems", x, w, stride, padding, dilation);
      return cpu::conv_workspace_elems(c.g, c.N);
    });
  }, py::arg("x"), py::arg("w"), py::arg("stride"), py::arg("padding"), py::arg("dilation"));

  // y = conv_forward(x, w, b or None, stride, padding, dilation, ws=None): (N,O,[OH,]OW);
  // ws: optional scratch of at least conv_workspace_elems elements (else allocated per call).
  m.def("conv_forward", [](const py::array& x, const py::array& w, const py::object& b,
                           const Ints& stride, const Ints& padding, const Ints& dilation,
                           const py::object& ws) {
    return dispatch(x, "conv_forward", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "conv_forward";
      const ConvCall c = conv_call<T>(fn, x, w, stride, padding, dilation);
      const T* pb = in_or_null<T>(b, fn, "b", {c.g.O});
      auto y = empty<T>(as_py_shape<T>(c.y_shape));
      py::object owned;
      T* pws = workspace<T>(ws, cpu::conv_workspace_elems(c.g, c.N), fn, owned);
      T* py_ = y.mutable_data();
      const T* px = static_cast<const T*>(x.data());
      const T* pw = static_cast<const T*>(w.data());
      py::gil_scoped_release nogil;
      cpu::conv_forward<T>(py_, pws, px, pw, pb, c.N, c.g);
      return y;
    });
  }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("ws") = py::none());

  // dx = conv_backward(dy, x, w, dw out, db out or None, stride, padding, dilation, need_dx, l2,
  // ws=None): overwrites dw (= Σ dy·x + l2·w) and db; dx is None when need_dx is false.
  m.def("conv_backward", [](const py::array& dy, const py::array& x, const py::array& w,
                            py::array dw, const py::object& db, const Ints& stride,
                            const Ints& padding, const Ints& dilation, bool need_dx, double l2,
                            const py::object& ws) {
    return dispatch(x, "conv_backward", "x", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const char* fn = "conv_backward";
      const ConvCall c = conv_call<T>(fn, x, w, stride, padding, dilation);
      const T* pdy = in<T>(dy, fn, "dy", c.y_shape);
      T* pdw = out<T>(dw, fn, "dw", shape_of(w));
      T* pdb = out_or_null<T>(db, fn, "db", {c.g.O});
      if (!std::isfinite(l2) || l2 < 0.0)
        throw py::value_error(std::string(fn) + ": l2 must be a finite number >= 0, got " +
                              std::to_string(l2));
      py::object dx = py::none();
      T* pdx = nullptr;
      if (need_dx) {
        auto a = empty<T>(py_shape_of(x));
        pdx = a.mutable_data();
        dx = a;
      }
      py::object owned;
      T* pws = workspace<T>(ws, cpu::conv_workspace_elems(c.g, c.N), fn, owned);
      const T* px = static_cast<const T*>(x.data());
      const T* pw = static_cast<const T*>(w.data());
      {
        py::gil_scoped_release nogil;
        cpu::conv_backward<T>(pdx, pdw, pdb, pws, pdy, px, pw, c.N, c.g, static_cast<T>(l2));
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("dw"), py::arg("db"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("need_dx") = true, py::arg("l2") = 0.0,
        py::arg("ws") = py::none());

  // The plain direct-loop references (tests compare the fast kernels against them).
  m.def("conv_forward_ref", [](const py::array& x, const py::array& w, const py::object& b,
                               const Ints& stride, const Ints& padding, const Ints& dilation) {
    return dispatch(x, "conv_forward_ref", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "conv_forward_ref";
      const ConvCall c = conv_call<T>(fn, x, w, stride, padding, dilation);
      const T* pb = in_or_null<T>(b, fn, "b", {c.g.O});
      auto y = empty<T>(as_py_shape<T>(c.y_shape));
      T* py_ = y.mutable_data();
      const T* px = static_cast<const T*>(x.data());
      const T* pw = static_cast<const T*>(w.data());
      py::gil_scoped_release nogil;
      cpu::conv_forward_ref<T>(py_, px, pw, pb, c.N, c.g);
      return y;
    });
  }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"));

  // (dx, dw, db) = conv_backward_ref(dy, x, w, stride, padding, dilation, l2): new arrays.
  m.def("conv_backward_ref", [](const py::array& dy, const py::array& x, const py::array& w,
                                const Ints& stride, const Ints& padding, const Ints& dilation,
                                double l2) {
    return dispatch(x, "conv_backward_ref", "x", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const char* fn = "conv_backward_ref";
      const ConvCall c = conv_call<T>(fn, x, w, stride, padding, dilation);
      const T* pdy = in<T>(dy, fn, "dy", c.y_shape);
      auto dx = empty<T>(py_shape_of(x));
      auto dw = empty<T>(py_shape_of(w));
      auto db = empty<T>({static_cast<py::ssize_t>(c.g.O)});
      T* pdx = dx.mutable_data();
      T* pdw = dw.mutable_data();
      T* pdb = db.mutable_data();
      const T* px = static_cast<const T*>(x.data());
      const T* pw = static_cast<const T*>(w.data());
      {
        py::gil_scoped_release nogil;
        cpu::conv_backward_ref<T>(pdx, pdw, pdb, pdy, px, pw, c.N, c.g, static_cast<T>(l2));
      }
      return py::make_tuple(dx, dw, db);
    });
  }, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("l2") = 0.0);
}

}  // namespace gradstep::bind
