// Softmax of rows: in place in float32, or written as bfloat16 probabilities for the next product.
// AVX-512 paths are written with intrinsics (whole vectors plus one masked tail: clang's
// vectorisation of the max reduction and of the exp loop ran at ~0.9 ns per element, these at
// ~0.27), and so is AVX2's softmax; other CPUs run the scalar loops clang vectorises for them.
#include "refinery_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "exp_body.h"
#include "round_bf16_avx512.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define RK_DEFINE_SOFTMAX(SUFFIX, ATTR)                                                   \
    ATTR static void softmax_##SUFFIX(float *restrict v, size_t n) {                      \
        float m = -INFINITY;                                                              \
        for (size_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;                           \
        float sum = 0.0f;                                                                 \
        for (size_t i = 0; i < n; i++) {                                                  \
            float x = v[i] - m, result;                                                   \
            RK_EXP_BODY;                                                                  \
            v[i] = result;                                                                \
            sum += result;                                                                \
        }                                                                                 \
        float inv = 1.0f / sum;                                                           \
        for (size_t i = 0; i < n; i++) v[i] *= inv;                                       \
    }

#pragma clang fp reassociate(on)
RK_DEFINE_SOFTMAX(generic, )
#pragma clang fp reassociate(off)

// exp(x) for x ≤ 0 or NaN — a score minus its row's maximum — for rk_softmax_numerators: no upper
// clamp; 0 below −87.336544 (ln of the smallest normal float) and for NaN and −∞. Range reduction
// by ln 2 in two parts, then a degree-5 polynomial (relative error ≤ 1.7e-7, where RK_EXP_BODY's
// degree 7 has 0.9e-7; PyTorch's vectorised exp is ~1 ulp too); t carries n = round(x / ln 2) in
// its low mantissa bits, so t << 23 adds n to the polynomial's exponent (exact: every kept result
// is a normal float). 0.50 ns an element on a Zen 3 core where exp8 takes 0.74.
#define EXP_LOW -87.336544f
#define EXP_SHIFTER 12582912.0f
#define EXP_C5 8.33384e-3f
#define EXP_C4 4.189858e-2f
#define EXP_C3 1.6666886e-1f
#define EXP_C2 4.9999143e-1f

static inline float exp_nonpositive(float x) {
    float cx = x > EXP_LOW ? x : EXP_LOW;  // NaN takes EXP_LOW, as _mm256_max_ps(x, low) does
    float t = __builtin_fmaf(cx, 1.44269504f, EXP_SHIFTER);
    float fn = t - EXP_SHIFTER;
    float r = __builtin_fmaf(-fn, 0.693359375f, cx);
    r = __builtin_fmaf(fn, 2.12194440e-4f, r);
    float p = __builtin_fmaf(EXP_C5, r, EXP_C4);
    p = __builtin_fmaf(p, r, EXP_C3);
    p = __builtin_fmaf(p, r, EXP_C2);
    p = __builtin_fmaf(p, r, 1.0f);
    p = __builtin_fmaf(p, r, 1.0f);
    uint32_t bits, shift;
    memcpy(&bits, &p, 4);
    memcpy(&shift, &t, 4);
    bits += shift << 23;
    memcpy(&p, &bits, 4);
    return x >= EXP_LOW ? p : 0.0f;
}

/// Replaces v[0..n) by exp_nonpositive(v − max v) and returns 1 / their sum.
static float numerators_generic(float *v, size_t n) {
    float m = -INFINITY, sum = 0;
    for (size_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    for (size_t i = 0; i < n; i++) {
        v[i] = exp_nonpositive(v[i] - m);
        sum += v[i];
    }
    return 1.0f / sum;
}

#if defined(__x86_64__)
#define RK_AVX2 __attribute__((target("avx2,fma")))

/// RK_EXP_BODY on 8 lanes: the same clamp, reduction, polynomial and zero below -87.34 (exp16's
/// instructions at AVX2's width).
RK_AVX2 static inline __m256 exp8(__m256 x) {
    const __m256 low = _mm256_set1_ps(-87.336544f);
    __m256 cx = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.72284f)), low);
    __m256 t = _mm256_fmadd_ps(cx, _mm256_set1_ps(1.44269504f), _mm256_set1_ps(12582912.0f));
    __m256 fn = _mm256_sub_ps(t, _mm256_set1_ps(12582912.0f));
    __m256i n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000));
    __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(0.693359375f), cx);
    r = _mm256_fmadd_ps(fn, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
    return _mm256_and_ps(_mm256_mul_ps(e, scale), _mm256_cmp_ps(x, low, _CMP_GE_OQ));
}

/// exp_nonpositive on 8 lanes: the same operations.
RK_AVX2 static inline __m256 exp8_nonpositive(__m256 x) {
    const __m256 low = _mm256_set1_ps(EXP_LOW);
    const __m256 cx = _mm256_max_ps(x, low);
    const __m256 t = _mm256_fmadd_ps(cx, _mm256_set1_ps(1.44269504f), _mm256_set1_ps(EXP_SHIFTER));
    const __m256 fn = _mm256_sub_ps(t, _mm256_set1_ps(EXP_SHIFTER));
    __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(0.693359375f), cx);
    r = _mm256_fmadd_ps(fn, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C5), r, _mm256_set1_ps(EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23));
    return _mm256_and_ps(_mm256_castsi256_ps(bits), _mm256_cmp_ps(x, low, _CMP_GE_OQ));
}

/// Max-subtracted exp of v[0..n) written in place — whole vectors of 8 through exp8 (or
/// exp8_nonpositive when `nonpositive`), the last n mod 8 values through the scalar body (RK_EXP_BODY
/// or exp_nonpositive); returns 1 / their sum. (clang's vectorisation of the scalar loops: 1.2–1.35
/// ns per element on a 229-wide row on Zen 3; exp8 here: 0.9–1.0.)
RK_AVX2 __attribute__((always_inline)) static inline float exponentiate_avx2_with(float *v, size_t n, int nonpositive) {
    const size_t whole = n & ~(size_t)7;
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    for (size_t i = 0; i < whole; i += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(v + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float m = _mm_cvtss_f32(m4);
    for (size_t i = whole; i < n; i++) m = v[i] > m ? v[i] : m;
    const __m256 max = _mm256_set1_ps(m);
    __m256 sum8 = _mm256_setzero_ps();
    for (size_t i = 0; i < whole; i += 8) {
        const __m256 x = _mm256_sub_ps(_mm256_loadu_ps(v + i), max);
        const __m256 e = nonpositive ? exp8_nonpositive(x) : exp8(x);
        _mm256_storeu_ps(v + i, e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    float sum = _mm_cvtss_f32(s4);
    for (size_t i = whole; i < n; i++) {
        float x = v[i] - m, result;
        if (nonpositive) {
            result = exp_nonpositive(x);
        } else {
            RK_EXP_BODY;
        }
        v[i] = result;
        sum += result;
    }
    return 1.0f / sum;
}

/// The softmax of v[0..n) in place.
RK_AVX2 static void softmax_avx2(float *v, size_t n) {
    const float inverse = exponentiate_avx2_with(v, n, 0);
    const size_t whole = n & ~(size_t)7;
    const __m256 scale = _mm256_set1_ps(inverse);
    for (size_t i = 0; i < whole; i += 8) _mm256_storeu_ps(v + i, _mm256_mul_ps(_mm256_loadu_ps(v + i), scale));
    for (size_t i = whole; i < n; i++) v[i] *= inverse;
}

RK_AVX2 static float numerators_avx2(float *v, size_t n) { return exponentiate_avx2_with(v, n, 1); }
#endif

#if defined(__x86_64__)

/// RK_EXP_BODY on 16 lanes: the same clamp, reduction, polynomial and zero below -87.34.
RK_AVX512 static inline __m512 exp16(__m512 x) {
    const __m512 low = _mm512_set1_ps(-87.336544f);
    __m512 cx = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.72284f)), low);
    __m512 t = _mm512_fmadd_ps(cx, _mm512_set1_ps(1.44269504f), _mm512_set1_ps(12582912.0f));
    __m512 fn = _mm512_sub_ps(t, _mm512_set1_ps(12582912.0f));
    __m512i n = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000));
    __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), cx);
    r = _mm512_fmadd_ps(fn, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
    __mmask16 kept = _mm512_cmp_ps_mask(x, low, _CMP_GE_OQ);
    return _mm512_maskz_mul_ps(kept, e, scale);
}

/// exp(x) on 16 lanes for probabilities that are rounded to bfloat16 next: the same clamp and
/// zero below -87.34, a degree-5 polynomial fitted for relative error (1.2e-7 on [-ln2/2, ln2/2],
/// as close as exp16's degree 7) and the power of two applied by scalef — 12 instructions, not 19.
RK_AVX512 static inline __m512 exp16_scalef(__m512 x) {
    const __m512 low = _mm512_set1_ps(-87.336544f);
    const __mmask16 kept = _mm512_cmp_ps_mask(x, low, _CMP_GE_OQ);
    const __m512 cx = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.72284f)), low);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(cx, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), cx);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(8.33384e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.189858e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666886e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.9999143e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(kept, p, n);
}

RK_AVX512 static inline __mmask16 tail_mask(size_t count) { return (__mmask16)((1u << count) - 1u); }

/// Max-subtracted exp of v[0..n) written in place (exp16, or exp16_scalef when `scalef`);
/// returns 1 / their sum.
RK_AVX512 __attribute__((always_inline)) static inline float exponentiate_with(float *v, size_t n, int scalef) {
    const size_t whole = n & ~(size_t)15;
    const __mmask16 tail = tail_mask(n - whole);
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < whole; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(v + i));
    if (whole < n) m = _mm512_mask_max_ps(m, tail, m, _mm512_maskz_loadu_ps(tail, v + whole));
    const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(m));
    __m512 sum = _mm512_setzero_ps();
    for (size_t i = 0; i < whole; i += 16) {
        const __m512 x = _mm512_sub_ps(_mm512_loadu_ps(v + i), max);
        __m512 e = scalef ? exp16_scalef(x) : exp16(x);
        _mm512_storeu_ps(v + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (whole < n) {
        const __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, v + whole), max);
        __m512 e = _mm512_maskz_mov_ps(tail, scalef ? exp16_scalef(x) : exp16(x));
        _mm512_mask_storeu_ps(v + whole, tail, e);
        sum = _mm512_add_ps(sum, e);
    }
    return 1.0f / _mm512_reduce_add_ps(sum);
}

RK_AVX512 static float exponentiate_avx512(float *v, size_t n) { return exponentiate_with(v, n, 0); }
RK_AVX512 static float exponentiate_for_bf16_avx512(float *v, size_t n) { return exponentiate_with(v, n, 1); }

RK_AVX512 static void softmax_avx512(float *v, size_t n) {
    const float inv = exponentiate_avx512(v, n);
    const __m512 scale = _mm512_set1_ps(inv);
    const size_t whole = n & ~(size_t)15;
    for (size_t i = 0; i < whole; i += 16) _mm512_storeu_ps(v + i, _mm512_mul_ps(_mm512_loadu_ps(v + i), scale));
    if (whole < n) {
        const __mmask16 tail = tail_mask(n - whole);
        _mm512_mask_storeu_ps(v + whole, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, v + whole), scale));
    }
}

/// out[0..width) = bfloat16(v[i] · scale) for i < n, then zeros.
RK_AVX512 static void scale_to_bf16_avx512(const float *v, float scale, size_t n, size_t width, uint16_t *out) {
    const __m512 factor = _mm512_set1_ps(scale);
    const __m512i evens = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32,
                                           30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i low = round_to_bf16_lanes(_mm512_mul_ps(_mm512_loadu_ps(v + i), factor));
        __m512i high = round_to_bf16_lanes(_mm512_mul_ps(_mm512_loadu_ps(v + i + 16), factor));
        _mm512_storeu_si512(out + i, _mm512_permutex2var_epi16(low, evens, high));
    }
    for (; i < n; i += 16) {
        const size_t count = n - i < 16 ? n - i : 16;
        const __mmask16 mask = tail_mask(count);
        __m512i lanes = round_to_bf16_lanes(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, v + i), factor));
        _mm512_mask_cvtepi32_storeu_epi16(out + i, mask, lanes);
    }
    if (width > n) memset(out + n, 0, (width - n) * sizeof(uint16_t));
}
#endif

float rk_softmax_numerators_at(int level, float *v, size_t n) {
#if defined(__x86_64__)
    if (level >= 1) return numerators_avx2(v, n);
#endif
    (void)level;
    return numerators_generic(v, n);
}

void rk_softmax(float *x, size_t n) {
    if (n == 0) return;
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: softmax_avx512(x, n); return;
    case 1: softmax_avx2(x, n); return;
    default: break;
    }
#endif
    softmax_generic(x, n);
}

void rk_softmax_rows_bf16(float *scores, size_t ld, size_t rows, size_t n, size_t width, uint16_t *out) {
    for (size_t row = 0; row < rows; row++) {
        float *v = scores + row * ld;
        uint16_t *o = out + row * width;
        if (n == 0) {
            memset(o, 0, width * sizeof(uint16_t));
            continue;
        }
#if defined(__x86_64__)
        if (rk_simd_level() == 2) {
            scale_to_bf16_avx512(v, exponentiate_for_bf16_avx512(v, n), n, width, o);
            continue;
        }
#endif
        rk_softmax(v, n);
        rk_f32_to_bf16(v, o, n);
        if (width > n) memset(o + n, 0, (width - n) * sizeof(uint16_t));
    }
}

// One query against the n keys and values of its sequence (rows `ld` apart): scores, softmax,
// the weighted sum of values. Float32 throughout; the caller rounds q, k and v beforehand when
// the products run in bfloat16, and `round_probabilities` rounds the softmax to bfloat16 (as the
// packed attention's probability operand is).
// The scores and the weighted sum, per instruction set; the dot products are summed in vector
// lanes (reassociated), as a product's kernel sums them.
#define RK_DEFINE_SINGLE_QUERY(SUFFIX, ATTR)                                                       \
    ATTR static void scores_##SUFFIX(const float *restrict q, const float *restrict k, size_t ld, size_t n, \
                                     size_t head_dim, float scale, float *restrict scores) {        \
        for (size_t j = 0; j < n; j++) {                                                            \
            const float *key = k + j * ld;                                                          \
            float dot = 0.0f;                                                                       \
            for (size_t d = 0; d < head_dim; d++) dot += q[d] * key[d];                             \
            scores[j] = dot * scale;                                                                \
        }                                                                                           \
    }                                                                                               \
    ATTR static void weighted_sum_##SUFFIX(const float *restrict p, const float *restrict v, size_t ld, size_t n, \
                                           size_t head_dim, float *restrict out) {                  \
        for (size_t d = 0; d < head_dim; d++) out[d] = 0.0f;                                        \
        for (size_t j = 0; j < n; j++) {                                                            \
            const float *value = v + j * ld;                                                        \
            for (size_t d = 0; d < head_dim; d++) out[d] += p[j] * value[d];                        \
        }                                                                                           \
    }

#pragma clang fp reassociate(on)
RK_DEFINE_SINGLE_QUERY(generic, )
#if defined(__x86_64__)
RK_DEFINE_SINGLE_QUERY(avx512, RK_AVX512)
#endif
#pragma clang fp reassociate(off)

void rk_single_query_attention(const float *q, const float *k, const float *v, size_t ld, size_t n, size_t head_dim,
                               float scale, int round_probabilities, float *scores, float *out) {
#if defined(__x86_64__)
    const int wide = rk_simd_level() == 2;
#else
    const int wide = 0;
#endif
    if (wide) scores_avx512(q, k, ld, n, head_dim, scale, scores); else scores_generic(q, k, ld, n, head_dim, scale, scores);
    rk_softmax(scores, n);
    if (round_probabilities) {
        uint16_t halves[256];
        for (size_t j = 0; j < n; j += 256) {
            const size_t count = n - j < 256 ? n - j : 256;
            rk_f32_to_bf16(scores + j, halves, count);
            rk_bf16_to_f32(halves, scores + j, count);
        }
    }
#if defined(__x86_64__)
    if (wide) { weighted_sum_avx512(scores, v, ld, n, head_dim, out); return; }
#endif
    weighted_sum_generic(scores, v, ld, n, head_dim, out);
}
