/*
 * The dict section: shm_dict with 8-byte keys and values at 10^3 and 10^6
 * keys (10^5 with --quick), beside the simplest correct C baseline: an
 * open-addressing table of the same keys in a shared mapping, every
 * operation under one robust process-shared mutex. Rows: get of a present
 * key, set of a present key, and del followed by set of the same key (so
 * that the table keeps its size). Then the memory per entry at the largest
 * size, for 8-byte keys and values and for 32-byte keys with 100-byte
 * values (the segment's bytes in use divided by the keys).
 */
#include <shmval.h>

#include "bench.h"

#include <stdint.h>
#include <unistd.h>

static char dict_seg[64];

/* The keys, in a random order of access. */
static uint64_t key_of(uint64_t i) { return (i + 1) * UINT64_C(0x9E3779B97F4A7C15); }

typedef struct order {
  uint64_t *idx;
  size_t n;
} order;

static void make_order(order *o, size_t n) {
  o->n = n;
  o->idx = malloc(n * sizeof *o->idx);
  uint64_t r = 88172645463325252u;
  for (size_t i = 0; i < n; i++)
    o->idx[i] = i;
  for (size_t i = n - 1; i > 0; i--) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    size_t j = (size_t)(r % (i + 1));
    uint64_t t = o->idx[i];
    o->idx[i] = o->idx[j];
    o->idx[j] = t;
  }
}

/* ------------------------------------------------------------------------ */
/* The baseline: one mutex over an open-addressing table (key 0 = empty, tombstones). */

#define TOMB UINT64_MAX

typedef struct base_tab {
  pthread_mutex_t m;
  uint64_t mask;
  struct {
    uint64_t k, v;
  } s[];
} base_tab;

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  return x;
}

static base_tab *base_new(size_t keys) {
  size_t cap = 16;
  while (cap < keys * 2)
    cap *= 2;
  base_tab *t = shared_alloc(sizeof *t + cap * sizeof t->s[0]);
  if (t == NULL)
    return NULL;
  robust_mutex_init(&t->m);
  t->mask = cap - 1;
  return t;
}

/* The slot of key @p k, or of the first free one on its probe. */
static size_t base_find(base_tab *t, uint64_t k, bool *found) {
  size_t i = mix(k) & t->mask, fr = SIZE_MAX;
  for (;; i = (i + 1) & t->mask) {
    uint64_t sk = t->s[i].k;
    if (sk == k) {
      *found = true;
      return i;
    }
    if (sk == TOMB && fr == SIZE_MAX)
      fr = i;
    if (sk == 0) {
      *found = false;
      return fr != SIZE_MAX ? fr : i;
    }
  }
}

static int base_get(base_tab *t, uint64_t k, uint64_t *v) {
  bool f;
  robust_lock(&t->m);
  size_t i = base_find(t, k, &f);
  if (f)
    *v = t->s[i].v;
  pthread_mutex_unlock(&t->m);
  return f ? 0 : -1;
}

static void base_set(base_tab *t, uint64_t k, uint64_t v) {
  bool f;
  robust_lock(&t->m);
  size_t i = base_find(t, k, &f);
  t->s[i].k = k;
  t->s[i].v = v;
  pthread_mutex_unlock(&t->m);
}

static void base_del(base_tab *t, uint64_t k) {
  bool f;
  robust_lock(&t->m);
  size_t i = base_find(t, k, &f);
  if (f)
    t->s[i].k = TOMB;
  pthread_mutex_unlock(&t->m);
}

/* ------------------------------------------------------------------------ */
/* The loops. */

typedef struct dctx {
  shm_dict *d;
  base_tab *b;
  order *o;
  size_t at;
  int failed;
} dctx;

static uint64_t next_key(dctx *c) {
  uint64_t k = key_of(c->o->idx[c->at]);
  c->at = c->at + 1 == c->o->n ? 0 : c->at + 1;
  return k;
}

static void lib_dget(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c), v;
    if (shm_dict_get(c->d, &k, 8, &v, 8, NULL) != 0 || v != k)
      c->failed = 1;
  }
}

static void base_dget(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c), v;
    if (base_get(c->b, k, &v) != 0 || v != k)
      c->failed = 1;
  }
}

static void lib_dset(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c);
    if (shm_dict_set(c->d, &k, 8, &k, 8) != 0)
      c->failed = 1;
  }
}

static void base_dset(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c);
    base_set(c->b, k, k);
  }
}

static void lib_ddel(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c);
    if (shm_dict_del(c->d, &k, 8) != 0 || shm_dict_set(c->d, &k, 8, &k, 8) != 0)
      c->failed = 1;
  }
}

static void base_ddel(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c);
    base_del(c->b, k);
    base_set(c->b, k, k);
  }
}

/* A named segment big enough for @p keys, a dict in it filled with them. */
static int fill(shm_segment **s, shm_dict **d, size_t keys, size_t klen, size_t vlen) {
  shm_segment_opts so = {.max_size = (size_t)4 << 30};
  char k[64] = {0}, v[128];
  memset(v, 'v', sizeof v);
  if (shm_segment_create(s, dict_seg, 1 << 20, &so) != 0 ||
      shm_dict_create(d, 0, &(shm_opts){.segment = *s, .name = "d"}) != 0)
    return -1;
  for (size_t i = 0; i < keys; i++) {
    uint64_t x = key_of(i);
    memcpy(k, &x, 8);
    memcpy(v, &x, 8);
    if (shm_dict_set(*d, k, klen, v, vlen) != 0)
      return -1;
  }
  return 0;
}

static int size_rows(size_t keys, long iters, order *o) {
  shm_segment *s;
  shm_dict *d;
  base_tab *b = base_new(keys);
  char label[96];
  if (b == NULL || fill(&s, &d, keys, 8, 8) != 0)
    return 1;
  for (size_t i = 0; i < keys; i++)
    base_set(b, key_of(i), key_of(i));
  dctx c = {.d = d, .b = b, .o = o};
  const char *names[] = {"get", "set (present key)", "del + set"};
  bench_fn libs[] = {lib_dget, lib_dset, lib_ddel}, bases[] = {base_dget, base_dset, base_ddel};
  const char *targets[] = {"<= 1.0x", "<= 1.0x", "<= 1.0x"};
  for (int r = 0; r < 3; r++) {
    pair p = measure(libs[r], &c, iters, bases[r], &c, iters);
    snprintf(label, sizeof label, "%s, %zu keys", names[r], keys);
    row_ns(label, p, targets[r]);
  }
  shm_segment_close(s);
  shm_segment_unlink(dict_seg);
  munmap(b, sizeof *b + (b->mask + 1) * sizeof b->s[0]);
  return c.failed;
}

/* Bytes per entry: the segment's bytes in use with the keys, less those of an empty one. */
static int memory_row(size_t keys, size_t klen, size_t vlen, const char *label,
                      const char *target) {
  shm_segment *s;
  shm_dict *d;
  shm_segment_info empty, full;
  shm_segment_opts so = {.max_size = (size_t)4 << 30};
  if (shm_segment_create(&s, dict_seg, 1 << 20, &so) != 0 || shm_segment_stat(s, &empty) != 0)
    return 1;
  shm_segment_close(s);
  shm_segment_unlink(dict_seg);
  if (fill(&s, &d, keys, klen, vlen) != 0 || shm_segment_stat(s, &full) != 0)
    return 1;
  double per = (double)(full.used - empty.used) / (double)keys;
  stat3 v = {per, per, per};
  row_single(label, v, "B", target);
  shm_segment_close(s);
  shm_segment_unlink(dict_seg);
  return 0;
}

int bench_dict(int quick) {
  snprintf(dict_seg, sizeof dict_seg, "/shmval-bench-dict-%d", (int)getpid());
  size_t big = quick ? 100000 : 1000000;
  order small_o, big_o;
  make_order(&small_o, 1000);
  make_order(&big_o, big);
  section("Shared dict", "8-byte keys and values (ns/op)", "shm_dict",
          "one robust mutex over an open-addressing table");
  int rc = size_rows(1000, quick ? 200000 : 1000000, &small_o);
  rc |= size_rows(big, quick ? 200000 : 1000000, &big_o);
  char label[96];
  snprintf(label, sizeof label, "memory per entry, %zu keys of 8 bytes, 8-byte values", big);
  rc |= memory_row(big, 8, 8, label, "<= 64 B");
  snprintf(label, sizeof label, "memory per entry, %zu keys of 32 bytes, 100-byte values", big);
  rc |= memory_row(big, 32, 100, label, "-");
  free(small_o.idx);
  free(big_o.idx);
  if (rc != 0)
    fprintf(stderr, "shmval_bench: dict: a run failed\n");
  return rc;
}
