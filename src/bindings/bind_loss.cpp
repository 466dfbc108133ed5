#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "bindings/weights.hpp"
#include "core/loss.hpp"

namespace gradstep::bind {
namespace {

void require_nonempty(const py::array& a, const char* fn, const char* name) {
  if (a.size() == 0)
    throw py::value_error(std::string(fn) + ": " + name +
                          " must have at least one element, got shape " + shape_str(a));
}

// (N,K) logits or probabilities with N >= 1 and K >= 1 (a row of K = 0 has no max to read).
template <class T>
const T* rows_in(const py::array& a, const char* fn, const char* name) {
  const T* p = in<T>(a, fn, name, {kAny, kAny});
  require_nonempty(a, fn, name);
  return p;
}

// Labels (N,) int64, every one in [0, K): the kernels index rows with them unchecked, so this is
// the last guard against an out-of-bounds read (the Python layer checks them first, with a
// friendlier message).
const int64_t* labels_in(const py::array& a, const char* fn, int64_t N, int64_t K) {
  if (!a.dtype().equal(py::dtype::of<int64_t>()))
    throw py::type_error(std::string(fn) + ": labels must have dtype int64, got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 1 || dim(a, 0) != N)
    throw py::value_error(std::string(fn) + ": labels must have shape (" + std::to_string(N) +
                          ",), got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(fn) + ": labels must be C-contiguous");
  const int64_t* p = static_cast<const int64_t*>(a.data());
  for (int64_t i = 0; i < N; ++i)
    if (p[i] < 0 || p[i] >= K)
      throw py::index_error(std::string(fn) + ": labels[" + std::to_string(i) + "] = " +
                            std::to_string(p[i]) + " is out of range [0, " + std::to_string(K) +
                            ")");
  return p;
}

// Sample weights of an elementwise loss: one per sample (pred's first axis), each covering the
// row = size / N elements of its sample. Sets row; null when sample_weight is None.
inline const double* elem_weights(const py::object& sw, const py::array& pred, const char* fn,
                                  int64_t& row) {
  row = 1;
  if (sw.is_none()) return nullptr;
  if (pred.ndim() < 1)
    throw py::value_error(std::string(fn) + ": sample_weight needs pred with a sample axis");
  const int64_t N = dim(pred, 0);
  row = static_cast<int64_t>(pred.size()) / N;
  return weights_in(sw, fn, N);
}

// The gradient's destination: `out` (N,K) when given (it may be probs itself: in place), else new.
template <class T>
T* grad_out(const py::object& out_obj, py::object& result, const char* fn, int64_t N, int64_t K) {
  if (out_obj.is_none()) {
    auto a = empty<T>({N, K});
    T* p = a.mutable_data();
    result = a;
    return p;
  }
  py::array a = py::cast<py::array>(out_obj);
  T* p = out<T>(a, fn, "out", {N, K});
  result = a;
  return p;
}

// Binds an elementwise loss pair: name_forward(pred, target) -> float and
// name_backward(pred, target) -> d mean / d pred (pred's shape). pred and target: any shape, equal.
template <template <class> class Kernels>
void def_elementwise(py::module_& m, const char* fwd_name, const char* bwd_name,
                     const char* pred_name) {
  m.def(fwd_name, [fwd_name, pred_name](const py::array& pred, const py::array& target,
                                        const py::object& sw) {
    return dispatch(pred, fwd_name, pred_name, [&](auto tag) -> double {
      using T = decltype(tag);
      const auto shape = shape_of(pred);
      const T* pp = in<T>(pred, fwd_name, pred_name, shape);
      require_nonempty(pred, fwd_name, pred_name);
      const T* pt = in<T>(target, fwd_name, "target", shape);
      const int64_t n = static_cast<int64_t>(pred.size());
      int64_t row;
      const double* pw = elem_weights(sw, pred, fwd_name, row);
      py::gil_scoped_release nogil;
      return Kernels<T>::forward(pp, pt, n, pw, row);
    });
  }, py::arg(pred_name), py::arg("target"), py::arg("sample_weight") = py::none());

  m.def(bwd_name, [bwd_name, pred_name](const py::array& pred, const py::array& target,
                                        const py::object& sw) {
    return dispatch(pred, bwd_name, pred_name, [&](auto tag) -> py::array {
      using T = decltype(tag);
      const auto shape = shape_of(pred);
      const T* pp = in<T>(pred, bwd_name, pred_name, shape);
      require_nonempty(pred, bwd_name, pred_name);
      const T* pt = in<T>(target, bwd_name, "target", shape);
      const int64_t n = static_cast<int64_t>(pred.size());
      int64_t row;
      const double* pw = elem_weights(sw, pred, bwd_name, row);
      auto d = empty<T>(py_shape_of(pred));
      T* pd = d.mutable_data();
      {
        py::gil_scoped_release nogil;
        Kernels<T>::backward(pd, pp, pt, n, pw, row);
      }
      return d;
    });
  }, py::arg(pred_name), py::arg("target"), py::arg("sample_weight") = py::none());
}

template <class T>
struct Mse {
  static double forward(const T* p, const T* t, int64_t n, const double* w, int64_t row) {
    return cpu::mse_forward<T>(p, t, n, w, row);
  }
  static void backward(T* d, const T* p, const T* t, int64_t n, const double* w, int64_t row) {
    cpu::mse_backward<T>(d, p, t, n, w, row);
  }
};
template <class T>
struct Bce {
  static double forward(const T* p, const T* t, int64_t n, const double* w, int64_t row) {
    return cpu::bce_forward<T>(p, t, n, w, row);
  }
  static void backward(T* d, const T* p, const T* t, int64_t n, const double* w, int64_t row) {
    cpu::bce_backward<T>(d, p, t, n, w, row);
  }
};
template <class T>
struct BceLogits {
  static double forward(const T* x, const T* t, int64_t n, const double* w, int64_t row) {
    return cpu::bce_logits_forward<T>(x, t, n, w, row);
  }
  static void backward(T* d, const T* x, const T* t, int64_t n, const double* w, int64_t row) {
    cpu::bce_logits_backward<T>(d, x, t, n, w, row);
  }
};

}  // namespace

void bind_loss(py::module_& m) {
  // mean (pred - target)²; d/dpred = 2 (pred - target) / n
  def_elementwise<Mse>(m, "mse_forward", "mse_backward", "pred");
  // torch's binary_cross_entropy on probabilities in [0, 1]
  def_elementwise<Bce>(m, "bce_forward", "bce_backward", "prob");
  // torch's binary_cross_entropy_with_logits
  def_elementwise<BceLogits>(m, "bce_logits_forward", "bce_logits_backward", "logits");

  // (loss, probs (N,K)) = softmax_xent_forward(logits (N,K), labels (N,) int64)
  m.def("softmax_xent_forward", [](const py::array& logits, const py::array& labels,
                                   const py::object& sw) {
    const char* fn = "softmax_xent_forward";
    return dispatch(logits, fn, "logits", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const T* px = rows_in<T>(logits, fn, "logits");
      const int64_t N = dim(logits, 0), K = dim(logits, 1);
      const int64_t* py_ = labels_in(labels, fn, N, K);
      const double* pw = weights_in(sw, fn, N);
      auto probs = empty<T>({N, K});
      T* pp = probs.mutable_data();
      double loss;
      {
        py::gil_scoped_release nogil;
        loss = cpu::softmax_xent_forward<T>(pp, px, py_, N, K, pw);
      }
      return py::make_tuple(loss, probs);
    });
  }, py::arg("logits"), py::arg("labels"), py::arg("sample_weight") = py::none());

  // dlogits (N,K) = softmax_xent_backward(probs (N,K), labels (N,), out=None); out may be probs.
  m.def("softmax_xent_backward", [](const py::array& probs, const py::array& labels,
                                    const py::object& out_obj, const py::object& sw) {
    const char* fn = "softmax_xent_backward";
    return dispatch(probs, fn, "probs", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const T* pp = rows_in<T>(probs, fn, "probs");
      const int64_t N = dim(probs, 0), K = dim(probs, 1);
      const int64_t* py_ = labels_in(labels, fn, N, K);
      const double* pw = weights_in(sw, fn, N);
      py::object result;
      T* pd = grad_out<T>(out_obj, result, fn, N, K);
      {
        py::gil_scoped_release nogil;
        cpu::softmax_xent_backward<T>(pd, pp, py_, N, K, pw);
      }
      return result;
    });
  }, py::arg("probs"), py::arg("labels"), py::arg("out") = py::none(),
        py::arg("sample_weight") = py::none());

  // (loss, probs (N,K)) = softmax_xent_soft_forward(logits (N,K), target (N,K) class probabilities)
  m.def("softmax_xent_soft_forward", [](const py::array& logits, const py::array& target,
                                        const py::object& sw) {
    const char* fn = "softmax_xent_soft_forward";
    return dispatch(logits, fn, "logits", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const T* px = rows_in<T>(logits, fn, "logits");
      const int64_t N = dim(logits, 0), K = dim(logits, 1);
      const T* pt = in<T>(target, fn, "target", {N, K});
      const double* pw = weights_in(sw, fn, N);
      auto probs = empty<T>({N, K});
      T* pp = probs.mutable_data();
      double loss;
      {
        py::gil_scoped_release nogil;
        loss = cpu::softmax_xent_soft_forward<T>(pp, px, pt, N, K, pw);
      }
      return py::make_tuple(loss, probs);
    });
  }, py::arg("logits"), py::arg("target"), py::arg("sample_weight") = py::none());

  // dlogits (N,K) = softmax_xent_soft_backward(probs (N,K), target (N,K), out=None);
  // out may be probs (in place).
  m.def("softmax_xent_soft_backward", [](const py::array& probs, const py::array& target,
                                         const py::object& out_obj, const py::object& sw) {
    const char* fn = "softmax_xent_soft_backward";
    return dispatch(probs, fn, "probs", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const T* pp = rows_in<T>(probs, fn, "probs");
      const int64_t N = dim(probs, 0), K = dim(probs, 1);
      const T* pt = in<T>(target, fn, "target", {N, K});
      const double* pw = weights_in(sw, fn, N);
      py::object result;
      T* pd = grad_out<T>(out_obj, result, fn, N, K);
      {
        py::gil_scoped_release nogil;
        cpu::softmax_xent_soft_backward<T>(pd, pp, pt, N, K, pw);
      }
      return result;
    });
  }, py::arg("probs"), py::arg("target"), py::arg("out") = py::none(),
        py::arg("sample_weight") = py::none());

  // -mean(max(log prob[n, labels[n]], -100)) for prob (N,K), labels (N,) int64
  m.def("nll_forward", [](const py::array& prob, const py::array& labels, const py::object& sw) {
    const char* fn = "nll_forward";
    return dispatch(prob, fn, "prob", [&](auto tag) -> double {
      using T = decltype(tag);
      const T* pp = rows_in<T>(prob, fn, "prob");
      const int64_t N = dim(prob, 0), K = dim(prob, 1);
      const int64_t* py_ = labels_in(labels, fn, N, K);
      const double* pw = weights_in(sw, fn, N);
      py::gil_scoped_release nogil;
      return cpu::nll_forward<T>(pp, py_, N, K, pw);
    });
  }, py::arg("prob"), py::arg("labels"), py::arg("sample_weight") = py::none());

  // dprob (N,K) = nll_backward(prob (N,K), labels (N,) int64)
  m.def("nll_backward", [](const py::array& prob, const py::array& labels, const py::object& sw) {
    const char* fn = "nll_backward";
    return dispatch(prob, fn, "prob", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const T* pp = rows_in<T>(prob, fn, "prob");
      const int64_t N = dim(prob, 0), K = dim(prob, 1);
      const int64_t* py_ = labels_in(labels, fn, N, K);
      const double* pw = weights_in(sw, fn, N);
      auto d = empty<T>({N, K});
      T* pd = d.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::nll_backward<T>(pd, pp, py_, N, K, pw);
      }
      return d;
    });
  }, py::arg("prob"), py::arg("labels"), py::arg("sample_weight") = py::none());
}

}  // namespace gradstep::bind
