// bfloat16 <-> float32 conversions over whole buffers. Float32 -> bfloat16 rounds to nearest even
// with NaN kept quiet (PyTorch's rule), written so that every instruction set gives the same bits
// (the AVX512-BF16 instruction flushes subnormals, so it is not used).
#include "refinery_kernels.h"

#include <stdint.h>
#include <string.h>

/// The bfloat16 bits of `value`: rounded to nearest even, NaN kept quiet.
static inline __attribute__((always_inline)) uint16_t bf16_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    const uint32_t quiet = (bits >> 16) | 0x40u;
    const int nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
    return (uint16_t)(nan ? quiet : rounded);
}

#define RK_DEFINE_CONVERT(SUFFIX, ATTR)                                                   \
    ATTR static void to_bf16_##SUFFIX(const float *restrict x, uint16_t *restrict y, size_t n) { \
        for (size_t i = 0; i < n; i++) y[i] = bf16_bits(x[i]);                            \
    }                                                                                     \
    ATTR static void bias_to_bf16_##SUFFIX(float *restrict x, const float *restrict b,    \
                                           uint16_t *restrict y, size_t n) {              \
        for (size_t i = 0; i < n; i++) {                                                  \
            const float value = x[i] + b[i];                                              \
            x[i] = value;                                                                 \
            y[i] = bf16_bits(value);                                                      \
        }                                                                                 \
    }                                                                                     \
    ATTR static void to_f32_##SUFFIX(const uint16_t *restrict x, float *restrict y, size_t n) { \
        for (size_t i = 0; i < n; i++) {                                                  \
            uint32_t bits = (uint32_t)x[i] << 16;                                         \
            memcpy(y + i, &bits, 4);                                                      \
        }                                                                                 \
    }

RK_DEFINE_CONVERT(generic, )
#if defined(__x86_64__)
RK_DEFINE_CONVERT(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_CONVERT(avx512, __attribute__((target("avx512f,avx512bw,avx512dq,avx2,fma"))))
#endif

void rk_f32_to_bf16(const float *x, uint16_t *y, size_t n) {
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: to_bf16_avx512(x, y, n); return;
    case 1: to_bf16_avx2(x, y, n); return;
    default: break;
    }
#endif
    to_bf16_generic(x, y, n);
}

void rk_add_bias_to_bf16(float *x, const float *bias, uint16_t *y, size_t n) {
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: bias_to_bf16_avx512(x, bias, y, n); return;
    case 1: bias_to_bf16_avx2(x, bias, y, n); return;
    default: break;
    }
#endif
    bias_to_bf16_generic(x, bias, y, n);
}

void rk_bf16_to_f32(const uint16_t *x, float *y, size_t n) {
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: to_f32_avx512(x, y, n); return;
    case 1: to_f32_avx2(x, y, n); return;
    default: break;
    }
#endif
    to_f32_generic(x, y, n);
}
