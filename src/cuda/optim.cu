// optim: the optimizer steps as one fused kernel over the flat buffers (P elements), each element
// updated by core/math/optim_math.hpp's function, the very arithmetic of the CPU step. The
// constants (bias corrections, the first-step flag) are computed on the host per step and read
// from device memory, so one captured graph serves every step.
// Write rule: w and the state buffers are updated in place; g is only read.
#include "cuda/ops.cuh"

namespace gradstep::cuda {
namespace {

template <class T>
__global__ void sgd_kernel(T* w, T* buf, const T* g, int64_t P, const math::SgdK<T>* kp) {
  const math::SgdK<T> k = *kp;
  GS_GRID_STRIDE(i, P) math::sgd_element(w, buf, g, i, k);
}

template <class T>
__global__ void rmsprop_kernel(T* w, T* sq, T* buf, const T* g, int64_t P,
                               const math::RmsK<T>* kp) {
  const math::RmsK<T> k = *kp;
  GS_GRID_STRIDE(i, P) math::rmsprop_element(w, sq, buf, g, i, k);
}

template <class T>
__global__ void adam_kernel(T* w, T* m, T* v, const T* g, int64_t P, const math::AdamK<T>* kp) {
  const math::AdamK<T> k = *kp;
  GS_GRID_STRIDE(i, P) math::adam_element(w, m, v, g, i, k);
}

}  // namespace

template <class T>
void sgd_step(cudaStream_t s, T* w, T* buf, const T* g, int64_t P, const math::SgdK<T>* k) {
  sgd_kernel<<<grid_for(P), kBlock, 0, s>>>(w, buf, g, P, k);
  check_launch("sgd_step");
}

template <class T>
void rmsprop_step(cudaStream_t s, T* w, T* sq, T* buf, const T* g, int64_t P,
                  const math::RmsK<T>* k) {
  rmsprop_kernel<<<grid_for(P), kBlock, 0, s>>>(w, sq, buf, g, P, k);
  check_launch("rmsprop_step");
}

template <class T>
void adam_step(cudaStream_t s, T* w, T* m, T* v, const T* g, int64_t P, const math::AdamK<T>* k) {
  adam_kernel<<<grid_for(P), kBlock, 0, s>>>(w, m, v, g, P, k);
  check_launch("adam_step");
}

#define GS_INSTANTIATE(T)                                                                   \
  template void sgd_step<T>(cudaStream_t, T*, T*, const T*, int64_t, const math::SgdK<T>*); \
  template void rmsprop_step<T>(cudaStream_t, T*, T*, T*, const T*, int64_t,                \
                                const math::RmsK<T>*);                                      \
  template void adam_step<T>(cudaStream_t, T*, T*, T*, const T*, int64_t,                   \
                             const math::AdamK<T>*);
GS_INSTANTIATE(float)
GS_INSTANTIATE(double)
#undef GS_INSTANTIATE

}  // namespace gradstep::cuda
