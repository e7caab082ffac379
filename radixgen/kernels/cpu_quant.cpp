// Linear layers over GGUF-style block-quantized weights (Q4_0, Q4_1, Q8_0: blocks of 32 weights
// along K) for small row counts (decode), called through ctypes from kernels/cpu_quant.py.
//
// Why: a batch-1 decode step reads every weight once, so bytes per weight bound its speed (fp32 4,
// Q8_0 1.06, Q4_1 0.63). As llama.cpp does, the activations are quantized per row and per block of
// 32 to int8 (scale amax / 127) on the fly, and each block's dot product runs on integers:
// AVX2 maddubs (u8 x s8 -> pairs of s16) + madd (-> s32), or one dpbusd where the CPU has AVX-VNNI /
// AVX512-VNNI; then one fp32 FMA per block applies the product of the two scales.
//
// Layout (repacked once at load, see cpu_quant.py): qs: the quants of row n, block b at
// qs[(n * KB + b) * QB], QB = 16 bytes for 4-bit (GGUF's nibble order: byte j holds quant j in its
// low nibble and quant j + 16 in its high one) or 32 int8 for Q8_0; d, m: fp16 [N, KB] scales and
// (Q4_1) mins. A weight is d * q + m (Q4_1), d * (q - 8) (Q4_0), d * q (Q8_0).
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
enum Fmt { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8 };  // ggml's type ids

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
      const float dw = half_to_float(d[n * KB + b]), xi = q.dx[m * KB + b], s = q.sx[m * KB + b];
      acc += dw * xi * float(dot);
      if (fmt == Q4_1) acc += half_to_float(mn[n * KB + b]) * s;
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

// Per 4-byte group: sum of u8 * s8 products, as int32 [8].
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  // |u| <= 15 (4-bit) or 127 and |s| <= 127: a pair sums to at most 32,258, so no s16 saturation.
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
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

// sum_j h[j] * f[j], h fp16.
inline float dot_half(const uint16_t* h, const float* f, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + j))),
                          _mm256_loadu_ps(f + j), acc);
  float s = hsum(acc);
  for (; j < n; ++j) s += _cvtsh_ss(h[j]) * f[j];
  return s;
}

// The 32 quants of one block, in order, as bytes: 0..15 (4-bit) or int8 (Q8_0).
template <int FMT>
inline __m256i load_block(const uint8_t* w) {
  if constexpr (FMT == Q8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
  }
}

// NR weight rows n0.. against MB activation rows m0..; accumulators: NR x MB vectors of 8 floats.
template <int FMT, int NR, int MB>
void tile(const uint8_t* qs, const uint16_t* d, const uint16_t* mn, const QuantX& q, int64_t n0,
          int64_t m0, int64_t K, float* out, int64_t N, const float* bias) {
  const int64_t KB = K / QK, QB = FMT == Q8_0 ? 32 : 16;
  __m256 acc[NR][MB];
  float macc[NR][MB];
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < MB; ++i) acc[r][i] = _mm256_setzero_ps(), macc[r][i] = 0.f;
  for (int64_t b = 0; b < KB; ++b) {
    __m256i xv[MB];
    float dx[MB];
    for (int i = 0; i < MB; ++i) {
      xv[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.xq.data() + (m0 + i) * K + b * QK));
      dx[i] = q.dx[(m0 + i) * KB + b];
    }
    for (int r = 0; r < NR; ++r) {
      const int64_t row = (n0 + r) * KB + b;
      // The same block of the next tile's row (the next NR rows: the thread's next tile with a
      // static schedule). The hardware prefetcher alone streamed SmolLM2's 30 layers at ~1 thread
      // 5 GB/s; with this, ~9.5 (1.3-1.9x faster; 1 to 3 tiles ahead measured alike; AMD EPYC Zen 3).
      _mm_prefetch(reinterpret_cast<const char*>(qs + (row + NR * KB) * QB), _MM_HINT_T0);
      const __m256i w = load_block<FMT>(qs + row * QB);
      const float dw = _cvtsh_ss(d[row]);
      const __m256i u = FMT == Q8_0 ? _mm256_sign_epi8(w, w) : w;  // |w| for Q8_0 ...
      for (int i = 0; i < MB; ++i) {
        const __m256i s = FMT == Q8_0 ? _mm256_sign_epi8(xv[i], w) : xv[i];  // ... and x with w's sign
        acc[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[i]), _mm256_cvtepi32_ps(dot_u8s8(u, s)), acc[r][i]);
      }
    }
  }
  if constexpr (FMT != Q8_0) {  // the mins' term, sum_b m[b] sx[b], outside the integer loop
    for (int r = 0; r < NR; ++r)
      for (int i = 0; i < MB; ++i)
        macc[r][i] = dot_half(FMT == Q4_1 ? mn + (n0 + r) * KB : d + (n0 + r) * KB, q.sx.data() + (m0 + i) * KB, KB)
                     * (FMT == Q4_1 ? 1.f : -8.f);
  }
  for (int r = 0; r < NR; ++r)
    for (int i = 0; i < MB; ++i)
      out[(m0 + i) * N + n0 + r] = hsum(acc[r][i]) + macc[r][i] + (bias ? bias[n0 + r] : 0.f);
}

// Rows of x in chunks of up to 4 (weights re-read from L1 per chunk); 4 weight rows a task at 1 row.
template <int FMT, int NR>
void rows_tile(const uint8_t* qs, const uint16_t* d, const uint16_t* mn, const QuantX& q, int64_t n0,
               int64_t M, int64_t K, float* out, int64_t N, const float* bias) {
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    switch (M - m0) {
      case 1: tile<FMT, NR, 1>(qs, d, mn, q, n0, m0, K, out, N, bias); break;
      case 2: tile<FMT, NR, 2>(qs, d, mn, q, n0, m0, K, out, N, bias); break;
      case 3: tile<FMT, NR, 3>(qs, d, mn, q, n0, m0, K, out, N, bias); break;
      default: tile<FMT, NR, 4>(qs, d, mn, q, n0, m0, K, out, N, bias); break;
    }
  }
}

template <int FMT>
void gemm_avx2(const uint8_t* qs, const uint16_t* d, const uint16_t* mn, const QuantX& q, int64_t M,
               int64_t N, int64_t K, float* out, const float* bias, int threads) {
  constexpr int64_t NR = 4;  // 4 independent FMA chains hide their latency at 1 row
  const int64_t tiles = N / NR;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    if (M == 1) tile<FMT, 4, 1>(qs, d, mn, q, t * NR, 0, K, out, N, bias);
    else rows_tile<FMT, 2>(qs, d, mn, q, t * NR, M, K, out, N, bias), rows_tile<FMT, 2>(qs, d, mn, q, t * NR + 2, M, K, out, N, bias);
  }
  for (int64_t n = tiles * NR; n < N; ++n) rows_tile<FMT, 1>(qs, d, mn, q, n, M, K, out, N, bias);
}
#endif

}  // namespace

extern "C" {

// Which integer dot product this build uses: 0 scalar, 1 AVX2 maddubs, 2 AVX-VNNI, 3 AVX512-VNNI.
int rg_quant_isa() {
#if !defined(RG_QUANT_SIMD)
  return 0;
#elif defined(__AVXVNNI__)
  return 2;
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return 3;
#else
  return 1;
#endif
}

// out fp32 [M, N] = x fp32 [M, K] . W^T (+ bias fp32 [N] or null); W as laid out above, K % 32 == 0
// (checked by the caller). scalar != 0 takes the plain C++ path (RADIXGEN_QUANT_SCALAR, tests).
void rg_quant_gemm(int fmt, const uint8_t* qs, const uint16_t* d, const uint16_t* mn, const float* bias,
                   const float* x, float* out, int64_t M, int64_t N, int64_t K, int scalar, int threads) {
  const int64_t KB = K / QK;
  QuantX q{std::vector<int8_t>(M * K), std::vector<float>(M * KB), std::vector<float>(M * KB)};
#ifdef RG_QUANT_SIMD
  if (!scalar) {
    quantize_rows_avx2(x, M, K, q.xq.data(), q.dx.data(), q.sx.data());
    if (fmt == Q4_0) gemm_avx2<Q4_0>(qs, d, mn, q, M, N, K, out, bias, threads);
    else if (fmt == Q4_1) gemm_avx2<Q4_1>(qs, d, mn, q, M, N, K, out, bias, threads);
    else gemm_avx2<Q8_0>(qs, d, mn, q, M, N, K, out, bias, threads);
    return;
  }
#endif
  quantize_rows_scalar(x, M, K, q.xq.data(), q.dx.data(), q.sx.data());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t n = 0; n < N; ++n) gemm_scalar(fmt, qs, d, mn, q, n, M, K, out, N, bias);
}

// x fp32 [M, K] -> xq int8 [M, K], dx and sx fp32 [M, K / 32] as described at the top (the
// activations of cpu_quant_panel.cpp's kernel); rows split among the threads when there are enough
// (a few rows take less time than waking the team).
void rg_quant_rows(const float* x, int64_t M, int64_t K, int8_t* xq, float* dx, float* sx, int scalar,
                   int threads) {
  const int64_t KB = K / QK;
#pragma omp parallel for num_threads(threads) schedule(static) if (M >= 16)
  for (int64_t m = 0; m < M; ++m) {
#ifdef RG_QUANT_SIMD
    if (!scalar) {
      quantize_rows_avx2(x + m * K, 1, K, xq + m * K, dx + m * KB, sx + m * KB);
      continue;
    }
#endif
    quantize_rows_scalar(x + m * K, 1, K, xq + m * K, dx + m * KB, sx + m * KB);
  }
}

// Rows n0 .. n1 - 1 of W as fp32 [n1 - n0, K] (prefill runs fp32 matmuls over such tiles).
void rg_quant_dequant(int fmt, const uint8_t* qs, const uint16_t* d, const uint16_t* mn, int64_t n0,
                      int64_t n1, int64_t K, float* out, int scalar, int threads) {
  const int64_t KB = K / QK, QB = block_bytes(fmt);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t b = 0; b < KB; ++b) {
      const uint8_t* w = qs + (n * KB + b) * QB;
      const float dw = half_to_float(d[n * KB + b]);
      const float mw = fmt == Q4_1 ? half_to_float(mn[n * KB + b]) : fmt == Q4_0 ? -8.f * dw : 0.f;
      float* o = out + (n - n0) * K + b * QK;
#ifdef RG_QUANT_SIMD
      if (!scalar) {
        const __m256i q = fmt == Q8_0 ? load_block<Q8_0>(w) : load_block<Q4_1>(w);
        const __m256 vd = _mm256_set1_ps(dw), vm = _mm256_set1_ps(mw);
        for (int j = 0; j < 4; ++j) {
          const __m128i part = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(
              reinterpret_cast<const uint8_t*>(&q) + 8 * j));
          const __m256i wide = fmt == Q8_0 ? _mm256_cvtepi8_epi32(part) : _mm256_cvtepu8_epi32(part);
          _mm256_storeu_ps(o + 8 * j, _mm256_fmadd_ps(vd, _mm256_cvtepi32_ps(wide), vm));
        }
        continue;
      }
#endif
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
