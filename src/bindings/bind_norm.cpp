#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/batchnorm.hpp"

namespace gradstep::bind {
namespace {

void check_eps(double eps, const char* fn) {
  if (!(eps > 0.0) || !std::isfinite(eps))
    throw py::value_error(std::string(fn) + ": eps must be a finite number > 0, got " +
                          std::to_string(eps));
}

// (N, C, S) of a spatial batch-norm input (N, C, ...) of at least 3 dimensions.
void spatial_dims(const py::array& x, const char* fn, const char* name, int64_t& N, int64_t& C,
                  int64_t& S) {
  if (x.ndim() < 3)
    throw py::value_error(std::string(fn) + ": " + name + " must be at least 3-D (N, C, L) or "
                          "(N, C, H, W), got shape " + shape_str(x));
  N = dim(x, 0), C = dim(x, 1), S = 1;
  for (py::ssize_t i = 2; i < x.ndim(); ++i) S *= dim(x, static_cast<int>(i));
}

}  // namespace

void bind_norm(py::module_& m) {
  // (y, xhat, mean, invstd) = batchnorm_forward_train(x (N,F), gamma (F,), beta (F,),
  //     running_mean inout (F,), running_var inout (F,), momentum, eps); the running statistics
  //     are updated in place. y, xhat (N,F); mean, invstd (F,) are what backward needs.
  m.def("batchnorm_forward_train", [](const py::array& x, const py::array& gamma,
                                      const py::array& beta, py::array running_mean,
                                      py::array running_var, double momentum, double eps) {
    return dispatch(x, "batchnorm_forward_train", "x", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const char* fn = "batchnorm_forward_train";
      const T* px = in<T>(x, fn, "x", {kAny, kAny});
      const int64_t N = dim(x, 0), F = dim(x, 1);
      if (N < 2)
        throw py::value_error(std::string(fn) + ": Expected more than 1 value per channel when "
                              "training, got x of shape " + shape_str(x));
      const T* pg = in<T>(gamma, fn, "gamma", {F});
      const T* pb = in<T>(beta, fn, "beta", {F});
      T* prm = out<T>(running_mean, fn, "running_mean", {F});
      T* prv = out<T>(running_var, fn, "running_var", {F});
      if (!(momentum >= 0.0 && momentum <= 1.0))
        throw py::value_error(std::string(fn) + ": momentum must be in [0, 1], got " +
                              std::to_string(momentum));
      check_eps(eps, fn);
      auto y = empty<T>({N, F});
      auto xhat = empty<T>({N, F});
      auto mean = empty<T>({F});
      auto invstd = empty<T>({F});
      T* py_ = y.mutable_data();
      T* ph = xhat.mutable_data();
      T* pm = mean.mutable_data();
      T* pr = invstd.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::batchnorm_forward_train<T>(py_, ph, pm, pr, prm, prv, px, pg, pb, N, F,
                                        static_cast<T>(momentum), static_cast<T>(eps));
      }
      return py::make_tuple(y, xhat, mean, invstd);
    });
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("momentum"), py::arg("eps"));

  // dx = batchnorm_backward(dy (N,F), xhat (N,F), invstd (F,), gamma (F,), dgamma out (F,),
  //                         dbeta out (F,), need_dx); dx is None when need_dx is false.
  m.def("batchnorm_backward", [](const py::array& dy, const py::array& xhat,
                                 const py::array& invstd, const py::array& gamma, py::array dgamma,
                                 py::array dbeta, bool need_dx) {
    return dispatch(dy, "batchnorm_backward", "dy", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const char* fn = "batchnorm_backward";
      const T* pdy = in<T>(dy, fn, "dy", {kAny, kAny});
      const int64_t N = dim(dy, 0), F = dim(dy, 1);
      const T* ph = in<T>(xhat, fn, "xhat", {N, F});
      const T* pr = in<T>(invstd, fn, "invstd", {F});
      const T* pg = in<T>(gamma, fn, "gamma", {F});
      T* pdg = out<T>(dgamma, fn, "dgamma", {F});
      T* pdb = out<T>(dbeta, fn, "dbeta", {F});
      py::object dx = py::none();
      T* pdx = nullptr;
      if (need_dx) {
        auto a = empty<T>({N, F});
        pdx = a.mutable_data();
        dx = a;
      }
      {
        py::gil_scoped_release nogil;
        cpu::batchnorm_backward<T>(pdx, pdg, pdb, pdy, ph, pr, pg, N, F);
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("xhat"), py::arg("invstd"), py::arg("gamma"), py::arg("dgamma"),
        py::arg("dbeta"), py::arg("need_dx") = true);

  // y = batchnorm_forward_eval(x (N,F), gamma, beta, running_mean, running_var (F,), eps)
  m.def("batchnorm_forward_eval", [](const py::array& x, const py::array& gamma,
                                     const py::array& beta, const py::array& running_mean,
                                     const py::array& running_var, double eps) {
    return dispatch(x, "batchnorm_forward_eval", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "batchnorm_forward_eval";
      const T* px = in<T>(x, fn, "x", {kAny, kAny});
      const int64_t N = dim(x, 0), F = dim(x, 1);
      const T* pg = in<T>(gamma, fn, "gamma", {F});
      const T* pb = in<T>(beta, fn, "beta", {F});
      const T* prm = in<T>(running_mean, fn, "running_mean", {F});
      const T* prv = in<T>(running_var, fn, "running_var", {F});
      check_eps(eps, fn);
      auto y = empty<T>({N, F});
      T* py_ = y.mutable_data();
      py::gil_scoped_release nogil;
      cpu::batchnorm_forward_eval<T>(py_, px, pg, pb, prm, prv, N, F, static_cast<T>(eps));
      return y;
    });
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("eps"));

  // dx = batchnorm_backward_eval(dy (N,F), x (N,F), gamma, running_mean, running_var (F,),
  //                              dgamma out (F,), dbeta out (F,), eps, need_dx)
  m.def("batchnorm_backward_eval", [](const py::array& dy, const py::array& x,
                                      const py::array& gamma, const py::array& running_mean,
                                      const py::array& running_var, py::array dgamma,
                                      py::array dbeta, double eps, bool need_dx) {
    return dispatch(dy, "batchnorm_backward_eval", "dy", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const char* fn = "batchnorm_backward_eval";
      const T* pdy = in<T>(dy, fn, "dy", {kAny, kAny});
      const int64_t N = dim(dy, 0), F = dim(dy, 1);
      const T* px = in<T>(x, fn, "x", {N, F});
      const T* pg = in<T>(gamma, fn, "gamma", {F});
      const T* prm = in<T>(running_mean, fn, "running_mean", {F});
      const T* prv = in<T>(running_var, fn, "running_var", {F});
      T* pdg = out<T>(dgamma, fn, "dgamma", {F});
      T* pdb = out<T>(dbeta, fn, "dbeta", {F});
      check_eps(eps, fn);
      py::object dx = py::none();
      T* pdx = nullptr;
      if (need_dx) {
        auto a = empty<T>({N, F});
        pdx = a.mutable_data();
        dx = a;
      }
      {
        py::gil_scoped_release nogil;
        cpu::batchnorm_backward_eval<T>(pdx, pdg, pdb, pdy, px, pg, prm, prv, N, F,
                                        static_cast<T>(eps));
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("dgamma"), py::arg("dbeta"), py::arg("eps"),
        py::arg("need_dx") = true);
  // ---- spatial: x (N,C,...) with statistics per channel over N and the spatial axes ----------
  // (y, xhat, mean, invstd) = batchnorm_spatial_forward_train(x, gamma (C,), beta (C,),
  //     running_mean inout (C,), running_var inout (C,), momentum, eps)
  m.def("batchnorm_spatial_forward_train", [](const py::array& x, const py::array& gamma,
                                              const py::array& beta, py::array running_mean,
                                              py::array running_var, double momentum, double eps) {
    return dispatch(x, "batchnorm_spatial_forward_train", "x", [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      const char* fn = "batchnorm_spatial_forward_train";
      int64_t N, C, S;
      spatial_dims(x, fn, "x", N, C, S);
      const T* px = in<T>(x, fn, "x", shape_of(x));
      if (N * S < 2)
        throw py::value_error(std::string(fn) + ": Expected more than 1 value per channel when "
                              "training, got x of shape " + shape_str(x));
      const T* pg = in<T>(gamma, fn, "gamma", {C});
      const T* pb = in<T>(beta, fn, "beta", {C});
      T* prm = out<T>(running_mean, fn, "running_mean", {C});
      T* prv = out<T>(running_var, fn, "running_var", {C});
      if (!(momentum >= 0.0 && momentum <= 1.0))
        throw py::value_error(std::string(fn) + ": momentum must be in [0, 1], got " +
                              std::to_string(momentum));
      check_eps(eps, fn);
      auto y = empty<T>(py_shape_of(x));
      auto xhat = empty<T>(py_shape_of(x));
      auto mean = empty<T>({C});
      auto invstd = empty<T>({C});
      T* py_ = y.mutable_data();
      T* ph = xhat.mutable_data();
      T* pm = mean.mutable_data();
      T* pr = invstd.mutable_data();
      {
        py::gil_scoped_release nogil;
        cpu::batchnorm_spatial_forward_train<T>(py_, ph, pm, pr, prm, prv, px, pg, pb, N, C, S,
                                                static_cast<T>(momentum), static_cast<T>(eps));
      }
      return py::make_tuple(y, xhat, mean, invstd);
    });
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("momentum"), py::arg("eps"));

  // dx = batchnorm_spatial_backward(dy, xhat (like dy), invstd (C,), gamma (C,), dgamma out,
  //                                 dbeta out, need_dx)
  m.def("batchnorm_spatial_backward", [](const py::array& dy, const py::array& xhat,
                                         const py::array& invstd, const py::array& gamma,
                                         py::array dgamma, py::array dbeta, bool need_dx) {
    return dispatch(dy, "batchnorm_spatial_backward", "dy", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const char* fn = "batchnorm_spatial_backward";
      int64_t N, C, S;
      spatial_dims(dy, fn, "dy", N, C, S);
      const T* pdy = in<T>(dy, fn, "dy", shape_of(dy));
      const T* ph = in<T>(xhat, fn, "xhat", shape_of(dy));
      const T* pr = in<T>(invstd, fn, "invstd", {C});
      const T* pg = in<T>(gamma, fn, "gamma", {C});
      T* pdg = out<T>(dgamma, fn, "dgamma", {C});
      T* pdb = out<T>(dbeta, fn, "dbeta", {C});
      py::object dx = py::none();
      T* pdx = nullptr;
      if (need_dx) {
        auto a = empty<T>(py_shape_of(dy));
        pdx = a.mutable_data();
        dx = a;
      }
      {
        py::gil_scoped_release nogil;
        cpu::batchnorm_spatial_backward<T>(pdx, pdg, pdb, pdy, ph, pr, pg, N, C, S);
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("xhat"), py::arg("invstd"), py::arg("gamma"), py::arg("dgamma"),
        py::arg("dbeta"), py::arg("need_dx") = true);

  // y = batchnorm_spatial_forward_eval(x, gamma, beta, running_mean, running_var (C,), eps)
  m.def("batchnorm_spatial_forward_eval", [](const py::array& x, const py::array& gamma,
                                             const py::array& beta, const py::array& running_mean,
                                             const py::array& running_var, double eps) {
    return dispatch(x, "batchnorm_spatial_forward_eval", "x", [&](auto tag) -> py::array {
      using T = decltype(tag);
      const char* fn = "batchnorm_spatial_forward_eval";
      int64_t N, C, S;
      spatial_dims(x, fn, "x", N, C, S);
      const T* px = in<T>(x, fn, "x", shape_of(x));
      const T* pg = in<T>(gamma, fn, "gamma", {C});
      const T* pb = in<T>(beta, fn, "beta", {C});
      const T* prm = in<T>(running_mean, fn, "running_mean", {C});
      const T* prv = in<T>(running_var, fn, "running_var", {C});
      check_eps(eps, fn);
      auto y = empty<T>(py_shape_of(x));
      T* py_ = y.mutable_data();
      py::gil_scoped_release nogil;
      cpu::batchnorm_spatial_forward_eval<T>(py_, px, pg, pb, prm, prv, N, C, S,
                                             static_cast<T>(eps));
      return y;
    });
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("eps"));

  // dx = batchnorm_spatial_backward_eval(dy, x, gamma, running_mean, running_var (C,),
  //                                      dgamma out, dbeta out, eps, need_dx)
  m.def("batchnorm_spatial_backward_eval", [](const py::array& dy, const py::array& x,
                                              const py::array& gamma,
                                              const py::array& running_mean,
                                              const py::array& running_var, py::array dgamma,
                                              py::array dbeta, double eps, bool need_dx) {
    return dispatch(dy, "batchnorm_spatial_backward_eval", "dy", [&](auto tag) -> py::object {
      using T = decltype(tag);
      const char* fn = "batchnorm_spatial_backward_eval";
      int64_t N, C, S;
      spatial_dims(dy, fn, "dy", N, C, S);
      const T* pdy = in<T>(dy, fn, "dy", shape_of(dy));
      const T* px = in<T>(x, fn, "x", shape_of(dy));
      const T* pg = in<T>(gamma, fn, "gamma", {C});
      const T* prm = in<T>(running_mean, fn, "running_mean", {C});
      const T* prv = in<T>(running_var, fn, "running_var", {C});
      T* pdg = out<T>(dgamma, fn, "dgamma", {C});
      T* pdb = out<T>(dbeta, fn, "dbeta", {C});
      check_eps(eps, fn);
      py::object dx = py::none();
      T* pdx = nullptr;
      if (need_dx) {
        auto a = empty<T>(py_shape_of(dy));
        pdx = a.mutable_data();
        dx = a;
      }
      {
        py::gil_scoped_release nogil;
        cpu::batchnorm_spatial_backward_eval<T>(pdx, pdg, pdb, pdy, px, pg, prm, prv, N, C, S,
                                                static_cast<T>(eps));
      }
      return dx;
    });
  }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("dgamma"), py::arg("dbeta"), py::arg("eps"),
        py::arg("need_dx") = true);
}

}  // namespace gradstep::bind
