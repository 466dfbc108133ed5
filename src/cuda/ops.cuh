// ops: the launchers of the CUDA kernels, one family per .cu file (same names as the CPU
// namespace where the op is the same). Every launcher enqueues on `stream` and checks the launch;
// pointers are device pointers; shapes as in the CPU headers (core/*.hpp).
// Write rule: as the CPU kernels: forwards overwrite y and what they save, backwards overwrite dx
// and the parameter gradients.
// Determinism: every reduction is a fixed-shape tree or a fixed-order loop (no atomics), so a
// step gives the same bits on every run on the same GPU.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/math/optim_math.hpp"
#include "cuda/common.cuh"

namespace gradstep::cuda {

enum class Act : int { kSigmoid, kTanh, kReLU, kLeakyReLU, kELU };

// ---- elementwise.cu -------------------------------------------------------------------------
// y (n) = act(x); dx (n) from dy, x, y (the ones each backward needs, as the CPU's).
template <class T>
void activation_forward(cudaStream_t s, Act a, T* y, const T* x, int64_t n, T alpha);
template <class T>
void activation_backward(cudaStream_t s, Act a, T* dx, const T* dy, const T* x, const T* y,
                         int64_t n, T alpha);
// seed read from device memory (*seed), so a captured graph draws a new mask per replay.
template <class T>
void dropout_forward(cudaStream_t s, T* y, T* mask, const T* x, int64_t n, double p,
                     const uint64_t* seed);
template <class T>
void mul_forward(cudaStream_t s, T* y, const T* a, const T* b, int64_t n);  // y = a·b (dropout bwd)
// prelu with C = 1 or C = F slopes; dalpha (C) summed in double over fixed-shape trees.
template <class T>
void prelu_forward(cudaStream_t s, T* y, const T* x, const T* alpha, int64_t N, int64_t F,
                   int64_t C);
template <class T>
void prelu_backward(cudaStream_t s, T* dx, T* dalpha, double* scratch, const T* dy, const T* x,
                    const T* alpha, int64_t N, int64_t F, int64_t C);
// scratch for prelu_backward: doubles needed.
int64_t prelu_scratch(int64_t N, int64_t F, int64_t C);
// Row softmax (N,K) and its backward.
template <class T>
void softmax_forward(cudaStream_t s, T* y, const T* x, int64_t N, int64_t K);
template <class T>
void softmax_backward(cudaStream_t s, T* dx, const T* dy, const T* y, int64_t N, int64_t K);
// y (N,O) = each row b (O).
template <class T>
void fill_rows(cudaStream_t s, T* y, const T* b, int64_t N, int64_t O);
// y (n) = c·x
template <class T>
void scale(cudaStream_t s, T* y, const T* x, T c, int64_t n);
// out (O) = Σ_rows a (N,O), in double through fixed row chunks, rounded to T once.
template <class T>
void column_sum(cudaStream_t s, T* out, double* scratch, const T* a, int64_t N, int64_t O);
int64_t column_scratch(int64_t N, int64_t O);  // doubles column_sum/col-reductions need
// *out = factor·Σ a² in double (one block, fixed tree); out is a device double.
template <class T>
void sum_squares(cudaStream_t s, double* out, const T* a, int64_t n, double factor);
// Gathers rows: y (N,F) = x[idx[r]] rows of x (M,F); labels likewise when both are non-null.
template <class T>
void gather_rows(cudaStream_t s, T* y, const T* x, const int64_t* idx, int64_t N, int64_t F);
void gather_labels(cudaStream_t s, int64_t* y, const int64_t* x, const int64_t* idx, int64_t N);

// ---- norm.cu --------------------------------------------------------------------------------
// Training-mode batch norm (N > 1 updates the running statistics); stats (2F) receives the batch
// mean and inverse std in T; dstats (2F doubles) the same in double for the backward.
template <class T>
void batchnorm_forward_train(cudaStream_t s, T* y, T* xhat, T* stats, double* dstats,
                             double* scratch, T* running_mean, T* running_var, const T* x,
                             const T* gamma, const T* beta, int64_t N, int64_t F, double momentum,
                             double eps);
template <class T>
void batchnorm_backward(cudaStream_t s, T* dx, T* dgamma, T* dbeta, double* scratch,
                        const T* dy, const T* xhat, const T* invstd, const T* gamma, int64_t N,
                        int64_t F);
int64_t batchnorm_scratch(int64_t N, int64_t F);

// ---- maxout.cu ------------------------------------------------------------------------------
// z (P,N,O) holds the pieces (filled by the caller's GEMMs); y, argmax (N,O).
template <class T>
void maxout_select(cudaStream_t s, T* y, int32_t* argmax, const T* z, int64_t N, int64_t O,
                   int64_t P);
// dz (P,N,O) = dy where argmax == k.
template <class T>
void maxout_scatter(cudaStream_t s, T* dz, const T* dy, const int32_t* argmax, int64_t N,
                    int64_t O, int64_t P);

// ---- loss.cu --------------------------------------------------------------------------------
enum class Loss : int { kSoftmaxXent, kSoftmaxXentSoft, kMSE, kBCE, kBCELogits, kNLL };
// Fused forward + backward: dout (N,K) = the loss gradient, *value (device double) = the mean
// loss; rows (N doubles) and probs (N,K) scratch.
template <class T>
void loss_forward_backward(cudaStream_t s, Loss kind, double* value, T* dout, T* probs,
                           double* rows, const T* out, const int64_t* labels, const T* target,
                           int64_t N, int64_t K);
// *value = loss[0] + Σ penalty[i] (i < count), in that order (the CPU's order).
void finalize_value(cudaStream_t s, double* value, const double* loss, const double* penalty,
                    int count);

// ---- optim.cu -------------------------------------------------------------------------------
// One fused pass over P: the consts are read from device memory (so a captured graph picks up
// each step's bias corrections).
template <class T>
void sgd_step(cudaStream_t s, T* w, T* buf, const T* g, int64_t P, const math::SgdK<T>* k);
template <class T>
void rmsprop_step(cudaStream_t s, T* w, T* sq, T* buf, const T* g, int64_t P,
                  const math::RmsK<T>* k);
template <class T>
void adam_step(cudaStream_t s, T* w, T* m, T* v, const T* g, int64_t P, const math::AdamK<T>* k);

}  // namespace gradstep::cuda
