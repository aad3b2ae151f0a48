// MinHash signatures. Hash function i maps a 32-bit shingle hash x to (a_i·x + b_i mod 2^64) >> 32
// (Dietzfelbinger's multiply-shift, strongly universal for 32-bit keys); a signature holds, for
// each function, the minimum over a document's shingles. Integer arithmetic only: every
// instruction set computes the same bits.
#include "refinery_kernels.h"

#include <stdint.h>

#define RK_DEFINE_MINHASH(SUFFIX, ATTR)                                                    \
    ATTR static void minhash_##SUFFIX(const uint32_t *restrict shingles, size_t count,     \
                                      const uint64_t *restrict a, const uint64_t *restrict b, \
                                      size_t perms, uint32_t *restrict out) {             \
        for (size_t i = 0; i < perms; i++) out[i] = UINT32_MAX;                          \
        for (size_t s = 0; s < count; s++) {                                             \
            const uint64_t x = shingles[s];                                              \
            for (size_t i = 0; i < perms; i++) {                                         \
                const uint32_t h = (uint32_t)((a[i] * x + b[i]) >> 32);                  \
                out[i] = h < out[i] ? h : out[i];                                        \
            }                                                                            \
        }                                                                                \
    }

RK_DEFINE_MINHASH(generic, )
#if defined(__x86_64__)
RK_DEFINE_MINHASH(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_MINHASH(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

void rk_minhash(const uint32_t *shingles, size_t count, const uint64_t *a, const uint64_t *b, size_t perms, uint32_t *out) {
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: minhash_avx512(shingles, count, a, b, perms, out); return;
    case 1: minhash_avx2(shingles, count, a, b, perms, out); return;
    default: break;
    }
#endif
    minhash_generic(shingles, count, a, b, perms, out);
}
