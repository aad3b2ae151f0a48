// AdamW with 8-bit blockwise moments (bitsandbytes' AdamW8bit): each block of 256 moments is
// stored as one byte per value indexing a 256-value dynamic map, times the block's absmax.
#include "refinery_kernels.h"

#include <math.h>

void rk_adamw8bit_block(float *p, const float *g, uint8_t *m_codes, float *m_absmax, uint8_t *v_codes, float *v_absmax,
                        size_t n, int whole, const float *signed_map, const float *signed_midpoints,
                        const float *unsigned_map, const float *unsigned_midpoints, float decay, float b1, float b2,
                        float one_minus_b1, float one_minus_b2, float eps, float negative_step_size, float correction2_root) {
    float m[256], v[256];
    const float m_scale = *m_absmax, v_scale = *v_absmax;
    for (size_t i = 0; i < n; i++) {
        // One rounding per operation, in the reference's order (separate statements: no fused
        // multiply-add is formed across them).
        const float gi = g[i];
        const float m_old = signed_map[m_codes[i]] * m_scale;
        const float v_old = unsigned_map[v_codes[i]] * v_scale;
        const float m_decayed = m_old * b1, m_added = gi * one_minus_b1;
        const float mi = m_decayed + m_added;
        const float v_decayed = v_old * b2, v_scaled = one_minus_b2 * gi;
        const float v_added = v_scaled * gi;
        const float vi = v_decayed + v_added;
        const float root = sqrtf(vi), corrected = root / correction2_root;
        const float denominator = corrected + eps;
        const float ratio = mi / denominator;
        const float decayed = p[i] * decay, change = negative_step_size * ratio;
        p[i] = decayed + change;
        m[i] = mi;
        v[i] = vi;
    }
    *m_absmax = rk_quantize_block(m, n, whole, signed_midpoints, 255, m_codes);
    *v_absmax = rk_quantize_block(v, n, whole, unsigned_midpoints, 255, v_codes);
}
