// Elementwise kernels whose inner loops need exp: written in C so that clang vectorises them
// (AVX2/FMA or AVX-512 when the CPU has them, chosen at run time; plain SSE2 otherwise).
#include "refinery_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "exp_body.h"

#define RK_DEFINE_KERNELS(SUFFIX, ATTR)                                                   \
    ATTR static void silu_gate_##SUFFIX(float *restrict g, const float *restrict u, size_t n) { \
        for (size_t i = 0; i < n; i++) {                                                  \
            float x = -g[i], result;                                                      \
            RK_EXP_BODY;                                                                  \
            g[i] = g[i] / (1.0f + result) * u[i];                                         \
        }                                                                                 \
    }

#pragma clang fp reassociate(on)
RK_DEFINE_KERNELS(generic, )
#if defined(__x86_64__)
RK_DEFINE_KERNELS(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_KERNELS(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

typedef enum { RK_GENERIC, RK_AVX2, RK_AVX512 } rk_level;

static rk_level rk_detect(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return RK_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return RK_AVX2;
#endif
    return RK_GENERIC;
}

static rk_level rk_level_cached = (rk_level)-1;

static inline rk_level rk_current(void) {
    if ((int)rk_level_cached < 0) rk_level_cached = rk_detect();
    return rk_level_cached;
}

int rk_simd_level(void) { return (int)rk_current(); }

void rk_silu_gate(float *gate, const float *up, size_t n) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: silu_gate_avx512(gate, up, n); return;
    case RK_AVX2: silu_gate_avx2(gate, up, n); return;
    default: break;
    }
#endif
    silu_gate_generic(gate, up, n);
}


// Cross-entropy of one row of logits, forward and backward in three passes: max; exp written in
// place with the sum accumulated in double; then the row becomes (softmax − onehot)·scale.
#define RK_DEFINE_CROSS_ENTROPY(SUFFIX, ATTR)                                               \
    ATTR static double cross_entropy_##SUFFIX(float *restrict v, size_t n, size_t target, float scale) { \
        float m = -INFINITY;                                                              \
        for (size_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;                           \
        const float picked = v[target];                                                   \
        double sum = 0.0;                                                                 \
        for (size_t i = 0; i < n; i++) {                                                  \
            float x = v[i] - m, result;                                                   \
            RK_EXP_BODY;                                                                  \
            v[i] = result;                                                                \
            sum += (double)result;                                                        \
        }                                                                                 \
        const float factor = (float)((double)scale / sum);                                \
        for (size_t i = 0; i < n; i++) v[i] *= factor;                                    \
        v[target] -= scale;                                                               \
        return (double)m + log(sum) - (double)picked;                                     \
    }

RK_DEFINE_CROSS_ENTROPY(generic, )
#if defined(__x86_64__)
RK_DEFINE_CROSS_ENTROPY(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_CROSS_ENTROPY(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

#define RK_DEFINE_LOGSUMEXP(SUFFIX, ATTR)                                                   \
    ATTR static double logsumexp_##SUFFIX(const float *restrict v, size_t n) {            \
        float m = -INFINITY;                                                              \
        for (size_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;                           \
        double sum = 0.0;                                                                 \
        for (size_t i = 0; i < n; i++) {                                                  \
            float x = v[i] - m, result;                                                   \
            RK_EXP_BODY;                                                                  \
            sum += (double)result;                                                        \
        }                                                                                 \
        return (double)m + log(sum);                                                      \
    }

RK_DEFINE_LOGSUMEXP(generic, )
#if defined(__x86_64__)
RK_DEFINE_LOGSUMEXP(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_LOGSUMEXP(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

double rk_logsumexp(const float *x, size_t n) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: return logsumexp_avx512(x, n);
    case RK_AVX2: return logsumexp_avx2(x, n);
    default: break;
    }
#endif
    return logsumexp_generic(x, n);
}

double rk_cross_entropy(float *logits, size_t n, size_t target, float scale) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: return cross_entropy_avx512(logits, n, target, scale);
    case RK_AVX2: return cross_entropy_avx2(logits, n, target, scale);
    default: break;
    }
#endif
    return cross_entropy_generic(logits, n, target, scale);
}

// Dot products for the norms (summed in vector lanes, then across them).
#define RK_DEFINE_DOTS(SUFFIX, ATTR)                                                        \
    ATTR static float dot_##SUFFIX(const float *restrict a, const float *restrict b, size_t n) { \
        float sum = 0.0f;                                                                 \
        for (size_t i = 0; i < n; i++) sum += a[i] * b[i];                                \
        return sum;                                                                       \
    }                                                                                     \
    ATTR static float dot3_##SUFFIX(const float *restrict a, const float *restrict b,     \
                                    const float *restrict c, size_t n) {                  \
        float sum = 0.0f;                                                                 \
        for (size_t i = 0; i < n; i++) sum += a[i] * b[i] * c[i];                         \
        return sum;                                                                       \
    }

RK_DEFINE_DOTS(generic, )
#if defined(__x86_64__)
RK_DEFINE_DOTS(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_DOTS(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

float rk_dot(const float *a, const float *b, size_t n) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: return dot_avx512(a, b, n);
    case RK_AVX2: return dot_avx2(a, b, n);
    default: break;
    }
#endif
    return dot_generic(a, b, n);
}

float rk_dot3(const float *a, const float *b, const float *c, size_t n) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: return dot3_avx512(a, b, c, n);
    case RK_AVX2: return dot3_avx2(a, b, c, n);
    default: break;
    }
#endif
    return dot3_generic(a, b, c, n);
}

#define RK_DEFINE_SILU_BACKWARD(SUFFIX, ATTR)                                              \
    ATTR static void silu_backward_##SUFFIX(const float *restrict g, const float *restrict u, \
                                            const float *restrict d, float *restrict dg,   \
                                            float *restrict du, size_t n) {                \
        for (size_t i = 0; i < n; i++) {                                                  \
            float x = -g[i], result;                                                      \
            RK_EXP_BODY;                                                                  \
            float sig = 1.0f / (1.0f + result);                                           \
            float silu = g[i] * sig;                                                      \
            dg[i] = d[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));                     \
            du[i] = d[i] * silu;                                                          \
        }                                                                                 \
    }

RK_DEFINE_SILU_BACKWARD(generic, )
#if defined(__x86_64__)
RK_DEFINE_SILU_BACKWARD(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_SILU_BACKWARD(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

void rk_silu_gate_backward(const float *gate, const float *up, const float *d_act, float *d_gate, float *d_up, size_t n) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: silu_backward_avx512(gate, up, d_act, d_gate, d_up, n); return;
    case RK_AVX2: silu_backward_avx2(gate, up, d_act, d_gate, d_up, n); return;
    default: break;
    }
#endif
    silu_backward_generic(gate, up, d_act, d_gate, d_up, n);
}

#define RK_DEFINE_OPTIMIZER(SUFFIX, ATTR)                                                  \
    ATTR static void adamw_##SUFFIX(float *restrict p, const float *restrict g, float *restrict m, \
                                    float *restrict v, size_t n, float decay, float b1, float b2, \
                                    float one_minus_b1, float one_minus_b2, float eps,     \
                                    float step_size, float c2) {                           \
        for (size_t i = 0; i < n; i++) {                                                  \
            float pi = p[i] * decay;                                                      \
            float mi = m[i] * b1 + g[i] * one_minus_b1;                                   \
            float vi = v[i] * b2 + g[i] * g[i] * one_minus_b2;                            \
            m[i] = mi;                                                                    \
            v[i] = vi;                                                                    \
            p[i] = pi - step_size * mi / (sqrtf(vi) / c2 + eps);                          \
        }                                                                                 \
    }

RK_DEFINE_OPTIMIZER(generic, )
#if defined(__x86_64__)
RK_DEFINE_OPTIMIZER(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_OPTIMIZER(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

void rk_adamw(float *p, const float *g, float *m, float *v, size_t n, float decay, float b1, float b2,
              float one_minus_b1, float one_minus_b2, float eps, float step_size, float correction2_root) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: adamw_avx512(p, g, m, v, n, decay, b1, b2, one_minus_b1, one_minus_b2, eps, step_size, correction2_root); return;
    case RK_AVX2: adamw_avx2(p, g, m, v, n, decay, b1, b2, one_minus_b1, one_minus_b2, eps, step_size, correction2_root); return;
    default: break;
    }
#endif
    adamw_generic(p, g, m, v, n, decay, b1, b2, one_minus_b1, one_minus_b2, eps, step_size, correction2_root);
}

double rk_sum_squares(const float *x, size_t n) {
    double total = 0.0;
    for (size_t i = 0; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}

void rk_scale(float *x, size_t n, float factor) {
    for (size_t i = 0; i < n; i++) x[i] *= factor;
}

#if defined(__GLIBC__)
#include <malloc.h>
int rk_retain_freed_memory(void) {
    return mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
}
#else
int rk_retain_freed_memory(void) { return 0; }
#endif

// RMSNorm's scaling and the rotary embedding: plain elementwise loops, vectorised per instruction
// set. No reassociation or contraction, so every instruction set computes the same bits.
#pragma clang fp reassociate(off)
#pragma clang fp contract(off)
#define RK_DEFINE_ROWS(SUFFIX, ATTR)                                                        \
    ATTR static void rms_scale_##SUFFIX(const float *restrict x, const float *restrict w,  \
                                        float *restrict y, size_t n, float scale) {        \
        for (size_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * scale);                       \
    }                                                                                     \
    ATTR static void rotary_##SUFFIX(float *restrict v, const float *restrict c,          \
                                     const float *restrict s, size_t half) {              \
        float *restrict hi = v + half;                                                    \
        for (size_t i = 0; i < half; i++) {                                               \
            float a = v[i], b = hi[i];                                                    \
            v[i] = a * c[i] - b * s[i];                                                   \
            hi[i] = b * c[i] + a * s[i];                                                  \
        }                                                                                 \
    }                                                                                     \
    ATTR static void rotary_back_##SUFFIX(float *restrict v, const float *restrict c,     \
                                          const float *restrict s, size_t half) {         \
        float *restrict hi = v + half;                                                    \
        for (size_t i = 0; i < half; i++) {                                               \
            float a = v[i], b = hi[i];                                                    \
            v[i] = a * c[i] + b * s[i];                                                   \
            hi[i] = b * c[i] - a * s[i];                                                  \
        }                                                                                 \
    }                                                                                     \
    ATTR static void rms_back_##SUFFIX(const float *restrict x, const float *restrict w,   \
                                       const float *restrict dy, float *restrict dx,      \
                                       size_t n, float r, float coefficient) {            \
        for (size_t i = 0; i < n; i++) dx[i] = r * w[i] * dy[i] - x[i] * coefficient;     \
    }

RK_DEFINE_ROWS(generic, )
#if defined(__x86_64__)
RK_DEFINE_ROWS(avx2, __attribute__((target("avx2,fma"))))
RK_DEFINE_ROWS(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

void rk_rms_scale(const float *x, const float *weight, float *y, size_t n, float scale) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: rms_scale_avx512(x, weight, y, n, scale); return;
    case RK_AVX2: rms_scale_avx2(x, weight, y, n, scale); return;
    default: break;
    }
#endif
    rms_scale_generic(x, weight, y, n, scale);
}

void rk_rotary(float *v, const float *cos_row, const float *sin_row, size_t half) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: rotary_avx512(v, cos_row, sin_row, half); return;
    case RK_AVX2: rotary_avx2(v, cos_row, sin_row, half); return;
    default: break;
    }
#endif
    rotary_generic(v, cos_row, sin_row, half);
}

void rk_rotary_backward(float *g, const float *cos_row, const float *sin_row, size_t half) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: rotary_back_avx512(g, cos_row, sin_row, half); return;
    case RK_AVX2: rotary_back_avx2(g, cos_row, sin_row, half); return;
    default: break;
    }
#endif
    rotary_back_generic(g, cos_row, sin_row, half);
}

void rk_rms_backward(const float *x, const float *weight, const float *dy, float *dx, size_t n, float r, float coefficient) {
#if defined(__x86_64__)
    switch (rk_current()) {
    case RK_AVX512: rms_back_avx512(x, weight, dy, dx, n, r, coefficient); return;
    case RK_AVX2: rms_back_avx2(x, weight, dy, dx, n, r, coefficient); return;
    default: break;
    }
#endif
    rms_back_generic(x, weight, dy, dx, n, r, coefficient);
}
