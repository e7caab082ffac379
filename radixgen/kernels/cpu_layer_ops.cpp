// Fused element-wise layer ops for bf16 models on the CPU, called through ctypes from
// kernels/cpu_layer_ops.py. Each one replaces 5-10 small torch ops whose dispatch cost, not their
// arithmetic, dominated a decode step (a 135M model runs ~60 norms and 30 rotaries per step).
//
// With AVX-512 each row goes 16 lanes at a time through explicit intrinsics (one vcvtneps2bf16 per
// rounding instead of the ~8 integer ops the compiler makes of f2bf): at batch 256, best of 300,
// RMSNorm 51 -> 36 us, SiLU * up 155 -> 137 us.
// Every op rounds to bf16 exactly where the torch reference (kernels/layer_ops.py, i.e.
// transformers' Llama in bf16) rounds, so results match it bit for bit except for the order of
// the float sum in RMSNorm's mean and SiLU's exp (a polynomial here) and reciprocal (rcp14 and a
// Newton step with AVX-512), which may move a value by one bf16 ulp.
// Rows (tokens) are independent, so each result is the same whatever the batch around it.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu_scalar.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include "cpu_vec512.h"
#define RG_VEC512 1
#endif

namespace {

inline float round_bf(float f) { return bf2f(f2bf(f)); }

// x * sigmoid(x), with e = exp(-|x|) <= 1 so nothing overflows.
inline float silu(float x) {
  const float e = exp_nonpos(-std::fabs(x));
  return x * (x >= 0.f ? 1.f : e) / (1.f + e);
}

// Work below this many elements runs on the calling thread: waking the team costs more.
constexpr int64_t PAR_MIN = 1 << 15;

inline void store_row(float* dst, const float* src, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
inline void store_row(uint16_t* dst, const float* src, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = f2bf(src[i]);
}

// fp32 rotary + KV write into pools of P (float, or uint16_t for bf16): rg_rope_write_kv_f32*.
template <typename P>
void rope_write_kv_f32(const float* qkv, int64_t qkv_stride, const float* cos, const float* sin,
                       const int64_t* slots, float* q_out, P* k_pool, P* v_pool, int64_t slot_stride,
                       int64_t head_stride, int64_t T, int64_t H, int64_t KVH, int64_t D, int threads) {
  const int64_t half = D / 2;
#pragma omp parallel for num_threads(threads) if (T * (H + 2 * KVH) * D >= PAR_MIN)
  for (int64_t t = 0; t < T; ++t) {
    const float* row = qkv + t * qkv_stride;
    const float* c = cos + t * D;
    const float* s = sin + t * D;
    float rotated[512];  // D <= 512 checked by the caller
    for (int64_t h = 0; h < H + KVH; ++h) {
      const float* x = row + h * D;
      float* dst = h < H ? q_out + (t * H + h) * D : rotated;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = x[i], x2 = x[i + half];
        dst[i] = x1 * c[i] + (-x2) * s[i];
        dst[i + half] = x2 * c[i + half] + x1 * s[i + half];
      }
      if (h >= H) store_row(k_pool + slots[t] * slot_stride + (h - H) * head_stride, rotated, D);
    }
    for (int64_t h = 0; h < KVH; ++h)
      store_row(v_pool + slots[t] * slot_stride + h * head_stride, row + (H + KVH + h) * D, D);
  }
}

}  // namespace

extern "C" {

// x, residual, out: bf16 [T, D] rows; weight: bf16 [D].
// With a residual: residual <- bf16(residual + x) (in place), then out <- RMSNorm(residual).
// Without (residual == nullptr): out <- RMSNorm(x). RMSNorm(h) = bf16(w * bf16(h / rms(h))),
// the mean of squares taken in fp32, as transformers' LlamaRMSNorm.
void rg_add_rmsnorm(const uint16_t* x, uint16_t* residual, const uint16_t* weight, uint16_t* out,
                    int64_t T, int64_t D, float eps, int threads) {
#pragma omp parallel for num_threads(threads) if (T * D >= PAR_MIN)
  for (int64_t t = 0; t < T; ++t) {
    const uint16_t* xr = x + t * D;
    uint16_t* o = out + t * D;
    uint16_t* r = residual != nullptr ? residual + t * D : nullptr;
#ifdef RG_VEC512
    using namespace avx512;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < D; i += 16) {  // residual <- bf16(residual + x); sum of squares
      const __mmask16 m = tail_mask(D - i);
      __m512 h = load_bf16(xr + i, m);
      if (r != nullptr) {
        h = round_bf16(_mm512_add_ps(load_bf16(r + i, m), h));
        store_bf16(r + i, h, m);
      }
      acc = _mm512_fmadd_ps(h, h, acc);
    }
    const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(acc) / float(D) + eps));
    const uint16_t* hr = r != nullptr ? r : xr;
    for (int64_t i = 0; i < D; i += 16) {
      const __mmask16 m = tail_mask(D - i);
      store_bf16(o + i, _mm512_mul_ps(load_bf16(weight + i, m), round_bf16(_mm512_mul_ps(load_bf16(hr + i, m), inv))), m);
    }
#else
    float h[4096];  // D <= 4096 checked by the caller; the row in fp32
    if (r != nullptr) {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) {
        const uint16_t s = f2bf(bf2f(r[i]) + bf2f(xr[i]));
        r[i] = s;
        h[i] = bf2f(s);
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) h[i] = bf2f(xr[i]);
    }
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < D; ++i) ss += h[i] * h[i];
    const float inv = 1.f / std::sqrt(ss / float(D) + eps);
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) o[i] = f2bf(bf2f(weight[i]) * round_bf(h[i] * inv));
#endif
  }
}

// qkv: bf16 [T, (H + 2 KVH) * D] (the fused projection's output, rows of stride qkv_stride);
// cos, sin: bf16 [T, D] (the tokens' rows of the tables); slots: int64 [T] pool slots.
// Rotates q and k (halves layout: x * cos + cat(-x2, x1) * sin, each product rounded to bf16 as
// the reference does), writes q to q_out, bf16 [T, H, D], and the rotated k and v into the bf16
// pools [S, KVH, D] (element strides slot_stride, head_stride).
void rg_rope_write_kv(const uint16_t* qkv, int64_t qkv_stride, const uint16_t* cos,
                      const uint16_t* sin, const int64_t* slots,
                      uint16_t* q_out, uint16_t* k_pool, uint16_t* v_pool, int64_t slot_stride,
                      int64_t head_stride, int64_t T, int64_t H, int64_t KVH, int64_t D,
                      int threads) {
  const int64_t half = D / 2;
#pragma omp parallel for num_threads(threads) if (T * (H + 2 * KVH) * D >= PAR_MIN)
  for (int64_t t = 0; t < T; ++t) {
    const uint16_t* row = qkv + t * qkv_stride;
    const uint16_t* c = cos + t * D;
    const uint16_t* s = sin + t * D;
    for (int64_t h = 0; h < H + KVH; ++h) {
      const uint16_t* x = row + h * D;
      uint16_t* dst = h < H ? q_out + (t * H + h) * D : k_pool + slots[t] * slot_stride + (h - H) * head_stride;
#ifdef RG_VEC512
      if (half % 16 == 0) {  // lanes i of the first half and i + half of the second, together
        using namespace avx512;
        for (int64_t i = 0; i < half; i += 16) {
          const __m512 x1 = load_bf16(x + i), x2 = load_bf16(x + half + i);
          const __m512 lo = _mm512_add_ps(round_bf16(_mm512_mul_ps(x1, load_bf16(c + i))),
                                          round_bf16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), x2), load_bf16(s + i))));
          const __m512 hi = _mm512_add_ps(round_bf16(_mm512_mul_ps(x2, load_bf16(c + half + i))),
                                          round_bf16(_mm512_mul_ps(x1, load_bf16(s + half + i))));
          store_bf16(dst + i, lo);
          store_bf16(dst + half + i, hi);
        }
        continue;
      }
#endif
      float rotated[512];  // D <= 512 checked by the caller
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) {
        const float other = i < half ? -bf2f(x[i + half]) : bf2f(x[i - half]);
        rotated[i] = round_bf(bf2f(x[i]) * bf2f(c[i])) + round_bf(other * bf2f(s[i]));
      }
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) dst[i] = f2bf(rotated[i]);
    }
    for (int64_t h = 0; h < KVH; ++h)
      std::memcpy(v_pool + slots[t] * slot_stride + h * head_stride, row + (H + KVH + h) * D,
                  D * sizeof(uint16_t));
  }
}

// gate_up: bf16 [T, 2I] (gate then up); out: bf16 [T, I] = bf16(bf16(silu(gate)) * up).
void rg_silu_mul(const uint16_t* gate_up, uint16_t* out, int64_t T, int64_t I, int threads) {
#pragma omp parallel for num_threads(threads) if (T * I >= PAR_MIN)
  for (int64_t t = 0; t < T; ++t) {
    const uint16_t* g = gate_up + t * 2 * I;
    const uint16_t* u = g + I;
    uint16_t* o = out + t * I;
#ifdef RG_VEC512
    using namespace avx512;
    for (int64_t i = 0; i < I; i += 16) {  // silu(x) = x * sigmoid(x), with e = exp(-|x|) so nothing overflows
      const __mmask16 m = tail_mask(I - i);
      const __m512 x = load_bf16(g + i, m);
      const __m512 e = exp_nonpos(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
      const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
      const __m512 num = _mm512_mask_mul_ps(x, neg, x, e);
      const __m512 den = _mm512_add_ps(_mm512_set1_ps(1.f), e);  // in [1, 2]
      __m512 inv = _mm512_rcp14_ps(den);  // then one Newton step: ~1 ulp of fp32, not a divide's 16 cycles
      inv = _mm512_mul_ps(inv, _mm512_fnmadd_ps(den, inv, _mm512_set1_ps(2.f)));
      const __m512 act = round_bf16(_mm512_mul_ps(num, inv));
      store_bf16(o + i, _mm512_mul_ps(act, load_bf16(u + i, m)), m);
    }
#else
#pragma omp simd
    for (int64_t i = 0; i < I; ++i) o[i] = f2bf(round_bf(silu(bf2f(g[i]))) * bf2f(u[i]));
#endif
  }
}

// ---- float32 models (dtype auto on CPUs without AVX512-BF16 / AMX, and the quantized paths) ----
// The same three ops on fp32 rows, in the torch reference's arithmetic (no bf16 rounding); plain
// loops the compiler vectorizes. They exist for the dispatch they save, as the bf16 ones do.

// x, residual, out: fp32 [T, D]; weight: fp32 [D]. As rg_add_rmsnorm.
void rg_add_rmsnorm_f32(const float* x, float* residual, const float* weight, float* out,
                        int64_t T, int64_t D, float eps, int threads) {
#pragma omp parallel for num_threads(threads) if (T * D >= PAR_MIN)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* o = out + t * D;
    float* r = residual != nullptr ? residual + t * D : nullptr;
    if (r != nullptr) {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) r[i] += xr[i];
    }
    const float* h = r != nullptr ? r : xr;
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < D; ++i) ss += h[i] * h[i];
    const float inv = 1.f / std::sqrt(ss / float(D) + eps);
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) o[i] = weight[i] * (h[i] * inv);
  }
}

// qkv: fp32 [T, (H + 2 KVH) * D] (row stride qkv_stride); cos, sin: fp32 [T, D]; pools fp32
// [S, KVH, D]. As rg_rope_write_kv.
void rg_rope_write_kv_f32(const float* qkv, int64_t qkv_stride, const float* cos, const float* sin,
                          const int64_t* slots, float* q_out, float* k_pool, float* v_pool,
                          int64_t slot_stride, int64_t head_stride, int64_t T, int64_t H, int64_t KVH,
                          int64_t D, int threads) {
  rope_write_kv_f32(qkv, qkv_stride, cos, sin, slots, q_out, k_pool, v_pool, slot_stride, head_stride, T, H,
                    KVH, D, threads);
}

// The same with bf16 pools under an fp32 model (kv_cache_dtype bfloat16): K and V rounded to bf16
// as they are stored, q left fp32.
void rg_rope_write_kv_f32_bf16kv(const float* qkv, int64_t qkv_stride, const float* cos, const float* sin,
                                 const int64_t* slots, float* q_out, uint16_t* k_pool, uint16_t* v_pool,
                                 int64_t slot_stride, int64_t head_stride, int64_t T, int64_t H, int64_t KVH,
                                 int64_t D, int threads) {
  rope_write_kv_f32(qkv, qkv_stride, cos, sin, slots, q_out, k_pool, v_pool, slot_stride, head_stride, T, H,
                    KVH, D, threads);
}

// gate_up: fp32 [T, 2I]; out: fp32 [T, I] = silu(gate) * up, silu(x) = x / (1 + exp(-x)) as torch.
void rg_silu_mul_f32(const float* gate_up, float* out, int64_t T, int64_t I, int threads) {
#pragma omp parallel for num_threads(threads) if (T * I >= PAR_MIN)
  for (int64_t t = 0; t < T; ++t) {
    const float* g = gate_up + t * 2 * I;
    const float* u = g + I;
    float* o = out + t * I;
    // silu as the bf16 op's (exp_nonpos, e = exp(-|x|) <= 1): vectorizes, where std::exp kept
    // the loop scalar (7% of a 256-request seed run on an AVX2 Zen 3)
#pragma omp simd
    for (int64_t i = 0; i < I; ++i) o[i] = silu(g[i]) * u[i];
  }
}

}  // extern "C"
