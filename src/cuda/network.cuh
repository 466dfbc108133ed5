// network: a Sequential model's whole training step on one GPU, captured once per (batch size,
// loss) as a CUDA graph and replayed: forward through every op, the fused loss, backward and the
// optimizer update over the flat device buffers, then one 8-byte copy of the loss back.
// The op list is the CPU network's (core/network.hpp; the op interface of core/op.hpp once it
// lands): a LayerSpec per op with its kind ("Dense", "ReLU", ..., the op kinds' names), feature
// counts, parameter offsets in the flat buffer (param-slot order) and attributes.
// Parameters, gradients, optimizer state and BatchNorm running statistics live on the device
// between steps; set_*/get_* copy them from and to the host (model.to("cpu"), saving).
// Per-step values (the optimizer's constants, dropout seeds) go through a small device block that
// is refreshed before each replay, so one graph serves every step.
// Errors: every failure is a CudaError; a failed allocation leaves the previous workspace as it
// was, and the object stays usable.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/math/optim_math.hpp"
#include "cuda/common.cuh"
#include "cuda/ops.cuh"

namespace gradstep::cuda {

struct LayerSpec {
  std::string kind;                     // the op kind, e.g. "Dense", "ReLU", "BatchNorm"
  int64_t in = 0, out = 0;              // values per sample (a Flatten's input may be (C, H, W))
  std::vector<int64_t> slots;           // parameter offsets into the flat buffer
  std::map<std::string, double> attrs;  // e.g. l2, alpha, p, momentum, eps, pieces
};

enum class Opt : int { kSGD, kRMSprop, kAdam };

// The op kinds this backend runs, with their parameter slot counts (Dense: weight, bias or -1).
const std::map<std::string, size_t>& op_slots();

// Number of visible devices; 0 (never an exception) when there is no driver or no device.
int device_count();
// The reason device_count() is 0 ("cudaErrorInsufficientDriver: ..."), or "" when it is not.
std::string device_error();
// Throws CudaError unless `device` is a usable device index.
void require_device(int device);
std::string device_name(int device);

// An owning device allocation (cudaMalloc; freed on destruction). Throws CudaError on failure.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }
  size_t bytes() const { return n_; }
  template <class U>
  U* as() const { return static_cast<U*>(p_); }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Page-locked host memory (cudaMallocHost), for copies a graph or an async copy reads.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  template <class U>
  U* as() const { return static_cast<U*>(p_); }
  size_t bytes() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Where a step's inputs are: host memory (copied through pinned staging), device memory (copied
// device to device), or device rows picked by host indices (gathered on the device).
enum class Source : int { kHost, kDevice, kGather };

template <class T>
struct StepInput {
  Source src = Source::kHost;
  const T* x = nullptr;            // (N, in), or (M, in) rows to gather from
  const int64_t* labels = nullptr;  // (N) or (M), or null
  const T* target = nullptr;       // (N, K) or (M, K), or null
  const int64_t* idx = nullptr;    // (N) host indices into the M rows (kGather)
  int64_t N = 0;
};

struct OptHyper {
  Opt kind = Opt::kAdam;
  cpu::SGDHyper sgd{};
  cpu::RMSpropHyper rmsprop{};
  cpu::AdamHyper adam{};
};

template <class T>
class Network {
 public:
  Network(std::vector<LayerSpec> layers, int64_t P, int device);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  int64_t P() const { return P_; }
  int device() const { return device_; }
  size_t num_batchnorm() const { return bn_layers_.size(); }
  size_t num_dropout() const { return num_dropout_; }
  int64_t in_features() const { return layers_.front().in; }
  int64_t out_features() const { return layers_.back().out; }

  // Flat buffers: which = 0 params, 1 grads, 2 state0, 3 state1 (P elements each).
  void upload(int which, const T* host);
  void download(int which, T* host);
  // BatchNorm j's running mean (which = 0) or variance (1), F elements.
  void upload_bn(size_t j, int which, const T* host);
  void download_bn(size_t j, int which, T* host);

  // One training step; returns the mean loss plus the L2 terms. Shapes and labels are checked by
  // the caller. seeds: num_dropout() values. Allocates only when N exceeds every batch seen.
  double train_step(const StepInput<T>& in, Loss loss, const uint64_t* seeds, const OptHyper& h,
                    int64_t step);
  // The last step's output (N, out) into host memory.
  void output(T* host, int64_t N);
  int64_t batch_capacity() const { return capacity_; }
  size_t graphs() const { return graphs_.size(); }
  // Turn graph capture off (every step enqueues the kernels one by one): for tests of the capture.
  void set_use_graphs(bool on) { use_graphs_ = on; }

 private:
  struct Workspace;
  struct Consts {  // the per-step constants a captured graph reads from device memory
    math::SgdK<T> sgd;
    math::RmsK<T> rms;
    math::AdamK<T> adam;
  };
  void reserve(int64_t N);
  void enqueue_step(int64_t N, Loss loss, Opt opt);
  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
            const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
  void gemm_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* A, int64_t lda,
                    int64_t sa, const T* B, int64_t ldb, int64_t sb, T beta, T* C, int64_t ldc,
                    int64_t sc, int64_t count);
  void activate() const;

  std::vector<LayerSpec> layers_;
  int64_t P_;
  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  DeviceBuffer blas_ws_;
  DeviceBuffer flat_[4];                // params, grads, state0, state1
  std::vector<DeviceBuffer> bn_stats_;  // per BatchNorm: running mean, running var (2F)
  std::vector<size_t> bn_layers_;       // layer index of each BatchNorm
  std::vector<int> l2_layers_;          // layer indices of Dense layers with l2 != 0
  size_t num_dropout_ = 0;
  DeviceBuffer consts_dev_, seeds_dev_, scalars_;  // scalars: loss, value, penalties...
  PinnedBuffer consts_host_, seeds_host_, value_host_;
  std::unique_ptr<Workspace> ws_;
  int64_t capacity_ = 0;
  int64_t last_N_ = 0;
  bool use_graphs_ = true;
  std::map<std::tuple<int64_t, int, int>, cudaGraphExec_t> graphs_;
};

}  // namespace gradstep::cuda
