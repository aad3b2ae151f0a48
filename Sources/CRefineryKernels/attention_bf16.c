// Bidirectional attention of one head of one sequence with bfloat16 operands on AVX512-BF16:
// scores = scale · Q Kᵀ, softmax rows rounded to bfloat16 (rk_softmax_rows_bf16), then P V, each
// product a register-tiled loop of vdpbf16ps (bfloat16 pairs, float32 sums) — the arithmetic of
// oneDNN's bfloat16 products, without two library calls per head on products this small (a
// sequence of 200 tokens and a head of 32 is 2.6 MFLOP a product).
#include "refinery_kernels.h"
#include "thread_scratch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define RK_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16,avx2,fma")))

int rk_has_avx512_bf16(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return cached;
}

/// A tile of scores: rows `i..i+SCORE_ROWS` of Q against 16·C keys. `kp` holds the keys as
/// bfloat16 pairs, [pairs][width] 32-bit units (pair p of key j at kp[p·width + j]).
#define SCORE_ROWS 6
#define DEFINE_SCORE_TILE(C)                                                                              \
    RK_BF16 static void score_tile_##C(const uint16_t *q, size_t ldq, const uint32_t *kp, size_t width,    \
                                       size_t pairs, float scale, float *out, size_t ldo) {                \
        __m512 acc[SCORE_ROWS][C];                                                                         \
        for (int r = 0; r < SCORE_ROWS; r++)                                                               \
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();                                   \
        for (size_t p = 0; p < pairs; p++) {                                                               \
            __m512bh keys[C];                                                                              \
            for (int c = 0; c < C; c++) keys[c] = (__m512bh)_mm512_loadu_si512(kp + p * width + 16 * c);   \
            for (int r = 0; r < SCORE_ROWS; r++) {                                                         \
                uint32_t bits;                                                                             \
                memcpy(&bits, q + r * ldq + 2 * p, sizeof bits);                                           \
                const __m512bh query = (__m512bh)_mm512_set1_epi32((int)bits);                             \
                for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], query, keys[c]);       \
            }                                                                                              \
        }                                                                                                  \
        const __m512 factor = _mm512_set1_ps(scale);                                                       \
        for (int r = 0; r < SCORE_ROWS; r++)                                                               \
            for (int c = 0; c < C; c++) _mm512_storeu_ps(out + r * ldo + 16 * c, _mm512_mul_ps(acc[r][c], factor)); \
    }
DEFINE_SCORE_TILE(1)
DEFINE_SCORE_TILE(2)
DEFINE_SCORE_TILE(3)
DEFINE_SCORE_TILE(4)

/// A tile of the context: rows `i..i+R` of P (bfloat16, row stride `ldp`) times the values as
/// pairs of keys, [width/2][head_dim] 32-bit units, for all 16·C columns of the head.
#define DEFINE_CONTEXT_TILE(R, C)                                                                         \
    RK_BF16 static void context_tile_##C(const uint16_t *p, size_t ldp, const uint32_t *vp, size_t dim,   \
                                         size_t pairs, float *out, size_t ldo, size_t rows) {              \
        __m512 acc[R][C];                                                                                  \
        for (int r = 0; r < R; r++)                                                                        \
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();                                   \
        for (size_t j = 0; j < pairs; j++) {                                                               \
            __m512bh values[C];                                                                            \
            for (int c = 0; c < C; c++) values[c] = (__m512bh)_mm512_loadu_si512(vp + j * dim + 16 * c);   \
            for (int r = 0; r < R; r++) {                                                                  \
                uint32_t bits;                                                                             \
                memcpy(&bits, p + r * ldp + 2 * j, sizeof bits);                                           \
                const __m512bh weight = (__m512bh)_mm512_set1_epi32((int)bits);                            \
                for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], weight, values[c]);    \
            }                                                                                              \
        }                                                                                                  \
        for (int r = 0; r < R; r++)  /* constant bounds keep acc in registers */                           \
            if ((size_t)r < rows)                                                                          \
                for (int c = 0; c < C; c++) _mm512_storeu_ps(out + r * ldo + 16 * c, acc[r][c]);           \
    }
DEFINE_CONTEXT_TILE(12, 1)
DEFINE_CONTEXT_TILE(12, 2)
DEFINE_CONTEXT_TILE(8, 3)
DEFINE_CONTEXT_TILE(6, 4)

static const size_t context_rows[5] = {0, 12, 12, 8, 6};

/// The keys as pairs along the head dimension, key-major within a pair: keys[p·width + j] holds
/// elements 2p and 2p+1 of key j (zero for keys n..<width). 16 keys a gather.
RK_BF16 static void pack_keys(const uint16_t *k, size_t ld, size_t n, size_t width, size_t pairs, uint32_t *keys) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32((int)(ld * sizeof(uint16_t))));
    for (size_t j = 0; j < width; j += 16) {
        const __mmask16 present = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n > j ? n - j : 0)) - 1);
        const uint16_t *first = k + j * ld;
        for (size_t p = 0; p < pairs; p++) {
            const __m512i pair = present ? _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, rows, first + 2 * p, 1)
                                         : _mm512_setzero_si512();
            _mm512_storeu_si512(keys + p * width + j, pair);
        }
    }
}

/// The values as pairs of keys: values[j·head_dim + d] holds element d of keys 2j (low half) and
/// 2j+1 (high half), zero for keys n..<width.
RK_BF16 static void pack_values(const uint16_t *v, size_t ld, size_t n, size_t width, size_t head_dim, uint32_t *values) {
    for (size_t j = 0; j < width / 2; j++) {
        const size_t even = 2 * j, odd = 2 * j + 1;
        for (size_t d = 0; d < head_dim; d += 16) {
            const __m512i low = even < n ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v + even * ld + d))) : _mm512_setzero_si512();
            const __m512i high = odd < n ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v + odd * ld + d))) : _mm512_setzero_si512();
            _mm512_storeu_si512(values + j * head_dim + d, _mm512_or_si512(low, _mm512_slli_epi32(high, 16)));
        }
    }
}

static size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

/// Query rows per block: scores, probabilities and context of one block are made before the next
/// block's, so its scores stay in the first-level cache (24 rows of 512 keys are 48 KiB; the whole
/// 200 × 200 score matrix was 160 KiB). A multiple of SCORE_ROWS and of every context tile's rows.
#define BLOCK_ROWS 24

int rk_bf16_attention(const uint16_t *qkv, size_t ld, size_t hidden, size_t n, size_t head_dim, float scale,
                      float *out, size_t ldo) {
    if (!rk_has_avx512_bf16() || n == 0 || head_dim == 0 || head_dim % 16 != 0 || head_dim > 64) return 0;
    const size_t width = round_up(n, 16), pairs = head_dim / 2, columns = head_dim / 16;
    const size_t tile = context_rows[columns];
    const size_t bytes = BLOCK_ROWS * width * sizeof(float) + BLOCK_ROWS * width * sizeof(uint16_t)
                       + 2 * pairs * width * sizeof(uint32_t);
    char *scratch = rk_thread_scratch(bytes);
    if (!scratch) return 0;
    float *scores = (float *)scratch;
    uint16_t *probabilities = (uint16_t *)(scores + BLOCK_ROWS * width);
    uint32_t *keys = (uint32_t *)(probabilities + BLOCK_ROWS * width);
    uint32_t *values = keys + pairs * width;
    const uint16_t *q = qkv, *k = qkv + hidden, *v = qkv + 2 * hidden;

    pack_keys(k, ld, n, width, pairs, keys);
    pack_values(v, ld, n, width, head_dim, values);
    for (size_t block = 0; block < n; block += BLOCK_ROWS) {
        const size_t count = n - block < BLOCK_ROWS ? n - block : BLOCK_ROWS;
        // Scores: tiles of SCORE_ROWS queries (rows past n read the next sequence's rows or the
        // zero rows after the last one, and are never used) by up to 64 keys.
        for (size_t i = 0; i < count; i += SCORE_ROWS) {
            for (size_t j = 0; j < width;) {
                const size_t blocks = (width - j) / 16 >= 4 ? 4 : (width - j) / 16;
                const uint16_t *rows = q + (block + i) * ld;
                float *target = scores + i * width + j;
                switch (blocks) {
                case 4: score_tile_4(rows, ld, keys + j, width, pairs, scale, target, width); break;
                case 3: score_tile_3(rows, ld, keys + j, width, pairs, scale, target, width); break;
                case 2: score_tile_2(rows, ld, keys + j, width, pairs, scale, target, width); break;
                default: score_tile_1(rows, ld, keys + j, width, pairs, scale, target, width); break;
                }
                j += 16 * blocks;
            }
        }
        rk_softmax_rows_bf16(scores, width, count, n, width, probabilities);
        // The context tiles read whole tiles of rows; rows past `count` are zero and never stored.
        const size_t padded = round_up(count, tile);
        if (padded > count) memset(probabilities + count * width, 0, (padded - count) * width * sizeof(uint16_t));
        for (size_t i = 0; i < count; i += tile) {
            const size_t rows = count - i < tile ? count - i : tile;
            const uint16_t *weights = probabilities + i * width;
            float *target = out + (block + i) * ldo;
            switch (columns) {
            case 1: context_tile_1(weights, width, values, head_dim, width / 2, target, ldo, rows); break;
            case 2: context_tile_2(weights, width, values, head_dim, width / 2, target, ldo, rows); break;
            case 3: context_tile_3(weights, width, values, head_dim, width / 2, target, ldo, rows); break;
            default: context_tile_4(weights, width, values, head_dim, width / 2, target, ldo, rows); break;
            }
        }
    }
    return 1;
}

#else

int rk_has_avx512_bf16(void) { return 0; }

int rk_bf16_attention(const uint16_t *qkv, size_t ld, size_t hidden, size_t n, size_t head_dim, float scale,
                      float *out, size_t ldo) {
    (void)qkv; (void)ld; (void)hidden; (void)n; (void)head_dim; (void)scale; (void)out; (void)ldo;
    return 0;
}

#endif
