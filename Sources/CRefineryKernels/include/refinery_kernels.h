#ifndef REFINERY_KERNELS_H
#define REFINERY_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Softmax of x[0..n) in place (max-subtracted). Vectorised; exp has ~2e-7 relative error.
void rk_softmax(float *x, size_t n);

/// A softmax's numerators: v[0..n) replaced by exp(v − max v), with an exp for arguments ≤ 0 only
/// (degree 5, relative error ≤ 1.7e-7), returning 1 / their sum, so a caller can scale what it
/// makes of them instead of the n values. At instruction set `level` (0 portable, 1 and up AVX2),
/// which the caller has checked this CPU has.
float rk_softmax_numerators_at(int level, float *v, size_t n);

/// Bidirectional attention of one head over one sequence of `n` rows in float32: the head's
/// queries at `qkv`, its keys `hidden` and values `2·hidden` elements further, rows `ld` apart;
/// out (rows `ldo` apart) = softmax(scale · Q Kᵀ) V: the products by rk_lowrank_expand, the
/// softmax's exp with relative error ≤ 1.7e-7, each row of P V scaled by 1 / its row's sum.
/// Returns 0, writing nothing, when its scratch (~(2·head_dim + 24) · n floats, kept per thread)
/// cannot be allocated. `_at`: at a chosen instruction set (0 when this CPU lacks it).
int rk_f32_attention(const float *qkv, size_t ld, size_t hidden, size_t n, size_t head_dim, float scale, float *out,
                     size_t ldo);
int rk_f32_attention_at(int level, const float *qkv, size_t ld, size_t hidden, size_t n, size_t head_dim, float scale,
                        float *out, size_t ldo);

/// For each of `rows` rows of `scores` (row stride `ld`): the softmax of its first `n` values
/// (the row is used as scratch), written to `out` (row stride `width` ≥ n) as bfloat16 rounded
/// like rk_f32_to_bf16, columns n..<width zero. Attention probabilities for a bfloat16 product; its exp
/// (degree 5, power of two by scalef) has ~1.2e-7 relative error, like rk_softmax's.
void rk_softmax_rows_bf16(float *scores, size_t ld, size_t rows, size_t n, size_t width, uint16_t *out);

/// Attention of one query `q[head_dim]` over n keys `k` and values `v` (rows `ld` apart):
/// out = softmax(scale · K q) · V, the probabilities rounded to bfloat16 when `round_probabilities`.
/// `scores` is scratch for n values.
void rk_single_query_attention(const float *q, const float *k, const float *v, size_t ld, size_t n, size_t head_dim,
                               float scale, int round_probabilities, float *scores, float *out);

/// Whether this CPU has AVX512-BF16 (vdpbf16ps).
int rk_has_avx512_bf16(void);

/// Bidirectional attention of one head over one sequence of `n` rows, bfloat16 operands with
/// float32 sums: the head's queries at `qkv`, its keys `hidden` and values `2·hidden` elements
/// further, rows `ld` apart; out (rows `ldo` apart, float32) = softmax(scale · Q Kᵀ) V with the
/// probabilities rounded to bfloat16 (rk_softmax_rows_bf16). Reads up to 5 rows of queries past
/// the sequence (never used). Returns 0, writing nothing, without AVX512-BF16 or for a head
/// dimension that is not 16, 32, 48 or 64.
int rk_bf16_attention(const uint16_t *qkv, size_t ld, size_t hidden, size_t n, size_t head_dim, float scale,
                      float *out, size_t ldo);

/// The 16 NF4 levels in code order (bitsandbytes' float32 table).
const float *rk_nf4_levels(void);

/// The index of the level nearest to `value` given the `count` sorted midpoints between
/// consecutive levels: how many midpoints lie strictly below it (ties take the lower level).
size_t rk_nearest_code(float value, const float *midpoints, size_t count);

/// Codes one block of `n` values by the nearest of the levels whose `count` sorted `midpoints`
/// are given (one code per byte into `codes`), bitsandbytes' blockwise rule: a whole block is
/// multiplied by 1/absmax, a partial one (`whole` = 0) divided by max(absmax, 1e-38), then
/// clamped to [-1, 1]. Returns the absmax to store (the partial block's at least 1e-38).
float rk_quantize_block(const float *x, size_t n, int whole, const float *midpoints, size_t count, uint8_t *codes);

/// Dequantizes `count` NF4 codes starting at flat index `first` (two per byte, the even index in
/// the high nibble): out[i] = level(code) · scale of its block (`block_scales[0]` is the scale of
/// block first / block_size).
void rk_nf4_dequantize(const uint8_t *codes, const float *block_scales, size_t block_size, size_t first, size_t count, float *out);

/// rk_nf4_dequantize rounded to bfloat16 as rk_f32_to_bf16 rounds.
void rk_nf4_dequantize_bf16(const uint8_t *codes, const float *block_scales, size_t block_size, size_t first, size_t count,
                            uint16_t *out);

/// gate[i] = silu(gate[i]) * up[i].
void rk_silu_gate(float *gate, const float *up, size_t n);

/// log(sum(exp(x[0..n)))), accumulated in double.
double rk_logsumexp(const float *x, size_t n);

/// y[i] = weight[i] · (x[i] · scale): RMSNorm once the row's scale is known.
void rk_rms_scale(const float *x, const float *weight, float *y, size_t n, float scale);

/// Rotary embedding of one head in rotate-half form, in place: for i < half,
/// (v[i], v[i+half]) ← (v[i]·c[i] − v[i+half]·s[i], v[i+half]·c[i] + v[i]·s[i]).
void rk_rotary(float *v, const float *cos_row, const float *sin_row, size_t half);

#endif

#ifndef REFINERY_KERNELS_BACKWARD_H
#define REFINERY_KERNELS_BACKWARD_H
/// Cross-entropy of one row of n logits against `target`, returned (log-sum-exp accumulated in
/// double); the row is overwritten with its gradient (softmax − onehot(target))·scale.
double rk_cross_entropy(float *logits, size_t n, size_t target, float scale);

/// Σ a[i]·b[i] (vectorised; the order of the sum depends on the instruction set).
float rk_dot(const float *a, const float *b, size_t n);

/// Σ a[i]·b[i]·c[i].
float rk_dot3(const float *a, const float *b, const float *c, size_t n);

/// Rotary backward of one head in place (rotation by −θ): for i < half,
/// (g[i], g[i+half]) ← (g[i]·c[i] + g[i+half]·s[i], g[i+half]·c[i] − g[i]·s[i]).
void rk_rotary_backward(float *g, const float *cos_row, const float *sin_row, size_t half);

/// RMSNorm input gradient of one row: dx[i] = r·weight[i]·dy[i] − x[i]·coefficient.
void rk_rms_backward(const float *x, const float *weight, const float *dy, float *dx, size_t n, float r, float coefficient);

/// SiLU-gate backward: act = silu(g)·u; dg = dAct·u·σ(g)(1 + g(1 − σ(g))), du = dAct·silu(g).
void rk_silu_gate_backward(const float *gate, const float *up, const float *d_act, float *d_gate, float *d_up, size_t n);
#endif

#ifndef REFINERY_KERNELS_OPTIMIZER_H
#define REFINERY_KERNELS_OPTIMIZER_H
/// One AdamW update of n elements, as torch.optim.AdamW (single-tensor path):
/// p *= decay; m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²; p −= step_size · m / (sqrt(v)/c2 + eps),
/// with 1 − b1 and 1 − b2 given (computed in double and rounded once, as torch's Python does).
void rk_adamw(float *p, const float *g, float *m, float *v, size_t n, float decay, float b1, float b2,
              float one_minus_b1, float one_minus_b2, float eps, float step_size, float correction2_root);

/// Buckets of a code table: floats in [-1, 1] by the top 16 bits of their magnitude, per sign.
#define RK_CODE_TABLE_HALF 0x3F81

/// Fills `low` and `high` (2·RK_CODE_TABLE_HALF entries each) for a map of count + 1 ≤ 256 sorted
/// levels with `count` midpoints: per bucket, the codes (rk_nearest_code) of its smallest and
/// largest float. Returns the most midpoints one bucket holds (the kernels need at most 1).
size_t rk_code_table(const float *midpoints, size_t count, uint8_t *low, uint8_t *high);

/// A 256-level map with its 255 midpoints, padded with +infinity to 256, and the `low` half of its
/// code table (rk_code_table; buckets of at most one midpoint).
typedef struct {
    const float *values;
    const float *midpoints;
    const uint8_t *low;
    const uint8_t *high;
} rk_code_map;

/// The code of `value` in [-1, 1] through the map's table: equal to rk_nearest_code over its midpoints.
/// (The table's buckets hold at most one midpoint.)
size_t rk_table_code(float value, const rk_code_map *map);

/// One 8-bit AdamW update of one block of n ≤ 256 values (bitsandbytes' AdamW8bit): the moments
/// are decoded as map[code] · absmax (the first with `first_map`, bitsandbytes' signed dynamic
/// map, the second with `second_map`, the unsigned one), updated in float32 — m = m·b1 +
/// g·one_minus_b1; v = v·b2 + one_minus_b2·g·g (1 − β given, rounded from double as the reference
/// rounds it); p = p·decay + negative_step_size · (m / (sqrt(v)/c2 + eps)), each operation rounded
/// once — and coded again as rk_quantize_block codes (`whole` = 0 for a last, partial block),
/// the new codes and absmax written in place.
void rk_adamw8bit_block(float *p, const float *g, uint8_t *m_codes, float *m_absmax, uint8_t *v_codes, float *v_absmax,
                        size_t n, int whole, const rk_code_map *first_map, const rk_code_map *second_map, float decay, float b1,
                        float b2, float one_minus_b1, float one_minus_b2, float eps, float negative_step_size, float correction2_root);

/// Σ x[i]² in double.
double rk_sum_squares(const float *x, size_t n);

/// x[i] *= factor.
void rk_scale(float *x, size_t n, float factor);
#endif

#ifndef REFINERY_KERNELS_POOL_H
#define REFINERY_KERNELS_POOL_H
/// The body of a pool job: called once per index with the job's context.
typedef void (*rk_pool_body)(void *context, long index);

/// Grows the worker pool to `threads` threads in all (the calling thread counts as one; workers are
/// never removed) and returns the size reached.
int rk_pool_start(int threads);

/// Runs body(context, i) once for every i in [0, count) on the pool's workers and the calling
/// thread; returns when every call has finished. A call made while the pool is busy (from inside a
/// body, or from another thread) runs its indices inline, in order.
void rk_pool_run(long count, void *context, rk_pool_body body);
#endif

#ifndef REFINERY_KERNELS_MEMORY_H
#define REFINERY_KERNELS_MEMORY_H
/// Keeps freed memory in the process's heap instead of returning large blocks to the kernel
/// (glibc's mmap and trim thresholds raised to 1 GiB): training allocates the same activation
/// sizes every step, and fresh mmap'd pages cost a page fault and a kernel zeroing each time.
/// Returns 1 when the allocator took the settings, 0 where it has no such knobs.
int rk_retain_freed_memory(void);
#endif

#ifndef REFINERY_KERNELS_LOWRANK_H
#define REFINERY_KERNELS_LOWRANK_H
/// The vector instructions the kernels use on this CPU: 2 AVX-512, 1 AVX2 + FMA, 0 portable.
int rk_simd_level(void);

/// y[t·ldy + n] = alpha · Σ_j u[t·ldu + j] · m[j·ldm + n] (accumulate == 0), or adds it (accumulate != 0),
/// for t < rows, n < cols, j < rank: u·m where one of them is thin (the LoRA products x·Aᵀ,
/// u·Bᵀ, dy·B and v·A, with Aᵀ and Bᵀ stored transposed).
void rk_lowrank_expand(const float *u, size_t ldu, const float *m, size_t ldm, float *y, size_t ldy,
                       size_t rows, size_t cols, size_t rank, float alpha, int accumulate);

/// c[j·ldc + n] += alpha · Σ_t p[t·ldp + j] · q[t·ldq + n] for j < rank, n < cols, t < depth
/// (pᵀ·q with p thin: the LoRA weight gradients).
void rk_lowrank_gram(const float *p, size_t ldp, const float *q, size_t ldq, float *c, size_t ldc,
                     size_t depth, size_t rank, size_t cols, float alpha);

/// `rk_lowrank_expand` and `rk_lowrank_gram` at a chosen instruction set (0 portable, 1 AVX2,
/// 2 AVX-512), for tests that check every level gives the same bits; 0 (nothing written) when
/// this CPU lacks that level.
int rk_lowrank_expand_at(int level, const float *u, size_t ldu, const float *m, size_t ldm, float *y, size_t ldy,
                         size_t rows, size_t cols, size_t rank, float alpha, int accumulate);
int rk_lowrank_gram_at(int level, const float *p, size_t ldp, const float *q, size_t ldq, float *c, size_t ldc,
                       size_t depth, size_t rank, size_t cols, float alpha);

/// Dynamically quantized int8 products (int8_products.c). A weight `[n, k]` is quantized per
/// output feature to −63…63 (`scales[j]` · q ≈ w) into `rk_i8_packed_bytes(n, k)` bytes, with the
/// sum of each feature's integers in `sums[j]`; returns 0, or 1 + the index of the first value that
/// is NaN or infinite (nothing packed then).
size_t rk_i8_depth(size_t k);
size_t rk_i8_padded_rows(size_t rows);
size_t rk_i8_packed_bytes(size_t n, size_t k);
size_t rk_i8_pack_weight(const float *w, size_t n, size_t k, int8_t *packed, float *scales, int32_t *sums);
/// Quantizes rows of `x` (row stride `ldx`) to 0…127 with a scale and zero point per row, into `q`
/// (row stride `ldq` ≥ `rk_i8_depth(k)`, `rk_i8_padded_rows(rows)` rows); a row holding a NaN or an
/// infinity gets scale NaN (its outputs are NaN). Runs on the pool.
void rk_i8_quantize_rows(const float *x, size_t ldx, size_t rows, size_t k, uint8_t *q, size_t ldq, float *scales,
                         int32_t *zeros);
/// `out[r, c − n0] (+)= Σ_i x[r, i] · w[c, i]` for features c in [n0, n1), from quantized rows and a
/// packed weight: exact int32 sums, then `(sum − zero_r · sums_c) · (scale_r · scale_c)`; then, with
/// `bias` (one value per feature c of the weight), `rk_add_bias` — or `rk_bias_gelu` when `gelu` —
/// on each output row. Runs on the pool.
void rk_i8_product(const uint8_t *q, size_t ldq, size_t rows, const float *row_scales, const int32_t *row_zeros,
                   const int8_t *packed, const float *col_scales, const int32_t *col_sums, size_t k, size_t n0, size_t n1,
                   float *out, size_t ldo, int accumulate, const float *bias, int gelu);
/// The two above at a chosen instruction set (0 portable, 1 AVX2 and up); 0 when this CPU lacks it
/// or the arguments do not fit. Every level computes the same bytes and the same floats.
int rk_i8_quantize_rows_at(int level, const float *x, size_t ldx, size_t rows, size_t k, uint8_t *q, size_t ldq,
                           float *scales, int32_t *zeros);
int rk_i8_product_at(int level, const uint8_t *q, size_t ldq, size_t rows, const float *row_scales, const int32_t *row_zeros,
                     const int8_t *packed, const float *col_scales, const int32_t *col_sums, size_t k, size_t n0, size_t n1,
                     float *out, size_t ldo, int accumulate, const float *bias, int gelu);
#endif

#ifndef REFINERY_KERNELS_ONEDNN_H
#define REFINERY_KERNELS_ONEDNN_H
/// Operand types of `rk_dnnl_gemm`.
enum { RK_DNNL_F32 = 0, RK_DNNL_BF16 = 1 };

/// 1 when oneDNN's CPU engine could be created.
int rk_dnnl_available(void);

/// 1 when oneDNN builds bfloat16 products on this CPU (it needs AVX-512; without it every
/// RK_DNNL_BF16 call returns 0 and the caller widens the operands to float32).
int rk_dnnl_bf16_available(void);

/// C[m,n] = alpha · op(A) · op(B) + beta · C, row-major, on the calling thread alone. A and B hold
/// floats (`dtype` RK_DNNL_F32) or bfloat16 bits (RK_DNNL_BF16, accumulated in fp32); C is fp32.
/// op(A) is [m,k]: A stored [m,k] (trans_a 0, lda ≥ k) or [k,m]; op(B) is [k,n]: B stored [k,n]
/// (trans_b 0) or [n,k]. Returns 1 on success, 0 when oneDNN refused (nothing was written then).
int rk_dnnl_gemm(int dtype, int trans_a, int trans_b, long m, long n, long k, float alpha, const void *a, long lda,
                 const void *b, long ldb, float beta, float *c, long ldc);

/// C[m,n] = bfloat16(A · Wᵀ + bias), or bfloat16(GELU(A · Wᵀ + bias)) when `gelu`, on the calling
/// thread: A [m,k] and W [n,k] (a linear layer's weight) bfloat16, sums and bias in fp32, GELU with
/// the exact erf, C rounded to bfloat16 to nearest even — product and epilogue in one pass.
/// Returns 1 on success, 0 when oneDNN refused.
int rk_dnnl_linear_bias_bf16(long m, long n, long k, const uint16_t *a, long lda, const uint16_t *w, long ldw,
                             const float *bias, int gelu, uint16_t *c, long ldc);
#endif

#ifndef REFINERY_KERNELS_CONVERT_H
#define REFINERY_KERNELS_CONVERT_H
#include <stdint.h>
/// y[i] = bfloat16(x[i]), rounding to nearest even (NaN stays NaN); the same bits on every CPU.
void rk_f32_to_bf16(const float *x, uint16_t *y, size_t n);

/// x += bias, then y = bfloat16(x) as rk_f32_to_bf16 rounds: one pass over the row.
void rk_add_bias_to_bf16(float *x, const float *bias, uint16_t *y, size_t n);

/// y[i] = float(x[i]) (exact).
void rk_bf16_to_f32(const uint16_t *x, float *y, size_t n);
#endif

#ifndef REFINERY_KERNELS_MINHASH_H
#define REFINERY_KERNELS_MINHASH_H
#include <stdint.h>
/// The MinHash signature of one document: out[i] = min over its `count` shingle hashes x of
/// (a[i]·x + b[i] mod 2^64) >> 32, for i < perms (UINT32_MAX for a document without shingles).
void rk_minhash(const uint32_t *shingles, size_t count, const uint64_t *a, const uint64_t *b, size_t perms, uint32_t *out);
#endif

#ifndef REFINERY_KERNELS_ENCODER_H
#define REFINERY_KERNELS_ENCODER_H
/// x[i] = gelu(x[i] + bias[i]) with the exact erf form, 0.5·v·(1 + erf(v/√2)), in place.
void rk_bias_gelu(float *x, const float *bias, size_t n);

/// x[i] += bias[i].
void rk_add_bias(float *x, const float *bias, size_t n);

/// LayerNorm of one row: y[i] = (x[i] − mean) / sqrt(var + eps) · weight[i] + bias[i] (biased variance).
void rk_layer_norm(const float *x, const float *weight, const float *bias, float *y, size_t n, float eps);

/// x = (x + residual) + bias (the sum a sublayer's output projection leaves, in place), then
/// y = LayerNorm(x) with `weight` and `norm_bias`: one pass over the row instead of three.
void rk_residual_layer_norm(float *x, const float *residual, const float *bias, const float *weight, const float *norm_bias, float *y,
                            size_t n, float eps);
#endif
