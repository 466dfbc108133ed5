// conv and pool: forward and backward at the shapes of bench/compare_conv.py (LeNet-5's two convs,
// the digits CNN's, the mnist1d CNN's), in GFLOP/s (2·N·O·C·KH·KW·OH·OW per product: forward one,
// backward two, dw and dx); next to them the bare GEMM of the forward on an already unfolded
// batch (one call, W (O,K) · col (K, N·P)), so forward minus that is the data movement
// (unfolding, copies) and call overhead. Pools in GB/s (bytes read + written).
// A correctness check against conv_forward_ref runs once per shape before timing.
// One-thread rows are timed in CPU time (the rate then holds on a loaded, shared machine, where
// wall time mostly measures the scheduler); two-thread rows in wall time.
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "bench_util.hpp"
#include "core/conv.hpp"
#include "core/gemm.hpp"
#include "core/pool.hpp"

using namespace gradstep::cpu;

namespace {

struct Shape {
  const char* name;
  int64_t N;
  ConvGeometry g;
};

// {C, H, W, O, KH, KW, SH, SW, DH, DW, PT, PL, PB, PR}
const Shape kShapes[] = {
    {"lenet_conv1_b32", 32, {1, 28, 28, 6, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2}},
    {"lenet_conv2_b32", 32, {6, 14, 14, 16, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0}},
    {"lenet_conv1_b128", 128, {1, 28, 28, 6, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2}},
    {"lenet_conv2_b128", 128, {6, 14, 14, 16, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0}},
    {"lenet_conv1_b512", 512, {1, 28, 28, 6, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2}},
    {"lenet_conv2_b512", 512, {6, 14, 14, 16, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0}},
    {"digits_conv1_b32", 32, {1, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}},
    {"digits_conv2_b32", 32, {16, 4, 4, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}},
    {"mnist1d_conv1_b100", 100, {1, 1, 40, 25, 1, 5, 1, 2, 1, 1, 0, 1, 0, 1}},
    {"mnist1d_conv2_b100", 100, {25, 1, 19, 25, 1, 3, 1, 2, 1, 1, 0, 1, 0, 1}},
    {"mnist1d_conv3_b100", 100, {25, 1, 10, 25, 1, 3, 1, 2, 1, 1, 0, 1, 0, 1}},
};
constexpr int kNumShapes = sizeof(kShapes) / sizeof(kShapes[0]);

double macs(const Shape& s) {
  const ConvGeometry& g = s.g;
  return static_cast<double>(s.N) * g.O * g.C * g.KH * g.KW * g.OH() * g.OW();
}

struct Buffers {
  std::vector<float> x, w, b, y, dy, dx, dw, db, ws;
  explicit Buffers(const Shape& s) {
    const ConvGeometry& g = s.g;
    x = gsbench::randn<float>(s.N * g.C * g.H * g.W, 1);
    w = gsbench::randn<float>(g.O * g.C * g.KH * g.KW, 2);
    b = gsbench::randn<float>(g.O, 3);
    const int64_t ny = s.N * g.O * g.OH() * g.OW();
    y.resize(static_cast<size_t>(ny));
    dy = gsbench::randn<float>(ny, 4);
    dx.resize(x.size());
    dw.resize(w.size());
    db.resize(b.size());
    ws.resize(static_cast<size_t>(conv_workspace_elems(g, s.N)));
  }
};

void check_once(const Shape& s, Buffers& B) {
  std::vector<float> ref(B.y.size());
  conv_forward<float>(B.y.data(), B.ws.data(), B.x.data(), B.w.data(), B.b.data(), s.N, s.g);
  conv_forward_ref<float>(ref.data(), B.x.data(), B.w.data(), B.b.data(), s.N, s.g);
  for (size_t i = 0; i < ref.size(); ++i)
    if (std::fabs(ref[i] - B.y[i]) > 1e-3f * (1.f + std::fabs(ref[i])))
      throw std::runtime_error(std::string("bench_conv: forward differs from the reference on ") + s.name);
}

void BM_conv_forward(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  gsbench::set_threads(state, 1);
  Buffers B(s);
  check_once(s, B);
  for (auto _ : state) {
    conv_forward<float>(B.y.data(), B.ws.data(), B.x.data(), B.w.data(), B.b.data(), s.N, s.g);
    benchmark::DoNotOptimize(B.y.data());
  }
  state.SetLabel(s.name);
  gsbench::flops(state, 2.0 * macs(s));
}

void BM_conv_backward(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  gsbench::set_threads(state, 1);
  Buffers B(s);
  for (auto _ : state) {
    conv_backward<float>(B.dx.data(), B.dw.data(), B.db.data(), B.ws.data(), B.dy.data(), B.x.data(),
                         B.w.data(), s.N, s.g);
    benchmark::DoNotOptimize(B.dw.data());
  }
  state.SetLabel(s.name);
  gsbench::flops(state, 4.0 * macs(s));
}

// The forward's arithmetic alone: one product on a batch unfolded beforehand (not timed).
void BM_conv_gemm_only(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  gsbench::set_threads(state, 1);
  const ConvGeometry& g = s.g;
  const int64_t K = g.C * g.KH * g.KW, cols = s.N * g.OH() * g.OW();
  auto w = gsbench::randn<float>(g.O * K, 2), col = gsbench::randn<float>(K * cols, 1);
  std::vector<float> y(static_cast<size_t>(g.O * cols));
  for (auto _ : state) {
    gemm<float>(false, false, g.O, cols, K, 1.f, w.data(), K, col.data(), cols, 0.f, y.data(), cols);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(s.name);
  gsbench::flops(state, 2.0 * macs(s));
}

void conv_args_1(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < kNumShapes; ++i) b->Args({i, 1});
}

void conv_args_2(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < kNumShapes; ++i) b->Args({i, 2});
  b->UseRealTime();
}

// Pools at LeNet's and the digits CNN's shapes: 2x2 windows, stride 2.
void BM_maxpool(benchmark::State& state) {
  const int64_t N = state.range(0), C = state.range(1), H = state.range(2);
  gsbench::set_threads(state, 3);
  const PoolGeometry g{C, H, H, 2, 2, 2, 2, 0, 0, 0, 0};
  auto x = gsbench::randn<float>(N * C * H * H, 1);
  const int64_t ny = N * C * g.OH() * g.OW();
  std::vector<float> y(static_cast<size_t>(ny)), dx(x.size());
  std::vector<int32_t> arg(static_cast<size_t>(ny));
  auto dy = gsbench::randn<float>(ny, 2);
  for (auto _ : state) {
    maxpool_forward<float>(y.data(), arg.data(), x.data(), N, g);
    maxpool_backward<float>(dx.data(), dy.data(), arg.data(), N, g);
    benchmark::DoNotOptimize(dx.data());
  }
  // forward reads x, writes y and argmax; backward reads dy and argmax, writes dx
  gsbench::bytes(state, 4.0 * (2 * x.size() + 4 * ny));
}

void BM_avgpool(benchmark::State& state) {
  const int64_t N = state.range(0), C = state.range(1), H = state.range(2);
  gsbench::set_threads(state, 3);
  const PoolGeometry g{C, H, H, 2, 2, 2, 2, 0, 0, 0, 0};
  auto x = gsbench::randn<float>(N * C * H * H, 1);
  const int64_t ny = N * C * g.OH() * g.OW();
  std::vector<float> y(static_cast<size_t>(ny)), dx(x.size());
  auto dy = gsbench::randn<float>(ny, 2);
  for (auto _ : state) {
    avgpool_forward<float>(y.data(), x.data(), N, g);
    avgpool_backward<float>(dx.data(), dy.data(), N, g);
    benchmark::DoNotOptimize(dx.data());
  }
  gsbench::bytes(state, 4.0 * (2 * x.size() + 2 * ny));
}

}  // namespace

BENCHMARK(BM_conv_forward)->Apply(conv_args_1);
BENCHMARK(BM_conv_gemm_only)->Apply(conv_args_1);
BENCHMARK(BM_conv_backward)->Apply(conv_args_1);
BENCHMARK(BM_conv_forward)->Apply(conv_args_2);
BENCHMARK(BM_conv_gemm_only)->Apply(conv_args_2);
BENCHMARK(BM_conv_backward)->Apply(conv_args_2);
BENCHMARK(BM_maxpool)->Args({128, 6, 28, 1})->Args({32, 16, 8, 1});
BENCHMARK(BM_avgpool)->Args({128, 6, 28, 1});
BENCHMARK(BM_maxpool)->Args({128, 6, 28, 2})->UseRealTime();
BENCHMARK(BM_avgpool)->Args({128, 6, 28, 2})->UseRealTime();
