#ifndef REFINERY_LAUNCH_H
#define REFINERY_LAUNCH_H
/// The OPENBLAS_THREAD_TIMEOUT this process runs with (log2 of the CPU cycles OpenBLAS's idle
/// threads spin before they sleep), or -1 when the variable is unset.
int rk_blas_thread_timeout(void);
#endif
