// network: see network.cuh. The step mirrors core/network.cpp op by op (same order, same
// association of bias and GEMM, the first op's dx skipped), with cuBLAS for the products:
// row-major (N,I)·(I,O) is computed as the column-major product yᵀ = Wᵀ·xᵀ, so no transposes.
#include "cuda/network.cuh"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace gradstep::cuda {

// ---- errors and devices ---------------------------------------------------------------------

void check(cudaError_t status, const char* where) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for this one
  std::string msg = std::string("gradstep CUDA: ") + where + ": " + cudaGetErrorName(status) +
                    " (" + cudaGetErrorString(status) + ")";
  if (status == cudaErrorMemoryAllocation) msg += ": out of device memory";
  if (status == cudaErrorInsufficientDriver || status == cudaErrorNoDevice)
    msg += ": no usable CUDA device";
  throw CudaError(msg, static_cast<int>(status));
}

void check_launch(const char* where) { check(cudaGetLastError(), where); }

static void check_blas(cublasStatus_t status, const char* where) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  std::string msg = std::string("gradstep CUDA: ") + where + ": cuBLAS status " +
                    std::to_string(static_cast<int>(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) msg += ": out of device memory";
  throw CudaError(msg, static_cast<int>(status));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_error() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess) return n > 0 ? "" : "no CUDA device found";
  cudaGetLastError();
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

void require_device(int device) {
  int n = 0;
  check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
  if (n == 0) check(cudaErrorNoDevice, "cudaGetDeviceCount");
  if (device < 0 || device >= n)
    throw std::out_of_range("gradstep CUDA: device " + std::to_string(device) + " does not exist (" +
                            std::to_string(n) + " visible)");
}

std::string device_name(int device) {
  require_device(device);
  cudaDeviceProp p;
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return p.name;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : n_(bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&p_, bytes);
  if (e != cudaSuccess) {
    p_ = nullptr;
    n_ = 0;
    check(e, ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
  }
}
DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = std::exchange(o.p_, nullptr);
    n_ = std::exchange(o.n_, 0);
  }
  return *this;
}

PinnedBuffer::PinnedBuffer(size_t bytes) : n_(bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMallocHost(&p_, bytes);
  if (e != cudaSuccess) {
    p_ = nullptr;
    n_ = 0;
    check(e, ("cudaMallocHost of " + std::to_string(bytes) + " bytes").c_str());
  }
}
PinnedBuffer::~PinnedBuffer() {
  if (p_) cudaFreeHost(p_);
}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFreeHost(p_);
    p_ = std::exchange(o.p_, nullptr);
    n_ = std::exchange(o.n_, 0);
  }
  return *this;
}

// ---- the workspace for a batch capacity -----------------------------------------------------

template <class T>
struct Network<T>::Workspace {
  std::vector<DeviceBuffer> act, extra, stats, dstats, iextra, dz;
  DeviceBuffer grad_a, grad_b, probs, rows, scratch, x, labels, target, idx;
  PinnedBuffer x_stage, labels_stage, target_stage, idx_stage;
};

namespace {

double attr(const LayerSpec& L, const char* key, double fallback = 0.0) {
  auto it = L.attrs.find(key);
  return it == L.attrs.end() ? fallback : it->second;
}

bool is_activation(const std::string& k, Act& a) {
  if (k == "Sigmoid") a = Act::kSigmoid;
  else if (k == "Tanh") a = Act::kTanh;
  else if (k == "ReLU") a = Act::kReLU;
  else if (k == "LeakyReLU") a = Act::kLeakyReLU;
  else if (k == "ELU") a = Act::kELU;
  else return false;
  return true;
}

}  // namespace

const std::map<std::string, size_t>& op_slots() {
  static const std::map<std::string, size_t> slots = {
      {"Dense", 2}, {"Sigmoid", 0}, {"Tanh", 0}, {"ReLU", 0}, {"LeakyReLU", 0}, {"ELU", 0},
      {"Identity", 0}, {"Dropout", 0}, {"BatchNorm", 2}, {"Maxout", 2}, {"PReLU", 1},
      {"Softmax", 0}, {"Flatten", 0}};
  return slots;
}

namespace {

int64_t pieces(const LayerSpec& L) { return static_cast<int64_t>(attr(L, "pieces", 1)); }

}  // namespace

template <class T>
Network<T>::Network(std::vector<LayerSpec> layers, int64_t P, int device)
    : layers_(std::move(layers)), P_(P), device_(device) {
  if (layers_.empty()) throw std::invalid_argument("gradstep CUDA: a network needs at least one layer");
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerSpec& L = layers_[i];
    const std::string& k = L.kind;
    auto known = op_slots().find(k);
    if (known == op_slots().end()) throw std::invalid_argument("gradstep CUDA: no CUDA kernel for op '" + k + "'");
    if (L.in < 1 || L.out < 1) throw std::invalid_argument("gradstep CUDA: op '" + k + "' has no features");
    if (i > 0 && layers_[i - 1].out != L.in)
      throw std::invalid_argument("gradstep CUDA: op " + std::to_string(i) + " expects " +
                                  std::to_string(L.in) + " features, got " + std::to_string(layers_[i - 1].out));
    const size_t need = known->second;
    if (L.slots.size() != need)
      throw std::invalid_argument("gradstep CUDA: op '" + k + "' needs " + std::to_string(need) + " slots");
    if (need > 0 && L.slots[0] < 0) throw std::out_of_range("gradstep CUDA: op '" + k + "' lacks its first slot");
    // Each slot's extent, so no kernel can read or write past the flat buffer.
    std::vector<int64_t> sizes;
    if (k == "Dense") sizes = {L.in * L.out, L.out};
    else if (k == "BatchNorm") sizes = {L.out, L.out};
    else if (k == "Maxout") sizes = {pieces(L) * L.in * L.out, pieces(L) * L.out};
    else if (k == "PReLU") sizes = {static_cast<int64_t>(attr(L, "num_parameters", 1))};
    if (k == "PReLU" && sizes[0] != 1 && sizes[0] != L.out)
      throw std::invalid_argument("gradstep CUDA: PReLU needs 1 or " + std::to_string(L.out) + " slopes");
    if (k != "Dense" && k != "Maxout" && L.in != L.out)
      throw std::invalid_argument("gradstep CUDA: op '" + k + "' keeps its feature count");
    if (k == "BatchNorm" && L.slots[1] < 0) throw std::out_of_range("gradstep CUDA: BatchNorm needs beta");
    for (size_t j = 0; j < L.slots.size(); ++j)
      if (L.slots[j] < -1 || (L.slots[j] >= 0 && L.slots[j] + sizes[j] > P))
        throw std::out_of_range("gradstep CUDA: a slot of op '" + k + "' lies outside the flat buffer");
    if (k == "Maxout" && pieces(L) < 1) throw std::invalid_argument("gradstep CUDA: Maxout needs pieces >= 1");
    if (k == "BatchNorm") bn_layers_.push_back(i);
    if (k == "Dropout") ++num_dropout_;
    if (k == "Dense" && attr(L, "l2") != 0.0) l2_layers_.push_back(static_cast<int>(i));
  }
  require_device(device_);
  activate();
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  try {
    check_blas(cublasCreate(&blas_), "cublasCreate");
    check_blas(cublasSetStream(blas_, stream_), "cublasSetStream");
    // A workspace of our own, so cuBLAS never allocates during graph capture.
    blas_ws_ = DeviceBuffer(size_t(32) << 20);
    check_blas(cublasSetWorkspace(blas_, blas_ws_.get(), blas_ws_.bytes()), "cublasSetWorkspace");
    for (auto& f : flat_) {
      f = DeviceBuffer(static_cast<size_t>(P_) * sizeof(T));
      check(cudaMemsetAsync(f.get(), 0, f.bytes(), stream_), "cudaMemset");
    }
    for (size_t j : bn_layers_) bn_stats_.emplace_back(2 * layers_[j].out * sizeof(T));
    consts_dev_ = DeviceBuffer(sizeof(Consts));
    seeds_dev_ = DeviceBuffer(std::max<size_t>(1, num_dropout_) * sizeof(uint64_t));
    scalars_ = DeviceBuffer((2 + l2_layers_.size()) * sizeof(double));
    consts_host_ = PinnedBuffer(sizeof(Consts));
    seeds_host_ = PinnedBuffer(std::max<size_t>(1, num_dropout_) * sizeof(uint64_t));
    value_host_ = PinnedBuffer(sizeof(double));
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  } catch (...) {
    if (blas_) cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
    throw;
  }
}

template <class T>
Network<T>::~Network() {
  cudaSetDevice(device_);
  for (auto& g : graphs_) cudaGraphExecDestroy(g.second);
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

template <class T>
void Network<T>::activate() const {
  check(cudaSetDevice(device_), "cudaSetDevice");
}

template <class T>
void Network<T>::upload(int which, const T* host) {
  activate();
  check(cudaMemcpyAsync(flat_[which].get(), host, P_ * sizeof(T), cudaMemcpyHostToDevice, stream_), "upload");
  check(cudaStreamSynchronize(stream_), "upload");
}

template <class T>
void Network<T>::download(int which, T* host) {
  activate();
  check(cudaMemcpyAsync(host, flat_[which].get(), P_ * sizeof(T), cudaMemcpyDeviceToHost, stream_), "download");
  check(cudaStreamSynchronize(stream_), "download");
}

template <class T>
void Network<T>::upload_bn(size_t j, int which, const T* host) {
  activate();
  const int64_t F = layers_[bn_layers_.at(j)].out;
  check(cudaMemcpyAsync(bn_stats_[j].template as<T>() + which * F, host, F * sizeof(T),
                        cudaMemcpyHostToDevice, stream_), "upload");
  check(cudaStreamSynchronize(stream_), "upload");
}

template <class T>
void Network<T>::download_bn(size_t j, int which, T* host) {
  activate();
  const int64_t F = layers_[bn_layers_.at(j)].out;
  check(cudaMemcpyAsync(host, bn_stats_[j].template as<T>() + which * F, F * sizeof(T),
                        cudaMemcpyDeviceToHost, stream_), "download");
  check(cudaStreamSynchronize(stream_), "download");
}

template <class T>
void Network<T>::reserve(int64_t N) {
  if (N <= capacity_) return;
  // Everything for the new capacity is allocated before anything is replaced: a failure (out of
  // device memory) throws and leaves the old workspace and graphs as they were.
  auto ws = std::make_unique<Workspace>();
  const size_t t = sizeof(T);
  int64_t widest = layers_.front().in, scratch = 0;
  for (const LayerSpec& L : layers_) {
    widest = std::max(widest, L.out);
    const int64_t n = N * L.out;
    ws->act.emplace_back(n * t);
    const bool saves = L.kind == "Dropout" || L.kind == "BatchNorm";
    ws->extra.emplace_back(saves ? n * t : 0);
    ws->stats.emplace_back(L.kind == "BatchNorm" ? 2 * L.out * t : 0);
    ws->dstats.emplace_back(L.kind == "BatchNorm" ? 2 * L.out * sizeof(double) : 0);
    const bool maxout = L.kind == "Maxout";
    ws->iextra.emplace_back(maxout ? n * sizeof(int32_t) : 0);
    ws->dz.emplace_back(maxout ? pieces(L) * n * t : 0);  // z in forward, dz in backward
    scratch = std::max(scratch, batchnorm_scratch(N, L.out));
  }
  const int64_t K = layers_.back().out;
  ws->grad_a = DeviceBuffer(N * widest * t);
  ws->grad_b = DeviceBuffer(N * widest * t);
  ws->probs = DeviceBuffer(N * K * t);
  ws->rows = DeviceBuffer(N * K * sizeof(double));
  ws->scratch = DeviceBuffer(scratch * sizeof(double));
  ws->x = DeviceBuffer(N * layers_.front().in * t);
  ws->labels = DeviceBuffer(N * sizeof(int64_t));
  ws->target = DeviceBuffer(N * K * t);
  ws->idx = DeviceBuffer(N * sizeof(int64_t));
  ws->x_stage = PinnedBuffer(N * layers_.front().in * t);
  ws->labels_stage = PinnedBuffer(N * sizeof(int64_t));
  ws->target_stage = PinnedBuffer(N * K * t);
  ws->idx_stage = PinnedBuffer(N * sizeof(int64_t));
  for (auto& g : graphs_) cudaGraphExecDestroy(g.second);  // they point into the old workspace
  graphs_.clear();
  ws_ = std::move(ws);
  capacity_ = N;
}

template <class T>
void Network<T>::gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A,
                      int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  if constexpr (std::is_same_v<T, float>)
    check_blas(cublasSgemm(blas_, oa, ob, im, in, ik, &alpha, A, static_cast<int>(lda), B,
                           static_cast<int>(ldb), &beta, C, static_cast<int>(ldc)), "cublasSgemm");
  else
    check_blas(cublasDgemm(blas_, oa, ob, im, in, ik, &alpha, A, static_cast<int>(lda), B,
                           static_cast<int>(ldb), &beta, C, static_cast<int>(ldc)), "cublasDgemm");
}

template <class T>
void Network<T>::gemm_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* A,
                              int64_t lda, int64_t sa, const T* B, int64_t ldb, int64_t sb,
                              T beta, T* C, int64_t ldc, int64_t sc, int64_t count) {
  const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const T one = T(1);
  if constexpr (std::is_same_v<T, float>)
    check_blas(cublasSgemmStridedBatched(blas_, oa, ob, int(m), int(n), int(k), &one, A, int(lda), sa, B,
                                         int(ldb), sb, &beta, C, int(ldc), sc, int(count)),
               "cublasSgemmStridedBatched");
  else
    check_blas(cublasDgemmStridedBatched(blas_, oa, ob, int(m), int(n), int(k), &one, A, int(lda), sa, B,
                                         int(ldb), sb, &beta, C, int(ldc), sc, int(count)),
               "cublasDgemmStridedBatched");
}

template <class T>
void Network<T>::enqueue_step(int64_t N, Loss loss, Opt opt) {
  Workspace& w = *ws_;
  cudaStream_t s = stream_;
  T* params = flat_[0].template as<T>();
  T* grads = flat_[1].template as<T>();
  double* scalars = scalars_.template as<double>();  // [0] loss, [1] value, [2..] penalties
  const uint64_t* seeds = seeds_dev_.template as<uint64_t>();
  double* scratch = w.scratch.template as<double>();

  // ---- forward --------------------------------------------------------------------------------
  size_t bn = 0, drop = 0, pen = 0;
  const T* x = w.x.template as<T>();
  for (size_t i = 0; i < layers_.size(); ++i) {
    const LayerSpec& L = layers_[i];
    T* y = w.act[i].template as<T>();
    const int64_t n = N * L.out, I = L.in, O = L.out;
    Act a;
    if (L.kind == "Dense") {
      const T* W = params + L.slots[0];
      const bool has_b = L.slots[1] >= 0;
      if (has_b) fill_rows<T>(s, y, params + L.slots[1], N, O);
      gemm(false, false, O, N, I, T(1), W, O, x, I, has_b ? T(1) : T(0), y, O);
      const double l2 = attr(L, "l2");
      if (l2 != 0.0) sum_squares<T>(s, scalars + 2 + pen++, W, I * O, 0.5 * l2);
    } else if (is_activation(L.kind, a)) {
      activation_forward<T>(s, a, y, x, n, static_cast<T>(attr(L, "alpha")));
    } else if (L.kind == "Identity" || L.kind == "Flatten") {  // Flatten: the same row-major bytes
      check(cudaMemcpyAsync(y, x, n * sizeof(T), cudaMemcpyDeviceToDevice, s), "identity");
    } else if (L.kind == "Dropout") {
      dropout_forward<T>(s, y, w.extra[i].template as<T>(), x, n,
                         static_cast<double>(static_cast<T>(attr(L, "p"))), seeds + drop++);
    } else if (L.kind == "BatchNorm") {
      T* rs = bn_stats_[bn].template as<T>();
      batchnorm_forward_train<T>(s, y, w.extra[i].template as<T>(), w.stats[i].template as<T>(),
                                 w.dstats[i].template as<double>(), scratch, rs, rs + O, x,
                                 params + L.slots[0], params + L.slots[1], N, O,
                                 static_cast<double>(static_cast<T>(attr(L, "momentum"))),
                                 static_cast<double>(static_cast<T>(attr(L, "eps"))));
      ++bn;
    } else if (L.kind == "Maxout") {
      const int64_t Pk = pieces(L);
      T* z = w.dz[i].template as<T>();
      const bool has_b = L.slots[1] >= 0;
      if (has_b)
        for (int64_t k = 0; k < Pk; ++k) fill_rows<T>(s, z + k * n, params + L.slots[1] + k * O, N, O);
      gemm_batched(false, false, O, N, I, params + L.slots[0], O, I * O, x, I, 0,
                   has_b ? T(1) : T(0), z, O, n, Pk);
      maxout_select<T>(s, y, w.iextra[i].template as<int32_t>(), z, N, O, Pk);
    } else if (L.kind == "PReLU") {
      prelu_forward<T>(s, y, x, params + L.slots[0], N, O, static_cast<int64_t>(attr(L, "num_parameters", 1)));
    } else if (L.kind == "Softmax") {
      softmax_forward<T>(s, y, x, N, O);
    }
    x = y;
  }

  // ---- loss -----------------------------------------------------------------------------------
  const int64_t K = layers_.back().out;
  T* dy = w.grad_a.template as<T>();
  T* dnext = w.grad_b.template as<T>();
  loss_forward_backward<T>(s, loss, scalars, dy, w.probs.template as<T>(), w.rows.template as<double>(),
                           w.act.back().template as<T>(), w.labels.template as<int64_t>(),
                           w.target.template as<T>(), N, K);

  // ---- backward -------------------------------------------------------------------------------
  for (size_t i = layers_.size(); i-- > 0;) {
    const LayerSpec& L = layers_[i];
    const T* xin = i == 0 ? w.x.template as<T>() : w.act[i - 1].template as<T>();
    const T* y = w.act[i].template as<T>();
    const int64_t n = N * L.out, I = L.in, O = L.out;
    const bool need_dx = i > 0;  // the first op's input gradient is never read
    Act a;
    if (L.kind == "Dense") {
      const T* W = params + L.slots[0];
      T* dW = grads + L.slots[0];
      const double l2 = attr(L, "l2");
      if (l2 != 0.0) scale<T>(s, dW, W, static_cast<T>(l2), I * O);
      if (need_dx) gemm(true, false, I, N, O, T(1), W, O, dy, O, T(0), dnext, I);
      gemm(false, true, O, I, N, T(1), dy, O, xin, I, l2 != 0.0 ? T(1) : T(0), dW, O);
      if (L.slots[1] >= 0) column_sum<T>(s, grads + L.slots[1], scratch, dy, N, O);
    } else if (is_activation(L.kind, a)) {
      if (need_dx) activation_backward<T>(s, a, dnext, dy, xin, y, n, static_cast<T>(attr(L, "alpha")));
    } else if (L.kind == "Identity" || L.kind == "Flatten") {
      if (need_dx) check(cudaMemcpyAsync(dnext, dy, n * sizeof(T), cudaMemcpyDeviceToDevice, s), "identity");
    } else if (L.kind == "Dropout") {
      if (need_dx) mul_forward<T>(s, dnext, dy, w.extra[i].template as<T>(), n);
    } else if (L.kind == "BatchNorm") {
      batchnorm_backward<T>(s, need_dx ? dnext : nullptr, grads + L.slots[0], grads + L.slots[1],
                            scratch, dy, w.extra[i].template as<T>(),
                            w.stats[i].template as<T>() + O, params + L.slots[0], N, O);
    } else if (L.kind == "Maxout") {
      const int64_t Pk = pieces(L);
      T* dz = w.dz[i].template as<T>();
      maxout_scatter<T>(s, dz, dy, w.iextra[i].template as<int32_t>(), N, O, Pk);
      // dW_k = xᵀ·dz_k for every piece at once; db_k = Σ_rows dz_k; dx = Σ_k dz_k·W_kᵀ.
      gemm_batched(false, true, O, I, N, dz, O, n, xin, I, 0, T(0), grads + L.slots[0], O, I * O, Pk);
      if (L.slots[1] >= 0)
        for (int64_t k = 0; k < Pk; ++k) column_sum<T>(s, grads + L.slots[1] + k * O, scratch, dz + k * n, N, O);
      if (need_dx)
        for (int64_t k = 0; k < Pk; ++k)
          gemm(true, false, I, N, O, T(1), params + L.slots[0] + k * I * O, O, dz + k * n, O,
               k == 0 ? T(0) : T(1), dnext, I);
    } else if (L.kind == "PReLU") {
      const int64_t C = static_cast<int64_t>(attr(L, "num_parameters", 1));
      prelu_backward<T>(s, need_dx ? dnext : nullptr, grads + L.slots[0], scratch, dy, xin,
                        params + L.slots[0], N, O, C);
    } else if (L.kind == "Softmax") {
      if (need_dx) softmax_backward<T>(s, dnext, dy, y, N, O);
    }
    std::swap(dy, dnext);
  }

  // ---- update, and the loss value back to the host -------------------------------------------
  const Consts* c = consts_dev_.template as<Consts>();
  T* s0 = flat_[2].template as<T>();
  T* s1 = flat_[3].template as<T>();
  switch (opt) {
    case Opt::kSGD: sgd_step<T>(s, params, s0, grads, P_, &c->sgd); break;
    case Opt::kRMSprop: rmsprop_step<T>(s, params, s0, s1, grads, P_, &c->rms); break;
    case Opt::kAdam: adam_step<T>(s, params, s0, s1, grads, P_, &c->adam); break;
  }
  finalize_value(s, scalars + 1, scalars, scalars + 2, static_cast<int>(l2_layers_.size()));
  check(cudaMemcpyAsync(value_host_.template as<double>(), scalars + 1, sizeof(double),
                        cudaMemcpyDeviceToHost, s), "loss copy");
}

template <class T>
double Network<T>::train_step(const StepInput<T>& in, Loss loss, const uint64_t* seeds,
                              const OptHyper& h, int64_t step) {
  const int64_t N = in.N;
  if (N < 1) throw std::invalid_argument("gradstep CUDA: a batch needs at least one row");
  activate();
  reserve(N);
  Workspace& w = *ws_;
  cudaStream_t s = stream_;
  const int64_t I = in_features(), K = out_features();
  const bool labels = loss == Loss::kSoftmaxXent || loss == Loss::kNLL;
  // ---- inputs ---------------------------------------------------------------------------------
  if (in.src == Source::kHost) {
    std::memcpy(w.x_stage.template as<T>(), in.x, N * I * sizeof(T));
    check(cudaMemcpyAsync(w.x.get(), w.x_stage.template as<T>(), N * I * sizeof(T), cudaMemcpyHostToDevice, s), "input copy");
    if (labels) {
      std::memcpy(w.labels_stage.template as<int64_t>(), in.labels, N * sizeof(int64_t));
      check(cudaMemcpyAsync(w.labels.get(), w.labels_stage.template as<int64_t>(), N * sizeof(int64_t),
                            cudaMemcpyHostToDevice, s), "input copy");
    } else {
      std::memcpy(w.target_stage.template as<T>(), in.target, N * K * sizeof(T));
      check(cudaMemcpyAsync(w.target.get(), w.target_stage.template as<T>(), N * K * sizeof(T),
                            cudaMemcpyHostToDevice, s), "input copy");
    }
  } else if (in.src == Source::kDevice) {
    check(cudaMemcpyAsync(w.x.get(), in.x, N * I * sizeof(T), cudaMemcpyDeviceToDevice, s), "input copy");
    if (labels)
      check(cudaMemcpyAsync(w.labels.get(), in.labels, N * sizeof(int64_t), cudaMemcpyDeviceToDevice, s), "input copy");
    else
      check(cudaMemcpyAsync(w.target.get(), in.target, N * K * sizeof(T), cudaMemcpyDeviceToDevice, s), "input copy");
  } else {
    std::memcpy(w.idx_stage.template as<int64_t>(), in.idx, N * sizeof(int64_t));
    check(cudaMemcpyAsync(w.idx.get(), w.idx_stage.template as<int64_t>(), N * sizeof(int64_t),
                          cudaMemcpyHostToDevice, s), "index copy");
    const int64_t* idx = w.idx.template as<int64_t>();
    gather_rows<T>(s, w.x.template as<T>(), in.x, idx, N, I);
    if (labels) gather_labels(s, w.labels.template as<int64_t>(), in.labels, idx, N);
    else gather_rows<T>(s, w.target.template as<T>(), in.target, idx, N, K);
  }
  // ---- this step's constants ------------------------------------------------------------------
  Consts& c = *consts_host_.template as<Consts>();
  std::memset(&c, 0, sizeof c);
  switch (h.kind) {
    case Opt::kSGD: c.sgd = math::sgd_consts<T>(h.sgd, step); break;
    case Opt::kRMSprop: c.rms = math::rmsprop_consts<T>(h.rmsprop); break;
    case Opt::kAdam: c.adam = math::adam_consts<T>(h.adam, step); break;
  }
  check(cudaMemcpyAsync(consts_dev_.get(), &c, sizeof c, cudaMemcpyHostToDevice, s), "constants copy");
  if (num_dropout_) {
    std::memcpy(seeds_host_.template as<uint64_t>(), seeds, num_dropout_ * sizeof(uint64_t));
    check(cudaMemcpyAsync(seeds_dev_.get(), seeds_host_.template as<uint64_t>(), num_dropout_ * sizeof(uint64_t),
                          cudaMemcpyHostToDevice, s), "seed copy");
  }
  // ---- the step: a captured graph per (N, loss, optimizer), replayed ----------------------------
  if (!use_graphs_) {
    enqueue_step(N, loss, h.kind);
  } else {
    const auto key = std::make_tuple(N, static_cast<int>(loss), static_cast<int>(h.kind));
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      cudaGraph_t graph = nullptr;
      check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
      try {
        enqueue_step(N, loss, h.kind);
      } catch (...) {
        cudaStreamEndCapture(s, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        throw;
      }
      check(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture");
      cudaGraphExec_t exec = nullptr;
      const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      check(e, "cudaGraphInstantiate");
      it = graphs_.emplace(key, exec).first;
    }
    check(cudaGraphLaunch(it->second, s), "cudaGraphLaunch");
  }
  check(cudaStreamSynchronize(s), "training step");
  last_N_ = N;
  return *value_host_.template as<double>();
}

template <class T>
void Network<T>::output(T* host, int64_t N) {
  if (!ws_ || N != last_N_) throw std::invalid_argument("gradstep CUDA: no output of that batch size");
  activate();
  check(cudaMemcpyAsync(host, ws_->act.back().get(), N * out_features() * sizeof(T),
                        cudaMemcpyDeviceToHost, stream_), "output copy");
  check(cudaStreamSynchronize(stream_), "output copy");
}

template class Network<float>;
template class Network<double>;

}  // namespace gradstep::cuda
