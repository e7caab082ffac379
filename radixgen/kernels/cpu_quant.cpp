// Block-quantized weights (GGUF's Q4_0, Q4_1, Q8_0, Q4_K: blocks of 32 weights along K), called through
// ctypes from kernels/cpu_quant.py: the activations' quantization that the panel kernel
// (cpu_quant_panel.cpp) multiplies, and the portable fallback for CPUs without AVX2 + FMA + F16C
// (or with RADIXGEN_QUANT_SCALAR=1): a plain C++ matmul for a few rows and the dequantization that
// more rows multiply as fp32 tiles.
//
// As llama.cpp does, the activations are quantized per row and per block of 32 to int8 (scale
// amax / 127) on the fly, and each block's dot product runs on integers; one fp32 multiply-add per
// block applies the product of the two scales.
//
// Layout (as loaded, see cpu_quant.py): qs: the quants of row n, block b at qs[(n * KB + b) * QB],
// QB = 16 bytes for 4-bit (GGUF's nibble order: byte j holds quant j in its low nibble and quant
// j + 16 in its high one) or 32 int8 for Q8_0; d, m: [N, KB] scales and (Q4_1, Q4_K) mins, fp16
// (fp32 for Q4_K). A weight is d * q + m (Q4_1, Q4_K), d * (q - 8) (Q4_0), d * q (Q8_0).
// With x = dx * xq per block: sum(w * x) = d dx sum(q xq) + m dx sum(xq), so Q4_1 (and Q4_0, with
// m = -8 d) needs only sx = dx * sum(xq) per activation block beside the integer dot.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define RG_QUANT_SIMD 1
#endif

namespace {

constexpr int QK = 32;
enum Fmt { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, Q4_K = 12 };  // ggml's type ids

inline int64_t block_bytes(int fmt) { return fmt == Q8_0 ? 32 : 16; }

// IEEE half -> float without F16C (the scalar path must run, and be tested, anywhere).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    const float f = std::ldexp(float(mant), -24);  // zero or subnormal
    return sign ? -f : f;
  }
  bits = exp == 31 ? sign | 0x7f800000u | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// A block's scale (or min) as a float: fp16 for Q4_0, Q4_1, Q8_0; fp32 for Q4_K, whose 32-blocks
// carry d * 6-bit sub-scale (exact in fp32, not in fp16; see cpu_quant.py).
inline float scale_at(int fmt, const uint16_t* s, int64_t i) {
  if (fmt != Q4_K) return half_to_float(s[i]);
  float f;
  std::memcpy(&f, s + 2 * i, 4);
  return f;
}

// The activations, quantized: xq int8 [M, K], dx = amax / 127 and sx = dx * sum(xq), fp32 [M, KB].
struct QuantX {
  std::vector<int8_t> xq;
  std::vector<float> dx, sx;
};

void quantize_rows_scalar(const float* x, int64_t M, int64_t K, int8_t* xq, float* dx, float* sx) {
  const int64_t KB = K / QK;
  for (int64_t i = 0; i < M * KB; ++i) {
    const float* xb = x + i * QK;
    float amax = 0.f;
    for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.f, id = amax > 0.f ? 127.f / amax : 0.f;
    int sum = 0;
    for (int j = 0; j < QK; ++j) {
      const int v = int(std::nearbyint(xb[j] * id));
      xq[i * QK + j] = int8_t(v);
      sum += v;
    }
    dx[i] = d;
    sx[i] = d * float(sum);
  }
}

// Row n of the weight against rows m0.. of x, one block at a time, integers only inside a block.
void gemm_scalar(int fmt, const uint8_t* qs, const uint16_t* d, const uint16_t* mn, const QuantX& q,
                 int64_t n, int64_t M, int64_t K, float* out, int64_t N, const float* bias) {
  const int64_t KB = K / QK, QB = block_bytes(fmt);
  for (int64_t m = 0; m < M; ++m) {
    float acc = 0.f;
    for (int64_t b = 0; b < KB; ++b) {
      const uint8_t* w = qs + (n * KB + b) * QB;
      const int8_t* xb = q.xq.data() + m * K + b * QK;
      int dot = 0;
      if (fmt == Q8_0) {
        for (int j = 0; j < QK; ++j) dot += int(int8_t(w[j])) * xb[j];
      } else {
        for (int j = 0; j < 16; ++j) dot += int(w[j] & 0x0f) * xb[j] + int(w[j] >> 4) * xb[j + 16];
      }
      const float dw = scale_at(fmt, d, n * KB + b), xi = q.dx[m * KB + b], s = q.sx[m * KB + b];
      acc += dw * xi * float(dot);
      if (fmt == Q4_1 || fmt == Q4_K) acc += scale_at(fmt, mn, n * KB + b) * s;
      if (fmt == Q4_0) acc -= 8.f * dw * s;
    }
    out[m * N + n] = acc + (bias ? bias[n] : 0.f);
  }
}

#ifdef RG_QUANT_SIMD
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void quantize_rows_avx2(const float* x, int64_t M, int64_t K, int8_t* xq, float* dx, float* sx) {
  const int64_t KB = K / QK;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < M * KB; ++i) {
    const float* xb = x + i * QK;
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(xb + 8 * j);
      amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float a = _mm_cvtss_f32(m4), d = a / 127.f;
    const __m256 id = _mm256_set1_ps(a > 0.f ? 127.f / a : 0.f);
    __m256i r[4];
    for (int j = 0; j < 4; ++j)
      r[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i sum32 = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
    // packs interleave 128-bit lanes; the permute puts the 32 bytes back in order
    const __m256i p16a = _mm256_packs_epi32(r[0], r[1]), p16b = _mm256_packs_epi32(r[2], r[3]);
    const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b),
                                                   _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xq + i * QK), p8);
    dx[i] = d;
    sx[i] = d * hsum(_mm256_cvtepi32_ps(sum32));
  }
}

#endif

}  // namespace

extern "C" {

// out fp32 [M, N] = x fp32 [M, K] . W^T (+ bias fp32 [N] or null); W as laid out above, K % 32 == 0
// (checked by the caller). The portable path: plain loops, OpenMP over output columns.
void rg_quant_gemm(int fmt, const uint8_t* qs, const uint16_t* d, const uint16_t* mn, const float* bias,
                   const float* x, float* out, int64_t M, int64_t N, int64_t K, int threads) {
  const int64_t KB = K / QK;
  QuantX q{std::vector<int8_t>(M * K), std::vector<float>(M * KB), std::vector<float>(M * KB)};
  quantize_rows_scalar(x, M, K, q.xq.data(), q.dx.data(), q.sx.data());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t n = 0; n < N; ++n) gemm_scalar(fmt, qs, d, mn, q, n, M, K, out, N, bias);
}

// x fp32 [M, K] -> xq int8 [M, K], dx and sx fp32 [M, K / 32] as described at the top (the
// activations of cpu_quant_panel.cpp's kernel); rows split among the threads when there are enough
// (a few rows take less time than waking the team).
void rg_quant_rows(const float* x, int64_t M, int64_t K, int8_t* xq, float* dx, float* sx, int threads) {
  const int64_t KB = K / QK;
#pragma omp parallel for num_threads(threads) schedule(static) if (M >= 16)
  for (int64_t m = 0; m < M; ++m) {
#ifdef RG_QUANT_SIMD
    quantize_rows_avx2(x + m * K, 1, K, xq + m * K, dx + m * KB, sx + m * KB);
#else
    quantize_rows_scalar(x + m * K, 1, K, xq + m * K, dx + m * KB, sx + m * KB);
#endif
  }
}

// Rows n0 .. n1 - 1 of W as fp32 [n1 - n0, K] (the fallback multiplies many rows by such tiles).
void rg_quant_dequant(int fmt, const uint8_t* qs, const uint16_t* d, const uint16_t* mn, int64_t n0,
                      int64_t n1, int64_t K, float* out, int threads) {
  const int64_t KB = K / QK, QB = block_bytes(fmt);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t b = 0; b < KB; ++b) {
      const uint8_t* w = qs + (n * KB + b) * QB;
      const float dw = scale_at(fmt, d, n * KB + b);
      const float mw = fmt == Q4_1 || fmt == Q4_K ? scale_at(fmt, mn, n * KB + b) : fmt == Q4_0 ? -8.f * dw : 0.f;
      float* o = out + (n - n0) * K + b * QK;
      if (fmt == Q8_0) {
        for (int j = 0; j < QK; ++j) o[j] = dw * float(int8_t(w[j]));
      } else {
        for (int j = 0; j < 16; ++j) {
          o[j] = dw * float(w[j] & 0x0f) + mw;
          o[j + 16] = dw * float(w[j] >> 4) + mw;
        }
      }
    }
  }
}

}  // extern "C"
