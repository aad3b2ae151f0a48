// exp(x) for float32 as the kernels' loops compute it: range reduction by ln 2 in two parts, a
// degree-6 polynomial, the exponent built in the bits; 0 below -87.34 (no denormals). Reads `x`,
// writes `result`. Shared by kernels.c and softmax.c (scalar loops that clang vectorises).
#ifndef REFINERY_EXP_BODY_H
#define REFINERY_EXP_BODY_H
#include <stdint.h>
#include <string.h>

#define RK_EXP_BODY                                                                       \
    do {                                                                                  \
        float cx = x < -87.336544f ? -87.336544f : (x > 88.72284f ? 88.72284f : x);       \
        float t = cx * 1.44269504f + 12582912.0f;                                         \
        float fn = t - 12582912.0f;                                                       \
        int32_t bits_t;                                                                   \
        memcpy(&bits_t, &t, 4);                                                           \
        int32_t n = bits_t - 0x4B400000;                                                  \
        float r = cx - fn * 0.693359375f;                                                 \
        r = r + fn * 2.12194440e-4f;                                                      \
        float p = 1.9875691500e-4f;                                                       \
        p = p * r + 1.3981999507e-3f;                                                     \
        p = p * r + 8.3334519073e-3f;                                                     \
        p = p * r + 4.1665795894e-2f;                                                     \
        p = p * r + 1.6666665459e-1f;                                                     \
        p = p * r + 5.0000001201e-1f;                                                     \
        float e = p * r * r + r + 1.0f;                                                   \
        int32_t sbits = (n + 127) << 23;                                                  \
        float s;                                                                          \
        memcpy(&s, &sbits, 4);                                                            \
        result = x < -87.336544f ? 0.0f : e * s;                                          \
    } while (0)

#endif
