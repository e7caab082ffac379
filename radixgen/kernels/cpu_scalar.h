// Scalar helpers shared by the CPU kernels (cpu_attention.cpp, cpu_layer_ops.cpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

inline float bf2f(uint16_t x) {
  uint32_t u = uint32_t(x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as torch does; NaN stays a (quiet) NaN.
inline uint16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// exp(x) for x <= 0, vectorizable (std::exp is not, without -ffast-math): 2^(x log2 e) split into
// an integer power built in the exponent bits and a degree-6 polynomial on [0, 1), rel. error
// ~3e-9. Exactly 0 below -87 (so masked -inf attention scores weigh nothing).
inline float exp_nonpos(float x) {
  const float t = (x < -87.f ? -87.f : x) * 1.44269504088896341f;
  const float fi = std::floor(t);
  const float f = t - fi;
  float p = 2.187750476e-04f;
  p = p * f + 1.238782148e-03f;
  p = p * f + 9.684580452e-03f;
  p = p * f + 5.548042633e-02f;
  p = p * f + 2.402305020e-01f;
  p = p * f + 6.931469287e-01f;
  p = p * f + 1.0f;
  const uint32_t bits = uint32_t(int32_t(fi) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return x < -87.f ? 0.f : p * scale;
}

}  // namespace
