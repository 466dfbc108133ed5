// Array validation at the pybind11 boundary. Every binding passes each array through these
// helpers before any kernel runs, so a wrong call from Python raises instead of crashing:
//   wrong dtype -> TypeError; wrong ndim / shape / layout, or a read-only output -> ValueError.
// Read-only inputs are converted in Python (np.ascontiguousarray) before they get here; arrays the
// kernels write to are never converted, because the write would land in a temporary copy.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace gradstep::bind {
namespace py = pybind11;

constexpr int64_t kAny = -1;  // a shape entry that may take any size

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

inline std::string shape_str(const int64_t* shape, size_t ndim) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < ndim; ++i) {
    s << (i ? ", " : "");
    if (shape[i] == kAny) s << "*"; else s << shape[i];
  }
  if (ndim == 1) s << ",";
  s << ")";
  return s.str();
}

inline std::string shape_str(std::initializer_list<int64_t> shape) {
  return shape_str(shape.begin(), shape.size());
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
  return shape_str(shape.data(), shape.size());
}

template <class T>
const char* dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

// Checks dtype T, C-contiguity and the shape (kAny entries match any size). Takes the expected
// shape as pointer + length so that a braced list ({N, K}) costs no heap allocation: the
// whole-step binding runs these checks on every training step.
template <class T>
void check_array(const py::array& a, const char* fn, const char* name, const int64_t* shape,
                 size_t ndim) {
  if (!a.dtype().equal(py::dtype::of<T>()))
    throw py::type_error(std::string(fn) + ": " + name + " must have dtype " + dtype_name<T>() +
                         ", got " + std::string(py::str(a.dtype())));
  bool ok = a.ndim() == static_cast<py::ssize_t>(ndim);
  for (size_t i = 0; ok && i < ndim; ++i) ok = shape[i] == kAny || a.shape(i) == shape[i];
  if (!ok)
    throw py::value_error(std::string(fn) + ": " + name + " must have shape " +
                          shape_str(shape, ndim) + ", got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(fn) + ": " + name + " must be C-contiguous");
  if (a.size() > std::numeric_limits<int>::max())
    throw py::value_error(std::string(fn) + ": " + name + " has " + std::to_string(a.size()) +
                          " elements; at most 2**31 - 1 are supported");
  // Also every axis: an empty array of 2**40 rows (a zero-stride broadcast) would otherwise send
  // the row loops through 2**40 empty rows.
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.shape(i) > std::numeric_limits<int>::max())
      throw py::value_error(std::string(fn) + ": " + name + " has " + std::to_string(a.shape(i)) +
                            " entries along axis " + std::to_string(i) +
                            "; at most 2**31 - 1 are supported");
}

template <class T>
void check_array(const py::array& a, const char* fn, const char* name,
                 std::initializer_list<int64_t> shape) {
  check_array<T>(a, fn, name, shape.begin(), shape.size());
}

template <class T>
void check_array(const py::array& a, const char* fn, const char* name,
                 const std::vector<int64_t>& shape) {
  check_array<T>(a, fn, name, shape.data(), shape.size());
}

template <class T, class Shape>
const T* in(const py::array& a, const char* fn, const char* name, const Shape& shape) {
  check_array<T>(a, fn, name, shape);
  return static_cast<const T*>(a.data());
}

template <class T>
const T* in(const py::array& a, const char* fn, const char* name, std::initializer_list<int64_t> shape) {
  check_array<T>(a, fn, name, shape);
  return static_cast<const T*>(a.data());
}

template <class T, class Shape>
T* out(py::array& a, const char* fn, const char* name, const Shape& shape) {
  check_array<T>(a, fn, name, shape);
  if (!a.writeable()) throw py::value_error(std::string(fn) + ": " + name + " must be writable");
  return static_cast<T*>(a.mutable_data());
}

template <class T>
T* out(py::array& a, const char* fn, const char* name, std::initializer_list<int64_t> shape) {
  check_array<T>(a, fn, name, shape);
  if (!a.writeable()) throw py::value_error(std::string(fn) + ": " + name + " must be writable");
  return static_cast<T*>(a.mutable_data());
}

// Optional input: None gives nullptr.
template <class T>
const T* in_or_null(const py::object& o, const char* fn, const char* name,
                    const std::vector<int64_t>& shape) {
  if (o.is_none()) return nullptr;
  return in<T>(py::cast<py::array>(o), fn, name, shape);
}

template <class T>
T* out_or_null(const py::object& o, const char* fn, const char* name,
               const std::vector<int64_t>& shape) {
  if (o.is_none()) return nullptr;
  py::array a = py::cast<py::array>(o);
  return out<T>(a, fn, name, shape);
}

// A new, uninitialized C-contiguous array.
template <class T>
py::array_t<T> empty(const std::vector<py::ssize_t>& shape) {
  return py::array_t<T>(shape);
}

// Calls f(T{}) with T the float type of `a` (float32 or float64), else raises TypeError.
template <class F>
auto dispatch(const py::array& a, const char* fn, const char* name, F&& f) {
  if (a.dtype().equal(py::dtype::of<float>())) return f(float{});
  if (a.dtype().equal(py::dtype::of<double>())) return f(double{});
  throw py::type_error(std::string(fn) + ": " + name + " must be float32 or float64, got " +
                       std::string(py::str(a.dtype())));
}

inline int64_t dim(const py::array& a, int i) { return static_cast<int64_t>(a.shape(i)); }

// `a`'s own shape, to check another array against it (elementwise kernels: same shape).
inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// Any shape of `a`'s rank (kAny in every axis).
inline std::vector<int64_t> any_shape(const py::array& a) {
  return std::vector<int64_t>(static_cast<size_t>(a.ndim()), kAny);
}

// `a`'s shape for `empty<T>`, to allocate a result shaped like it.
inline std::vector<py::ssize_t> py_shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// Integer arguments that come one per spatial axis (stride, dilation, kernel size) or two per
// axis (padding): checks the count and the range [lo, kMaxGeometry] and names the argument.
constexpr int64_t kMaxGeometry = int64_t(1) << 24;  // far beyond any real layer; keeps sizes in int64

inline void check_ints(const std::vector<int64_t>& v, const char* fn, const char* name,
                       size_t count, int64_t lo) {
  if (v.size() != count)
    throw py::value_error(std::string(fn) + ": " + name + " must have " + std::to_string(count) +
                          " value(s) for this input, got " + std::to_string(v.size()));
  for (int64_t e : v)
    if (e < lo || e > kMaxGeometry)
      throw py::value_error(std::string(fn) + ": " + name + " must hold values in [" +
                            std::to_string(lo) + ", " + std::to_string(kMaxGeometry) + "], got " +
                            shape_str(v));
}

// The product of sizes, saturating at 2**62 instead of overflowing (for size checks only).
inline int64_t saturating_prod(std::initializer_list<int64_t> v) {
  constexpr int64_t kCap = int64_t(1) << 62;
  int64_t p = 1;
  for (int64_t e : v) {
    if (e <= 0) return 0;
    p = p > kCap / e ? kCap : p * e;
  }
  return p;
}

inline int64_t saturating_prod(const std::vector<int64_t>& v) {
  constexpr int64_t kCap = int64_t(1) << 62;
  int64_t p = 1;
  for (int64_t e : v) {
    if (e <= 0) return 0;
    p = p > kCap / e ? kCap : p * e;
  }
  return p;
}

// Refuses a result or scratch size that the int-sized BLAS and kernels cannot index.
inline void check_elems(int64_t n, const char* fn, const char* what) {
  if (n > std::numeric_limits<int>::max())
    throw py::value_error(std::string(fn) + ": " + what + " would have " + std::to_string(n) +
                          " elements; at most 2**31 - 1 are supported");
}

}  // namespace gradstep::bind
