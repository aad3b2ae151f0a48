// Rounding 16 floats to bfloat16 with AVX-512, bit for bit as rk_f32_to_bf16 rounds (to nearest
// even, NaN kept quiet). Shared by the kernels that write bfloat16 operands straight from registers.
#ifndef REFINERY_ROUND_BF16_AVX512_H
#define REFINERY_ROUND_BF16_AVX512_H
#if defined(__x86_64__)
#include <immintrin.h>

#define RK_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx2,fma")))

/// The bfloat16 bits of 16 floats, each in the low 16 bits of its 32-bit lane, as rk_f32_to_bf16
/// rounds them: to nearest even, NaN kept quiet.
RK_AVX512 static inline __m512i round_to_bf16_lanes(__m512 values) {
    const __m512i bits = _mm512_castps_si512(values);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), odd);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
    return _mm512_srli_epi32(_mm512_mask_or_epi32(rounded, nan, bits, _mm512_set1_epi32(0x400000)), 16);
}

#endif
#endif
