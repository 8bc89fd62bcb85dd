/*
 * The dict sections: shm_dict with 8-byte keys and values at 10^3 and 10^6
 * keys (10^5 with --quick), beside the simplest correct C baseline: an
 * open-addressing table of the same keys in a shared mapping, every
 * operation under one robust process-shared mutex. Rows: get of a present
 * key, set of a present key, and del followed by set of the same key (so
 * that the table keeps its size). Then the memory per entry at the largest
 * size, for 8-byte keys and values and for 32-byte keys with 100-byte
 * values (the segment's bytes in use divided by the keys).
 *
 * Then 1 -> P reader processes (P = cores) getting keys while one writer
 * process sets a key about every 50 us (a read-mostly load), beside the same
 * with the one-mutex table; and LMDB (when built with it) doing the same
 * gets and sets on tmpfs. The peers section reuses the workload for Python's
 * Manager().dict() and Boost's unordered_map.
 */
#include <shmval.h>

#include "bench.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef SHMVAL_HAVE_LMDB
#include <lmdb.h>
#endif

static char dict_seg[64];

/* The keys, in a random order of access (bench/peers/boost_peer.cpp makes the same). */
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

struct dict_load {
  shm_segment *s;
  shm_dict *d;
  base_tab *b;
  order o;
  size_t at;
  int failed;
#ifdef SHMVAL_HAVE_LMDB
  MDB_env *env;
  MDB_dbi dbi;
  MDB_txn *rd; /* a read transaction, renewed for each get */
#endif
};
typedef dict_load dctx;

static uint64_t next_key(dctx *c) {
  uint64_t k = key_of(c->o.idx[c->at]);
  c->at = c->at + 1 == c->o.n ? 0 : c->at + 1;
  return k;
}

void lib_dget(void *ctx, long n) {
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

void lib_dset(void *ctx, long n) {
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

void lib_ddel(void *ctx, long n) {
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

dict_load *dict_load_new(size_t keys) {
  dict_load *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  snprintf(dict_seg, sizeof dict_seg, "/shmval-bench-dict-%d", (int)getpid());
  make_order(&c->o, keys);
  if (c->o.idx == NULL || (c->b = base_new(keys)) == NULL || fill(&c->s, &c->d, keys, 8, 8) != 0) {
    dict_load_free(c);
    return NULL;
  }
  for (size_t i = 0; i < keys; i++)
    base_set(c->b, key_of(i), key_of(i));
  return c;
}

void dict_load_free(dict_load *c) {
  if (c == NULL)
    return;
  if (c->s != NULL) {
    shm_segment_close(c->s);
    shm_segment_unlink(dict_seg);
  }
  if (c->b != NULL)
    munmap(c->b, sizeof *c->b + (c->b->mask + 1) * sizeof c->b->s[0]);
  free(c->o.idx);
  free(c);
}

int dict_load_failed(const dict_load *c) { return c->failed; }

static int size_rows(size_t keys, long iters) {
  char label[96];
  dctx *c = dict_load_new(keys);
  if (c == NULL)
    return 1;
  const char *names[] = {"get", "set (present key)", "del + set"};
  bench_fn libs[] = {lib_dget, lib_dset, lib_ddel}, bases[] = {base_dget, base_dset, base_ddel};
  for (int r = 0; r < 3; r++) {
    pair p = measure(libs[r], c, iters, bases[r], c, iters);
    snprintf(label, sizeof label, "%s, %zu keys", names[r], keys);
    row_ns(label, p, "<= 1.0x");
  }
  int rc = c->failed;
  dict_load_free(c);
  return rc;
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

/* ------------------------------------------------------------------------ */
/* 1 -> P readers and one writer. */

typedef struct readers {
  dctx *c;
  int nread;
  long per;      /* gets per reader */
  bool lib;      /* shm_dict, or the one-mutex table */
  long pause_ns; /* the writer's pause between sets */
  _Atomic int *go;
  double *end; /* each reader's finishing time */
} readers;

static void reader_body(readers *r, int who) {
  dctx *c = r->c;
  c->at = (size_t)who * (c->o.n / 16 + 1) % c->o.n; /* each reader its own stretch of keys */
  if (r->lib)
    lib_dget(c, r->per);
  else
    base_dget(c, r->per);
  r->end[who] = now_ns();
  _exit(c->failed);
}

/* Set a key every pause_ns (or as fast as it can) until told to stop. */
static void writer_body(readers *r) {
  dctx *c = r->c;
  struct timespec pause = {0, r->pause_ns};
  c->at = c->o.n / 2;
  while (atomic_load(r->go) != 2) {
    if (r->lib)
      lib_dset(c, 1);
    else
      base_dset(c, 1);
    if (r->pause_ns != 0)
      nanosleep(&pause, NULL);
  }
  _exit(c->failed);
}

/*
 * Fork the writer and the readers, start the readers together and wait for
 * them: the ns per get of all readers, from the start to the last reader's
 * end (the forks and exits are not timed).
 */
static double run_readers(readers *r) {
  pid_t w, pids[256];
  int st, bad = 0;
  atomic_store(r->go, 0);
  if ((w = fork()) == 0)
    writer_body(r);
  for (int i = 0; i < r->nread; i++) {
    if ((pids[i] = fork()) == 0) {
      while (atomic_load(r->go) == 0) {
      }
      reader_body(r, i);
    }
  }
  usleep(2000); /* let every reader reach its start line */
  double t0 = now_ns(), last = t0;
  atomic_store(r->go, 1);
  for (int i = 0; i < r->nread; i++) {
    if (waitpid(pids[i], &st, 0) != pids[i] || st != 0)
      bad = 1;
    if (r->end[i] > last)
      last = r->end[i];
  }
  atomic_store(r->go, 2);
  if (waitpid(w, &st, 0) != w || st != 0)
    bad = 1;
  r->c->failed |= bad;
  return (last - t0) / ((double)r->nread * (double)r->per);
}

/* Library and baseline runs alternating, as measure() does. */
static pair measure_readers(readers *lib, readers *base) {
  double tl[REPS], tb[REPS], tr[REPS];
  for (int i = 0; i < REPS; i++) {
    tl[i] = run_readers(lib);
    tb[i] = run_readers(base);
    tr[i] = tl[i] / tb[i];
  }
  return (pair){summarise(tl), summarise(tb), summarise(tr).med};
}

static int readers_rows(int quick) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int maxp = (int)(cores < 2 ? 2 : cores > 64 ? 64 : cores);
  size_t keys = quick ? 100000 : 1000000;
  dctx *c = dict_load_new(keys);
  _Atomic int *go = shared_alloc(4096);
  if (c == NULL || go == NULL)
    return 1;
  readers lr = {.c = c,
                .per = quick ? 200000 : 2000000,
                .lib = true,
                .pause_ns = 1000000,
                .go = go,
                .end = (double *)(void *)((char *)go + 64)},
          br = lr;
  br.lib = false;
  char label[96], target[32];
  double one = 0, bone = 0;
  section("Shared dict: readers and one writer", "get, 8-byte keys (ns per get, all readers)",
          "shm_dict", "one robust mutex over an open-addressing table");
  /*
   * The writer sets a key every millisecond: with P = cores readers it is a
   * process more than the machine has cores, and a writer that ran all the
   * time would measure the scheduler. The first row has one at full speed.
   */
  lr.nread = br.nread = 1;
  lr.pause_ns = br.pause_ns = 0;
  pair hot = measure_readers(&lr, &br);
  snprintf(label, sizeof label, "1 reader + 1 writer at full speed, %zu keys", keys);
  row_ns(label, hot, "<= 1.0x");
  lr.pause_ns = br.pause_ns = 1000000;
  for (int np = 1; np <= maxp; np++) {
    lr.nread = br.nread = np;
    pair p = measure_readers(&lr, &br);
    snprintf(label, sizeof label, "%d reader%s + 1 writer (a set per ms)", np, np > 1 ? "s" : "");
    row_ns(label, p, "-");
    if (np == 1) {
      one = p.lib.med;
      bone = p.base.med;
    } else {
      /* Aggregate throughput over one reader's: (np / t_np) / (1 / t_1). */
      double x = one / p.lib.med;
      snprintf(label, sizeof label, "%d readers: throughput / 1 reader's (one mutex: %.2f)", np,
               bone / p.base.med);
      snprintf(target, sizeof target, ">= %.1f", 0.9 * np);
      row_single(label, (stat3){x, x, x}, "x", target);
    }
  }
  int rc = c->failed;
  munmap((void *)go, 4096);
  dict_load_free(c);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* LMDB: mdb_get in a read transaction renewed per get; mdb_put + commit. */

#ifdef SHMVAL_HAVE_LMDB
static char lmdb_path[96];

static void lmdb_close(dctx *c) {
  char lock[128];
  if (c->rd != NULL)
    mdb_txn_abort(c->rd);
  if (c->env != NULL)
    mdb_env_close(c->env);
  c->rd = NULL;
  c->env = NULL;
  snprintf(lock, sizeof lock, "%s-lock", lmdb_path);
  unlink(lmdb_path);
  unlink(lock);
}

/* An LMDB file on tmpfs, no sync, written through the map, holding the same keys. */
static int lmdb_open(dctx *c, size_t keys) {
  MDB_txn *t;
  snprintf(lmdb_path, sizeof lmdb_path, "/dev/shm/shmval-bench-lmdb-%d", (int)getpid());
  if (mdb_env_create(&c->env) != 0 || mdb_env_set_mapsize(c->env, (size_t)2 << 30) != 0 ||
      mdb_env_open(c->env, lmdb_path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_WRITEMAP, 0600) != 0 ||
      mdb_txn_begin(c->env, NULL, 0, &t) != 0)
    goto fail;
  if (mdb_dbi_open(t, NULL, 0, &c->dbi) != 0) {
    mdb_txn_abort(t);
    goto fail;
  }
  for (size_t i = 0; i < keys; i++) {
    uint64_t k = key_of(i);
    MDB_val kv = {8, &k}, vv = {8, &k};
    if (mdb_put(t, c->dbi, &kv, &vv, 0) != 0) {
      mdb_txn_abort(t);
      goto fail;
    }
  }
  if (mdb_txn_commit(t) != 0 || mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->rd) != 0)
    goto fail;
  mdb_txn_reset(c->rd);
  return 0;
fail:
  lmdb_close(c);
  return -1;
}

static void lmdb_get(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c), v;
    MDB_val kv = {8, &k}, vv;
    if (mdb_txn_renew(c->rd) != 0 || mdb_get(c->rd, c->dbi, &kv, &vv) != 0 || vv.mv_size != 8)
      c->failed = 1;
    else
      memcpy(&v, vv.mv_data, 8), c->failed |= v != k;
    mdb_txn_reset(c->rd);
  }
}

static int lmdb_write(dctx *c, uint64_t k, bool del) {
  MDB_txn *t;
  MDB_val kv = {8, &k}, vv = {8, &k};
  if (mdb_txn_begin(c->env, NULL, 0, &t) != 0)
    return -1;
  if ((del ? mdb_del(t, c->dbi, &kv, NULL) : mdb_put(t, c->dbi, &kv, &vv, 0)) != 0) {
    mdb_txn_abort(t);
    return -1;
  }
  return mdb_txn_commit(t);
}

static void lmdb_set(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++)
    c->failed |= lmdb_write(c, next_key(c), false) != 0;
}

static void lmdb_del(void *ctx, long n) {
  dctx *c = ctx;
  for (long i = 0; i < n; i++) {
    uint64_t k = next_key(c);
    c->failed |= lmdb_write(c, k, true) != 0 || lmdb_write(c, k, false) != 0;
  }
}

static int lmdb_rows(size_t keys, long iters) {
  char label[96];
  dctx *c = dict_load_new(keys);
  if (c == NULL || lmdb_open(c, keys) != 0) {
    dict_load_free(c);
    return 1;
  }
  const char *names[] = {"get", "set (present key) + commit", "del + set, a commit each"};
  const char *targets[] = {"<= 1.0x", "-", "-"};
  bench_fn libs[] = {lib_dget, lib_dset, lib_ddel}, peers[] = {lmdb_get, lmdb_set, lmdb_del};
  for (int r = 0; r < 3; r++) {
    /* LMDB writes are slower: fewer of them, so that both sides take similar times. */
    long pi = r == 0 ? iters : iters / 10;
    pair p = measure(libs[r], c, iters, peers[r], c, pi);
    snprintf(label, sizeof label, "%s, %zu keys", names[r], keys);
    row_ns(label, p, targets[r]);
  }
  int rc = c->failed;
  lmdb_close(c);
  dict_load_free(c);
  return rc;
}
#endif

static int lmdb_section(int quick) {
  section("Shared dict vs LMDB", "8-byte keys and values (ns/op)", "shm_dict",
          "LMDB on tmpfs (NOSYNC, WRITEMAP)");
#ifdef SHMVAL_HAVE_LMDB
  long iters = quick ? 200000 : 1000000;
  return lmdb_rows(1000, iters) | lmdb_rows(quick ? 100000 : 1000000, iters);
#else
  (void)quick;
  printf("(skipped: built without LMDB; install liblmdb-dev, then configure again)\n");
  return 0;
#endif
}

int bench_dict(int quick) {
  size_t big = quick ? 100000 : 1000000;
  long iters = quick ? 200000 : 1000000;
  section("Shared dict", "8-byte keys and values (ns/op)", "shm_dict",
          "one robust mutex over an open-addressing table");
  int rc = size_rows(1000, iters);
  rc |= size_rows(big, iters);
  char label[96];
  snprintf(dict_seg, sizeof dict_seg, "/shmval-bench-dict-%d", (int)getpid());
  snprintf(label, sizeof label, "memory per entry, %zu keys of 8 bytes, 8-byte values", big);
  rc |= memory_row(big, 8, 8, label, "<= 64 B");
  snprintf(label, sizeof label, "memory per entry, %zu keys of 32 bytes, 100-byte values", big);
  rc |= memory_row(big, 32, 100, label, "-");
  rc |= readers_rows(quick);
  rc |= lmdb_section(quick);
  if (rc != 0)
    fprintf(stderr, "shmval_bench: dict: a run failed\n");
  return rc;
}
