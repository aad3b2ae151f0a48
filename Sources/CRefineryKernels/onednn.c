// Matrix products through oneDNN's matmul primitive, fp32 and bf16 (bf16 operands, fp32
// accumulation and output). Each call runs single-threaded on the calling thread: Refinery cuts a
// big product into fixed blocks on its own pool (see BLAS.swift), so oneDNN's OpenMP threads
// never start (every calling thread sets its OpenMP thread count to 1 before its first call).
//
// A primitive is built once per (shape, strides, transposes, types, alpha, beta) and kept in a
// process-wide table. Several threads execute the same primitive at once (the blocks of one cut
// product have the same shape), so every thread passes its own scratchpad (user scratchpad mode;
// oneDNN's library-managed one is shared) and has its own stream.
#include "refinery_kernels.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int dtype, trans_a, trans_b;
    long m, n, k, lda, ldb, ldc;
    uint32_t alpha_bits, beta_bits;
    // The fused epilogue: a float32 bias per column, then GELU (exact erf), written as bfloat16.
    int bias, gelu, dst_bf16;
} rk_dnnl_key;

typedef struct rk_dnnl_entry {
    rk_dnnl_key key;
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md, scratch_md;
    struct rk_dnnl_entry *next;
} rk_dnnl_entry;

enum { RK_DNNL_BUCKETS = 1024, RK_DNNL_LIMIT = 4096 };

static struct {
    pthread_once_t once, bf16_once;
    int available, bf16;
    dnnl_engine_t engine;
    pthread_rwlock_t lock;
    rk_dnnl_entry *buckets[RK_DNNL_BUCKETS];
    long entries;
} dn = {.once = PTHREAD_ONCE_INIT, .bf16_once = PTHREAD_ONCE_INIT, .lock = PTHREAD_RWLOCK_INITIALIZER};

static __thread dnnl_stream_t thread_stream;
static __thread int thread_ready;
static __thread void *thread_scratch;
static __thread size_t thread_scratch_size;

/// The calling thread's scratchpad, grown to at least `size` bytes; NULL when out of memory.
static void *scratch(size_t size) {
    if (size <= thread_scratch_size) return thread_scratch;
    free(thread_scratch);
    thread_scratch_size = 0;
    thread_scratch = aligned_alloc(64, (size + 63) / 64 * 64);
    if (thread_scratch) thread_scratch_size = size;
    return thread_scratch;
}

static void dnnl_setup(void) {
    dn.available = dnnl_engine_create(&dn.engine, dnnl_cpu, 0) == dnnl_success;
}

/// Keeps oneDNN's OpenMP runtime to the calling thread: no second pool competes with Refinery's.
static int prepare_thread(void) {
    if (thread_ready) return thread_stream != NULL;
    thread_ready = 1;
    void (*set_threads)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (set_threads) set_threads(1);
    if (dnnl_stream_create(&thread_stream, dn.engine, dnnl_stream_default_flags) != dnnl_success) thread_stream = NULL;
    return thread_stream != NULL;
}

int rk_dnnl_available(void) {
    pthread_once(&dn.once, dnnl_setup);
    return dn.available;
}

static uint64_t key_hash(const rk_dnnl_key *key) {
    const unsigned char *bytes = (const unsigned char *)key;
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(*key); i++) hash = (hash ^ bytes[i]) * 1099511628211ull;
    return hash;
}

static rk_dnnl_entry *find(const rk_dnnl_key *key, uint64_t hash) {
    for (rk_dnnl_entry *entry = dn.buckets[hash % RK_DNNL_BUCKETS]; entry; entry = entry->next)
        if (memcmp(&entry->key, key, sizeof(*key)) == 0) return entry;
    return NULL;
}

/// Frees every cached primitive (the table is full: shapes of past steps are rarely seen again).
static void clear_locked(void) {
    for (int i = 0; i < RK_DNNL_BUCKETS; i++) {
        rk_dnnl_entry *entry = dn.buckets[i];
        while (entry) {
            rk_dnnl_entry *next = entry->next;
            dnnl_primitive_destroy(entry->primitive);
            free(entry);
            entry = next;
        }
        dn.buckets[i] = NULL;
    }
    dn.entries = 0;
}

static rk_dnnl_entry *build(const rk_dnnl_key *key) {
    dnnl_data_type_t type = key->dtype == RK_DNNL_BF16 ? dnnl_bf16 : dnnl_f32;
    rk_dnnl_entry *entry = calloc(1, sizeof(*entry));
    if (!entry) return NULL;
    entry->key = *key;
    dnnl_dims_t a_dims = {key->m, key->k}, b_dims = {key->k, key->n}, c_dims = {key->m, key->n};
    dnnl_dims_t a_strides = {key->trans_a ? 1 : key->lda, key->trans_a ? key->lda : 1};
    dnnl_dims_t b_strides = {key->trans_b ? 1 : key->ldb, key->trans_b ? key->ldb : 1};
    dnnl_dims_t c_strides = {key->ldc, 1};
    dnnl_dims_t bias_dims = {1, key->n}, bias_strides = {key->n, 1};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_memory_desc_init_by_strides(&entry->a_md, 2, a_dims, type, a_strides) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&entry->b_md, 2, b_dims, type, b_strides) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&entry->c_md, 2, c_dims, key->dst_bf16 ? dnnl_bf16 : dnnl_f32, c_strides) == dnnl_success &&
             (!key->bias || dnnl_memory_desc_init_by_strides(&entry->bias_md, 2, bias_dims, dnnl_f32, bias_strides) == dnnl_success) &&
             dnnl_matmul_desc_init(&desc, &entry->a_md, &entry->b_md, key->bias ? &entry->bias_md : NULL, &entry->c_md) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    float alpha, beta;
    memcpy(&alpha, &key->alpha_bits, 4);
    memcpy(&beta, &key->beta_bits, 4);
    if (ok && alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
    if (ok && (beta != 0.0f || key->gelu)) {
        ok = dnnl_post_ops_create(&post_ops) == dnnl_success &&
             (beta == 0.0f || dnnl_post_ops_append_sum(post_ops, beta) == dnnl_success) &&
             (!key->gelu || dnnl_post_ops_append_eltwise(post_ops, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f) == dnnl_success) &&
             dnnl_primitive_attr_set_post_ops(attr, post_ops) == dnnl_success;
    }
    ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, dn.engine, NULL) == dnnl_success;
    if (ok) {
        const dnnl_memory_desc_t *scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if (scratch_md) entry->scratch_md = *scratch_md;
        ok = dnnl_primitive_create(&entry->primitive, pd) == dnnl_success;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        free(entry);
        return NULL;
    }
    return entry;
}

/// Builds the primitive of `key` and adds it to the table (unless another thread just did);
/// returns 0 when oneDNN refuses the product.
static int insert(const rk_dnnl_key *key, uint64_t hash) {
    rk_dnnl_entry *built = build(key);
    if (!built) return 0;
    pthread_rwlock_wrlock(&dn.lock);
    if (find(key, hash)) {
        dnnl_primitive_destroy(built->primitive);
        free(built);
    } else {
        if (dn.entries >= RK_DNNL_LIMIT) clear_locked();
        built->next = dn.buckets[hash % RK_DNNL_BUCKETS];
        dn.buckets[hash % RK_DNNL_BUCKETS] = built;
        dn.entries++;
    }
    pthread_rwlock_unlock(&dn.lock);
    return 1;
}

/// Builds (and drops) one small bfloat16 product: oneDNN refuses them on a CPU without AVX-512.
static void bf16_probe(void) {
    rk_dnnl_key key;
    memset(&key, 0, sizeof(key));
    key.dtype = RK_DNNL_BF16;
    key.m = key.n = key.k = key.lda = key.ldb = key.ldc = 16;
    float one = 1.0f;
    memcpy(&key.alpha_bits, &one, 4);
    rk_dnnl_entry *entry = build(&key);
    dn.bf16 = entry != NULL;
    if (entry) {
        dnnl_primitive_destroy(entry->primitive);
        free(entry);
    }
}

int rk_dnnl_bf16_available(void) {
    if (!rk_dnnl_available()) return 0;
    pthread_once(&dn.bf16_once, bf16_probe);
    return dn.bf16;
}

/// Runs the product of `key` (building its primitive on first use); `bias` only when key->bias.
/// A bfloat16 product on a CPU where oneDNN has none is refused at once, without asking oneDNN
/// to build a primitive it will refuse again.
static int execute(const rk_dnnl_key *key_in, const void *a, const void *b, const float *bias, void *c) {
    if (!rk_dnnl_available() || !prepare_thread()) return 0;
    if (key_in->dtype == RK_DNNL_BF16 && !rk_dnnl_bf16_available()) return 0;
    rk_dnnl_key key;
    memcpy(&key, key_in, sizeof(key));  // byte for byte: the padding is hashed and compared too
    // The read lock is held for the whole execution: entries are freed only under the write
    // lock, so a clear of the table never frees a primitive a thread is running.
    uint64_t hash = key_hash(&key);
    pthread_rwlock_rdlock(&dn.lock);
    rk_dnnl_entry *entry = find(&key, hash);
    if (!entry) {
        pthread_rwlock_unlock(&dn.lock);
        if (!insert(&key, hash)) return 0;
        pthread_rwlock_rdlock(&dn.lock);
        entry = find(&key, hash);
        if (!entry) {
            pthread_rwlock_unlock(&dn.lock);
            return 0;
        }
    }
    dnnl_memory_t a_mem = NULL, b_mem = NULL, c_mem = NULL, bias_mem = NULL, scratch_mem = NULL;
    size_t scratch_size = dnnl_memory_desc_get_size(&entry->scratch_md);
    void *scratch_buffer = scratch_size > 0 ? scratch(scratch_size) : NULL;
    int ok = (scratch_size == 0 || scratch_buffer) &&
             dnnl_memory_create(&a_mem, &entry->a_md, dn.engine, (void *)a) == dnnl_success &&
             dnnl_memory_create(&b_mem, &entry->b_md, dn.engine, (void *)b) == dnnl_success &&
             dnnl_memory_create(&c_mem, &entry->c_md, dn.engine, c) == dnnl_success &&
             (!key.bias || dnnl_memory_create(&bias_mem, &entry->bias_md, dn.engine, (void *)bias) == dnnl_success) &&
             dnnl_memory_create(&scratch_mem, &entry->scratch_md, dn.engine, scratch_buffer) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[5] = {
            {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem},
            {DNNL_ARG_BIAS, bias_mem}};
        ok = dnnl_primitive_execute(entry->primitive, thread_stream, key.bias ? 5 : 4, args) == dnnl_success;
    }
    pthread_rwlock_unlock(&dn.lock);
    if (a_mem) dnnl_memory_destroy(a_mem);
    if (b_mem) dnnl_memory_destroy(b_mem);
    if (c_mem) dnnl_memory_destroy(c_mem);
    if (bias_mem) dnnl_memory_destroy(bias_mem);
    if (scratch_mem) dnnl_memory_destroy(scratch_mem);
    return ok;
}

int rk_dnnl_gemm(int dtype, int trans_a, int trans_b, long m, long n, long k, float alpha, const void *a, long lda,
                 const void *b, long ldb, float beta, float *c, long ldc) {
    rk_dnnl_key key;
    memset(&key, 0, sizeof(key));
    key.dtype = dtype;
    key.trans_a = trans_a != 0;
    key.trans_b = trans_b != 0;
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    memcpy(&key.alpha_bits, &alpha, 4);
    memcpy(&key.beta_bits, &beta, 4);
    return execute(&key, a, b, NULL, c);
}

int rk_dnnl_linear_bias_bf16(long m, long n, long k, const uint16_t *a, long lda, const uint16_t *w, long ldw,
                             const float *bias, int gelu, uint16_t *c, long ldc) {
    rk_dnnl_key key;
    memset(&key, 0, sizeof(key));
    key.dtype = RK_DNNL_BF16;
    key.trans_b = 1;
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldw, key.ldc = ldc;
    float one = 1.0f;
    memcpy(&key.alpha_bits, &one, 4);
    key.bias = 1, key.gelu = gelu != 0, key.dst_bf16 = 1;
    return execute(&key, a, w, bias, c);
}
