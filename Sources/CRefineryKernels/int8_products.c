// Dynamically quantized int8 products (what PyTorch's quantize_dynamic does to a Linear): the
// weight is quantized once, per output feature, to signed 7-bit integers (−63…63); each call
// quantizes every input row on its own to unsigned 7-bit integers (0…127) with a zero point; the
// product is summed exactly in int32 and scaled back to float.
//
// Why 7 bits on both sides: AVX2 has no int8 dot-product instruction with 32-bit sums. vpmaddubsw
// multiplies u8 × s8 and adds neighbouring pairs into a *saturating* int16; a pair is at most
// 2 · 127 · 63 = 16002, so two of them (from two groups of 4 depths) still add exactly in int16
// (32004 < 32767) before vpmaddwd against ones widens them to int32. Nothing ever saturates and
// every path (AVX2, portable) computes the same integers. The AVX2 loop is bound by instructions
// issued (~3.5 a cycle on Zen 3), not by the multipliers: the 16-bit sum saves a widening and an
// add per 32 multiply-adds. On one Zen 3 core from L1, 4 × 16 tiles: 200–220 GOP/s, where 8-bit
// rows (one vpmaddwd per vpmaddubsw) in 5 × 16 tiles ran at 155–165. PyTorch's fbgemm does the
// same on AVX2 with 8-bit weights, so its activations are 7-bit too (`reduce_range`), with one
// scale for a whole batch where these have one per row.
//
// Layouts. The packed weight is in panels of 16 output features; inside a panel, for each group
// of 4 depths, 16 features × 4 bytes (depth padded to a multiple of 8 with zero weights). The
// quantized input has its rows at stride `ldq` (≥ the padded depth), and as many rows as the
// caller allocates (rounded up to whole 4-row tiles: `rk_i8_padded_rows`).
#include "refinery_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// A task of the pool: 8 tiles of rows against every panel (the rows stay in L1/L2 while the
// weight streams from L2), or, when there are too few rows to keep the threads busy, against a
// share of the panels. Measured on Zen 3 at the MiniLM-L6 shapes (4096 rows, 2 cores) with 5-row
// tiles of 8-bit rows: 280–340 GOP/s, against 250–320 for 3 or 4 tiles and 225–300 for 4 panels
// per task; with 4-row tiles of 7-bit rows 8 and 12 tiles a task both gave 250–420 (this machine's
// noise).
enum { TILE_ROWS = 4, PANEL = 16, WEIGHT_MAX = 63, INPUT_MAX = 127, ROW_BLOCK_TILES = 8, MIN_TASKS = 8 };

size_t rk_i8_depth(size_t k) { return (k + 7) & ~(size_t)7; }

size_t rk_i8_padded_rows(size_t rows) { return (rows + TILE_ROWS - 1) / TILE_ROWS * TILE_ROWS; }

size_t rk_i8_packed_bytes(size_t n, size_t k) { return (n + PANEL - 1) / PANEL * PANEL * rk_i8_depth(k); }

size_t rk_i8_pack_weight(const float *w, size_t n, size_t k, int8_t *packed, float *scales, int32_t *sums) {
    size_t kp = rk_i8_depth(k);
    memset(packed, 0, rk_i8_packed_bytes(n, k));
    for (size_t i = 0; i < n * k; i++)
        if (!isfinite(w[i])) return i + 1;
    for (size_t j = 0; j < n; j++) {
        const float *row = w + j * k;
        float peak = 0;
        for (size_t i = 0; i < k; i++) peak = fmaxf(peak, fabsf(row[i]));
        float scale = peak > 0 ? peak / WEIGHT_MAX : 1.0f;
        int8_t *panel = packed + (j / PANEL) * PANEL * kp;
        size_t column = j % PANEL;
        int32_t sum = 0;
        for (size_t i = 0; i < k; i++) {
            float r = nearbyintf(row[i] / scale);
            int q = r > WEIGHT_MAX ? WEIGHT_MAX : r < -WEIGHT_MAX ? -WEIGHT_MAX : (int)r;
            panel[(i / 4) * PANEL * 4 + column * 4 + i % 4] = (int8_t)q;
            sum += q;
        }
        scales[j] = scale;
        sums[j] = sum;
    }
    return 0;
}

// --- quantizing input rows ------------------------------------------------------------------
// Row r: lo = min(0, min x), hi = max(0, max x), scale = (hi − lo) / 127 (1 for an all-zero row),
// zero = round(−lo / scale), q = clamp(round(x · (1 / scale)) + zero, 0, 127). The same float
// operations in every path, rounding to nearest even, so the bytes agree across instruction sets.
// A row holding a NaN or an infinity gets scale NaN and zero bytes, so its outputs are NaN, as a
// float32 product's would be, and the caller's check of the results sees it.

static inline void row_range_generic(const float *x, size_t k, float *lo, float *hi, int *finite) {
    float a = 0, b = 0, probe = 0;
    for (size_t i = 0; i < k; i++) { a = fminf(a, x[i]); b = fmaxf(b, x[i]); probe += x[i] * 0.0f; }
    *lo = a; *hi = b; *finite = probe == 0;
}

static inline void non_finite_row(size_t kp, uint8_t *q, float *scale, int32_t *zero) {
    memset(q, 0, kp);
    *scale = NAN;
    *zero = 0;
}

static inline void row_parameters(float lo, float hi, float *scale, float *inverse, int32_t *zero) {
    float s = (hi - lo) / (float)INPUT_MAX;
    if (!(s > 0) || !isfinite(s)) s = 1.0f;
    float z = nearbyintf(-lo / s);
    *scale = s;
    *inverse = 1.0f / s;
    *zero = z < 0 ? 0 : z > INPUT_MAX ? INPUT_MAX : (int32_t)z;
}

static void quantize_row_generic(const float *x, size_t k, size_t kp, uint8_t *q, float *scale, int32_t *zero) {
    float lo, hi, inverse;
    int finite;
    row_range_generic(x, k, &lo, &hi, &finite);
    if (!finite) { non_finite_row(kp, q, scale, zero); return; }
    row_parameters(lo, hi, scale, &inverse, zero);
    for (size_t i = 0; i < k; i++) {
        float v = nearbyintf(x[i] * inverse) + (float)*zero;
        q[i] = (uint8_t)(v < 0 ? 0 : v > INPUT_MAX ? INPUT_MAX : v);
    }
    for (size_t i = k; i < kp; i++) q[i] = (uint8_t)*zero;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void quantize_row_avx2(const float *x, size_t k, size_t kp, uint8_t *q, float *scale, int32_t *zero) {
    __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps(), vprobe = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        vlo = _mm256_min_ps(vlo, v);
        vhi = _mm256_max_ps(vhi, v);
        vprobe = _mm256_add_ps(vprobe, _mm256_mul_ps(v, _mm256_setzero_ps()));
    }
    float los[8], his[8], probes[8], lo = 0, hi = 0, probe = 0;
    _mm256_storeu_ps(los, vlo);
    _mm256_storeu_ps(his, vhi);
    _mm256_storeu_ps(probes, vprobe);
    for (int l = 0; l < 8; l++) { lo = fminf(lo, los[l]); hi = fmaxf(hi, his[l]); probe += probes[l]; }
    for (size_t t = i; t < k; t++) { lo = fminf(lo, x[t]); hi = fmaxf(hi, x[t]); probe += x[t] * 0.0f; }
    if (probe != 0) { non_finite_row(kp, q, scale, zero); return; }
    float inverse;
    row_parameters(lo, hi, scale, &inverse, zero);
    const __m256 vinv = _mm256_set1_ps(inverse);
    const __m256i vzero = _mm256_set1_epi32(*zero);
    for (i = 0; i + 32 <= k; i += 32) {
        __m256i a = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)), vzero);
        __m256i b = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv)), vzero);
        __m256i c = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vinv)), vzero);
        __m256i d = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vinv)), vzero);
        // Saturating packs clamp to 0…255, the minimum to 0…127; the lane interleaving of the
        // packs is undone by the permute.
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        __m256i bytes = _mm256_min_epu8(_mm256_packus_epi16(ab, cd), _mm256_set1_epi8(INPUT_MAX));
        bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), bytes);
    }
    for (; i < k; i++) {
        float v = nearbyintf(x[i] * inverse) + (float)*zero;
        q[i] = (uint8_t)(v < 0 ? 0 : v > INPUT_MAX ? INPUT_MAX : v);
    }
    for (i = k; i < kp; i++) q[i] = (uint8_t)*zero;
}
#endif

typedef struct {
    const float *x;
    size_t ldx, rows, k, kp, ldq, level;
    uint8_t *q;
    float *scales;
    int32_t *zeros;
} quantize_job;

enum { QUANTIZE_BLOCK = 16 };

static void quantize_block(void *context, long index) {
    const quantize_job *job = context;
    size_t first = (size_t)index * QUANTIZE_BLOCK, end = first + QUANTIZE_BLOCK < job->rows ? first + QUANTIZE_BLOCK : job->rows;
    for (size_t r = first; r < end; r++) {
#if defined(__x86_64__)
        if (job->level >= 1) {
            quantize_row_avx2(job->x + r * job->ldx, job->k, job->kp, job->q + r * job->ldq, job->scales + r, job->zeros + r);
            continue;
        }
#endif
        quantize_row_generic(job->x + r * job->ldx, job->k, job->kp, job->q + r * job->ldq, job->scales + r, job->zeros + r);
    }
}

int rk_i8_quantize_rows_at(int level, const float *x, size_t ldx, size_t rows, size_t k, uint8_t *q, size_t ldq,
                           float *scales, int32_t *zeros) {
    if (level < 0 || level > rk_simd_level() || ldq < rk_i8_depth(k)) return 0;
    quantize_job job = {x, ldx, rows, k, rk_i8_depth(k), ldq, (size_t)level, q, scales, zeros};
    rk_pool_run((long)((rows + QUANTIZE_BLOCK - 1) / QUANTIZE_BLOCK), &job, quantize_block);
    // The rows of the last tile past `rows`: zeros, so the tile's unused sums stay finite and unread.
    size_t padded = rk_i8_padded_rows(rows);
    if (padded > rows) memset(q + rows * ldq, 0, (padded - rows) * ldq);
    return 1;
}

void rk_i8_quantize_rows(const float *x, size_t ldx, size_t rows, size_t k, uint8_t *q, size_t ldq, float *scales,
                         int32_t *zeros) {
    rk_i8_quantize_rows_at(rk_simd_level(), x, ldx, rows, k, q, ldq, scales, zeros);
}

// --- the product ----------------------------------------------------------------------------
// One tile: 4 input rows × one 16-feature panel, exact int32 sums of q · w over the padded depth.

static void tile_generic(const uint8_t *q, size_t ldq, const int8_t *panel, size_t kp, int32_t sums[TILE_ROWS][PANEL]) {
    for (int r = 0; r < TILE_ROWS; r++)
        for (int c = 0; c < PANEL; c++) sums[r][c] = 0;
    for (size_t g = 0; g < kp / 4; g++) {
        const int8_t *w = panel + g * PANEL * 4;
        for (int r = 0; r < TILE_ROWS; r++) {
            const uint8_t *a = q + r * ldq + g * 4;
            for (int c = 0; c < PANEL; c++)
                sums[r][c] += a[0] * w[c * 4] + a[1] * w[c * 4 + 1] + a[2] * w[c * 4 + 2] + a[3] * w[c * 4 + 3];
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void tile_avx2(const uint8_t *q, size_t ldq, const int8_t *panel, size_t kp, int32_t sums[TILE_ROWS][PANEL]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    const uint8_t *q0 = q, *q1 = q + ldq, *q2 = q + 2 * ldq, *q3 = q + 3 * ldq;
    for (size_t i = 0; i < kp; i += 8) {
        // Two groups of 4 depths: weights of features 0–7 and 8–15 for each.
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)panel), w1 = _mm256_loadu_si256((const __m256i *)(panel + 32));
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(panel + 64)), v1 = _mm256_loadu_si256((const __m256i *)(panel + 96));
        panel += 128;
        __m256i a, b;
        int32_t first, second;
        // The two groups' pair sums (each at most 2 · 127 · 63 = 16002) add exactly in int16.
#define RK_I8_ROW(P, S0, S1)                                                                                     \
        memcpy(&first, (P) + i, 4);                                                                              \
        memcpy(&second, (P) + i + 4, 4);                                                                         \
        a = _mm256_set1_epi32(first);                                                                            \
        b = _mm256_set1_epi32(second);                                                                           \
        S0 = _mm256_add_epi32(S0, _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(a, w0), _mm256_maddubs_epi16(b, v0)), ones)); \
        S1 = _mm256_add_epi32(S1, _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(a, w1), _mm256_maddubs_epi16(b, v1)), ones));
        RK_I8_ROW(q0, s00, s01) RK_I8_ROW(q1, s10, s11) RK_I8_ROW(q2, s20, s21) RK_I8_ROW(q3, s30, s31)
#undef RK_I8_ROW
    }
    _mm256_storeu_si256((__m256i *)sums[0], s00); _mm256_storeu_si256((__m256i *)(sums[0] + 8), s01);
    _mm256_storeu_si256((__m256i *)sums[1], s10); _mm256_storeu_si256((__m256i *)(sums[1] + 8), s11);
    _mm256_storeu_si256((__m256i *)sums[2], s20); _mm256_storeu_si256((__m256i *)(sums[2] + 8), s21);
    _mm256_storeu_si256((__m256i *)sums[3], s30); _mm256_storeu_si256((__m256i *)(sums[3] + 8), s31);
}

// Scales one tile's sums for a whole panel of 16 features, the same operations as the scalar loop.
__attribute__((target("avx2,fma")))
static void store_panel_avx2(int32_t sums[TILE_ROWS][PANEL], size_t rows, const float *row_scales, const int32_t *row_zeros,
                             const float *col_scales, const int32_t *col_sums, float *out, size_t ldo, int accumulate) {
    __m256i cs0 = _mm256_loadu_si256((const __m256i *)col_sums), cs1 = _mm256_loadu_si256((const __m256i *)(col_sums + 8));
    __m256 sc0 = _mm256_loadu_ps(col_scales), sc1 = _mm256_loadu_ps(col_scales + 8);
    for (size_t r = 0; r < rows; r++) {
        __m256i zero = _mm256_set1_epi32(row_zeros[r]);
        __m256 row_scale = _mm256_set1_ps(row_scales[r]);
        __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)sums[r]), _mm256_mullo_epi32(zero, cs0))),
                                  _mm256_mul_ps(row_scale, sc0));
        __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(sums[r] + 8)), _mm256_mullo_epi32(zero, cs1))),
                                  _mm256_mul_ps(row_scale, sc1));
        float *o = out + r * ldo;
        if (accumulate) {
            v0 = _mm256_add_ps(_mm256_loadu_ps(o), v0);
            v1 = _mm256_add_ps(_mm256_loadu_ps(o + 8), v1);
        }
        _mm256_storeu_ps(o, v0);
        _mm256_storeu_ps(o + 8, v1);
    }
}
#endif

typedef struct {
    const uint8_t *q;
    size_t ldq, rows;
    const float *row_scales;
    const int32_t *row_zeros;
    const int8_t *packed;
    const float *col_scales;
    const int32_t *col_sums;
    size_t n0, n1, kp;
    float *out;
    size_t ldo;
    int accumulate, level;
    size_t first_panel, panels, col_block_panels, col_blocks;
    const float *bias;
    int gelu;
} product_job;

static void product_block(void *context, long index) {
    const product_job *job = context;
    size_t row_block = (size_t)index / job->col_blocks, col_block = (size_t)index % job->col_blocks;
    size_t tile_first = row_block * ROW_BLOCK_TILES, tiles = rk_i8_padded_rows(job->rows) / TILE_ROWS;
    size_t tile_end = tile_first + ROW_BLOCK_TILES < tiles ? tile_first + ROW_BLOCK_TILES : tiles;
    size_t panel_first = job->first_panel + col_block * job->col_block_panels;
    size_t panel_end = panel_first + job->col_block_panels < job->first_panel + job->panels ? panel_first + job->col_block_panels
                                                                                             : job->first_panel + job->panels;
    int32_t sums[TILE_ROWS][PANEL];
    for (size_t p = panel_first; p < panel_end; p++) {
        const int8_t *panel = job->packed + p * PANEL * job->kp;
        size_t c_first = p * PANEL > job->n0 ? p * PANEL : job->n0;
        size_t c_end = (p + 1) * PANEL < job->n1 ? (p + 1) * PANEL : job->n1;
        for (size_t t = tile_first; t < tile_end; t++) {
            size_t r0 = t * TILE_ROWS;
#if defined(__x86_64__)
            if (job->level >= 1) tile_avx2(job->q + r0 * job->ldq, job->ldq, panel, job->kp, sums);
            else
#endif
                tile_generic(job->q + r0 * job->ldq, job->ldq, panel, job->kp, sums);
            size_t r_end = r0 + TILE_ROWS < job->rows ? r0 + TILE_ROWS : job->rows;
#if defined(__x86_64__)
            if (job->level >= 1 && c_first == p * PANEL && c_end == c_first + PANEL) {
                store_panel_avx2(sums, r_end - r0, job->row_scales + r0, job->row_zeros + r0, job->col_scales + c_first,
                                 job->col_sums + c_first, job->out + r0 * job->ldo + (c_first - job->n0), job->ldo,
                                 job->accumulate);
                continue;
            }
#endif
            for (size_t r = r0; r < r_end; r++) {
                float row_scale = job->row_scales[r];
                int32_t zero = job->row_zeros[r];
                float *out = job->out + r * job->ldo - job->n0;
                const int32_t *s = sums[r - r0] - p * PANEL;
                for (size_t c = c_first; c < c_end; c++) {
                    float value = (float)(s[c] - zero * job->col_sums[c]) * (row_scale * job->col_scales[c]);
                    out[c] = job->accumulate ? out[c] + value : value;
                }
            }
        }
    }
    // The bias (and GELU) over this task's block while it is still in L2: the same kernels as a
    // separate pass over the whole output, so the same floats, without reading it back from memory.
    if (job->bias) {
        size_t c_first = panel_first * PANEL > job->n0 ? panel_first * PANEL : job->n0;
        size_t c_end = panel_end * PANEL < job->n1 ? panel_end * PANEL : job->n1;
        size_t r_end = tile_end * TILE_ROWS < job->rows ? tile_end * TILE_ROWS : job->rows;
        for (size_t r = tile_first * TILE_ROWS; r < r_end; r++) {
            float *o = job->out + r * job->ldo + (c_first - job->n0);
            if (job->gelu) rk_bias_gelu(o, job->bias + c_first, c_end - c_first);
            else rk_add_bias(o, job->bias + c_first, c_end - c_first);
        }
    }
}

int rk_i8_product_at(int level, const uint8_t *q, size_t ldq, size_t rows, const float *row_scales, const int32_t *row_zeros,
                     const int8_t *packed, const float *col_scales, const int32_t *col_sums, size_t k, size_t n0, size_t n1,
                     float *out, size_t ldo, int accumulate, const float *bias, int gelu) {
    if (level < 0 || level > rk_simd_level() || n1 <= n0 || ldq < rk_i8_depth(k)) return 0;
    if (rows == 0) return 1;
    size_t first_panel = n0 / PANEL, panels = (n1 + PANEL - 1) / PANEL - first_panel;
    size_t tiles = rk_i8_padded_rows(rows) / TILE_ROWS;
    size_t row_blocks = (tiles + ROW_BLOCK_TILES - 1) / ROW_BLOCK_TILES;
    size_t col_block_panels = row_blocks >= MIN_TASKS ? panels : (panels * row_blocks + MIN_TASKS - 1) / MIN_TASKS;
    if (col_block_panels == 0) col_block_panels = 1;
    size_t col_blocks = (panels + col_block_panels - 1) / col_block_panels;
    product_job job = {q, ldq, rows, row_scales, row_zeros, packed, col_scales, col_sums, n0, n1, rk_i8_depth(k),
                       out, ldo, accumulate, level, first_panel, panels, col_block_panels, col_blocks, bias, gelu};
    rk_pool_run((long)(row_blocks * col_blocks), &job, product_block);
    return 1;
}

void rk_i8_product(const uint8_t *q, size_t ldq, size_t rows, const float *row_scales, const int32_t *row_zeros,
                   const int8_t *packed, const float *col_scales, const int32_t *col_sums, size_t k, size_t n0, size_t n1,
                   float *out, size_t ldo, int accumulate, const float *bias, int gelu) {
    rk_i8_product_at(rk_simd_level(), q, ldq, rows, row_scales, row_zeros, packed, col_scales, col_sums, k, n0, n1, out,
                     ldo, accumulate, bias, gelu);
}
