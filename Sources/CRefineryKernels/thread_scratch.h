// A scratch buffer per thread, kept between calls (the encoder's attention calls a kernel once
// per sequence and head) and freed when the thread ends. Internal to the kernels.
#ifndef REFINERY_THREAD_SCRATCH_H
#define REFINERY_THREAD_SCRATCH_H
#include <stddef.h>

/// This thread's scratch, 64-byte aligned, grown to `bytes` when smaller; NULL when memory is
/// short. Its contents are undefined; the next call on the same thread may move it.
void *rk_thread_scratch(size_t bytes);

#endif
