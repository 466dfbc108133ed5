// Private bindings of the gemm wrapper, for the tests: the products every kernel runs through,
// on strided numpy views, with the implementation forced or chosen as gemm chooses it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cblas.h>

#include <string>
#include <type_traits>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/common.hpp"
#include "core/gemm.hpp"
#include "core/gemm_kernels.hpp"

namespace gradstep::bind {
namespace {

const char* isa_name(cpu::GemmIsa isa) {
  switch (isa) {
    case cpu::GemmIsa::kAvx512: return "avx512";
    case cpu::GemmIsa::kAvx2: return "avx2";
    default: return "none";
  }
}

// A 2-D view with unit column stride and a row stride of at least its columns: returns the row
// stride in elements (the BLAS leading dimension).
template <class T>
int64_t leading_dim(const py::array& a, const char* name) {
  const char* fn = "_gemm_for_tests";
  if (!a.dtype().equal(py::dtype::of<T>()))
    throw py::type_error(std::string(fn) + ": " + name + " must have dtype " + dtype_name<T>() +
                         ", got " + std::string(py::str(a.dtype())));
  if (a.ndim() != 2)
    throw py::value_error(std::string(fn) + ": " + name + " must be 2-D, got " + shape_str(a));
  const int64_t rows = a.shape(0), cols = a.shape(1), item = sizeof(T);
  if (rows > (1 << 20) || cols > (1 << 20))
    throw py::value_error(std::string(fn) + ": " + name + " has more than 2**20 rows or columns");
  if (rows == 0 || cols == 0) return std::max<int64_t>(cols, 1);  // nothing is read
  if (cols > 1 && a.strides(1) != item)
    throw py::value_error(std::string(fn) + ": " + name + " must have contiguous rows (column stride " +
                          std::to_string(item) + " bytes), got " + std::to_string(a.strides(1)));
  if (rows == 1) return cols;  // no row stride is used
  const int64_t s = a.strides(0);
  if (s % item != 0 || s / item < std::max<int64_t>(cols, 1))
    throw py::value_error(std::string(fn) + ": " + name + "'s row stride (" + std::to_string(s) +
                          " bytes) must be a positive multiple of " + std::to_string(item) +
                          " spanning at least its " + std::to_string(cols) + " columns");
  return s / item;
}

}  // namespace

void bind_gemm(py::module_& m) {
  // C = alpha·op(A)·op(B) + beta·C in place. kernel: "auto" (what gemm chooses), "blas", "avx2",
  // "avx512" (the latter two raise where the CPU lacks them). Returns the implementation used.
  m.def("_gemm_for_tests", [](const py::array& A, const py::array& B, py::array C, bool ta, bool tb,
                              double alpha, double beta, const std::string& kernel) {
    return dispatch(C, "_gemm_for_tests", "C", [&](auto tag) -> std::string {
      using T = decltype(tag);
      const int64_t lda = leading_dim<T>(A, "A"), ldb = leading_dim<T>(B, "B"),
                    ldc = leading_dim<T>(C, "C");
      if (!C.writeable()) throw py::value_error("_gemm_for_tests: C must be writable");
      const int64_t M = C.shape(0), N = C.shape(1);
      const int64_t K = ta ? A.shape(0) : A.shape(1);
      if ((ta ? A.shape(1) : A.shape(0)) != M)
        throw py::value_error("_gemm_for_tests: op(A) must have C's " + std::to_string(M) +
                              " rows, A is " + shape_str(A) + (ta ? " (transposed)" : ""));
      if ((tb ? B.shape(1) : B.shape(0)) != K || (tb ? B.shape(0) : B.shape(1)) != N)
        throw py::value_error("_gemm_for_tests: op(B) must be (" + std::to_string(K) + ", " +
                              std::to_string(N) + "), B is " + shape_str(B) + (tb ? " (transposed)" : ""));
      const T* a = static_cast<const T*>(A.data());
      const T* b = static_cast<const T*>(B.data());
      T* c = static_cast<T*>(C.mutable_data());
      const T al = static_cast<T>(alpha), be = static_cast<T>(beta);
      if (kernel == "auto") {
        const bool ours = cpu::small_gemm_wins(ta, tb, M, N, K) && al != T(0);
        py::gil_scoped_release nogil;
        cpu::gemm<T>(ta, tb, M, N, K, al, a, lda, b, ldb, be, c, ldc);
        return ours ? isa_name(cpu::small_gemm_isa()) : "blas";
      }
      if (kernel == "blas") {
        if (M == 0 || N == 0) return "blas";
        py::gil_scoped_release nogil;
        cpu::num_threads();  // OpenBLAS's pool at one thread
        if constexpr (std::is_same_v<T, float>)
          scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                            int(M), int(N), int(K), al, a, int(lda), b, int(ldb), be, c, int(ldc));
        else
          scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                            int(M), int(N), int(K), al, a, int(lda), b, int(ldb), be, c, int(ldc));
        return "blas";
      }
      const cpu::GemmIsa isa = kernel == "avx512" ? cpu::GemmIsa::kAvx512
                               : kernel == "avx2" ? cpu::GemmIsa::kAvx2 : cpu::GemmIsa::kNone;
      if (isa == cpu::GemmIsa::kNone)
        throw py::value_error("_gemm_for_tests: kernel must be 'auto', 'blas', 'avx2' or 'avx512', got '" +
                              kernel + "'");
      if (ta && tb) throw py::value_error("_gemm_for_tests: the kernels do not implement trans_a and trans_b together");
      if (al == T(0)) throw py::value_error("_gemm_for_tests: the kernels leave alpha = 0 to BLAS");
      if (static_cast<int>(isa) > static_cast<int>(cpu::small_gemm_isa()))
        throw py::value_error("_gemm_for_tests: this CPU cannot run the " + kernel + " kernel (best: " +
                              isa_name(cpu::small_gemm_isa()) + ")");
      py::gil_scoped_release nogil;
      cpu::small_gemm<T>(isa, ta, tb, M, N, K, al, a, lda, b, ldb, be, c, ldc);
      return kernel;
    });
  }, py::arg("A"), py::arg("B"), py::arg("C"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("kernel") = "auto");

  m.def("_gemm_kernel_isa", [] { return isa_name(cpu::small_gemm_isa()); });
  m.def("_gemm_uses_kernels", &cpu::small_gemm_wins, py::arg("trans_a"), py::arg("trans_b"),
        py::arg("M"), py::arg("N"), py::arg("K"));
}

}  // namespace gradstep::bind
