#ifndef REFINERY_KERNELS_H
#define REFINERY_KERNELS_H

#include <stddef.h>

/// Softmax of x[0..n) in place (max-subtracted). Vectorised; exp has ~2e-7 relative error.
void rk_softmax(float *x, size_t n);

/// gate[i] = silu(gate[i]) * up[i].
void rk_silu_gate(float *gate, const float *up, size_t n);

/// log(sum(exp(x[0..n)))), accumulated in double.
double rk_logsumexp(const float *x, size_t n);

#endif

#ifndef REFINERY_KERNELS_BACKWARD_H
#define REFINERY_KERNELS_BACKWARD_H
/// SiLU-gate backward: act = silu(g)·u; dg = dAct·u·σ(g)(1 + g(1 − σ(g))), du = dAct·silu(g).
void rk_silu_gate_backward(const float *gate, const float *up, const float *d_act, float *d_gate, float *d_up, size_t n);
#endif
