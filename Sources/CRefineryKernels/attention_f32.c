// Bidirectional attention of one head of one sequence in float32: scores = scale · Q Kᵀ, the
// softmax of each row, then P V, a block of query rows at a time, so a block's scores stay in the
// first-level cache between the two products, with the keys and values packed once into this
// thread's scratch (not into memory allocated for every sequence and head).
//
// The softmax is not rk_softmax but rk_softmax_numerators (softmax.c): its exp takes only the
// arguments ≤ 0 a score minus its row's maximum can be, 0.50 ns an element on a Zen 3 core where
// rk_softmax's took 0.74, and it leaves the probabilities unnormalised: each row of P V is
// multiplied by 1 / its sum instead, head_dim multiplies a row, not n.
#include "refinery_kernels.h"
#include "thread_scratch.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/// Query rows per block: 24 rows of scores of a 240-key sequence are 23 KiB, inside Zen 3's 32 KiB
/// first-level cache; a multiple of the expand kernel's row tiles (3, 4 and 6).
enum { BLOCK_ROWS = 24 };

/// keys_t[d·width + j] = k[j·ld + d] for j < n, d < head_dim (columns n..<width are set by the caller).
static void transpose_keys_generic(const float *k, size_t ld, size_t n, size_t head_dim, float *keys_t, size_t width) {
    for (size_t j = 0; j < n; j++)
        for (size_t d = 0; d < head_dim; d++) keys_t[d * width + j] = k[j * ld + d];
}

#if defined(__x86_64__)
/// The same, 8 keys × 8 dimensions at a time through registers (head_dim a multiple of 8).
__attribute__((target("avx2,fma")))
static void transpose_keys_avx2(const float *k, size_t ld, size_t n, size_t head_dim, float *keys_t, size_t width) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (size_t d = 0; d < head_dim; d += 8) {
            __m256 r0 = _mm256_loadu_ps(k + (j + 0) * ld + d), r1 = _mm256_loadu_ps(k + (j + 1) * ld + d);
            __m256 r2 = _mm256_loadu_ps(k + (j + 2) * ld + d), r3 = _mm256_loadu_ps(k + (j + 3) * ld + d);
            __m256 r4 = _mm256_loadu_ps(k + (j + 4) * ld + d), r5 = _mm256_loadu_ps(k + (j + 5) * ld + d);
            __m256 r6 = _mm256_loadu_ps(k + (j + 6) * ld + d), r7 = _mm256_loadu_ps(k + (j + 7) * ld + d);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = keys_t + d * width + j;
            _mm256_storeu_ps(o + 0 * width, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(o + 1 * width, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(o + 2 * width, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(o + 3 * width, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(o + 4 * width, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(o + 5 * width, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(o + 6 * width, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(o + 7 * width, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    if (j < n) transpose_keys_generic(k + j * ld, ld, n - j, head_dim, keys_t + j, width);
}
#endif

int rk_f32_attention_at(int level, const float *qkv, size_t ld, size_t hidden, size_t n, size_t head_dim, float scale,
                        float *out, size_t ldo) {
    if (level < 0 || level > rk_simd_level()) return 0;
    if (n == 0 || head_dim == 0) return 1;
    // Score rows padded to a multiple of 16 keys (zero keys, never read by the softmax), so every
    // product runs on whole vectors.
    const size_t width = (n + 15) & ~(size_t)15;
    float *keys_t = rk_thread_scratch((head_dim * width + n * head_dim + BLOCK_ROWS * width) * sizeof(float));
    if (!keys_t) return 0;
    float *values = keys_t + head_dim * width, *scores = values + n * head_dim;
    const float *q = qkv, *k = qkv + hidden, *v = qkv + 2 * hidden;
#if defined(__x86_64__)
    if (level >= 1 && head_dim % 8 == 0) transpose_keys_avx2(k, ld, n, head_dim, keys_t, width);
    else
#endif
        transpose_keys_generic(k, ld, n, head_dim, keys_t, width);
    if (width > n)
        for (size_t d = 0; d < head_dim; d++) memset(keys_t + d * width + n, 0, (width - n) * sizeof(float));
    // The values side by side: read in place, rows 3 × hidden floats apart fall in a few cache
    // sets and evict each other (measured at 228 rows: 82 → 97 GFLOP/s on one core).
    for (size_t j = 0; j < n; j++) memcpy(values + j * head_dim, v + j * ld, head_dim * sizeof(float));
    float inverse_sums[BLOCK_ROWS];
    for (size_t block = 0; block < n; block += BLOCK_ROWS) {
        const size_t rows = n - block < BLOCK_ROWS ? n - block : BLOCK_ROWS;
        rk_lowrank_expand_at(level, q + block * ld, ld, keys_t, width, scores, width, rows, width, head_dim, scale, 0);
        for (size_t r = 0; r < rows; r++) inverse_sums[r] = rk_softmax_numerators_at(level, scores + r * width, n);
        float *target = out + block * ldo;
        rk_lowrank_expand_at(level, scores, width, values, head_dim, target, ldo, rows, head_dim, n, 1, 0);
        for (size_t r = 0; r < rows; r++)
            for (size_t d = 0; d < head_dim; d++) target[r * ldo + d] *= inverse_sums[r];
    }
    return 1;
}

int rk_f32_attention(const float *qkv, size_t ld, size_t hidden, size_t n, size_t head_dim, float scale, float *out,
                     size_t ldo) {
    return rk_f32_attention_at(rk_simd_level(), qkv, ld, hidden, n, head_dim, scale, out, ldo);
}
