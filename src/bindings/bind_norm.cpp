#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"

namespace gradstep::bind {

void bind_norm(py::module_& m) { (void)m; }

}  // namespace gradstep::bind
