// 4-bit NormalFloat (QLoRA's NF4) codes: quantizing blocks of floats and dequantizing ranges of
// codes into float32 or bfloat16, two codes per byte, the first in the high nibble (bitsandbytes'
// layout).
#include "refinery_kernels.h"

#include <math.h>
#include <string.h>

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

void rk_nf4_dequantize(const uint8_t *codes, const float *block_scales, size_t block_size, size_t first, size_t count, float *out) {
    // Element i of the range is flat index first + i; its block's scale is block_scales[(first + i) / block_size - first / block_size].
    const size_t base_block = first / block_size;
    for (size_t i = 0; i < count; i++) {
        const size_t index = first + i;
        const uint8_t byte = codes[index >> 1];
        const uint8_t code = (index & 1) ? (byte & 0x0F) : (byte >> 4);
        out[i] = rk_nf4_levels_table[code] * block_scales[index / block_size - base_block];
    }
}

void rk_nf4_dequantize_bf16(const uint8_t *codes, const float *block_scales, size_t block_size, size_t first, size_t count,
                            float *scratch, uint16_t *out) {
    rk_nf4_dequantize(codes, block_scales, block_size, first, count, scratch);
    rk_f32_to_bf16(scratch, out, count);
}
