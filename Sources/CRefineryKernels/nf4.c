// 4-bit NormalFloat (QLoRA's NF4) codes: quantizing blocks of floats and dequantizing ranges of
// codes into float32 or bfloat16, two codes per byte, the first in the high nibble (bitsandbytes'
// layout).
#include "refinery_kernels.h"

#include <math.h>
#include <string.h>

#include "round_bf16_avx512.h"

/// The 16 NF4 levels (QLoRA, Dettmers et al. 2023): quantiles of N(0, 1) scaled to [-1, 1] with
/// an exact zero, as bitsandbytes stores them in float32.
static const float rk_nf4_levels_table[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

const float *rk_nf4_levels(void) { return rk_nf4_levels_table; }

size_t rk_nearest_code(float value, const float *midpoints, size_t count) {
    // The number of midpoints strictly below `value` (a value on a midpoint takes the lower
    // level), by binary search over the sorted midpoints.
    size_t low = 0, high = count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (midpoints[mid] < value) low = mid + 1; else high = mid;
    }
    return low;
}

float rk_quantize_block(const float *x, size_t n, int whole, const float *midpoints, size_t count, uint8_t *codes) {
    float largest = 0.0f;
    for (size_t i = 0; i < n; i++) largest = fmaxf(largest, fabsf(x[i]));
    const float safe = largest > 1e-38f ? largest : 1e-38f, inverse = 1.0f / safe;
    for (size_t i = 0; i < n; i++) {
        float scaled = whole ? x[i] * inverse : x[i] / safe;
        scaled = scaled < -1.0f ? -1.0f : (scaled > 1.0f ? 1.0f : scaled);
        if (count <= 16) {
            // Few levels: count the midpoints below, branch-free (the 4-bit case).
            size_t code = 0;
            for (size_t j = 0; j < count; j++) code += midpoints[j] < scaled;
            codes[i] = (uint8_t)code;
        } else {
            codes[i] = (uint8_t)rk_nearest_code(scaled, midpoints, count);
        }
    }
    return whole ? largest : safe;
}

/// Scalar dequantization of flat indices first..<first + count; `scales` indexed from block first / block_size.
static void dequantize_scalar(const uint8_t *codes, const float *scales, size_t block_size, size_t base_block,
                              size_t first, size_t count, float *out, uint16_t *halves) {
    for (size_t i = 0; i < count; i++) {
        const size_t index = first + i;
        const uint8_t byte = codes[index >> 1];
        const uint8_t code = (index & 1) ? (byte & 0x0F) : (byte >> 4);
        const float value = rk_nf4_levels_table[code] * scales[index / block_size - base_block];
        if (halves) rk_f32_to_bf16(&value, halves + i, 1); else out[i] = value;
    }
}

#if defined(__x86_64__)
/// 16 values from 8 code bytes (high nibble first) times `scale`, the levels looked up in a register.
RK_AVX512 static inline __m512 dequantize16(const uint8_t *bytes, __m512 levels, __m512 scale) {
    const __m128i packed = _mm_loadl_epi64((const __m128i *)bytes);
    const __m128i low = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
    const __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
    const __m512i indices = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(high, low));
    return _mm512_mul_ps(_mm512_permutexvar_ps(indices, levels), scale);
}

/// Whole groups of 16 starting at a multiple of 16 (one block scale each: blocks are multiples of 16).
RK_AVX512 static void dequantize_avx512(const uint8_t *codes, const float *scales, size_t block_size, size_t base_block,
                                        size_t first, size_t groups, float *out, uint16_t *halves) {
    const __m512 levels = _mm512_loadu_ps(rk_nf4_levels_table);
    for (size_t g = 0; g < groups; g++) {
        const size_t index = first + 16 * g;
        const __m512 values = dequantize16(codes + (index >> 1), levels, _mm512_set1_ps(scales[index / block_size - base_block]));
        if (halves) {
            _mm256_storeu_si256((__m256i *)(halves + 16 * g), _mm512_cvtepi32_epi16(round_to_bf16_lanes(values)));
        } else {
            _mm512_storeu_ps(out + 16 * g, values);
        }
    }
}
#endif

/// Dequantizes into float32 `out` or, when `halves` is given, bfloat16 `halves`.
static void dequantize(const uint8_t *codes, const float *scales, size_t block_size, size_t first, size_t count,
                       float *out, uint16_t *halves) {
    const size_t base_block = first / block_size;
#if defined(__x86_64__)
    if (rk_simd_level() == 2 && block_size % 16 == 0) {
        const size_t head = ((first + 15) & ~(size_t)15) - first < count ? ((first + 15) & ~(size_t)15) - first : count;
        dequantize_scalar(codes, scales, block_size, base_block, first, head, out, halves);
        const size_t groups = (count - head) / 16;
        dequantize_avx512(codes, scales, block_size, base_block, first + head, groups,
                          out ? out + head : NULL, halves ? halves + head : NULL);
        const size_t done = head + 16 * groups;
        dequantize_scalar(codes, scales, block_size, base_block, first + done, count - done,
                          out ? out + done : NULL, halves ? halves + done : NULL);
        return;
    }
#endif
    dequantize_scalar(codes, scales, block_size, base_block, first, count, out, halves);
}

void rk_nf4_dequantize(const uint8_t *codes, const float *block_scales, size_t block_size, size_t first, size_t count, float *out) {
    dequantize(codes, block_scales, block_size, first, count, out, NULL);
}

void rk_nf4_dequantize_bf16(const uint8_t *codes, const float *block_scales, size_t block_size, size_t first, size_t count,
                            uint16_t *out) {
    dequantize(codes, block_scales, block_size, first, count, NULL, out);
}
