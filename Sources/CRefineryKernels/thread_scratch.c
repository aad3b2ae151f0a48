// A scratch buffer per thread (thread_scratch.h).
#include "thread_scratch.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_key_t scratch_key;
static pthread_once_t scratch_key_once = PTHREAD_ONCE_INIT;
static int scratch_key_made = 0;

struct scratch { void *buffer; size_t capacity; };

static void free_scratch(void *value) {
    struct scratch *scratch = value;
    free(scratch->buffer);
    free(scratch);
}

static void make_scratch_key(void) { scratch_key_made = pthread_key_create(&scratch_key, free_scratch) == 0; }

void *rk_thread_scratch(size_t bytes) {
    pthread_once(&scratch_key_once, make_scratch_key);
    if (!scratch_key_made) return NULL;
    struct scratch *scratch = pthread_getspecific(scratch_key);
    if (!scratch) {
        scratch = calloc(1, sizeof *scratch);
        if (!scratch || pthread_setspecific(scratch_key, scratch) != 0) { free(scratch); return NULL; }
    }
    if (bytes > scratch->capacity) {
        size_t rounded = (bytes + 63) / 64 * 64;
        void *grown = aligned_alloc(64, rounded);
        if (!grown) return NULL;
        free(scratch->buffer);
        scratch->buffer = grown;
        scratch->capacity = rounded;
    }
    return scratch->buffer;
}
