// AVX-512 version of attend() in cpu_attention.cpp (included there when the compiler targets
// AVX-512), for head dims that are multiples of 16. Same tasks, same online softmax; what changes:
//  - blocks of 16 keys, so one block's scores for one query row are one 16-lane register;
//  - the 16 dot products of a row are reduced together by a transpose-add tree (45 instructions
//    for 16 dots) instead of 16 horizontal sums;
//  - exp via vscalefps, and the row's output accumulator lives in registers across the block.
#include <immintrin.h>

#include "cpu_vec512.h"

namespace avx512 {

constexpr int KB16 = 16;

// Lane t of the result = sum of the 16 lanes of v[t].
inline __m512 transpose_sum(const __m512 v[16]) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: two partials of v[2i], two of v[2i+1]
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: one partial of each of v[4i .. 4i+3]
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i)  // add 128-bit lanes pairwise
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

// Gemma 2's soft-capping of 16 scores, cap * tanh(x / cap) (cap <= 0: off). Scalar tanh: exact
// like the portable kernel, and only soft-capped models pay for it.
inline __m512 softcap(__m512 x, float cap) {
  if (cap <= 0.f) return x;
  alignas(64) float b[16];
  _mm512_store_ps(b, x);
  for (int i = 0; i < 16; ++i) b[i] = cap * std::tanh(b[i] / cap);
  return _mm512_load_ps(b);
}

template <int NV>
inline const float* row_f32(const float* src, float*) { return src; }  // fp32 pool: read in place
template <int NV>
inline const float* row_f32(const uint16_t* src, float* dst) {          // bf16 -> fp32: shift left 16
  for (int j = 0; j < NV; ++j) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 16 * j));
    _mm512_store_ps(dst + 16 * j, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
  return dst;
}

template <typename T, int NV>
void attend(const Args& a, const Tile& tile, int64_t kvh, int64_t split) {
  constexpr int D = 16 * NV;
  const Task task = make_task(a, tile, kvh, split, KB16);
  const int64_t rows = task.rows, lo = task.lo, hi = task.hi;
  const int32_t* slots = task.slots;

  alignas(64) float qs[MAX_ROWS][D], acc[MAX_ROWS][D];  // scaled queries; unnormalised outputs
  alignas(64) float kbuf[KB16][D], vbuf[KB16][D], zero[D] = {}, p[KB16];
  float m[MAX_ROWS], l[MAX_ROWS];
  int64_t limit[MAX_ROWS];  // last key each row sees (causal over the new tokens)
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = task.q_row(a, r);
    for (int d = 0; d < D; ++d) { qs[r][d] = src[d] * a.sm_scale; acc[r][d] = 0.f; }
    m[r] = -INFINITY; l[r] = 0.f; limit[r] = task.limit(r);
  }
  const T* kbase = static_cast<const T*>(a.k_pool) + kvh * a.head_stride;
  const T* vbase = static_cast<const T*>(a.v_pool) + kvh * a.head_stride;
  const float* krow[KB16];
  const float* vrow[KB16];

  for (int64_t j0 = lo; j0 < hi; j0 += KB16) {
    const int n = int(std::min<int64_t>(KB16, hi - j0));
    for (int64_t j = j0 + KB16; j < std::min(hi, j0 + 2 * KB16); ++j) {  // next block's rows
      const char* kp = reinterpret_cast<const char*>(kbase + slots[j] * a.slot_stride);
      const char* vp = reinterpret_cast<const char*>(vbase + slots[j] * a.slot_stride);
      for (int off = 0; off < D * int(sizeof(T)); off += 64) { _mm_prefetch(kp + off, _MM_HINT_T0); _mm_prefetch(vp + off, _MM_HINT_T0); }
    }
    for (int t = 0; t < KB16; ++t) {  // keys past the block's end read as zeros (finite, masked)
      krow[t] = t < n ? row_f32<NV>(kbase + slots[j0 + t] * a.slot_stride, kbuf[t]) : zero;
      vrow[t] = t < n ? row_f32<NV>(vbase + slots[j0 + t] * a.slot_stride, vbuf[t]) : zero;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t visible = std::min<int64_t>(n, limit[r] - j0 + 1);  // keys j0 .. j0+visible-1
      const int64_t skip = std::max<int64_t>(0, task.first(r) - j0);     // keys before the window
      if (visible <= skip) continue;
      __m512 q[NV], part[KB16];
      for (int j = 0; j < NV; ++j) q[j] = _mm512_load_ps(qs[r] + 16 * j);
      for (int t = 0; t < KB16; ++t) {
        part[t] = _mm512_mul_ps(q[0], _mm512_loadu_ps(krow[t]));
        for (int j = 1; j < NV; ++j) part[t] = _mm512_fmadd_ps(q[j], _mm512_loadu_ps(krow[t] + 16 * j), part[t]);
      }
      const __mmask16 valid = __mmask16((visible >= KB16 ? 0xFFFFu : (1u << visible) - 1) & ~((1u << skip) - 1));
      const __m512 s = _mm512_mask_blend_ps(valid, _mm512_set1_ps(-INFINITY), softcap(transpose_sum(part), a.softcap));
      const float mx = std::max(m[r], _mm512_mask_reduce_max_ps(valid, s));
      const float alpha = ::exp_nonpos(m[r] - mx);  // 0 on the first block (m = -inf)
      const __m512 e = exp_nonpos(_mm512_sub_ps(s, _mm512_set1_ps(mx)));
      l[r] = l[r] * alpha + _mm512_reduce_add_ps(e);
      m[r] = mx;
      _mm512_store_ps(p, e);
      __m512 o[NV];
      for (int j = 0; j < NV; ++j) o[j] = _mm512_mul_ps(_mm512_load_ps(acc[r] + 16 * j), _mm512_set1_ps(alpha));
      for (int t = 0; t < visible; ++t) {
        const __m512 pt = _mm512_set1_ps(p[t]);
        for (int j = 0; j < NV; ++j) o[j] = _mm512_fmadd_ps(pt, _mm512_loadu_ps(vrow[t] + 16 * j), o[j]);
      }
      for (int j = 0; j < NV; ++j) _mm512_store_ps(acc[r] + 16 * j, o[j]);
    }
  }
  write_rows(a, task, split, m, l, &acc[0][0], D);
}

}  // namespace avx512

#ifdef __AVX512BF16__
namespace avx512_bf16 {

using avx512::KB16;

// bf16 queries on a bf16 pool (the usual bf16 model): q, K and V stay in bf16 and every product
// goes through vdpbf16ps (pairs of bf16 products summed into fp32). QK is exact up to fp32
// accumulation order; the softmax weights are rounded to bf16 for PV, as in GPU flash attention,
// while their fp32 sum normalises. NK = D / 32 registers of 32 bf16 per row.
template <int NK>
void attend(const Args& a, const Tile& tile, int64_t kvh, int64_t split) {
  constexpr int D = 32 * NK;
  const Task task = make_task(a, tile, kvh, split, KB16);
  const int64_t rows = task.rows, lo = task.lo, hi = task.hi;
  const int32_t* slots = task.slots;

  alignas(64) float acc[MAX_ROWS][D];            // unnormalised outputs, in vpair order (below)
  alignas(64) uint16_t qs[MAX_ROWS][D], zero[D] = {};
  alignas(64) __m512i vpair[KB16 / 2][2 * NK];  // V of keys 2i, 2i+1 interleaved per d
  alignas(64) uint32_t pw[MAX_ROWS][KB16 / 2];   // softmax weights of keys 2i, 2i+1 as bf16 pairs
  alignas(64) float sbuf[MAX_ROWS][KB16];        // one block's scores per row
  float m[MAX_ROWS], l[MAX_ROWS], alpha[MAX_ROWS];
  int64_t visible[MAX_ROWS];  // keys of the block the row sees: j0 .. j0 + visible - 1
  const uint16_t* krow[KB16];
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = task.q_row(a, r);
    for (int d = 0; d < D; ++d) {  // exact: these fp32 values were converted from bf16
      uint32_t u; std::memcpy(&u, src + d, 4); qs[r][d] = uint16_t(u >> 16); acc[r][d] = 0.f;
    }
    m[r] = -INFINITY; l[r] = 0.f;
  }
  const uint16_t* kbase = static_cast<const uint16_t*>(a.k_pool) + kvh * a.head_stride;
  const uint16_t* vbase = static_cast<const uint16_t*>(a.v_pool) + kvh * a.head_stride;
  const __m512 scale = _mm512_set1_ps(a.sm_scale);

  for (int64_t j0 = lo; j0 < hi; j0 += KB16) {
    const int n = int(std::min<int64_t>(KB16, hi - j0));
    for (int64_t j = j0 + KB16; j < std::min(hi, j0 + 2 * KB16); ++j) {  // next block's rows
      const char* kp = reinterpret_cast<const char*>(kbase + slots[j] * a.slot_stride);
      const char* vp = reinterpret_cast<const char*>(vbase + slots[j] * a.slot_stride);
      for (int off = 0; off < 2 * D; off += 64) { _mm_prefetch(kp + off, _MM_HINT_T0); _mm_prefetch(vp + off, _MM_HINT_T0); }
    }
    for (int t = 0; t < KB16; ++t)  // keys past the block's end read as zeros (finite, masked)
      krow[t] = t < n ? kbase + slots[j0 + t] * a.slot_stride : zero;
    for (int i = 0; i < KB16 / 2; ++i) {  // unpack{lo,hi}_epi16 of rows 2i, 2i+1, chunk by chunk
      const uint16_t* v0 = 2 * i < n ? vbase + slots[j0 + 2 * i] * a.slot_stride : zero;
      const uint16_t* v1 = 2 * i + 1 < n ? vbase + slots[j0 + 2 * i + 1] * a.slot_stride : zero;
      for (int j = 0; j < NK; ++j) {
        const __m512i x = _mm512_loadu_si512(v0 + 32 * j), y = _mm512_loadu_si512(v1 + 32 * j);
        vpair[i][2 * j] = _mm512_unpacklo_epi16(x, y);
        vpair[i][2 * j + 1] = _mm512_unpackhi_epi16(x, y);
      }
    }
    // Three passes over the rows, so that the long dependency chains of different rows
    // (dot -> max -> exp -> weighted sum) overlap in the out-of-order core.
    for (int64_t r = 0; r < rows; ++r) {  // scores, scaled, -inf past the row's last key
      visible[r] = std::max<int64_t>(0, std::min<int64_t>(n, task.limit(r) - j0 + 1));
      const int64_t skip = std::max<int64_t>(0, task.first(r) - j0);  // keys before the window
      if (visible[r] <= skip) visible[r] = 0;
      const uint16_t* const* kr = krow;
      __m512i q[NK];
      __m512 part[KB16];
      for (int j = 0; j < NK; ++j) q[j] = _mm512_load_si512(qs[r] + 32 * j);
      for (int t = 0; t < KB16; ++t) {
        part[t] = _mm512_setzero_ps();
        for (int j = 0; j < NK; ++j)
          part[t] = _mm512_dpbf16_ps(part[t], (__m512bh)q[j], (__m512bh)_mm512_loadu_si512(kr[t] + 32 * j));
      }
      const __mmask16 valid = visible[r] == 0 ? __mmask16(0) : __mmask16(
          (visible[r] >= KB16 ? 0xFFFFu : (1u << visible[r]) - 1) & ~((1u << skip) - 1));
      const __m512 scores = avx512::softcap(_mm512_mul_ps(avx512::transpose_sum(part), scale), a.softcap);
      _mm512_store_ps(sbuf[r], _mm512_mask_blend_ps(valid, _mm512_set1_ps(-INFINITY), scores));
    }
    for (int64_t r = 0; r < rows; ++r) {  // online softmax; weights to bf16 pairs
      if (visible[r] == 0) continue;
      const __m512 s = _mm512_load_ps(sbuf[r]);
      const float mx = std::max(m[r], _mm512_reduce_max_ps(s));
      alpha[r] = ::exp_nonpos(m[r] - mx);  // 0 on the first block (m = -inf)
      const __m512 e = avx512::exp_nonpos(_mm512_sub_ps(s, _mm512_set1_ps(mx)));
      l[r] = l[r] * alpha[r] + _mm512_reduce_add_ps(e);
      m[r] = mx;
      _mm256_store_si256(reinterpret_cast<__m256i*>(pw[r]), (__m256i)_mm512_cvtneps_pbh(e));
    }
    for (int64_t r = 0; r < rows; ++r) {  // acc = alpha acc + P V, two accumulator sets
      if (visible[r] == 0) continue;
      const __m512i (*vp)[2 * NK] = vpair;
      __m512 o[2 * NK], o2[2 * NK];
      for (int j = 0; j < 2 * NK; ++j) {
        o[j] = _mm512_mul_ps(_mm512_load_ps(acc[r] + 16 * j), _mm512_set1_ps(alpha[r]));
        o2[j] = _mm512_setzero_ps();
      }
      int i = 0;
      for (; 2 * i + 2 < visible[r]; i += 2) {
        const __m512bh p0 = (__m512bh)_mm512_set1_epi32(int(pw[r][i]));
        const __m512bh p1 = (__m512bh)_mm512_set1_epi32(int(pw[r][i + 1]));
        for (int j = 0; j < 2 * NK; ++j) {
          o[j] = _mm512_dpbf16_ps(o[j], p0, (__m512bh)vp[i][j]);
          o2[j] = _mm512_dpbf16_ps(o2[j], p1, (__m512bh)vp[i + 1][j]);
        }
      }
      for (; 2 * i < visible[r]; ++i) {
        const __m512bh p0 = (__m512bh)_mm512_set1_epi32(int(pw[r][i]));
        for (int j = 0; j < 2 * NK; ++j) o[j] = _mm512_dpbf16_ps(o[j], p0, (__m512bh)vp[i][j]);
      }
      for (int j = 0; j < 2 * NK; ++j) _mm512_store_ps(acc[r] + 16 * j, _mm512_add_ps(o[j], o2[j]));
    }
  }
  // vpair order: register 2j (2j+1) lane e holds d = 32j + 8 (e / 4) + e % 4 (+ 4)
  alignas(64) float out[MAX_ROWS][D];
  for (int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < 2 * NK; ++j)
      for (int e = 0; e < 16; ++e) out[r][32 * (j / 2) + 8 * (e / 4) + 4 * (j % 2) + e % 4] = acc[r][16 * j + e];
  write_rows(a, task, split, m, l, &out[0][0], D);
}

}  // namespace avx512_bf16
#endif  // __AVX512BF16__
