// Per-sample loss weights from Python: None (no weights) or a float64 C-contiguous (N,) array of
// finite values >= 0. Checked here, in full, because the kernels index them by row unchecked.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "bindings/check.hpp"

namespace gradstep::bind {

inline const double* weights_in(const pybind11::object& o, const char* fn, int64_t N) {
  namespace py = pybind11;
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": sample_weight must be a float64 array or None");
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().equal(py::dtype::of<double>()))
    throw py::type_error(std::string(fn) + ": sample_weight must have dtype float64, got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 1 || dim(a, 0) != N)
    throw py::value_error(std::string(fn) + ": sample_weight must have shape (" +
                          std::to_string(N) + ",), got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(fn) + ": sample_weight must be C-contiguous");
  const double* p = static_cast<const double*>(a.data());
  for (int64_t i = 0; i < N; ++i)
    if (!(p[i] >= 0) || std::isinf(p[i]))
      throw py::value_error(std::string(fn) + ": sample_weight must be finite and >= 0, got " +
                            std::to_string(p[i]) + " at index " + std::to_string(i));
  return p;
}

}  // namespace gradstep::bind
