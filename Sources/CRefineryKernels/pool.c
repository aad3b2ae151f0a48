// A persistent pool of worker threads for the training step's parallel loops and split matrix
// products. The step alternates hundreds of times per second between short parallel regions;
// waking sleeping threads for each one (libdispatch, OpenBLAS's own pool) costs more than the
// region on a 2-core machine, and two pools spinning against each other cost more still. Here the
// workers spin for a short while after each region, so the next one starts within a microsecond,
// and sleep on a futex when the process stays serial.
//
// Jobs are published with a generation number packed into the index counter: a worker claims an
// index only while the counter still carries the generation it read. When a job ends the counter
// is closed (index 0xFFFFFFFF) before the next job's fields are written, and those fields are
// stored with release / loaded with acquire: a late worker that sees any field of a newer job
// also sees the closed counter, so it can never run an index with a mix of two jobs' fields.
#include "refinery_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

enum { RK_POOL_MAX_THREADS = 256 };

static struct {
    pthread_mutex_t start_lock;
    int threads;                    // in all, the caller included
    _Atomic uint32_t generation;    // bumped once per job; futex word
    _Atomic uint64_t next;          // generation << 32 | next index
    _Atomic long finished;          // indices finished in the current job
    _Atomic int busy;               // a job is running (nested and concurrent calls run inline)
    _Atomic int sleepers;
    _Atomic long count;
    void *_Atomic context;
    _Atomic rk_pool_body body;
} pool = {.start_lock = PTHREAD_MUTEX_INITIALIZER, .threads = 1};

static void futex_wait(_Atomic uint32_t *word, uint32_t expected) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    (void)word; (void)expected;
    sched_yield();
#endif
}

static void futex_wake_all(_Atomic uint32_t *word) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, RK_POOL_MAX_THREADS, NULL, NULL, 0);
#else
    (void)word;
#endif
}

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static uint64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/// Runs indices of job `generation` until none is left.
static void drain(uint32_t generation, long count, void *context, rk_pool_body body) {
    uint64_t current = atomic_load_explicit(&pool.next, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(current >> 32) != generation || (long)(uint32_t)current >= count) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.next, &current, current + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        body(context, (long)(uint32_t)current);
        atomic_fetch_add_explicit(&pool.finished, 1, memory_order_release);
        current = atomic_load_explicit(&pool.next, memory_order_acquire);
    }
}

// How long an idle worker spins before it sleeps: long enough to bridge the serial parts of a
// training step, short enough not to burn a core when the process goes quiet.
static const uint64_t spin_ns = 2000000;

static void *worker_main(void *unused) {
    (void)unused;
    uint32_t seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
    for (;;) {
        uint64_t deadline = monotonic_ns() + spin_ns;
        uint32_t generation;
        unsigned spins = 0;
        while ((generation = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
            cpu_relax();
            if (++spins % 1024 != 0) continue;
            sched_yield();  // lets other runnable threads of an oversubscribed machine go first
            if (monotonic_ns() > deadline) {
                atomic_fetch_add(&pool.sleepers, 1);
                futex_wait(&pool.generation, seen);
                atomic_fetch_sub(&pool.sleepers, 1);
                deadline = monotonic_ns() + spin_ns;
            }
        }
        seen = generation;
        // The fields belong to `generation` or to a newer job; `drain` runs nothing of a newer one.
        rk_pool_body body = atomic_load_explicit(&pool.body, memory_order_acquire);
        void *context = atomic_load_explicit(&pool.context, memory_order_acquire);
        long count = atomic_load_explicit(&pool.count, memory_order_acquire);
        drain(generation, count, context, body);
    }
    return NULL;
}

int rk_pool_start(int threads) {
    if (threads < 1) threads = 1;
    if (threads > RK_POOL_MAX_THREADS) threads = RK_POOL_MAX_THREADS;
    pthread_mutex_lock(&pool.start_lock);
    while (pool.threads < threads) {
        pthread_t id;
        if (pthread_create(&id, NULL, worker_main, NULL) != 0) break;
        pthread_detach(id);
        pool.threads++;
    }
    int started = pool.threads;
    pthread_mutex_unlock(&pool.start_lock);
    return started;
}

void rk_pool_run(long count, void *context, rk_pool_body body) {
    if (count <= 0) return;
    int expected = 0;
    if (count == 1 || count >= 0xFFFFFFFFL || pool.threads == 1 ||
        !atomic_compare_exchange_strong(&pool.busy, &expected, 1)) {
        for (long i = 0; i < count; i++) body(context, i);
        return;
    }
    atomic_store_explicit(&pool.count, count, memory_order_release);
    atomic_store_explicit(&pool.context, context, memory_order_release);
    atomic_store_explicit(&pool.body, body, memory_order_release);
    atomic_store_explicit(&pool.finished, 0, memory_order_relaxed);
    uint32_t generation = atomic_load_explicit(&pool.generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&pool.next, (uint64_t)generation << 32, memory_order_release);
    atomic_store(&pool.generation, generation);
    if (atomic_load(&pool.sleepers) > 0) futex_wake_all(&pool.generation);
    drain(generation, count, context, body);
    for (unsigned spins = 1; atomic_load_explicit(&pool.finished, memory_order_acquire) < count; spins++) {
        cpu_relax();
        if (spins % 1024 == 0) sched_yield();  // a worker may be waiting for this core
    }
    atomic_store(&pool.next, (uint64_t)generation << 32 | 0xFFFFFFFFu);
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
}
