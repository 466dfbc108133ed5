// The gradstep._core extension module: the only place where C++ meets Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "bindings/bind.hpp"
#include "bindings/check.hpp"
#include "core/common.hpp"

namespace py = pybind11;

namespace {

// A zero-filled, 64-byte-aligned array whose memory is owned by C++ (freed by a capsule when the
// last numpy view of it dies). Parameter, gradient and optimizer-state arenas are made with it.
py::array alloc_zeros(int64_t size, const py::object& dtype_obj) {
  py::dtype dtype = py::dtype::from_args(dtype_obj);
  if (!dtype.equal(py::dtype::of<float>()) && !dtype.equal(py::dtype::of<double>()))
    throw py::type_error("alloc_zeros: dtype must be float32 or float64, got " +
                         std::string(py::str(dtype)));
  if (size < 0) throw py::value_error("alloc_zeros: size must be >= 0, got " + std::to_string(size));
  const size_t item = static_cast<size_t>(dtype.itemsize());
  // More than the machine's physical memory can never be zero-filled: refuse before asking the
  // allocator (with memory overcommit on, the allocation would succeed and the memset below would
  // bring in the out-of-memory killer instead of a MemoryError).
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  const uint64_t physical = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : uint64_t(1) << 40;
  if (static_cast<uint64_t>(size) > std::min<uint64_t>(uint64_t(1) << 40, physical) / item)
    throw std::bad_alloc();
  size_t bytes = ((static_cast<size_t>(size) * item + 63) / 64) * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();  // pybind11 turns this into MemoryError
  std::memset(p, 0, bytes);
  py::capsule owner(p, [](void* q) { std::free(q); });
  return py::array(dtype, {static_cast<py::ssize_t>(size)}, {static_cast<py::ssize_t>(item)}, p,
                   owner);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "gradstep's C++ kernels (private: use the gradstep package)";
  m.def("alloc_zeros", &alloc_zeros, py::arg("size"), py::arg("dtype"));
  m.def("get_num_threads", &gradstep::cpu::num_threads);
  m.def("max_threads", &gradstep::cpu::max_threads);
  m.def("set_num_threads", &gradstep::cpu::set_num_threads, py::arg("n"));
  m.def("has_openmp", [] {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  });
  m.def("has_cuda", [] { return false; });

  // The contention governor (common.hpp): its state, for diagnostics and tests. A standalone one
  // for testing the policy with made-up timings; the process's one is what the kernels use.
  using gradstep::cpu::ContentionGovernor;
  py::class_<ContentionGovernor>(m, "_ContentionGovernor")
      .def(py::init<>())
      .def("region", [](ContentionGovernor& g, int64_t own_ns, int64_t wait_ns, int64_t now_ns) {
        // Times are steady-clock nanoseconds: bounded so that no sum in the policy overflows.
        constexpr int64_t kMax = int64_t(1) << 62;
        if (own_ns < 0 || wait_ns < 0 || now_ns < 0 || own_ns > kMax || wait_ns > kMax || now_ns > kMax)
          throw py::value_error("own_ns, wait_ns and now_ns must be in [0, 2**62]");
        g.region(own_ns, wait_ns, now_ns);
      }, py::arg("own_ns"), py::arg("wait_ns"), py::arg("now_ns"))
      .def("team", &ContentionGovernor::team, py::arg("threads"), py::arg("now_ns"))
      .def_property_readonly("backoff_ns", &ContentionGovernor::backoff_ns)
      .def_property_readonly("stalls", &ContentionGovernor::stalls)
      .def_property_readonly("stalled_ns", &ContentionGovernor::stalled_ns)
      .def_property_readonly("regions", &ContentionGovernor::regions)
      .def_property_readonly("waited_ns", &ContentionGovernor::waited_ns);
  m.def("_thread_governor", [] {
    auto& g = gradstep::cpu::governor();
    py::dict d;
    d["enabled"] = gradstep::cpu::governor_enabled();
    d["stalls"] = g.stalls();
    d["stalled_ns"] = g.stalled_ns();
    d["regions"] = g.regions();
    d["waited_ns"] = g.waited_ns();
    d["backoff_ns"] = g.backoff_ns();
    d["team_now"] = gradstep::cpu::team_size();
    return d;
  });
  // Reports a region to the process's governor as if it had just ended (tests: force one thread).
  m.def("_thread_governor_region", [](int64_t own_ns, int64_t wait_ns) {
    if (own_ns < 0 || wait_ns < 0 || own_ns > (int64_t(1) << 62) || wait_ns > (int64_t(1) << 62))
      throw py::value_error("own_ns and wait_ns must be in [0, 2**62]");
    gradstep::cpu::governor().region(own_ns, wait_ns, gradstep::cpu::now_ns());
  }, py::arg("own_ns"), py::arg("wait_ns"));

  // pybind11 reports a failed py::cast (a Python value of the wrong type, or an int too large
  // for int64 inside a list) as RuntimeError; here it is the TypeError it is, for every binding.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const py::cast_error& e) {
      PyErr_SetString(PyExc_TypeError,
                      (std::string("an argument has the wrong type or is out of range: ") + e.what()).c_str());
    }
  });

  using namespace gradstep::bind;
  bind_dense(m);
  bind_activation(m);
  bind_maxout(m);
  bind_norm(m);
  bind_dropout(m);
  bind_loss(m);
  bind_optim(m);
  bind_op(m);
  bind_network(m);
  bind_conv(m);
  bind_pool(m);
  bind_gemm(m);
}
