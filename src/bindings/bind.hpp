// One registration function per kernel family; module.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace gradstep::bind {
void bind_dense(pybind11::module_& m);
void bind_activation(pybind11::module_& m);
void bind_maxout(pybind11::module_& m);
void bind_norm(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_loss(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_op(pybind11::module_& m);
void bind_network(pybind11::module_& m);
void bind_conv(pybind11::module_& m);
void bind_pool(pybind11::module_& m);
void bind_gemm(pybind11::module_& m);
}  // namespace gradstep::bind
