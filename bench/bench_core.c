/*
 * The core section: libshmval's Value and Array operations beside the raw
 * POSIX code doing the same thing, measured in the same run, as ratios.
 *
 * Figures are in ns per operation, or GB/s for bulk copies (see bench.h for
 * the method). Baselines are the plainest correct POSIX code: a robust
 * process-shared pthread mutex around the same operation in a MAP_SHARED
 * mapping, memcpy, and mmap + mutex init + munmap for creation.
 */
#include <shmval.h>

#include "bench.h"

#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* The raw POSIX baseline: a robust process-shared mutex and a long, shared. */

typedef struct raw_obj {
  pthread_mutex_t m;
  long value;
} raw_obj;

static raw_obj *raw_new(void) {
  raw_obj *r = shared_alloc(4096);
  if (r != NULL)
    robust_mutex_init(&r->m);
  return r;
}

/* The same with a recursive robust mutex: the baseline for the default (recursive) lock. */
static raw_obj *raw_new_recursive(void) {
  raw_obj *r = shared_alloc(4096);
  pthread_mutexattr_t a;
  if (r == NULL)
    return NULL;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&r->m, &a);
  pthread_mutexattr_destroy(&a);
  return r;
}

static void raw_lock(raw_obj *r) { robust_lock(&r->m); }

static volatile long sink;

static void base_get(void *ctx, long n) {
  raw_obj *r = ctx;
  for (long i = 0; i < n; i++) {
    raw_lock(r);
    sink = r->value;
    pthread_mutex_unlock(&r->m);
  }
}

static void base_set(void *ctx, long n) {
  raw_obj *r = ctx;
  for (long i = 0; i < n; i++) {
    raw_lock(r);
    r->value = i;
    pthread_mutex_unlock(&r->m);
  }
}

static void base_incr(void *ctx, long n) {
  raw_obj *r = ctx;
  for (long i = 0; i < n; i++) {
    raw_lock(r);
    r->value++;
    pthread_mutex_unlock(&r->m);
  }
}

static void base_raw_get(void *ctx, long n) {
  volatile long *p = &((raw_obj *)ctx)->value;
  for (long i = 0; i < n; i++)
    sink = *p;
}

static void base_raw_set(void *ctx, long n) {
  volatile long *p = &((raw_obj *)ctx)->value;
  for (long i = 0; i < n; i++)
    *p = i;
}

static void base_atomic_add(void *ctx, long n) {
  long *p = &((raw_obj *)ctx)->value;
  for (long i = 0; i < n; i++)
    __atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
}

static void base_atomic_cas(void *ctx, long n) {
  long *p = &((raw_obj *)ctx)->value;
  for (long i = 0; i < n; i++) {
    long cur = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (
        !__atomic_compare_exchange_n(p, &cur, cur + 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
  }
}

static void base_create(void *ctx, long n) {
  (void)ctx;
  for (long i = 0; i < n; i++) {
    raw_obj *r = raw_new();
    pthread_mutex_destroy(&r->m);
    munmap(r, 4096);
  }
}

/* ------------------------------------------------------------------------ */
/* libshmval. */

void lib_get(void *ctx, long n) {
  long x;
  for (long i = 0; i < n; i++) {
    shm_value_get(ctx, &x);
    sink = x;
  }
}

void lib_set(void *ctx, long n) {
  for (long i = 0; i < n; i++)
    shm_value_set(ctx, &i);
}

void lib_incr(void *ctx, long n) {
  shm_value *v = ctx;
  long *p = shm_value_ptr(v);
  for (long i = 0; i < n; i++) {
    shm_value_acquire(v);
    (*p)++;
    shm_value_release(v);
  }
}

static void lib_atomic_add(void *ctx, long n) {
  long one = 1;
  for (long i = 0; i < n; i++)
    shm_value_add(ctx, &one, NULL);
}

/* The documented fast path: __atomic builtins on the atomic Value's payload. */
static void lib_atomic_ptr_add(void *ctx, long n) {
  long *p = shm_value_ptr(ctx);
  for (long i = 0; i < n; i++)
    __atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
}

static void lib_atomic_cas(void *ctx, long n) {
  for (long i = 0; i < n; i++) {
    long cur, next;
    shm_value_get(ctx, &cur);
    do
      next = cur + 1;
    while (shm_value_cas(ctx, &cur, &next) != 1);
  }
}

#define TWICE(name, fn)                                                                            \
  static void name(void *ctx, long n) { twice(fn, ctx, n); }
void lib_incr2(void *ctx, long n) { twice(lib_incr, ctx, n); }
TWICE(base_incr2, base_incr)
TWICE(lib_atomic_add2, lib_atomic_add)
TWICE(base_atomic_add2, base_atomic_add)

static void lib_elem_get(void *ctx, long n) {
  long x;
  for (long i = 0; i < n; i++) {
    shm_array_get(ctx, (size_t)(i & 1023), &x);
    sink = x;
  }
}

static void lib_elem_set(void *ctx, long n) {
  for (long i = 0; i < n; i++)
    shm_array_set(ctx, (size_t)(i & 1023), &i);
}

void lib_create(void *ctx, long n) {
  (void)ctx;
  shm_value *v;
  for (long i = 0; i < n; i++) {
    shm_value_create(&v, SHMVAL_LONG, NULL, NULL);
    shm_value_destroy(v);
  }
}

typedef struct bulk {
  shm_array *a;
  void *shared, *buf;
  size_t bytes;
} bulk;

static void lib_read(void *ctx, long n) {
  bulk *b = ctx;
  for (long i = 0; i < n; i++)
    shm_array_read(b->a, 0, shm_array_length(b->a), b->buf);
}

static void lib_write(void *ctx, long n) {
  bulk *b = ctx;
  for (long i = 0; i < n; i++)
    shm_array_write(b->a, 0, shm_array_length(b->a), b->buf);
}

static void base_read(void *ctx, long n) {
  bulk *b = ctx;
  for (long i = 0; i < n; i++) {
    memcpy(b->buf, b->shared, b->bytes);
    __asm__ volatile("" ::: "memory");
  }
}

static void base_write(void *ctx, long n) {
  bulk *b = ctx;
  for (long i = 0; i < n; i++) {
    memcpy(b->shared, b->buf, b->bytes);
    __asm__ volatile("" ::: "memory");
  }
}

/* Bulk copies of @p kib KiB. */
static int bench_bulk(size_t kib, int quick) {
  bulk b = {.bytes = kib << 10};
  char name[64];
  if (shm_array_create(&b.a, SHMVAL_UCHAR, b.bytes, NULL, NULL) != 0)
    return 1;
  b.shared = mmap(NULL, b.bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  b.buf = malloc(b.bytes);
  if (b.shared == MAP_FAILED || b.buf == NULL)
    return 1;
  memset(b.buf, 1, b.bytes);
  memset(b.shared, 1, b.bytes);
  long iters = (long)(((size_t)512 << 20) / b.bytes) + 2;
  if (quick)
    iters = iters / 100 + 2;
  const char *unit = kib >= 1024 ? "MiB" : "KiB";
  size_t amount = kib >= 1024 ? kib >> 10 : kib;
  snprintf(name, sizeof name, "array bulk read, %zu %s", amount, unit);
  const char *target = kib >= 1024 ? ">= 0.90x" : "-"; /* small copies: the lock dominates */
  row_gbs(name, measure(lib_read, &b, iters, base_read, &b, iters), (double)b.bytes, target);
  snprintf(name, sizeof name, "array bulk write, %zu %s", amount, unit);
  row_gbs(name, measure(lib_write, &b, iters, base_write, &b, iters), (double)b.bytes, target);
  munmap(b.shared, b.bytes);
  free(b.buf);
  shm_array_destroy(b.a);
  return 0;
}

int bench_core(int quick) {
  long n = quick ? 200000 : 5000000;
  shm_value *v, *rv, *av, *nv;
  shm_opts raw = {.flags = SHMVAL_RAW}, atomic = {.flags = SHMVAL_ATOMIC};
  shm_opts plain = {.flags = SHMVAL_NONRECURSIVE};
  raw_obj *r = raw_new(), *rr = raw_new_recursive();
  if (r == NULL || rr == NULL || shm_value_create(&v, SHMVAL_LONG, NULL, NULL) != 0 ||
      shm_value_create(&nv, SHMVAL_LONG, NULL, &plain) != 0 ||
      shm_value_create(&rv, SHMVAL_LONG, NULL, &raw) != 0 ||
      shm_value_create(&av, SHMVAL_LONG, NULL, &atomic) != 0) {
    fprintf(stderr, "shmval_bench: core: setup failed\n");
    return 1;
  }
  section("Values", "operation (ns/op)", "libshmval", "raw POSIX baseline");
  row_ns("locked get (long)", measure(lib_get, v, n, base_get, r, n), "<= 1.15x");
  row_ns("locked set (long)", measure(lib_set, v, n, base_set, r, n), "<= 1.15x");
  row_ns("locked increment (acquire, ++, release)", measure(lib_incr, v, n, base_incr, r, n),
         "<= 1.15x");
  row_ns("non-recursive lock: locked get", measure(lib_get, nv, n, base_get, r, n), "<= 1.15x");
  row_ns("non-recursive lock: locked set", measure(lib_set, nv, n, base_set, r, n), "<= 1.15x");
  row_ns("non-recursive lock: locked increment", measure(lib_incr, nv, n, base_incr, r, n),
         "<= 1.15x");
  row_ns("atomic add (long) vs __atomic_fetch_add",
         measure(lib_atomic_add, av, n, base_atomic_add, r, n), "<= 1.10x");
  row_ns("atomic add via shm_value_ptr + __atomic",
         measure(lib_atomic_ptr_add, av, n, base_atomic_add, r, n), "<= 1.10x");
  row_ns("atomic cas increment vs __atomic CAS",
         measure(lib_atomic_cas, av, n, base_atomic_cas, r, n), "<= 1.10x");
  long n2 = quick ? 50000 : 1000000;
  row_ns("2 processes: locked increment", measure(lib_incr2, v, n2, base_incr2, r, n2),
         ">= 0.90x tput");
  row_ns("2 processes: locked increment vs recursive mutex",
         measure(lib_incr2, v, n2, base_incr2, rr, n2), "<= 1.15x");
  row_ns("2 processes: atomic add", measure(lib_atomic_add2, av, n2, base_atomic_add2, r, n2), "-");
  row_ns("raw get (long) vs plain load", measure(lib_get, rv, n, base_raw_get, r, n), "-");
  row_ns("raw set (long) vs plain store", measure(lib_set, rv, n, base_raw_set, r, n), "-");
  long nc = quick ? 20000 : 1000000;
  shm_array *arr;
  if (shm_array_create(&arr, SHMVAL_LONG, 1024, NULL, NULL) != 0)
    return 1;
  row_ns("Array element get (locked long)", measure(lib_elem_get, arr, n, base_get, r, n),
         "<= 1.15x");
  row_ns("Array element set (locked long)", measure(lib_elem_set, arr, n, base_set, r, n),
         "<= 1.15x");
  shm_array_destroy(arr);
  /* Create+destroy must not slow down with many live objects in the arena. */
  enum { MANY = 1000000 };
  static shm_value *live[MANY];
  long nlive[] = {1000, quick ? 10000 : MANY};
  long made = 0;
  for (int k = 0; k < 2; k++) {
    char label[64];
    for (; made < nlive[k]; made++)
      shm_value_create(&live[made], SHMVAL_LONG, NULL, NULL);
    snprintf(label, sizeof label, "Value create+destroy, %ld live", nlive[k]);
    row_single(label, measure_one(lib_create, NULL, nc), "ns", "<= 150 ns, flat");
  }
  for (long i = 0; i < made; i++)
    shm_value_destroy(live[i]);
  row_ns("Value create+destroy vs mmap+init",
         measure(lib_create, NULL, nc, base_create, NULL, nc / 20), "< 1000 ns");
  section("Arrays", "copy (GB/s)", "libshmval", "memcpy baseline");
  int rc = bench_bulk(4, quick) || bench_bulk(8 << 10, quick) || bench_bulk(64 << 10, quick);
  shm_value_destroy(v);
  shm_value_destroy(rv);
  shm_value_destroy(av);
  shm_value_destroy(nv);
  pthread_mutex_destroy(&r->m);
  pthread_mutex_destroy(&rr->m);
  munmap(r, 4096);
  munmap(rr, 4096);
  return rc;
}
