// gradstep._cuda: the CUDA backend's Python module (built only with GRADSTEP_CUDA=ON, imported
// lazily by gradstep.cuda, so `import gradstep` never needs CUDA).
// Errors: gradstep::cuda::CudaError becomes gradstep.CudaError (a RuntimeError); bad arguments
// become TypeError/ValueError/IndexError naming the argument, before anything runs on the device.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime.h>

#include <string>
#include <variant>

#include "cuda/network.cuh"

namespace py = pybind11;
using namespace gradstep::cuda;

namespace {

// A device-resident array (float32, float64 or int64), for data that should stay on the GPU
// across steps (a whole training set, gathered by index each batch).
class DeviceArray {
 public:
  DeviceArray(const py::array& a, int device) : device_(device) {
    const char kind = a.dtype().kind();
    const size_t item = a.dtype().itemsize();
    if (!((kind == 'f' && (item == 4 || item == 8)) || (kind == 'i' && item == 8)))
      throw py::type_error("to_device: array must be float32, float64 or int64, got " +
                           std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
      throw std::invalid_argument("to_device: array must be C-contiguous");
    code_ = kind == 'i' ? 'q' : (item == 4 ? 'f' : 'd');
    for (py::ssize_t i = 0; i < a.ndim(); ++i) shape_.push_back(a.shape(i));
    require_device(device_);
    check(cudaSetDevice(device_), "cudaSetDevice");
    buf_ = DeviceBuffer(static_cast<size_t>(a.nbytes()));
    const void* src = a.data();
    const size_t n = static_cast<size_t>(a.nbytes());
    py::gil_scoped_release nogil;
    check(cudaMemcpy(buf_.get(), src, n, cudaMemcpyHostToDevice), "to_device");
  }
  py::array numpy() const {
    py::array out(py::dtype(std::string(1, code_)), shape_);
    check(cudaSetDevice(device_), "cudaSetDevice");
    check(cudaMemcpy(out.mutable_data(), buf_.get(), buf_.bytes(), cudaMemcpyDeviceToHost), "numpy");
    return out;
  }
  const std::vector<py::ssize_t>& shape() const { return shape_; }
  char code() const { return code_; }
  int device() const { return device_; }
  const void* data() const { return buf_.get(); }
  int64_t rows() const { return shape_.empty() ? 1 : shape_[0]; }
  // Values per row (the product of the shape past the first axis).
  int64_t row_size() const {
    int64_t n = 1;
    for (size_t i = 1; i < shape_.size(); ++i) n *= shape_[i];
    return n;
  }

 private:
  DeviceBuffer buf_;
  std::vector<py::ssize_t> shape_;
  char code_ = 'f';
  int device_ = 0;
};

Loss parse_loss(const std::string& s) {
  if (s == "softmax_xent") return Loss::kSoftmaxXent;
  if (s == "softmax_xent_soft") return Loss::kSoftmaxXentSoft;
  if (s == "mse") return Loss::kMSE;
  if (s == "bce") return Loss::kBCE;
  if (s == "bce_logits") return Loss::kBCELogits;
  if (s == "nll") return Loss::kNLL;
  throw std::invalid_argument("train_step: unknown loss '" + s + "'");
}

Opt parse_opt(const std::string& s) {
  if (s == "sgd") return Opt::kSGD;
  if (s == "rmsprop") return Opt::kRMSprop;
  if (s == "adam") return Opt::kAdam;
  throw std::invalid_argument("train_step: unknown optimizer '" + s + "'");
}

std::string shape_str(const std::vector<py::ssize_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

template <class T>
char code_of() { return sizeof(T) == 4 ? 'f' : 'd'; }

// A numpy array of exactly dtype T, C-contiguous, of `count` elements (writable when asked).
template <class U>
U* flat_ptr(const py::array& a, const char* what, int64_t count, bool writable) {
  if (!py::isinstance<py::array_t<U>>(a) || a.dtype().itemsize() != sizeof(U))
    throw py::type_error(std::string(what) + ": wrong dtype " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(what) + ": must be C-contiguous");
  if (a.size() != count)
    throw std::invalid_argument(std::string(what) + ": must hold " + std::to_string(count) +
                                " elements, got " + std::to_string(a.size()));
  if (writable && !a.writeable()) throw std::invalid_argument(std::string(what) + ": is read-only");
  return static_cast<U*>(const_cast<void*>(a.data()));
}

template <class T>
void bind_network(py::module_& m, const char* name) {
  using Net = Network<T>;
  py::class_<Net>(m, name)
      .def(py::init([](const py::list& specs, int64_t P, int device) {
             std::vector<LayerSpec> layers;
             for (const auto& item : specs) {
               auto t = item.cast<py::tuple>();
               if (t.size() != 5) throw std::invalid_argument("Network: a layer spec is (kind, in, out, slots, attrs)");
               LayerSpec L;
               L.kind = t[0].cast<std::string>();
               L.in = t[1].cast<int64_t>();
               L.out = t[2].cast<int64_t>();
               L.slots = t[3].cast<std::vector<int64_t>>();
               L.attrs = t[4].cast<std::map<std::string, double>>();
               layers.push_back(std::move(L));
             }
             if (P < 1) throw std::invalid_argument("Network: P must be >= 1");
             return std::make_unique<Net>(std::move(layers), P, device);
           }),
           py::arg("layers"), py::arg("P"), py::arg("device") = 0)
      .def_property_readonly("P", &Net::P)
      .def_property_readonly("device", &Net::device)
      .def_property_readonly("batch_capacity", &Net::batch_capacity)
      .def_property_readonly("graphs", &Net::graphs)
      .def("set_use_graphs", &Net::set_use_graphs)
      .def("upload", [](Net& n, int which, const py::array& a) {
        if (which < 0 || which > 3) throw py::index_error("upload: which must be 0..3");
        const T* p = flat_ptr<T>(a, "upload: array", n.P(), false);
        py::gil_scoped_release nogil;
        n.upload(which, p);
      })
      .def("download", [](Net& n, int which, const py::array& a) {
        if (which < 0 || which > 3) throw py::index_error("download: which must be 0..3");
        T* p = flat_ptr<T>(a, "download: out", n.P(), true);
        py::gil_scoped_release nogil;
        n.download(which, p);
      })
      .def("upload_bn", [](Net& n, size_t j, int which, const py::array& a) {
        if (j >= n.num_batchnorm() || which < 0 || which > 1) throw py::index_error("upload_bn: no such buffer");
        n.upload_bn(j, which, flat_ptr<T>(a, "upload_bn: array", a.size(), false));
      })
      .def("download_bn", [](Net& n, size_t j, int which, const py::array& a) {
        if (j >= n.num_batchnorm() || which < 0 || which > 1) throw py::index_error("download_bn: no such buffer");
        n.download_bn(j, which, flat_ptr<T>(a, "download_bn: out", a.size(), true));
      })
      .def("train_step",
           [](Net& n, const py::object& x, const py::object& y, const std::string& loss_name,
              const std::vector<uint64_t>& seeds, const std::string& opt_name,
              const std::vector<double>& hyper, int64_t step, const py::object& idx) {
             const Loss loss = parse_loss(loss_name);
             const bool labels = loss == Loss::kSoftmaxXent || loss == Loss::kNLL;
             const int64_t I = n.in_features(), K = n.out_features();
             if (seeds.size() != n.num_dropout())
               throw std::invalid_argument("train_step: need " + std::to_string(n.num_dropout()) + " dropout seeds");
             OptHyper h;
             h.kind = parse_opt(opt_name);
             auto hp = [&](size_t i) { return i < hyper.size() ? hyper[i] : 0.0; };
             const size_t need = h.kind == Opt::kAdam ? 6 : 5;
             if (hyper.size() != need)
               throw std::invalid_argument("train_step: hyper must hold " + std::to_string(need) + " values");
             if (h.kind == Opt::kSGD) h.sgd = {hp(0), hp(1), hp(2), hp(3), hp(4) != 0.0};
             else if (h.kind == Opt::kRMSprop) h.rmsprop = {hp(0), hp(1), hp(2), hp(3), hp(4)};
             else h.adam = {hp(0), hp(1), hp(2), hp(3), hp(4), hp(5) != 0.0};
             if (step < 1) throw std::invalid_argument("train_step: step must be >= 1");
             StepInput<T> in;
             std::vector<int64_t> idx_copy;
             if (!idx.is_none()) {
               // Rows picked from device-resident data by host indices.
               const auto& X = x.cast<const DeviceArray&>();
               const auto& Y = y.cast<const DeviceArray&>();
               auto ia = py::array_t<int64_t, py::array::c_style | py::array::forcecast>(idx);
               if (ia.ndim() != 1) throw std::invalid_argument("train_step: idx must be 1-D");
               if (X.code() != code_of<T>() || X.shape().size() < 2 || X.row_size() != I)
                 throw std::invalid_argument("train_step: x must be a device array of (M, ...) rows of " + std::to_string(I) + " values in the model's dtype, got " + shape_str(X.shape()));
               if (Y.rows() != X.rows()) throw std::invalid_argument("train_step: x and y must have the same number of rows");
               const int64_t M = X.rows();
               idx_copy.assign(ia.data(), ia.data() + ia.size());
               for (int64_t v : idx_copy)
                 if (v < 0 || v >= M) throw py::index_error("train_step: idx holds " + std::to_string(v) + ", outside [0, " + std::to_string(M) + ")");
               in.src = Source::kGather;
               in.idx = idx_copy.data();
               in.N = static_cast<int64_t>(idx_copy.size());
               in.x = static_cast<const T*>(X.data());
               if (labels) {
                 if (Y.code() != 'q' || Y.shape().size() != 1) throw std::invalid_argument("train_step: y must be int64 labels (M,)");
                 in.labels = static_cast<const int64_t*>(Y.data());
               } else {
                 if (Y.code() != code_of<T>() || Y.shape().size() != 2 || Y.shape()[1] != K)
                   throw std::invalid_argument("train_step: y must be targets (M, " + std::to_string(K) + ")");
                 in.target = static_cast<const T*>(Y.data());
               }
             } else if (py::isinstance<DeviceArray>(x)) {
               const auto& X = x.cast<const DeviceArray&>();
               const auto& Y = y.cast<const DeviceArray&>();
               if (X.code() != code_of<T>() || X.shape().size() < 2 || X.row_size() != I)
                 throw std::invalid_argument("train_step: x must be a device array of (N, ...) rows of " + std::to_string(I) + " values in the model's dtype, got " + shape_str(X.shape()));
               in.src = Source::kDevice;
               in.N = X.rows();
               in.x = static_cast<const T*>(X.data());
               if (Y.rows() != in.N) throw std::invalid_argument("train_step: x and y must have the same number of rows");
               if (labels) {
                 if (Y.code() != 'q' || Y.shape().size() != 1) throw std::invalid_argument("train_step: y must be int64 labels (N,)");
                 in.labels = static_cast<const int64_t*>(Y.data());
               } else {
                 if (Y.code() != code_of<T>() || Y.shape().size() != 2 || Y.shape()[1] != K)
                   throw std::invalid_argument("train_step: y must be targets (N, " + std::to_string(K) + ")");
                 in.target = static_cast<const T*>(Y.data());
               }
             } else {
               auto xa = x.cast<py::array>();
               if (xa.ndim() < 2 || xa.size() != xa.shape(0) * I)
                 throw std::invalid_argument("train_step: x must hold rows of " + std::to_string(I) + " values");
               in.N = xa.shape(0);
               in.x = flat_ptr<T>(xa, "train_step: x", in.N * I, false);
               auto ya = y.cast<py::array>();
               if (labels) {
                 in.labels = flat_ptr<int64_t>(ya, "train_step: labels", in.N, false);
                 for (int64_t r = 0; r < in.N; ++r)
                   if (in.labels[r] < 0 || in.labels[r] >= K)
                     throw py::index_error("train_step: label " + std::to_string(in.labels[r]) + " outside [0, " + std::to_string(K) + ")");
               } else {
                 in.target = flat_ptr<T>(ya, "train_step: target", in.N * K, false);
               }
             }
             if (in.N < 1) throw std::invalid_argument("train_step: the batch is empty");
             py::gil_scoped_release nogil;
             return n.train_step(in, loss, seeds.data(), h, step);
           },
           py::arg("x"), py::arg("y"), py::arg("loss"), py::arg("seeds"), py::arg("opt"),
           py::arg("hyper"), py::arg("step"), py::arg("idx") = py::none())
      .def("output", [](Net& n, int64_t N) {
        py::array_t<T> out({N, n.out_features()});
        T* p = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          n.output(p, N);
        }
        return out;
      });
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "gradstep's CUDA backend (private: use gradstep.cuda)";
  // CudaError -> gradstep.CudaError (defined in Python so that it exists without this module).
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CudaError& e) {
      py::object cls = py::module_::import("gradstep.cuda").attr("CudaError");
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
  m.def("device_count", &device_count, "Visible CUDA devices (0 without a driver or a device).");
  m.def("device_error", &device_error, "Why device_count() is 0, or ''.");
  m.def("device_name", &device_name, py::arg("device") = 0);
  m.def("runtime_version", [] {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
  });
  m.def("require_device", &require_device, py::arg("device") = 0);
  m.def("op_kinds", [] {
    std::vector<std::string> kinds;
    for (const auto& kv : op_slots()) kinds.push_back(kv.first);
    return kinds;
  });
  py::class_<DeviceArray>(m, "DeviceArray")
      .def(py::init<const py::array&, int>(), py::arg("array"), py::arg("device") = 0)
      .def_property_readonly("shape", [](const DeviceArray& a) {
        py::tuple t(a.shape().size());
        for (size_t i = 0; i < a.shape().size(); ++i) t[i] = a.shape()[i];
        return t;
      })
      .def_property_readonly("dtype", [](const DeviceArray& a) { return py::dtype(std::string(1, a.code())); })
      .def_property_readonly("device", &DeviceArray::device)
      .def("numpy", &DeviceArray::numpy)
      .def("__len__", &DeviceArray::rows)
      .def("__repr__", [](const DeviceArray& a) {
        return "DeviceArray(shape=" + shape_str(a.shape()) + ", dtype=" +
               std::string(py::str(py::dtype(std::string(1, a.code())))) + ", device=cuda:" +
               std::to_string(a.device()) + ")";
      });
  bind_network<float>(m, "Network32");
  bind_network<double>(m, "Network64");
}
