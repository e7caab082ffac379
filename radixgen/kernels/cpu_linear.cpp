// bf16 linear layers (y = x W^T + b) for CPU decode steps, up to 256 rows, on AMX tiles, called
// through ctypes from kernels/cpu_layer_ops.py.
//
// Why: a decode step with few requests streams every weight once, so it is bound by memory and by
// per-call overhead. oneDNN's prepacked AMX matmuls read SmolLM2's layer weights at only 9-15 GB/s
// here for 1-32 rows (three of a layer's four matmuls are under 4 MB, and it pays its own fixed
// costs on each); the plain AMX loop below read them at 20-35 GB/s. A layer's matmuls, best of
// 15 (this shared machine is noisy): 1.3-2x less time than oneDNN at 16-48 rows, 1.1-1.3x at 64,
// even at 128, 1.1-1.8x at 256; slower from ~1500 rows, so long prefill chunks stay on oneDNN.
// Where the CPU has AVX512-BF16 but no AMX, a vdpbf16ps loop does the same for 1-2 rows only
// (compute-bound past that).
//
// Layout: W [N, K] is repacked once into tiles of 32 outputs, pairs of k interleaved (the VNNI
// layout both instructions want): wp[n / 32][k / 2][n % 32][k % 2]. A tile of outputs is one
// contiguous stream of K * 64 bytes; for AMX, 16 k-pairs of it are two B tiles (row stride 128 B).
#include <cstdint>
#include <cstdlib>

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu_vec512.h"

namespace {

constexpr int64_t TN = 32;  // outputs per tile
constexpr int AMX_MAX_ROWS = 256;  // every decode batch; oneDNN keeps long prefill chunks

// Rows m0 .. m0 + MB - 1 of x against one tile; acc[2i], acc[2i+1] hold row i's 32 outputs.
template <int MB>
void tile_rows(const uint16_t* x, int64_t K, const uint16_t* wt, const uint16_t* bias, uint16_t* out,
               int64_t N) {
  __m512 acc[2 * MB];
#pragma GCC unroll 8
  for (int i = 0; i < 2 * MB; ++i) acc[i] = _mm512_setzero_ps();
  const int32_t* xp = reinterpret_cast<const int32_t*>(x);  // k pairs of each row
  const int64_t K2 = K / 2;
  for (int64_t kk = 0; kk < K2; ++kk) {
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(wt + kk * 2 * TN);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(wt + kk * 2 * TN + TN);
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(xp[i * K2 + kk]);  // the pair, to every lane
      acc[2 * i] = _mm512_dpbf16_ps(acc[2 * i], xb, w0);
      acc[2 * i + 1] = _mm512_dpbf16_ps(acc[2 * i + 1], xb, w1);
    }
  }
  const __m512 b0 = bias ? avx512::load_bf16(bias) : _mm512_setzero_ps();
  const __m512 b1 = bias ? avx512::load_bf16(bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) {
    avx512::store_bf16(out + i * N, _mm512_add_ps(acc[2 * i], b0));
    avx512::store_bf16(out + i * N + 16, _mm512_add_ps(acc[2 * i + 1], b1));
  }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
// Rows go in passes of up to 32, two blocks of up to 16 (a tile's height). Tiles 0, 1 / 2, 3: C of
// block 0 / 1, rows x 16 outputs in fp32 each; 4 / 5: A, rows x 32 k of x; 6, 7: B, 16 k-pairs x
// 16 outputs each, loaded once per k step for both blocks.
struct alignas(64) TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

void configure(int r0, int r1) {
  TileConfig cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64;
  cfg.rows[0] = cfg.rows[1] = cfg.rows[4] = uint8_t(r0);
  cfg.rows[2] = cfg.rows[3] = cfg.rows[5] = uint8_t(r1 > 0 ? r1 : 1);
  cfg.rows[6] = cfg.rows[7] = 16;
  _tile_loadconfig(&cfg);
}

void amx_rows(const uint16_t* x, const uint16_t* wp, const uint16_t* bias, uint16_t* out, int64_t M,
              int64_t N, int64_t K, int threads) {
  const int64_t tiles = N / TN;
  // Each thread owns a contiguous share of the output tiles and walks it in blocks of BLOCK tiles
  // (up to 1 MB of weights: stays in its L2), each block pass by pass over the rows, so a pass's
  // rows of x (32 x K) stay in L1 while the block's weights stream from L2.
  constexpr int64_t BLOCK = 16;
#pragma omp parallel num_threads(threads)
  {
    alignas(64) float c[32][TN];
    int cur0 = -1, cur1 = -1;  // tile state is per thread: each one configures its own
    const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t first = tiles * tid / nth, last = tiles * (tid + 1) / nth;
    for (int64_t b0 = first; b0 < last; b0 += BLOCK) {
      const int64_t b1 = b0 + BLOCK < last ? b0 + BLOCK : last;
      for (int64_t m0 = 0; m0 < M; m0 += 32) {
        const int rows = int(M - m0 < 32 ? M - m0 : 32), r0 = rows < 16 ? rows : 16, r1 = rows - r0;
        if (r0 != cur0 || r1 != cur1) configure(cur0 = r0, cur1 = r1);
        const uint16_t* xm = x + m0 * K;
        for (int64_t t = b0; t < b1; ++t) {
          const uint16_t* wt = wp + t * TN * K;
          _tile_zero(0);
          _tile_zero(1);
          if (r1) { _tile_zero(2); _tile_zero(3); }
          for (int64_t k0 = 0; k0 < K; k0 += 32) {
            _tile_loadd(6, wt + k0 * TN, 4 * TN);       // k-pairs k0/2 .. k0/2+15, outputs 0-15
            _tile_loadd(7, wt + k0 * TN + TN, 4 * TN);  // outputs 16-31
            _tile_loadd(4, xm + k0, K * 2);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            if (r1) {
              _tile_loadd(5, xm + 16 * K + k0, K * 2);
              _tile_dpbf16ps(2, 5, 6);
              _tile_dpbf16ps(3, 5, 7);
            }
          }
          _tile_stored(0, &c[0][0], TN * 4);
          _tile_stored(1, &c[0][16], TN * 4);
          if (r1) { _tile_stored(2, &c[16][0], TN * 4); _tile_stored(3, &c[16][16], TN * 4); }
          const __m512 bias0 = bias ? avx512::load_bf16(bias + t * TN) : _mm512_setzero_ps();
          const __m512 bias1 = bias ? avx512::load_bf16(bias + t * TN + 16) : _mm512_setzero_ps();
          for (int m = 0; m < rows; ++m) {
            uint16_t* o = out + (m0 + m) * N + t * TN;
            avx512::store_bf16(o, _mm512_add_ps(_mm512_load_ps(c[m]), bias0));
            avx512::store_bf16(o + 16, _mm512_add_ps(_mm512_load_ps(c[m] + 16), bias1));
          }
        }
      }
    }
    _tile_release();
  }
}

// Linux hands out the AMX register state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA).
// RADIXGEN_NO_AMX=1 keeps to the vdpbf16ps loop (how the tests reach it on an AMX machine).
bool amx_usable() {
  static const bool ok = std::getenv("RADIXGEN_NO_AMX") == nullptr && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return ok;
}
#else
bool amx_usable() { return false; }
void amx_rows(const uint16_t*, const uint16_t*, const uint16_t*, uint16_t*, int64_t, int64_t, int64_t, int) {}
#endif

}  // namespace

extern "C" {

// The most rows rg_linear_small is worth calling for: AMX_MAX_ROWS with AMX, 2 with vdpbf16ps only.
int rg_linear_small_max_rows() { return amx_usable() ? AMX_MAX_ROWS : 2; }

// w: bf16 [N, K] -> wp: bf16 [N / 32, K / 2, 32, 2] (N % 32 == 0, K % 32 == 0, checked by the caller).
void rg_pack_linear_small(const uint16_t* w, uint16_t* wp, int64_t N, int64_t K) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      wp[((n / TN) * (K / 2) + k / 2) * 2 * TN + (n % TN) * 2 + k % 2] = w[n * K + k];
}

// x: bf16 [M, K] contiguous (any M; worth it up to rg_linear_small_max_rows()); wp as packed above; bias: bf16 [N]
// or null; out: bf16 [M, N]. Sums in fp32 and rounds to bf16 once, as oneDNN does.
void rg_linear_small(const uint16_t* x, const uint16_t* wp, const uint16_t* bias, uint16_t* out,
                     int64_t M, int64_t N, int64_t K, int threads) {
  if (amx_usable()) {
    amx_rows(x, wp, bias, out, M, N, K, threads);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < N / TN; ++t) {
    const uint16_t* wt = wp + t * TN * K;
    const uint16_t* bt = bias ? bias + t * TN : nullptr;
    for (int64_t m0 = 0; m0 < M; m0 += 4) {  // four rows at a time (8 accumulators), W from L1/L2
      const uint16_t* xm = x + m0 * K;
      uint16_t* om = out + m0 * N + t * TN;
      switch (M - m0) {
        case 1: tile_rows<1>(xm, K, wt, bt, om, N); break;
        case 2: tile_rows<2>(xm, K, wt, bt, om, N); break;
        case 3: tile_rows<3>(xm, K, wt, bt, om, N); break;
        default: tile_rows<4>(xm, K, wt, bt, om, N); break;
      }
    }
  }
}

}  // extern "C"

#else  // no AVX512-BF16: the Python side sees 0 and keeps oneDNN / torch for every batch size
extern "C" {
int rg_linear_small_max_rows() { return 0; }
void rg_pack_linear_small(const uint16_t*, uint16_t*, int64_t, int64_t) {}
void rg_linear_small(const uint16_t*, const uint16_t*, const uint16_t*, uint16_t*, int64_t, int64_t,
                     int64_t, int) {}
}
#endif
