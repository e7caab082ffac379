// The library's own entry points, declared for the kernels that chain them (cpu_quant_stack.cpp).
// Each is defined, and documented, in the file named beside it.
#pragma once
#include <cstdint>

extern "C" {

// cpu_attention.cpp
int64_t rg_attention_splits(const int64_t* extend_lens, int64_t batch, int64_t KVH, int64_t group,
                            int64_t max_seq, int threads);
int rg_attention(int pool_dtype, const float* q, float* out, float* partial, const void* k_pool,
                 const void* v_pool, int64_t slot_stride, int64_t head_stride, const int32_t* req_to_slot,
                 int64_t table_stride, const int64_t* req_rows, const int64_t* prefix_lens,
                 const int64_t* extend_lens, int64_t batch, int64_t H, int64_t KVH, int64_t D, float sm_scale,
                 int64_t window, float softcap, int64_t splits, int q_is_bf16, int threads);

// cpu_layer_ops.cpp (fp32 versions)
void rg_add_rmsnorm_f32(const float* x, float* residual, const float* weight, float* out, int64_t T,
                        int64_t D, float eps, int threads);
void rg_rope_write_kv_f32(const float* qkv, int64_t qkv_stride, const float* cos, const float* sin,
                          const int64_t* slots, float* q_out, float* k_pool, float* v_pool,
                          int64_t slot_stride, int64_t head_stride, int64_t T, int64_t H, int64_t KVH,
                          int64_t D, int threads);
void rg_rope_write_kv_f32_bf16kv(const float* qkv, int64_t qkv_stride, const float* cos, const float* sin,
                                 const int64_t* slots, float* q_out, uint16_t* k_pool, uint16_t* v_pool,
                                 int64_t slot_stride, int64_t head_stride, int64_t T, int64_t H, int64_t KVH,
                                 int64_t D, int threads);
void rg_silu_mul_f32(const float* gate_up, float* out, int64_t T, int64_t I, int threads);

// cpu_quant.cpp
void rg_quant_gemm(int fmt, const uint8_t* qs, const uint16_t* d, const uint16_t* mn, const float* bias,
                   const float* x, float* out, int64_t M, int64_t N, int64_t K, int threads);
void rg_quant_rows(const float* x, int64_t M, int64_t K, int8_t* xq, float* dx, float* sx, int threads);

// cpu_quant_panel.cpp
void rg_quant_gemm_panels(int fmt, const uint8_t* pq, const uint16_t* pd, const uint16_t* pm, const float* bias,
                          const float* x, float* out, int64_t M, int64_t N, int64_t K, int threads);
}
