// AdamW with 8-bit blockwise moments (bitsandbytes' AdamW8bit): each block of 256 moments is
// stored as one byte per value indexing a 256-value dynamic map, times the block's absmax.
#include "refinery_kernels.h"

#include <math.h>
#include <string.h>

/// The table key of a float in [-1, 1]: its top 16 bits of magnitude (exponent and 7 mantissa
/// bits), negatives after the RK_CODE_TABLE_HALF positives.
static inline size_t code_table_key(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    size_t magnitude = (bits & 0x7FFFFFFFu) >> 16;
    if (magnitude >= RK_CODE_TABLE_HALF) magnitude = RK_CODE_TABLE_HALF - 1;  // NaN (never passed: the trainer refuses it)
    return (bits >> 31) ? RK_CODE_TABLE_HALF + magnitude : magnitude;
}

static inline float float_from_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

size_t rk_code_table(const float *midpoints, size_t count, uint8_t *low, uint8_t *high) {
    size_t widest = 0;
    for (size_t magnitude = 0; magnitude < RK_CODE_TABLE_HALF; magnitude++) {
        const float small = float_from_bits((uint32_t)(magnitude << 16)), large = float_from_bits((uint32_t)(magnitude << 16) | 0xFFFFu);
        // Positive bucket: [small, large]; negative bucket: [-large, -small].
        low[magnitude] = (uint8_t)rk_nearest_code(small, midpoints, count);
        high[magnitude] = (uint8_t)rk_nearest_code(large, midpoints, count);
        low[RK_CODE_TABLE_HALF + magnitude] = (uint8_t)rk_nearest_code(-large, midpoints, count);
        high[RK_CODE_TABLE_HALF + magnitude] = (uint8_t)rk_nearest_code(-small, midpoints, count);
        const size_t positive = (size_t)(high[magnitude] - low[magnitude]);
        const size_t negative = (size_t)(high[RK_CODE_TABLE_HALF + magnitude] - low[RK_CODE_TABLE_HALF + magnitude]);
        if (positive > widest) widest = positive;
        if (negative > widest) widest = negative;
    }
    return widest;
}

size_t rk_table_code(float value, const rk_code_map *map) {
    return map->low[code_table_key(value)] + (map->midpoints[map->low[code_table_key(value)]] < value);
}

// The block update, compiled for each instruction set (the same roundings in each: every
// operation is its own statement, so no fused multiply-add forms). Codes through the table: a
// bucket holds at most one midpoint (rk_code_table reports the widest; CodeMap checks it), and
// midpoints[255] is +infinity, so code = low + (midpoints[low] < value) without a branch.
#define RK_DEFINE_ADAMW8BIT(SUFFIX, ATTR)                                                                      \
    ATTR static float quantize_##SUFFIX(const float *restrict x, size_t n, int whole, const rk_code_map *map,   \
                                        uint8_t *restrict codes) {                                           \
        float largest = 0.0f;                                                                                \
        for (size_t i = 0; i < n; i++) largest = fmaxf(largest, fabsf(x[i]));                                \
        const float safe = largest > 1e-38f ? largest : 1e-38f, inverse = 1.0f / safe;                      \
        const float *restrict midpoints = map->midpoints;                                                    \
        const uint8_t *restrict low = map->low;                                                              \
        for (size_t i = 0; i < n; i++) {                                                                     \
            float scaled = whole ? x[i] * inverse : x[i] / safe;                                             \
            scaled = scaled < -1.0f ? -1.0f : (scaled > 1.0f ? 1.0f : scaled);                               \
            const uint32_t code = low[code_table_key(scaled)];                                               \
            codes[i] = (uint8_t)(code + (midpoints[code] < scaled));                                         \
        }                                                                                                    \
        return whole ? largest : safe;                                                                       \
    }                                                                                                        \
    ATTR static void adamw8bit_##SUFFIX(float *restrict p, const float *restrict g, uint8_t *restrict m_codes, \
                                        float *m_absmax, uint8_t *restrict v_codes, float *v_absmax, size_t n,   \
                                        int whole, const rk_code_map *first_map, const rk_code_map *second_map,   \
                                        float decay, float b1, float b2, float one_minus_b1, float one_minus_b2,  \
                                        float eps, float negative_step_size, float correction2_root) {           \
        float m[256], v[256];                                                                                \
        const float m_scale = *m_absmax, v_scale = *v_absmax;                                                \
        const float *restrict first_values = first_map->values, *restrict second_values = second_map->values; \
        for (size_t i = 0; i < n; i++) {                                                                     \
            const float gi = g[i];                                                                           \
            const float m_old = first_values[m_codes[i]] * m_scale;                                          \
            const float v_old = second_values[v_codes[i]] * v_scale;                                         \
            const float m_decayed = m_old * b1, m_added = gi * one_minus_b1;                                 \
            const float mi = m_decayed + m_added;                                                            \
            const float v_decayed = v_old * b2, v_scaled = one_minus_b2 * gi;                                \
            const float v_added = v_scaled * gi;                                                             \
            const float vi = v_decayed + v_added;                                                            \
            const float root = sqrtf(vi), corrected = root / correction2_root;                               \
            const float denominator = corrected + eps;                                                       \
            const float ratio = mi / denominator;                                                            \
            const float decayed = p[i] * decay, change = negative_step_size * ratio;                         \
            p[i] = decayed + change;                                                                         \
            m[i] = mi;                                                                                       \
            v[i] = vi;                                                                                       \
        }                                                                                                    \
        *m_absmax = quantize_##SUFFIX(m, n, whole, first_map, m_codes);                                       \
        *v_absmax = quantize_##SUFFIX(v, n, whole, second_map, v_codes);                                      \
    }

RK_DEFINE_ADAMW8BIT(generic, )
#if defined(__x86_64__)
RK_DEFINE_ADAMW8BIT(avx2, __attribute__((target("avx2"))))
RK_DEFINE_ADAMW8BIT(avx512, __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2"))))
#endif

void rk_adamw8bit_block(float *p, const float *g, uint8_t *m_codes, float *m_absmax, uint8_t *v_codes, float *v_absmax,
                        size_t n, int whole, const rk_code_map *first_map, const rk_code_map *second_map, float decay, float b1,
                        float b2, float one_minus_b1, float one_minus_b2, float eps, float negative_step_size, float correction2_root) {
#if defined(__x86_64__)
    const int level = rk_simd_level();
    if (level == 2) {
        adamw8bit_avx512(p, g, m_codes, m_absmax, v_codes, v_absmax, n, whole, first_map, second_map, decay, b1, b2, one_minus_b1,
                         one_minus_b2, eps, negative_step_size, correction2_root);
        return;
    }
    if (level == 1) {
        adamw8bit_avx2(p, g, m_codes, m_absmax, v_codes, v_absmax, n, whole, first_map, second_map, decay, b1, b2, one_minus_b1,
                       one_minus_b2, eps, negative_step_size, correction2_root);
        return;
    }
#endif
    adamw8bit_generic(p, g, m_codes, m_absmax, v_codes, v_absmax, n, whole, first_map, second_map, decay, b1, b2, one_minus_b1,
                      one_minus_b2, eps, negative_step_size, correction2_root);
}
