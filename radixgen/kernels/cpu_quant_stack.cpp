// A Llama-family decoder stack over block-quantized weights, for decode steps (any batch) and forwards
// of a few rows, in one call from kernels/cpu_quant_stack.py.
//
// Why: at batch 1 a step of SmolLM2-135M is 30 layers x ~10 ops. Called one by one from Python,
// their dispatch (module calls, tensor allocations, ctypes) cost as much as the weights' read: on
// an AVX2-only AMD EPYC (Zen 3), 2 threads, 8.6 ms of a 17.8 ms step was outside the matmuls. Here
// the same ops (the library's own: rg_quant_gemm_panels, rg_attention and the fp32 layer ops) run back to
// back on buffers allocated once per call, so a step costs what its kernels cost.
//
// The linears are cpu_quant_panel.cpp's (or, with scalar, cpu_quant.cpp's plain C++ path).
// Semantics are those of layers.DecoderLayer with the fused fp32 ops: pre-norm, residual stream
// carried beside the normed activations, rotary (halves layout, full head) + KV write, SiLU * up.
// Not covered (the caller checks and takes the Python path): sliding windows, soft-capping, q/k
// norms, partial rotary, GeLU, float linears.
#include <cstdint>
#include <vector>

#include "cpu_ops.h"

namespace {

// One linear in the caller's table: 7 int64 words (fmt, qs, d, m, bias, N, K); null m / bias = 0.
struct QLinear {
  int fmt; const uint8_t* qs; const uint16_t* d; const uint16_t* m; const float* bias; int64_t N, K;
};
constexpr int64_t LINEAR_WORDS = 7;
// One layer: input norm, post-attention norm (fp32 [hidden] each), then qkv, o, gate_up, down.
constexpr int64_t LAYER_WORDS = 2 + 4 * LINEAR_WORDS;

QLinear read_linear(const int64_t* w) {
  return {int(w[0]), reinterpret_cast<const uint8_t*>(w[1]), reinterpret_cast<const uint16_t*>(w[2]),
          reinterpret_cast<const uint16_t*>(w[3]), reinterpret_cast<const float*>(w[4]), w[5], w[6]};
}

// scalar: the weights are in cpu_quant.cpp's block layout and take its portable path; otherwise
// they are panels (cpu_quant_panel.cpp).
void linear(const QLinear& l, const float* x, float* out, int64_t M, int scalar, int threads) {
  if (scalar) rg_quant_gemm(l.fmt, l.qs, l.d, l.m, l.bias, x, out, M, l.N, l.K, threads);
  else rg_quant_gemm_panels(l.fmt, l.qs, l.d, l.m, l.bias, x, out, M, l.N, l.K, threads);
}

}  // namespace

extern "C" {

// table: int64 [n_layers, LAYER_WORDS] (see above). x: fp32 [T, hidden], the embeddings; it is
// used as the residual stream and overwritten. out: fp32 [T, hidden], final_norm(stream after the
// last layer). cos, sin: fp32 [T, D] rows of the rotary tables; slots: int64 [T] KV slots of the
// new tokens. Pools [L, S, KVH, D], fp32 (pool_dtype 0) or bf16 (1), with element strides
// (layer, slot, head); the attention
// arguments are rg_attention's. Returns 0, or rg_attention's 1 (shapes past its limits, checked
// by the caller first).
int rg_quant_stack(const int64_t* table, int64_t n_layers, float* x, float* out, const float* final_norm,
                   float eps, const float* cos, const float* sin, const int64_t* slots, int pool_dtype,
                   void* k_pool, void* v_pool, int64_t layer_stride, int64_t slot_stride, int64_t head_stride,
                   const int32_t* req_to_slot, int64_t table_stride, const int64_t* req_rows,
                   const int64_t* prefix_lens, const int64_t* extend_lens, int64_t batch, int64_t max_seq,
                   int64_t T, int64_t hidden, int64_t inter, int64_t H, int64_t KVH, int64_t D,
                   float sm_scale, int scalar, int threads) {
  const int64_t qkv_n = (H + 2 * KVH) * D;
  const int64_t splits = rg_attention_splits(extend_lens, batch, KVH, H / KVH, max_seq, threads);
  std::vector<float> h(T * hidden), qkv(T * qkv_n), q(T * H * D), attn(T * H * D), proj(T * hidden),
      gate_up(T * 2 * inter), act(T * inter), partial(splits > 1 ? T * H * splits * (D + 2) : 0);
  float* part = splits > 1 ? partial.data() : attn.data();

  rg_add_rmsnorm_f32(x, nullptr, reinterpret_cast<const float*>(table[0]), h.data(), T, hidden, eps, threads);
  for (int64_t l = 0; l < n_layers; ++l) {
    const int64_t* row = table + l * LAYER_WORDS;
    const float* post_norm = reinterpret_cast<const float*>(row[1]);
    const QLinear qkv_l = read_linear(row + 2), o_l = read_linear(row + 2 + LINEAR_WORDS),
                  gate_up_l = read_linear(row + 2 + 2 * LINEAR_WORDS), down_l = read_linear(row + 2 + 3 * LINEAR_WORDS);
    const int64_t offset = l * layer_stride * (pool_dtype == 0 ? 4 : 2);  // bytes
    void* k = static_cast<char*>(k_pool) + offset;
    void* v = static_cast<char*>(v_pool) + offset;

    linear(qkv_l, h.data(), qkv.data(), T, scalar, threads);                       // [T, (H + 2 KVH) D]
    if (pool_dtype == 0)                                                            // q [T, H, D]
      rg_rope_write_kv_f32(qkv.data(), qkv_n, cos, sin, slots, q.data(), static_cast<float*>(k),
                           static_cast<float*>(v), slot_stride, head_stride, T, H, KVH, D, threads);
    else
      rg_rope_write_kv_f32_bf16kv(qkv.data(), qkv_n, cos, sin, slots, q.data(), static_cast<uint16_t*>(k),
                                  static_cast<uint16_t*>(v), slot_stride, head_stride, T, H, KVH, D, threads);
    const int rc = rg_attention(pool_dtype, q.data(), attn.data(), part, k, v, slot_stride, head_stride, req_to_slot,
                                table_stride, req_rows, prefix_lens, extend_lens, batch, H, KVH, D,
                                sm_scale, 0, 0.f, splits, 0, threads);              // [T, H, D]
    if (rc != 0) return rc;
    linear(o_l, attn.data(), proj.data(), T, scalar, threads);                     // [T, hidden]
    rg_add_rmsnorm_f32(proj.data(), x, post_norm, h.data(), T, hidden, eps, threads);

    linear(gate_up_l, h.data(), gate_up.data(), T, scalar, threads);               // [T, 2 I]
    rg_silu_mul_f32(gate_up.data(), act.data(), T, inter, threads);                // [T, I]
    linear(down_l, act.data(), proj.data(), T, scalar, threads);                   // [T, hidden]
    const bool last = l + 1 == n_layers;
    const float* next_norm = last ? final_norm : reinterpret_cast<const float*>(table[(l + 1) * LAYER_WORDS]);
    rg_add_rmsnorm_f32(proj.data(), x, next_norm, last ? out : h.data(), T, hidden, eps, threads);
  }
  return 0;
}

}  // extern "C"
