#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/clip.hpp"
#include "core/optim.hpp"

namespace gradstep::bind {
namespace {

void check_step(int64_t step, const char* fn) {
  if (step < 1)
    throw py::value_error(std::string(fn) + ": step must be >= 1, got " + std::to_string(step));
}

// Each step binds twice: `<opt>_step` (SIMD where the CPU has it, parallel) and `<opt>_step_ref`
// (the plain serial loop); both update w and the state buffers in place and return None.
template <bool Ref>
void bind_steps(py::module_& m, const char* sgd_name, const char* rmsprop_name,
                const char* adam_name) {
  // sgd_step(w, momentum_buf or None, g, lr, momentum, dampening, weight_decay, nesterov, step)
  m.def(sgd_name, [sgd_name](py::array w, const py::object& buf, const py::array& g, double lr,
                             double momentum, double dampening, double weight_decay,
                             bool nesterov, int64_t step) {
    const char* fn = sgd_name;
    dispatch(w, fn, "w", [&](auto tag) {
      using T = decltype(tag);
      const auto shape = shape_of(w);
      T* pw = out<T>(w, fn, "w", shape);
      const T* pg = in<T>(g, fn, "g", shape);
      T* pb = out_or_null<T>(buf, fn, "momentum_buf", shape);
      if (momentum != 0 && !pb)
        throw py::value_error(std::string(fn) + ": momentum_buf is required when momentum != 0");
      check_step(step, fn);
      const cpu::SGDHyper h{lr, momentum, dampening, weight_decay, nesterov};
      const int64_t P = static_cast<int64_t>(w.size());
      py::gil_scoped_release nogil;
      if (Ref) cpu::sgd_step_ref<T>(pw, pb, pg, P, h, step);
      else cpu::sgd_step<T>(pw, pb, pg, P, h, step);
    });
  }, py::arg("w"), py::arg("momentum_buf"), py::arg("g"), py::arg("lr"), py::arg("momentum"),
        py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("step"));

  // rmsprop_step(w, square_avg, momentum_buf or None, g, lr, alpha, eps, momentum, weight_decay,
  //              step)
  m.def(rmsprop_name, [rmsprop_name](py::array w, py::array square_avg, const py::object& buf,
                                     const py::array& g, double lr, double alpha, double eps,
                                     double momentum, double weight_decay, int64_t step) {
    const char* fn = rmsprop_name;
    dispatch(w, fn, "w", [&](auto tag) {
      using T = decltype(tag);
      const auto shape = shape_of(w);
      T* pw = out<T>(w, fn, "w", shape);
      T* ps = out<T>(square_avg, fn, "square_avg", shape);
      const T* pg = in<T>(g, fn, "g", shape);
      T* pb = out_or_null<T>(buf, fn, "momentum_buf", shape);
      if (momentum > 0 && !pb)
        throw py::value_error(std::string(fn) + ": momentum_buf is required when momentum > 0");
      check_step(step, fn);
      const cpu::RMSpropHyper h{lr, alpha, eps, momentum, weight_decay};
      const int64_t P = static_cast<int64_t>(w.size());
      py::gil_scoped_release nogil;
      if (Ref) cpu::rmsprop_step_ref<T>(pw, ps, pb, pg, P, h, step);
      else cpu::rmsprop_step<T>(pw, ps, pb, pg, P, h, step);
    });
  }, py::arg("w"), py::arg("square_avg"), py::arg("momentum_buf"), py::arg("g"), py::arg("lr"),
        py::arg("alpha"), py::arg("eps"), py::arg("momentum"), py::arg("weight_decay"),
        py::arg("step"));

  // adam_step(w, m, v, g, lr, beta1, beta2, eps, weight_decay, decoupled, step)
  m.def(adam_name, [adam_name](py::array w, py::array m1, py::array v, const py::array& g,
                               double lr, double beta1, double beta2, double eps,
                               double weight_decay, bool decoupled, int64_t step) {
    const char* fn = adam_name;
    dispatch(w, fn, "w", [&](auto tag) {
      using T = decltype(tag);
      const auto shape = shape_of(w);
      T* pw = out<T>(w, fn, "w", shape);
      T* pm = out<T>(m1, fn, "m", shape);
      T* pv = out<T>(v, fn, "v", shape);
      const T* pg = in<T>(g, fn, "g", shape);
      check_step(step, fn);
      const cpu::AdamHyper h{lr, beta1, beta2, eps, weight_decay, decoupled};
      const int64_t P = static_cast<int64_t>(w.size());
      py::gil_scoped_release nogil;
      if (Ref) cpu::adam_step_ref<T>(pw, pm, pv, pg, P, h, step);
      else cpu::adam_step<T>(pw, pm, pv, pg, P, h, step);
    });
  }, py::arg("w"), py::arg("m"), py::arg("v"), py::arg("g"), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
        py::arg("step"));
}

}  // namespace

void bind_optim(py::module_& m) {
  bind_steps<false>(m, "sgd_step", "rmsprop_step", "adam_step");
  bind_steps<true>(m, "sgd_step_ref", "rmsprop_step_ref", "adam_step_ref");
  m.def("optim_has_simd", &cpu::optim_has_simd);

  // The element offset at which `value` and `grad` lie in the flat buffers `params` and `grads`
  // (the same offset in both, each C-contiguous with the buffers' dtype and inside them), else -1.
  // The optimizers' test for "this Parameter is a view of that arena's slot", one call per
  // parameter because numpy's own address lookups cost microseconds each.
  m.def("arena_offset", [](const py::array& value, const py::array& grad, const py::array& params,
                           const py::array& grads) -> int64_t {
    auto offset_in = [&](const py::array& a, const py::array& base) -> int64_t {
      // Each base with its own item size; a zero-size item (a structured dtype with no fields)
      // has no offsets to give.
      const py::ssize_t item = base.itemsize();
      if (item <= 0 || !a.dtype().equal(base.dtype()) || !(a.flags() & py::array::c_style)) return -1;
      const auto p = reinterpret_cast<uintptr_t>(a.data());
      const auto b = reinterpret_cast<uintptr_t>(base.data());
      if (p < b || (p - b) % item != 0) return -1;
      const int64_t off = static_cast<int64_t>((p - b) / item);
      if (off + static_cast<int64_t>(a.size()) > static_cast<int64_t>(base.size())) return -1;
      return off;
    };
    const int64_t off = offset_in(value, params);
    return off >= 0 && offset_in(grad, grads) == off ? off : -1;
  }, py::arg("value"), py::arg("grad"), py::arg("params"), py::arg("grads"));

  // Gradient clipping (core/clip.hpp), in place on float32/float64 arrays of any shape. The
  // layer-by-layer path of an optimizer's step uses these; the fused step calls the same kernels.
  // grad_sq_sum(g) -> Σ g² in double
  m.def("grad_sq_sum", [](const py::array& g) {
    return dispatch(g, "grad_sq_sum", "g", [&](auto tag) -> double {
      using T = decltype(tag);
      const T* pg = in<T>(g, "grad_sq_sum", "g", shape_of(g));
      const int64_t P = static_cast<int64_t>(g.size());
      py::gil_scoped_release nogil;
      return cpu::grad_sq_sum<T>(pg, P);
    });
  }, py::arg("g"));
  // clip_scale(g, sq_sum, max_norm): g ·= min(1, max_norm / (√sq_sum + 1e-6)), the coefficient in
  // g's dtype; returns the coefficient. sq_sum is the squared norm of all the gradients clipped
  // together (Σ grad_sq_sum over them, in order).
  m.def("clip_scale", [](py::array g, double sq_sum, double max_norm) {
    return dispatch(g, "clip_scale", "g", [&](auto tag) -> double {
      using T = decltype(tag);
      T* pg = out<T>(g, "clip_scale", "g", shape_of(g));
      if (!(max_norm > 0)) throw py::value_error("clip_scale: max_norm must be > 0");
      const int64_t P = static_cast<int64_t>(g.size());
      const T c = cpu::clip_coef<T>(sq_sum, max_norm);
      py::gil_scoped_release nogil;
      cpu::scale_grads<T>(pg, P, c);
      return static_cast<double>(c);
    });
  }, py::arg("g"), py::arg("sq_sum"), py::arg("max_norm"));
  // clip_grad_value(g, v): g = clamp(g, -v, v) in place
  m.def("clip_grad_value", [](py::array g, double v) {
    dispatch(g, "clip_grad_value", "g", [&](auto tag) {
      using T = decltype(tag);
      T* pg = out<T>(g, "clip_grad_value", "g", shape_of(g));
      if (!(v > 0)) throw py::value_error("clip_grad_value: v must be > 0");
      const int64_t P = static_cast<int64_t>(g.size());
      py::gil_scoped_release nogil;
      cpu::clip_grad_value<T>(pg, P, v);
    });
  }, py::arg("g"), py::arg("v"));
}

}  // namespace gradstep::bind
