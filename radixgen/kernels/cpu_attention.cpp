// Paged attention over the KV pool on the CPU, called through ctypes from kernels/cpu.py.
//
// One task = (request, tile of its new tokens, kv head, key split). It streams the request's keys
// straight from the pool through its req_to_slot row, KB keys at a time, with an online softmax
// (flash-attention style), so no padded copy of K/V is ever made: decode reads K and V once.
// Pools are fp32 or bf16 and everything accumulates in fp32 (see cpu_attention_avx512.h for the
// AVX-512 and AVX512-BF16 versions of the task). Threads come from OpenMP, which resolves to the
// libgomp torch has already loaded; the caller passes torch's thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_scalar.h"

namespace {

constexpr int KB = 32;         // keys per block: their scores are softmaxed together
constexpr int MAX_ROWS = 64;   // query rows (new tokens x query heads of one kv head) per task
constexpr int MAX_D = 256;

inline void load_row(const float* src, float* dst, int d) { std::memcpy(dst, src, d * sizeof(float)); }
inline void load_row(const uint16_t* src, float* dst, int d) {
#pragma omp simd
  for (int i = 0; i < d; ++i) dst[i] = bf2f(src[i]);
}

struct Tile { int64_t b, first, count; };  // request b, its new tokens first : first + count

struct Args {
  const float* q; float* out; float* partial;
  const void* k_pool; const void* v_pool; int64_t slot_stride, head_stride;
  const int32_t* req_to_slot; int64_t table_stride;
  const int64_t* req_rows; const int64_t* prefix_lens; const int64_t* extend_start;
  int64_t H, KVH, D, splits; float sm_scale;
  int64_t window;  // sliding window (keys a row sees, itself included); 0 = every earlier key
  float softcap;   // scores -> softcap * tanh(scores / softcap) before the softmax (Gemma 2); 0 = off
  bool q_is_bf16;  // q's fp32 values are exact bf16 (a bf16 model): enables the vdpbf16ps kernel
};

// What one task computes: the g query heads of kv head kvh for the tile's tokens. Row r is (new
// token r / g of the tile, query head kvh * g + r % g) and sees keys first(r) ..= last0 + r / g
// (causal; first(r) > 0 only under a sliding window). Keys are visited from lo to hi (one split of
// the keys the tile's tokens see).
struct Task {
  int64_t g, rows, head0, tok0, last0, lo, hi;  // last0: the tile's first token's last key
  int64_t window;                               // 0 = none
  const int32_t* slots;                         // the request's req_to_slot row
  int64_t limit(int64_t r) const { return last0 + r / g; }
  int64_t first(int64_t r) const { return window > 0 ? std::max<int64_t>(0, limit(r) - window + 1) : 0; }
  const float* q_row(const Args& a, int64_t r) const {
    return a.q + ((tok0 + r / g) * a.H + head0 + r % g) * a.D;
  }
};

inline Task make_task(const Args& a, const Tile& tile, int64_t kvh, int64_t split, int block) {
  Task t;
  t.g = a.H / a.KVH; t.rows = tile.count * t.g; t.head0 = kvh * t.g;
  t.tok0 = a.extend_start[tile.b] + tile.first;
  t.last0 = a.prefix_lens[tile.b] + tile.first;
  t.slots = a.req_to_slot + a.req_rows[tile.b] * a.table_stride;
  t.window = a.window;
  const int64_t key_end = t.last0 + tile.count, key_begin = t.first(0);  // row 0 sees the earliest keys
  const int64_t chunk = ((key_end - key_begin + a.splits - 1) / a.splits + block - 1) / block * block;
  t.lo = key_begin + split * chunk; t.hi = std::min(key_end, t.lo + chunk);
  return t;
}

// Stores the finished rows of a task: normalised into out, or as (max, sum, acc) partials to merge.
void write_rows(const Args& a, const Task& t, int64_t split, const float* m, const float* l,
                const float* acc, int64_t acc_stride) {
  const int64_t D = a.D;
  for (int64_t r = 0; r < t.rows; ++r) {
    const int64_t row = (t.tok0 + r / t.g) * a.H + t.head0 + r % t.g;  // flat (token, head)
    const float* src = acc + r * acc_stride;
    if (a.splits == 1) {
      const float inv = 1.f / l[r];
      for (int64_t d = 0; d < D; ++d) a.out[row * D + d] = src[d] * inv;
    } else {
      float* dst = a.partial + (row * a.splits + split) * (D + 2);
      dst[0] = m[r]; dst[1] = l[r];
      for (int64_t d = 0; d < D; ++d) dst[2 + d] = src[d];
    }
  }
}

// Runs one task (portable loops; cpu_attention_avx512.h has the AVX-512 ones).
// DT > 0 fixes the head dim at compile time so the inner loops unroll.
template <typename T, int DT>
void attend(const Args& a, const Tile& tile, int64_t kvh, int64_t split) {
  const int D = DT > 0 ? DT : int(a.D);
  const Task task = make_task(a, tile, kvh, split, KB);
  const int64_t rows = task.rows, lo = task.lo, hi = task.hi;
  const int32_t* slots = task.slots;

  alignas(64) float qs[MAX_ROWS][MAX_D], acc[MAX_ROWS][MAX_D], s[MAX_ROWS][KB];
  alignas(64) float kbuf[KB][MAX_D], vbuf[KB][MAX_D];  // the block's keys and values in fp32
  float m[MAX_ROWS], l[MAX_ROWS];
  int64_t limit[MAX_ROWS], first[MAX_ROWS];
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = task.q_row(a, r);
    for (int d = 0; d < D; ++d) { qs[r][d] = src[d] * a.sm_scale; acc[r][d] = 0.f; }
    m[r] = -INFINITY; l[r] = 0.f; limit[r] = task.limit(r); first[r] = task.first(r);
  }
  const T* kbase = static_cast<const T*>(a.k_pool) + kvh * a.head_stride;
  const T* vbase = static_cast<const T*>(a.v_pool) + kvh * a.head_stride;

  const int64_t row_bytes = D * int64_t(sizeof(T));
  for (int64_t j0 = lo; j0 < hi; j0 += KB) {
    const int n = int(std::min<int64_t>(KB, hi - j0));
    // The next block's rows, scattered over the pool by the slot table, are fetched while this one
    // computes: a decode step reads every cached row once (fp32, SmolLM2, 300 tokens: ~14 MB), and
    // waiting on each row's miss cost ~6% of a batch-1 step.
    for (int64_t j = j0 + KB; j < std::min(hi, j0 + 2 * KB); ++j)
      for (int64_t b = 0; b < row_bytes; b += 64) {
        __builtin_prefetch(reinterpret_cast<const char*>(kbase + slots[j] * a.slot_stride) + b);
        __builtin_prefetch(reinterpret_cast<const char*>(vbase + slots[j] * a.slot_stride) + b);
      }
    for (int t = 0; t < n; ++t) {  // this block's rows in fp32, once for all query rows
      load_row(kbase + slots[j0 + t] * a.slot_stride, kbuf[t], D);
      load_row(vbase + slots[j0 + t] * a.slot_stride, vbuf[t], D);
    }
    for (int64_t r = 0; r < rows; ++r) {  // scores, -inf where the key is in row r's future (or
      for (int t = 0; t < n; ++t) {         // before its window)
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < D; ++d) dot += qs[r][d] * kbuf[t][d];
        if (a.softcap > 0.f) dot = a.softcap * std::tanh(dot / a.softcap);
        s[r][t] = j0 + t <= limit[r] && j0 + t >= first[r] ? dot : -INFINITY;
      }
    }
    for (int64_t r = 0; r < rows; ++r) {  // online softmax, then weights times values
      float mx = m[r];
      for (int t = 0; t < n; ++t) mx = std::max(mx, s[r][t]);
      if (mx == -INFINITY) continue;  // no visible key yet: nothing to add
      const float alpha = exp_nonpos(m[r] - mx);
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int t = 0; t < n; ++t) { s[r][t] = exp_nonpos(s[r][t] - mx); sum += s[r][t]; }
      l[r] = l[r] * alpha + sum; m[r] = mx;
      for (int d = 0; d < D; ++d) acc[r][d] *= alpha;
      for (int t = 0; t < n; ++t) {
#pragma omp simd
        for (int d = 0; d < D; ++d) acc[r][d] += s[r][t] * vbuf[t][d];
      }
    }
  }
  write_rows(a, task, split, m, l, &acc[0][0], MAX_D);
}

// Merges the key splits of one (token, head): out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
void combine(const Args& a, int64_t row) {
  const int64_t D = a.D;
  const float* p = a.partial + row * a.splits * (D + 2);
  float mx = -INFINITY, denom = 0.f;
  for (int64_t s = 0; s < a.splits; ++s) mx = std::max(mx, p[s * (D + 2)]);
  float* o = a.out + row * D;
  for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
  for (int64_t s = 0; s < a.splits; ++s) {
    const float* ps = p + s * (D + 2);
    if (ps[0] == -INFINITY) continue;  // this split saw none of the row's keys
    const float w = exp_nonpos(ps[0] - mx);
    denom += w * ps[1];
    for (int64_t d = 0; d < D; ++d) o[d] += w * ps[2 + d];
  }
  for (int64_t d = 0; d < D; ++d) o[d] /= denom;
}

}  // namespace

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#include "cpu_attention_avx512.h"
#define RG_AVX512 1
#endif

namespace {

template <typename T>
void run(const Args& a, const std::vector<Tile>& tiles, int threads) {
  void (*fn)(const Args&, const Tile&, int64_t, int64_t) =
      a.D == 64 ? attend<T, 64> : a.D == 128 ? attend<T, 128> : attend<T, 0>;
#ifdef RG_AVX512
  if (a.D == 64) fn = avx512::attend<T, 4>;
  else if (a.D == 128) fn = avx512::attend<T, 8>;
  else if (a.D == 256) fn = avx512::attend<T, 16>;
#ifdef __AVX512BF16__
  if (std::is_same<T, uint16_t>::value && a.q_is_bf16) {
    if (a.D == 64) fn = avx512_bf16::attend<2>;
    else if (a.D == 128) fn = avx512_bf16::attend<4>;
    else if (a.D == 256) fn = avx512_bf16::attend<8>;
  }
#endif
#endif
  const int64_t per_tile = a.KVH * a.splits, n_tasks = int64_t(tiles.size()) * per_tile;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t i = 0; i < n_tasks; ++i) fn(a, tiles[i / per_tile], (i % per_tile) / a.splits, i % a.splits);
}

}  // namespace

extern "C" {

// Key splits per (request tile, kv head) task for a batch with these extend lengths: split only
// when the tasks alone cannot keep 4 x threads busy, and never below SPLIT_MIN_KEYS keys a split
// (a shorter split costs more to merge than it saves). The one policy for cpu.py and the stack.
int64_t rg_attention_splits(const int64_t* extend_lens, int64_t batch, int64_t KVH, int64_t group,
                            int64_t max_seq, int threads) {
  constexpr int64_t SPLIT_MIN_KEYS = 256;
  const int64_t per_tile = std::max<int64_t>(1, MAX_ROWS / group);  // new tokens per task
  int64_t tiles = 0;
  for (int64_t b = 0; b < batch; ++b) tiles += (extend_lens[b] + per_tile - 1) / per_tile;
  const int64_t tasks = tiles * KVH, want = 4 * int64_t(threads);
  if (tasks == 0 || tasks >= want) return 1;
  return std::max<int64_t>(1, std::min((want + tasks - 1) / tasks, max_seq / SPLIT_MIN_KEYS));
}

// q: fp32 [T, H, D]; out: fp32 [T, H, D]; partial: fp32 [T, H, splits, D + 2] when splits > 1.
// Pools [S, KVH, D] with element strides (slot_stride, head_stride), dtype 0 = fp32, 1 = bf16.
// window > 0: each token sees only its last `window` keys (itself included), as transformers' sliding window.
// softcap > 0: the scaled scores are soft-capped, softcap * tanh(score / softcap), before the softmax.
// Returns 0, or 1 when a shape is past the kernel's fixed limits (the caller then uses torch).
int rg_attention(int pool_dtype, const float* q, float* out, float* partial,
                 const void* k_pool, const void* v_pool, int64_t slot_stride, int64_t head_stride,
                 const int32_t* req_to_slot, int64_t table_stride, const int64_t* req_rows,
                 const int64_t* prefix_lens, const int64_t* extend_lens, int64_t batch,
                 int64_t H, int64_t KVH, int64_t D, float sm_scale, int64_t window, float softcap,
                 int64_t splits, int q_is_bf16, int threads) {
  const int64_t g = H / KVH;
  if (D > MAX_D || g > MAX_ROWS || H % KVH != 0 || splits < 1 || pool_dtype < 0 || pool_dtype > 1 || window < 0 || softcap < 0.f)
    return 1;
  std::vector<int64_t> extend_start(batch);
  std::vector<Tile> tiles;
  const int64_t tokens_per_tile = MAX_ROWS / g;
  int64_t total = 0;
  for (int64_t b = 0; b < batch; ++b) {
    extend_start[b] = total;
    for (int64_t i = 0; i < extend_lens[b]; i += tokens_per_tile)
      tiles.push_back({b, i, std::min(tokens_per_tile, extend_lens[b] - i)});
    total += extend_lens[b];
  }
  const Args a{q, out, partial, k_pool, v_pool, slot_stride, head_stride, req_to_slot, table_stride,
               req_rows, prefix_lens, extend_start.data(), H, KVH, D, splits, sm_scale, window,
               softcap, q_is_bf16 != 0};
  if (pool_dtype == 0) run<float>(a, tiles, threads); else run<uint16_t>(a, tiles, threads);
  if (splits > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < total * H; ++row) combine(a, row);
  }
  return 0;
}

// Copies each request's K and V rows (row_bytes each, all kv heads of a slot) from the pools into
// padded [B, max_seq, row_bytes] buffers for the SDPA path of long extends; rows past seq_len are
// zeroed so that masked keys stay finite.
void rg_gather_kv(const void* k_pool, const void* v_pool, int64_t slot_bytes, int64_t row_bytes,
                  const int32_t* req_to_slot, int64_t table_stride, const int64_t* req_rows,
                  const int64_t* seq_lens, int64_t batch, int64_t max_seq, void* k_out, void* v_out,
                  int threads) {
  constexpr int64_t CHUNK = 256;  // keys per task
  const int64_t chunks = (max_seq + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)  // a parked thread holds up no one
  for (int64_t task = 0; task < batch * chunks; ++task) {
    const int64_t b = task / chunks, j0 = task % chunks * CHUNK, j1 = std::min(max_seq, j0 + CHUNK);
    const int32_t* slots = req_to_slot + req_rows[b] * table_stride;
    for (int64_t j = j0; j < j1; ++j) {
      char* kd = static_cast<char*>(k_out) + (b * max_seq + j) * row_bytes;
      char* vd = static_cast<char*>(v_out) + (b * max_seq + j) * row_bytes;
      if (j < seq_lens[b]) {
        std::memcpy(kd, static_cast<const char*>(k_pool) + slots[j] * slot_bytes, row_bytes);
        std::memcpy(vd, static_cast<const char*>(v_pool) + slots[j] * slot_bytes, row_bytes);
      } else {
        std::memset(kd, 0, row_bytes);
        std::memset(vd, 0, row_bytes);
      }
    }
  }
}

}  // extern "C"
