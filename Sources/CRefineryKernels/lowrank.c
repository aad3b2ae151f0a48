// The thin products of LoRA: one side has only `rank` (8–64) rows or columns. BLAS libraries
// tune for big square-ish products; on these shapes OpenBLAS spends most of its time packing and
// waking threads (measured: ~0.5 s of a 2.3 s LoRA step on the SmolLM2-135M shape). These loops
// keep every operand in cache and run at FMA speed.
//
// Every output element is computed by one fixed sequence of operations — a chain of fused
// multiply-adds in operand order, then the scaling — whichever tile, thread range or instruction
// set computes it. So the bits do not depend on how callers split the work across threads, and
// AVX-512, AVX2 and portable builds agree (all use fused multiply-add).
#include "refinery_kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

typedef float rk_v16 __attribute__((vector_size(64)));

// Macros, not functions: a function taking or returning a 64-byte vector has a different ABI
// under each target attribute below.
#define rk_load16(P) ({ rk_v16 v_; memcpy(&v_, (P), sizeof v_); v_; })
#define rk_store16(P, V) ({ rk_v16 s_ = (V); memcpy((P), &s_, sizeof s_); })
#define rk_splat16(S) ({ float f_ = (S); (rk_v16){f_, f_, f_, f_, f_, f_, f_, f_, f_, f_, f_, f_, f_, f_, f_, f_}; })
#define rk_fma16(A, B, C) __builtin_elementwise_fma((A), (B), (C))

// --- expand: y[t, n] (+)= alpha · Σ_j u[t, j] · m[j, n] ----------------------------------------
// Each element: acc = 0; acc = fma(u[t, j], m[j, n], acc) for j in order; then y = fma(alpha, acc, y)
// (accumulate) or y = alpha · acc. Tiles: 4 rows × 32 columns (WIDE), then 16-column strips
// STRIP rows at a time (the thin case, m with 16 columns) with their last rows in blocks of 4, 2
// and 1, and scalar columns past the last 16. AVX2 has 16 vector registers, not 32: the 4 × 32
// tile would spill its sums on every step, so it runs a 3 × 32 tile written in intrinsics
// (`expand_wide3_avx2`) and 16-column strips 6 rows at a time (12 registers of sums) for the rest.

#define RK_EXPAND_STORE(DST, ACC)                                                           \
    rk_store16((DST), accumulate ? rk_fma16(rk_splat16(alpha), (ACC), rk_load16(DST))       \
                                 : rk_splat16(alpha) * (ACC))

// One block of R rows (t..t+R) of the 16-column strip at column n: R chains of sums, one per row.
#define RK_EXPAND_STRIP_ROWS(R)                                                             \
    do {                                                                                    \
        const float *ut = u + t * ldu;                                                      \
        rk_v16 a[R] = {{0}};                                                                \
        for (size_t j = 0; j < rank; j++) {                                                 \
            rk_v16 mj = rk_load16(m + j * ldm + n);                                         \
            for (int r = 0; r < (R); r++) a[r] = rk_fma16(rk_splat16(ut[r * ldu + j]), mj, a[r]); \
        }                                                                                   \
        for (int r = 0; r < (R); r++) RK_EXPAND_STORE(y + (t + r) * ldy + n, a[r]);         \
    } while (0)

#define RK_DEFINE_EXPAND(SUFFIX, ATTR, WIDE, STRIP)                                        \
    ATTR static void expand_##SUFFIX(const float *u, size_t ldu, const float *m, size_t ldm, \
                                     float *y, size_t ldy, size_t rows, size_t cols,        \
                                     size_t rank, float alpha, int accumulate) {            \
        const size_t body = cols & ~(size_t)15, wide = (WIDE) ? cols & ~(size_t)31 : 0;    \
        size_t t = 0;                                                                       \
        for (; t + 4 <= rows; t += 4) {                                                     \
            const float *u0 = u + t * ldu, *u1 = u0 + ldu, *u2 = u1 + ldu, *u3 = u2 + ldu;  \
            float *y0 = y + t * ldy, *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;        \
            for (size_t n = 0; n < wide; n += 32) {                                         \
                rk_v16 a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0}; \
                for (size_t j = 0; j < rank; j++) {                                         \
                    rk_v16 ma = rk_load16(m + j * ldm + n), mb = rk_load16(m + j * ldm + n + 16); \
                    rk_v16 s = rk_splat16(u0[j]); a0 = rk_fma16(s, ma, a0); b0 = rk_fma16(s, mb, b0); \
                    s = rk_splat16(u1[j]); a1 = rk_fma16(s, ma, a1); b1 = rk_fma16(s, mb, b1); \
                    s = rk_splat16(u2[j]); a2 = rk_fma16(s, ma, a2); b2 = rk_fma16(s, mb, b2); \
                    s = rk_splat16(u3[j]); a3 = rk_fma16(s, ma, a3); b3 = rk_fma16(s, mb, b3); \
                }                                                                           \
                RK_EXPAND_STORE(y0 + n, a0); RK_EXPAND_STORE(y0 + n + 16, b0);              \
                RK_EXPAND_STORE(y1 + n, a1); RK_EXPAND_STORE(y1 + n + 16, b1);              \
                RK_EXPAND_STORE(y2 + n, a2); RK_EXPAND_STORE(y2 + n + 16, b2);              \
                RK_EXPAND_STORE(y3 + n, a3); RK_EXPAND_STORE(y3 + n + 16, b3);              \
            }                                                                               \
        }                                                                                   \
        for (; t < rows; t++) {                                                             \
            for (size_t n = 0; n < wide; n += 16) {                                         \
                rk_v16 a = {0};                                                             \
                for (size_t j = 0; j < rank; j++)                                           \
                    a = rk_fma16(rk_splat16(u[t * ldu + j]), rk_load16(m + j * ldm + n), a); \
                RK_EXPAND_STORE(y + t * ldy + n, a);                                        \
            }                                                                               \
        }                                                                                   \
        for (size_t n = wide; n < body; n += 16) {                                          \
            t = 0;                                                                          \
            for (; t + (STRIP) <= rows; t += (STRIP)) RK_EXPAND_STRIP_ROWS(STRIP);          \
            /* The last rows in blocks of 4, 2 and 1: independent chains of sums, where one \
               row at a time waits on each multiply-add's latency (8x slower per row). */  \
            if (t + 4 <= rows) { RK_EXPAND_STRIP_ROWS(4); t += 4; }                         \
            if (t + 2 <= rows) { RK_EXPAND_STRIP_ROWS(2); t += 2; }                         \
            if (t < rows) { RK_EXPAND_STRIP_ROWS(1); t += 1; }                              \
        }                                                                                   \
        for (size_t tt = 0; tt < rows; tt++) {                                              \
            for (size_t n = body; n < cols; n++) {                                          \
                float a = 0;                                                                \
                for (size_t j = 0; j < rank; j++) a = __builtin_fmaf(u[tt * ldu + j], m[j * ldm + n], a); \
                float *dst = y + tt * ldy + n;                                              \
                *dst = accumulate ? __builtin_fmaf(alpha, a, *dst) : alpha * a;             \
            }                                                                               \
        }                                                                                   \
    }

// --- gram: c[j, n] += alpha · Σ_t p[t, j] · q[t, n] --------------------------------------------

#define RK_GRAM_STORE(DST, ACC) rk_store16((DST), rk_fma16(rk_splat16(alpha), (ACC), rk_load16(DST)))

#define RK_DEFINE_GRAM(SUFFIX, ATTR, WIDE, STRIP)                                          \
    ATTR static void gram_##SUFFIX(const float *p, size_t ldp, const float *q, size_t ldq,  \
                                   float *c, size_t ldc, size_t depth, size_t rank, size_t cols, \
                                   float alpha) {                                           \
        const size_t body = cols & ~(size_t)15;                                             \
        size_t j = 0;                                                                       \
        for (; j + (STRIP) <= rank; j += (STRIP)) {                                         \
            size_t n = 0;                                                                   \
            for (; (WIDE) && n + 32 <= body; n += 32) {                                     \
                rk_v16 a[STRIP] = {{0}}, b[STRIP] = {{0}};                                  \
                for (size_t t = 0; t < depth; t++) {                                        \
                    const float *pt = p + t * ldp + j;                                      \
                    rk_v16 qa = rk_load16(q + t * ldq + n), qb = rk_load16(q + t * ldq + n + 16); \
                    for (int r = 0; r < (STRIP); r++) {                                     \
                        rk_v16 s = rk_splat16(pt[r]);                                       \
                        a[r] = rk_fma16(s, qa, a[r]);                                       \
                        b[r] = rk_fma16(s, qb, b[r]);                                       \
                    }                                                                       \
                }                                                                           \
                for (int r = 0; r < (STRIP); r++) {                                         \
                    RK_GRAM_STORE(c + (j + r) * ldc + n, a[r]);                             \
                    RK_GRAM_STORE(c + (j + r) * ldc + n + 16, b[r]);                        \
                }                                                                           \
            }                                                                               \
            for (; n < body; n += 16) {                                                     \
                rk_v16 a[STRIP] = {{0}};                                                    \
                for (size_t t = 0; t < depth; t++) {                                        \
                    const float *pt = p + t * ldp + j;                                      \
                    rk_v16 qa = rk_load16(q + t * ldq + n);                                 \
                    for (int r = 0; r < (STRIP); r++) a[r] = rk_fma16(rk_splat16(pt[r]), qa, a[r]); \
                }                                                                           \
                for (int r = 0; r < (STRIP); r++) RK_GRAM_STORE(c + (j + r) * ldc + n, a[r]); \
            }                                                                               \
        }                                                                                   \
        for (; j < rank; j++) {                                                             \
            for (size_t n = 0; n < body; n += 16) {                                         \
                rk_v16 a = {0};                                                             \
                for (size_t t = 0; t < depth; t++)                                          \
                    a = rk_fma16(rk_splat16(p[t * ldp + j]), rk_load16(q + t * ldq + n), a); \
                RK_GRAM_STORE(c + j * ldc + n, a);                                          \
            }                                                                               \
        }                                                                                   \
        for (size_t jj = 0; jj < rank; jj++) {                                              \
            for (size_t n = body; n < cols; n++) {                                          \
                float a = 0;                                                                \
                for (size_t t = 0; t < depth; t++) a = __builtin_fmaf(p[t * ldp + jj], q[t * ldq + n], a); \
                float *dst = c + jj * ldc + n;                                              \
                *dst = __builtin_fmaf(alpha, a, *dst);                                      \
            }                                                                               \
        }                                                                                   \
    }

RK_DEFINE_EXPAND(generic, , 1, 8)
RK_DEFINE_GRAM(generic, , 1, 8)
#if defined(__x86_64__)
#define RK_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define RK_AVX2 __attribute__((target("avx2,fma")))
RK_DEFINE_EXPAND(avx512, RK_AVX512, 1, 8)
RK_DEFINE_GRAM(avx512, RK_AVX512, 1, 8)
// 16 vector registers: 16-column strips of 6 rows (12 registers of sums, 2 of the loaded row, 1 splat).
RK_DEFINE_EXPAND(avx2_strips, RK_AVX2, 0, 6)

// AVX2's main tile: 3 rows × 32 columns (12 registers of sums, 3 splats, 1 loaded vector), so a
// step issues 3 broadcasts and 4 loads per 12 multiply-adds where the 6 × 16 strip issues 6 and 2:
// Zen 3 runs broadcasts on pipes its multiply-adds need. Written with intrinsics: clang's code for
// this tile from the 16-wide vector type spilled its sums. The same chain of fused multiply-adds
// per element as every other tile, so the same bits.
RK_AVX2 static void expand_wide3_avx2(const float *u, size_t ldu, const float *m, size_t ldm, float *y, size_t ldy,
                                      size_t rows, size_t wide, size_t rank, float alpha, int accumulate) {
    const __m256 scale = _mm256_set1_ps(alpha);
    for (size_t n = 0; n < wide; n += 32) {
        for (size_t t = 0; t + 3 <= rows; t += 3) {
            const float *u0 = u + t * ldu, *u1 = u0 + ldu, *u2 = u1 + ldu;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
            const float *mj = m + n;
            for (size_t j = 0; j < rank; j++, mj += ldm) {
                const __m256 b0 = _mm256_broadcast_ss(u0 + j), b1 = _mm256_broadcast_ss(u1 + j), b2 = _mm256_broadcast_ss(u2 + j);
                __m256 w = _mm256_loadu_ps(mj);
                a00 = _mm256_fmadd_ps(b0, w, a00); a10 = _mm256_fmadd_ps(b1, w, a10); a20 = _mm256_fmadd_ps(b2, w, a20);
                w = _mm256_loadu_ps(mj + 8);
                a01 = _mm256_fmadd_ps(b0, w, a01); a11 = _mm256_fmadd_ps(b1, w, a11); a21 = _mm256_fmadd_ps(b2, w, a21);
                w = _mm256_loadu_ps(mj + 16);
                a02 = _mm256_fmadd_ps(b0, w, a02); a12 = _mm256_fmadd_ps(b1, w, a12); a22 = _mm256_fmadd_ps(b2, w, a22);
                w = _mm256_loadu_ps(mj + 24);
                a03 = _mm256_fmadd_ps(b0, w, a03); a13 = _mm256_fmadd_ps(b1, w, a13); a23 = _mm256_fmadd_ps(b2, w, a23);
            }
#define RK_WIDE3_STORE(DST, ACC) \
            _mm256_storeu_ps((DST), accumulate ? _mm256_fmadd_ps(scale, (ACC), _mm256_loadu_ps(DST)) : _mm256_mul_ps(scale, (ACC)))
            float *y0 = y + t * ldy + n, *y1 = y0 + ldy, *y2 = y1 + ldy;
            RK_WIDE3_STORE(y0, a00); RK_WIDE3_STORE(y0 + 8, a01); RK_WIDE3_STORE(y0 + 16, a02); RK_WIDE3_STORE(y0 + 24, a03);
            RK_WIDE3_STORE(y1, a10); RK_WIDE3_STORE(y1 + 8, a11); RK_WIDE3_STORE(y1 + 16, a12); RK_WIDE3_STORE(y1 + 24, a13);
            RK_WIDE3_STORE(y2, a20); RK_WIDE3_STORE(y2 + 8, a21); RK_WIDE3_STORE(y2 + 16, a22); RK_WIDE3_STORE(y2 + 24, a23);
#undef RK_WIDE3_STORE
        }
    }
}

// The 3 × 32 tiles over whole 32-column blocks and whole 3-row groups; the strips for the rest.
RK_AVX2 static void expand_avx2(const float *u, size_t ldu, const float *m, size_t ldm, float *y, size_t ldy,
                                size_t rows, size_t cols, size_t rank, float alpha, int accumulate) {
    const size_t wide = cols & ~(size_t)31, grouped = rows - rows % 3;
    expand_wide3_avx2(u, ldu, m, ldm, y, ldy, grouped, wide, rank, alpha, accumulate);
    if (grouped < rows && wide > 0)
        expand_avx2_strips(u + grouped * ldu, ldu, m, ldm, y + grouped * ldy, ldy, rows - grouped, wide, rank, alpha, accumulate);
    if (cols > wide) expand_avx2_strips(u, ldu, m + wide, ldm, y + wide, ldy, rows, cols - wide, rank, alpha, accumulate);
}
RK_DEFINE_GRAM(avx2, RK_AVX2, 0, 6)
#endif

int rk_lowrank_expand_at(int level, const float *u, size_t ldu, const float *m, size_t ldm, float *y, size_t ldy,
                         size_t rows, size_t cols, size_t rank, float alpha, int accumulate) {
    if (level < 0 || level > rk_simd_level()) return 0;
#if defined(__x86_64__)
    switch (level) {
    case 2: expand_avx512(u, ldu, m, ldm, y, ldy, rows, cols, rank, alpha, accumulate); return 1;
    case 1: expand_avx2(u, ldu, m, ldm, y, ldy, rows, cols, rank, alpha, accumulate); return 1;
    default: break;
    }
#endif
    expand_generic(u, ldu, m, ldm, y, ldy, rows, cols, rank, alpha, accumulate);
    return 1;
}

void rk_lowrank_expand(const float *u, size_t ldu, const float *m, size_t ldm, float *y, size_t ldy,
                       size_t rows, size_t cols, size_t rank, float alpha, int accumulate) {
    rk_lowrank_expand_at(rk_simd_level(), u, ldu, m, ldm, y, ldy, rows, cols, rank, alpha, accumulate);
}

int rk_lowrank_gram_at(int level, const float *p, size_t ldp, const float *q, size_t ldq, float *c, size_t ldc,
                       size_t depth, size_t rank, size_t cols, float alpha) {
    if (level < 0 || level > rk_simd_level()) return 0;
#if defined(__x86_64__)
    switch (level) {
    case 2: gram_avx512(p, ldp, q, ldq, c, ldc, depth, rank, cols, alpha); return 1;
    case 1: gram_avx2(p, ldp, q, ldq, c, ldc, depth, rank, cols, alpha); return 1;
    default: break;
    }
#endif
    gram_generic(p, ldp, q, ldq, c, ldc, depth, rank, cols, alpha);
    return 1;
}

void rk_lowrank_gram(const float *p, size_t ldp, const float *q, size_t ldq, float *c, size_t ldc,
                     size_t depth, size_t rank, size_t cols, float alpha) {
    rk_lowrank_gram_at(rk_simd_level(), p, ldp, q, ldq, c, ldc, depth, rank, cols, alpha);
}
