// Block-quantized linears for every row count (decode steps of any batch, prefill chunks), on
// integers, called through ctypes from kernels/cpu_quant.py and from the decode stack.
//
// Why: a kernel that computes one output column per register (its 8 lanes 8 slices of a block's
// 32 k, summed at the end, as llama.cpp's AVX2 dot products and our first kernel did) costs ~6
// instructions per 32 multiply-adds: fine at 1 row, where reading the weights bounds the step,
// but slower than fp32 matmuls (~60-70 GFLOP/s on one Zen 3 core) from ~16 rows, where arithmetic
// does. Here a register holds 8 output columns x 4 k (the "VNNI" layout), one broadcast 4-byte
// group of an activation row multiplies all 8 columns, and a 4-bit block's 8 products per lane add
// up in 16 bits before one widening: ~2.3 instructions per 32 multiply-adds, and no horizontal
// sums. It also streams each thread's weights in order, which makes it the faster one at 1 row too.
// The arithmetic is llama.cpp's q8 one: activations quantized per row and per block of 32 to int8
// (rg_quant_rows), an exact integer dot per block, then d * dx * dot (+ m * sx for Q4_1 and Q4_0)
// in fp32.
//
// Layout (rg_quant_pack_panels, once at load): columns in panels of NP = 8 (the last one padded
// with zero weights and scales). Per panel and block of 32 k, PB bytes:
//   4-bit (Q4_0, Q4_1, Q4_K): 4 chunks of 32 bytes; chunk c, byte 4 j + t (column j, t = 0..3)
//          holds k = 4 c + t in its low nibble and k = 16 + 4 c + t in its high one (GGUF's own
//          byte 4 c + t of column j's block).
//   Q8_0:  8 chunks of 32 int8; chunk g, byte 4 j + t holds k = 4 g + t of column j.
// and scales pd [P, KB, 8] (d) and pm [P, KB, 8] (Q4_1's and Q4_K's mins; unused otherwise), fp16,
// or fp32 for Q4_K (its 32-blocks' d * sub-scale, see cpu_quant.py).
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_ops.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define RG_PANEL_SIMD 1
#endif

namespace {

constexpr int QK = 32, NP = 8;
enum Fmt { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, Q4_K = 12 };  // ggml's type ids

inline int64_t src_block_bytes(int fmt) { return fmt == Q8_0 ? 32 : 16; }
inline int64_t panel_block_bytes(int fmt) { return fmt == Q8_0 ? 256 : 128; }
constexpr int64_t scale_words(int fmt) { return fmt == Q4_K ? 2 : 1; }  // uint16 words per scale: fp32 for Q4_K


#ifdef RG_PANEL_SIMD
// 8 columns' scales (or mins) of one block as fp32.
template <int FMT>
inline __m256 load_scales(const uint16_t* s) {
  if constexpr (FMT == Q4_K) return _mm256_loadu_ps(reinterpret_cast<const float*>(s));
  else return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
}

// Rows m0 .. m0 + MR - 1 of the quantized activations against one panel: out[i * N + j] for
// j < ncols. acc[i]: row i's 8 columns in fp32.
template <int FMT, int MR>
void panel_rows(const uint8_t* pq, const uint16_t* pd, const uint16_t* pm, const int8_t* xq, const float* dx,
                const float* sx, int64_t K, float* out, int64_t N, int ncols, const float* bias) {
  const int64_t KB = K / QK, PB = FMT == Q8_0 ? 256 : 128;
  const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < KB; ++b) {
    const uint8_t* wb = pq + b * PB;
    __m256i dot[MR];  // int32 [8 columns]: the block's integer dot products, row i
    if constexpr (FMT == Q8_0) {
      // s8 x s8 has no AVX2 instruction: |w| (u8) times x carrying w's sign. A pair can reach
      // 2 * 127 * 127, so each product widens to 32 bits at once.
      for (int i = 0; i < MR; ++i) dot[i] = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 32 * g));
        const __m256i u = _mm256_sign_epi8(w, w);
        for (int i = 0; i < MR; ++i) {
          int32_t x4;
          std::memcpy(&x4, xq + i * K + b * QK + 4 * g, 4);
          const __m256i s = _mm256_sign_epi8(_mm256_set1_epi32(x4), w);
          dot[i] = _mm256_add_epi32(dot[i], _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
          __asm__("" : "+x"(dot[i]));  // as below: keeps the sum a chain, not a tree that spills
        }
      }
    } else {
      // u4 (0..15) x s8: a pair is at most 2 * 15 * 127 and 8 of them (a block, per lane) 30,480,
      // under the 32,767 of 16 bits: one widening per block.
      __m256i s16[MR];
      for (int c = 0; c < 4; ++c) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 32 * c));
        const __m256i lo = _mm256_and_si256(raw, nib), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), nib);
        for (int i = 0; i < MR; ++i) {
          int32_t xl, xh;
          std::memcpy(&xl, xq + i * K + b * QK + 4 * c, 4);
          std::memcpy(&xh, xq + i * K + b * QK + 16 + 4 * c, 4);
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi32(xl)),
                                             _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xh)));
          s16[i] = c == 0 ? p : _mm256_add_epi16(s16[i], p);
          // An empty asm that "changes" the sum: GCC otherwise reassociates the 8 adds into a tree
          // over all 32 products of the block, which spills them to the stack (-8% here).
          __asm__("" : "+x"(s16[i]));
        }
      }
      for (int i = 0; i < MR; ++i) dot[i] = _mm256_madd_epi16(s16[i], ones);
    }
    constexpr int64_t SW = scale_words(FMT);
    const __m256 dv = load_scales<FMT>(pd + b * NP * SW);
    for (int i = 0; i < MR; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dv, _mm256_set1_ps(dx[i * KB + b])), _mm256_cvtepi32_ps(dot[i]), acc[i]);
    if constexpr (FMT != Q8_0) {  // + m * sx, with m = -8 d for Q4_0
      const __m256 mv = FMT == Q4_0 ? _mm256_mul_ps(dv, _mm256_set1_ps(-8.f)) : load_scales<FMT>(pm + b * NP * SW);
      for (int i = 0; i < MR; ++i) acc[i] = _mm256_fmadd_ps(mv, _mm256_set1_ps(sx[i * KB + b]), acc[i]);
    }
  }
  const __m256 bv = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();  // bias: padded to the panel
  for (int i = 0; i < MR; ++i) {
    const __m256 v = _mm256_add_ps(acc[i], bv);
    if (ncols == NP) {
      _mm256_storeu_ps(out + i * N, v);
    } else {
      alignas(32) float tmp[NP];
      _mm256_store_ps(tmp, v);
      std::memcpy(out + i * N, tmp, sizeof(float) * ncols);
    }
  }
}

constexpr int MR = 4;            // rows per micro-kernel call: 4 fp32 + 4 integer accumulators
constexpr int64_t ROW_BLOCK = 64;  // rows whose activations (<= 64 x K bytes) stay in L1/L2 ...
constexpr int64_t PANEL_GROUP = 16;  // ... while a group of panels' weights (<= 16 x K x 1.1 bytes) sits in L2

template <int FMT>
void gemm_panels(const uint8_t* pq, const uint16_t* pd, const uint16_t* pm, const float* bias, const int8_t* xq,
                 const float* dx, const float* sx, float* out, int64_t M, int64_t N, int64_t K, int threads) {
  const int64_t KB = K / QK, P = (N + NP - 1) / NP, PB = panel_block_bytes(FMT), SW = scale_words(FMT);
#pragma omp parallel num_threads(threads)
  {
    const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t first = P * tid / nth, last = P * (tid + 1) / nth;
    alignas(32) float bias_pad[NP];
    for (int64_t g0 = first; g0 < last; g0 += PANEL_GROUP) {
      const int64_t g1 = g0 + PANEL_GROUP < last ? g0 + PANEL_GROUP : last;
      for (int64_t r0 = 0; r0 < M; r0 += ROW_BLOCK) {
        const int64_t r1 = r0 + ROW_BLOCK < M ? r0 + ROW_BLOCK : M;
        for (int64_t p = g0; p < g1; ++p) {
          const int ncols = int(N - p * NP < NP ? N - p * NP : NP);
          const float* bp = nullptr;
          if (bias) {
            std::memset(bias_pad, 0, sizeof(bias_pad));
            std::memcpy(bias_pad, bias + p * NP, sizeof(float) * ncols);
            bp = bias_pad;
          }
          const uint8_t* w = pq + p * KB * PB;
          const uint16_t* d = pd + p * KB * NP * SW;
          const uint16_t* mn = pm ? pm + p * KB * NP * SW : nullptr;
          for (int64_t m = r0; m < r1; m += MR) {
            const int64_t rows = r1 - m < MR ? r1 - m : MR;
            const int8_t* x = xq + m * K;
            float* o = out + m * N + p * NP;
            switch (rows) {
              case 1: panel_rows<FMT, 1>(w, d, mn, x, dx + m * KB, sx + m * KB, K, o, N, ncols, bp); break;
              case 2: panel_rows<FMT, 2>(w, d, mn, x, dx + m * KB, sx + m * KB, K, o, N, ncols, bp); break;
              case 3: panel_rows<FMT, 3>(w, d, mn, x, dx + m * KB, sx + m * KB, K, o, N, ncols, bp); break;
              default: panel_rows<FMT, MR>(w, d, mn, x, dx + m * KB, sx + m * KB, K, o, N, ncols, bp); break;
            }
          }
        }
      }
    }
  }
}
#endif

}  // namespace

extern "C" {

// 1 where this build has the panel kernel (AVX2 + FMA + F16C); 0: callers keep another path.
int rg_quant_panels_available() {
#ifdef RG_PANEL_SIMD
  return 1;
#else
  return 0;
#endif
}

// W (cpu_quant.cpp's layout: qs [N, KB * QB], d, mn [N, KB]) -> panels: pq uint8 [P, KB, PB],
// pd, pm [P, KB, 8] (fp16; fp32 for Q4_K; pm only for Q4_1 and Q4_K, null otherwise), P = ceil(N / 8).
// Exact: bytes move.
void rg_quant_pack_panels(int fmt, const uint8_t* qs, const uint16_t* d, const uint16_t* mn, int64_t N, int64_t K,
                          uint8_t* pq, uint16_t* pd, uint16_t* pm) {
  const int64_t KB = K / QK, P = (N + NP - 1) / NP, QB = src_block_bytes(fmt), PB = panel_block_bytes(fmt);
  const int64_t SW = scale_words(fmt);
  std::memset(pq, 0, P * KB * PB);
  std::memset(pd, 0, P * KB * NP * 2 * SW);
  if (pm) std::memset(pm, 0, P * KB * NP * 2 * SW);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t p = n / NP, j = n % NP;
    for (int64_t b = 0; b < KB; ++b) {
      const uint8_t* src = qs + (n * KB + b) * QB;
      uint8_t* dst = pq + (p * KB + b) * PB;
      for (int64_t c = 0; c < QB / 4; ++c)  // chunk c takes source bytes 4c .. 4c + 3
        std::memcpy(dst + 32 * c + 4 * j, src + 4 * c, 4);
      std::memcpy(pd + ((p * KB + b) * NP + j) * SW, d + (n * KB + b) * SW, 2 * SW);
      if (pm) std::memcpy(pm + ((p * KB + b) * NP + j) * SW, mn + (n * KB + b) * SW, 2 * SW);
    }
  }
}

// out fp32 [M, N] = x fp32 [M, K] . W^T (+ bias fp32 [N] or null), W packed as above; x is
// quantized into a scratch buffer first. Only where rg_quant_panels_available().
void rg_quant_gemm_panels(int fmt, const uint8_t* pq, const uint16_t* pd, const uint16_t* pm, const float* bias,
                          const float* x, float* out, int64_t M, int64_t N, int64_t K, int threads) {
#ifdef RG_PANEL_SIMD
  const int64_t KB = K / QK;
  std::vector<int8_t> xq(M * K);
  std::vector<float> dx(M * KB), sx(M * KB);
  rg_quant_rows(x, M, K, xq.data(), dx.data(), sx.data(), threads);
  if (fmt == Q4_0) gemm_panels<Q4_0>(pq, pd, pm, bias, xq.data(), dx.data(), sx.data(), out, M, N, K, threads);
  else if (fmt == Q4_1) gemm_panels<Q4_1>(pq, pd, pm, bias, xq.data(), dx.data(), sx.data(), out, M, N, K, threads);
  else if (fmt == Q4_K) gemm_panels<Q4_K>(pq, pd, pm, bias, xq.data(), dx.data(), sx.data(), out, M, N, K, threads);
  else gemm_panels<Q8_0>(pq, pd, pm, bias, xq.data(), dx.data(), sx.data(), out, M, N, K, threads);
#else
  (void)fmt, (void)pq, (void)pd, (void)pm, (void)bias, (void)x, (void)out, (void)M, (void)N, (void)K, (void)threads;
#endif
}

}  // extern "C"
