// random: the counter-based generator behind dropout masks, shared by the CPU kernel
// (core/dropout.cpp) and the CUDA kernel (cuda/dropout.cu), so a mask depends on (seed, index)
// alone: the same on any thread count and on either device.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/math/hd.hpp"

namespace gradstep::math {

// The i-th output of SplitMix64 (Steele, Lea and Flood, 2014) seeded with `seed`: the state after
// i+1 steps is seed + (i+1)·golden, so any element is computed directly from its index.
GS_HD uint64_t splitmix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// u = (z >> 11)·2⁻⁵³ >= p  <=>  (z >> 11) >= ceil(p·2⁵³): p·2⁵³ is exact (a power-of-two
// scale), so comparing integers keeps exactly the same elements without a conversion.
inline uint64_t dropout_threshold(double p) {
  return static_cast<uint64_t>(std::ceil(p * 0x1.0p53));
}

// Element i's mask value: 0 or `scale` = T(1/(1−p)) (PyTorch scales its 0/1 noise so, in T).
// keep·scale rather than a ?: : a branch on a coin flip mispredicts half the time.
template <class T>
GS_HD T dropout_mask(uint64_t seed, uint64_t i, uint64_t threshold, T scale) {
  const bool keep = (splitmix64(seed, i) >> 11) >= threshold;
  return static_cast<T>(keep) * scale;
}

}  // namespace gradstep::math
