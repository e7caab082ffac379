// AVX-512 helpers shared by the CPU kernels compiled for a CPU that has AVX-512: exp for
// non-positive arguments and bf16 <-> fp32 conversions of 16 lanes.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace avx512 {

// exp(x) for x <= 0, 0 below -87 (masked -inf scores); same polynomial as exp_nonpos.
inline __m512 exp_nonpos(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.f);
  const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
  x = _mm512_max_ps(x, lo);
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 fi = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, fi);
  __m512 p = _mm512_set1_ps(2.187750476e-04f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.238782148e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.684580452e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.548042633e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402305020e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931469287e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, fi));
}

// 16 bf16 -> fp32 (exact: a bf16 is the top half of an fp32).
inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// Masked version for a row's tail: lanes past `m` read as 0.
inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

#ifdef __AVX512BF16__
// fp32 -> bf16 rounded to nearest even, as torch rounds (vcvtneps2bf16).
inline __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }
#else
inline __m256i to_bf16(__m512 x) {  // the same rounding in integer ops; NaN made quiet
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(r);
}
#endif

inline void store_bf16(uint16_t* p, __m512 x) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16(x)); }
inline void store_bf16(uint16_t* p, __m512 x, __mmask16 m) { _mm256_mask_storeu_epi16(p, m, to_bf16(x)); }

// x rounded to bf16 and back: where the torch reference rounds an intermediate.
inline __m512 round_bf16(__m512 x) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(to_bf16(x)), 16));
}

inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }

}  // namespace avx512
