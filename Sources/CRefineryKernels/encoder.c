// Elementwise kernels of BERT-family encoders: LayerNorm with bias and GELU with the exact erf
// (not the tanh approximation), vectorised per instruction set chosen at run time.
#include "refinery_kernels.h"

#include <math.h>
#include <stddef.h>

// erf(x) for float32 as a rational function on [-4, 4] (odd numerator of degree 13, even
// denominator of degree 8), saturating to ±1 outside; a few ulp from the correctly rounded erf.
#define RK_ERF_BODY(X, OUT)                                                                \
    do {                                                                                   \
        float cx = (X) > 4.0f ? 4.0f : ((X) < -4.0f ? -4.0f : (X));                       \
        float x2 = cx * cx;                                                                \
        float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;                     \
        p = x2 * p + -2.10102402082508e-06f;                                               \
        p = x2 * p + -5.69250639462346e-05f;                                               \
        p = x2 * p + -7.34990630326855e-04f;                                               \
        p = x2 * p + -2.95459980854025e-03f;                                               \
        p = x2 * p + -1.60960333262415e-02f;                                               \
        p = cx * p;                                                                        \
        float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;                    \
        q = x2 * q + -1.68282697438203e-03f;                                               \
        q = x2 * q + -7.37332916720468e-03f;                                               \
        q = x2 * q + -1.42647390514189e-02f;                                               \
        (OUT) = p / q;                                                                     \
    } while (0)

#define RK_DEFINE_ENCODER(SUFFIX, ATTR)                                                    \
    ATTR static void bias_gelu_##SUFFIX(float *restrict v, const float *restrict b, size_t n) { \
        for (size_t i = 0; i < n; i++) {                                                   \
            float x = v[i] + b[i], e;                                                      \
            float scaled = x * 0.70710678118654752f;                                       \
            RK_ERF_BODY(scaled, e);                                                        \
            v[i] = 0.5f * x * (1.0f + e);                                                  \
        }                                                                                  \
    }                                                                                      \
    ATTR static void add_bias_##SUFFIX(float *restrict v, const float *restrict b, size_t n) { \
        for (size_t i = 0; i < n; i++) v[i] += b[i];                                       \
    }                                                                                      \
    ATTR static void layer_norm_##SUFFIX(const float *restrict x, const float *restrict w, \
                                         const float *restrict b, float *restrict y,      \
                                         size_t n, float eps) {                            \
        float sum = 0.0f;                                                                  \
        for (size_t i = 0; i < n; i++) sum += x[i];                                        \
        const float mean = sum / (float)n;                                                 \
        float squares = 0.0f;                                                              \
        for (size_t i = 0; i < n; i++) { float d = x[i] - mean; squares += d * d; }       \
        const float inv = 1.0f / sqrtf(squares / (float)n + eps);                          \
        for (size_t i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];           \
    }                                                                                      \
    ATTR static void residual_layer_norm_##SUFFIX(float *restrict x, const float *restrict r, \
                                                  const float *restrict c, const float *restrict w, \
                                                  const float *restrict b, float *restrict y, \
                                                  size_t n, float eps) {                   \
        float sum = 0.0f;                                                                  \
        for (size_t i = 0; i < n; i++) { x[i] = (x[i] + r[i]) + c[i]; sum += x[i]; }      \
        const float mean = sum / (float)n;                                                 \
        float squares = 0.0f;                                                              \
        for (size_t i = 0; i < n; i++) { float d = x[i] - mean; squares += d * d; }       \
        const float inv = 1.0f / sqrtf(squares / (float)n + eps);                          \
        for (size_t i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];           \
    }

#pragma clang fp reassociate(on)
RK_DEFINE_ENCODER(generic, )
#if defined(__x86_64__)
RK_DEFINE_ENCODER(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_ENCODER(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

void rk_bias_gelu(float *x, const float *bias, size_t n) {
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: bias_gelu_avx512(x, bias, n); return;
    case 1: bias_gelu_avx2(x, bias, n); return;
    default: break;
    }
#endif
    bias_gelu_generic(x, bias, n);
}

void rk_add_bias(float *x, const float *bias, size_t n) {
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: add_bias_avx512(x, bias, n); return;
    case 1: add_bias_avx2(x, bias, n); return;
    default: break;
    }
#endif
    add_bias_generic(x, bias, n);
}

void rk_layer_norm(const float *x, const float *weight, const float *bias, float *y, size_t n, float eps) {
    if (n == 0) return;
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: layer_norm_avx512(x, weight, bias, y, n, eps); return;
    case 1: layer_norm_avx2(x, weight, bias, y, n, eps); return;
    default: break;
    }
#endif
    layer_norm_generic(x, weight, bias, y, n, eps);
}

void rk_residual_layer_norm(float *x, const float *residual, const float *bias, const float *weight, const float *norm_bias, float *y,
                            size_t n, float eps) {
    if (n == 0) return;
#if defined(__x86_64__)
    switch (rk_simd_level()) {
    case 2: residual_layer_norm_avx512(x, residual, bias, weight, norm_bias, y, n, eps); return;
    case 1: residual_layer_norm_avx2(x, residual, bias, weight, norm_bias, y, n, eps); return;
    default: break;
    }
#endif
    residual_layer_norm_generic(x, residual, bias, weight, norm_bias, y, n, eps);
}
