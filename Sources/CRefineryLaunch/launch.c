// Sets how long OpenBLAS's idle threads spin, before OpenBLAS starts them.
//
// After each product OpenBLAS's worker threads spin (calling sched_yield) for 2^28 cycles, about
// 0.1 s, waiting for the next one. Training alternates BLAS products with Refinery's own kernels,
// which run on Refinery's threads; for the whole of those the spinning threads compete with them
// for the cores. Measured on the LoRA bench (SmolLM2-135M shape, 2 cores): median step 3.0 s with
// the default, 2.35 s with 2^16–2^22 (the spin still covers the microseconds between consecutive
// products). OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it is loaded — before any code of
// ours runs — so this constructor sets it and re-executes the program once. A value the user set
// is left alone.
#include "refinery_launch.h"

#include <stdlib.h>

#if defined(__linux__)
#include <unistd.h>

static const char *const refinery_blas_thread_timeout = "18";

__attribute__((constructor)) static void refinery_tune_blas_idle_threads(int argc, char **argv, char **envp) {
    (void)argc;
    (void)envp;
    if (getenv("OPENBLAS_THREAD_TIMEOUT") != NULL || argv == NULL) return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", refinery_blas_thread_timeout, 1) != 0) return;
    execv("/proc/self/exe", argv);
    // exec failed (no /proc): carry on with OpenBLAS's default spin.
}
#endif

int rk_blas_thread_timeout(void) {
    const char *value = getenv("OPENBLAS_THREAD_TIMEOUT");
    return value == NULL ? -1 : atoi(value);
}
