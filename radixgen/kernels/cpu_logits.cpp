// Logit ops for the CPU engine, called through ctypes from kernels/cpu.py: the grammar bitmask and
// the greedy argmax. Both read the [B, V] logits in place, in the model dtype, one row per task:
// torch's bf16 max() over a batch-256 step's 256 x 49152 logits took 6-8 ms, this ~1 ms.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include "cpu_vec512.h"
#define RG_VEC512 1
#endif

#include "cpu_scalar.h"

namespace {

// Index of the first maximum of x[0 : n]. NaNs are skipped, and a row with nothing above -inf
// gives 0, as torch's max() does for an all -inf row.
template <typename T>
int64_t argmax_row(const T* x, int64_t n) {
  int64_t i = 0, best_i = -1;
  float best = -INFINITY;
#ifdef RG_VEC512
  if (n >= 16) {
    // Lane j tracks the first maximum among entries j, j+16, j+32, ...: strictly greater wins,
    // so each lane keeps its earliest index; the lanes are merged below.
    __m512 vbest = _mm512_set1_ps(-INFINITY);
    __m512i vidx = _mm512_set1_epi32(-1), cur = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    for (; i + 16 <= n; i += 16) {
      __m512 v;
      if constexpr (sizeof(T) == 2)
        v = avx512::load_bf16(x + i);
      else
        v = _mm512_loadu_ps(reinterpret_cast<const float*>(x + i));
      const __mmask16 gt = _mm512_cmp_ps_mask(v, vbest, _CMP_GT_OQ);
      vbest = _mm512_mask_mov_ps(vbest, gt, v);
      vidx = _mm512_mask_mov_epi32(vidx, gt, cur);
      cur = _mm512_add_epi32(cur, step);
    }
    alignas(64) float b[16];
    alignas(64) int32_t bi[16];
    _mm512_store_ps(b, vbest);
    _mm512_store_si512(bi, vidx);
    for (int j = 0; j < 16; ++j)
      if (bi[j] >= 0 && (b[j] > best || (b[j] == best && bi[j] < best_i))) { best = b[j]; best_i = bi[j]; }
  }
#endif
  for (; i < n; ++i) {
    float v;
    if constexpr (sizeof(T) == 2) v = bf2f(x[i]); else v = x[i];
    if (v > best) { best = v; best_i = i; }
  }
  return best_i < 0 ? 0 : best_i;
}

}  // namespace

extern "C" {

// logits [B, V] (fp32 when is_bf16 == 0, else bf16) with row stride -> out int64 [B].
void rg_argmax(const void* logits, int is_bf16, int64_t row_stride, int64_t batch, int64_t vocab,
               int64_t* out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (batch > 1)
  for (int64_t b = 0; b < batch; ++b) {
    out[b] = is_bf16 ? argmax_row(static_cast<const uint16_t*>(logits) + b * row_stride, vocab)
                     : argmax_row(static_cast<const float*>(logits) + b * row_stride, vocab);
  }
}

// logits [B, V] (fp32 when is_bf16 == 0, else bf16) with row stride; bitmask int32 [B, >= ceil(V/32)]:
// bit j of word w allows token 32 w + j; every other logit becomes -inf.
void rg_apply_bitmask(void* logits, int is_bf16, int64_t row_stride, const int32_t* bitmask,
                      int64_t mask_stride, int64_t batch, int64_t vocab, int threads) {
  const int64_t words = (vocab + 31) / 32;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t w = 0; w < words; ++w) {
      const uint32_t bits = uint32_t(bitmask[b * mask_stride + w]);
      if (bits == 0xFFFFFFFFu) continue;  // all 32 allowed: the common case for free text
      const int64_t end = std::min<int64_t>(32, vocab - 32 * w);
      for (int64_t j = 0; j < end; ++j) {
        if (bits >> j & 1u) continue;
        const int64_t i = b * row_stride + 32 * w + j;
        if (is_bf16) static_cast<uint16_t*>(logits)[i] = 0xFF80;  // bf16 -inf
        else static_cast<float*>(logits)[i] = -INFINITY;
      }
    }
  }
}

}  // extern "C"
