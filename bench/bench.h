/*
 * The benchmarks' shared harness: timing, alternating library/baseline runs,
 * medians and the table rows. Each figure is the median of REPS repetitions
 * (min and max shown); library and baseline runs alternate within each
 * repetition, and the ratio is the median of the per-repetition ratios, so
 * that drift in the machine's speed cancels out.
 */
#ifndef SHMVAL_BENCH_H
#define SHMVAL_BENCH_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <math.h>
#include <stdbool.h>
#include <time.h>

#define REPS 11
#define DASHES "----------------------------------------"

static inline double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

typedef void (*bench_fn)(void *ctx, long iters);

typedef struct stat3 {
  double med, min, max;
} stat3;

static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static inline stat3 summarise(double *t) {
  qsort(t, REPS, sizeof t[0], cmp_double);
  return (stat3){t[REPS / 2], t[0], t[REPS - 1]};
}

/* One timed run of @p fn over @p iters operations: ns per operation. */
static inline double run_once(bench_fn fn, void *ctx, long iters) {
  double t0 = now_ns();
  fn(ctx, iters);
  return (now_ns() - t0) / (double)iters;
}

/* A measured pair: the library, its baseline and the median ratio lib/base. */
typedef struct pair {
  stat3 lib, base;
  double ratio;
} pair;

/*
 * The library's and the baseline's runs, alternating (see the top of this
 * file). A pair of functions that forks runs its operations whole in each
 * repetition; one that does not runs them in SUB_BATCHES parts, alternating
 * part by part and summed, so that both sides meet the same spells of a
 * machine whose speed drifts within a repetition.
 */
pair measure(bench_fn lib, void *lctx, long liters, bench_fn base, void *bctx, long biters);
/* The number of parts, or 1 for @p liters and @p biters operations when @p forks. */
int sub_batches(long liters, long biters, bool forks);

/*
 * Print a row and record it for bench/results. @p unit is "ns" (lower is
 * better) or "GB/s"; a row without a baseline passes a zero pair and NAN ratio.
 */
void row_ns(const char *name, pair p, const char *target);
void row_gbs(const char *name, pair p, double bytes, const char *target);
/* A row with no baseline: one measured figure with its unit, and a target. */
void row_single(const char *name, stat3 v, const char *unit, const char *target);
/* Start a section: a heading and its table header. */
void section(const char *title, const char *what, const char *lib, const char *base);
/* Write every recorded row to DIR/latest.md and DIR/latest.json. */
int write_results(const char *dir, const char *machine);

/* A robust process-shared mutex, the plainest correct baseline for a lock. */
static inline int robust_mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return rc;
}

static inline void robust_lock(pthread_mutex_t *m) {
  if (pthread_mutex_lock(m) == EOWNERDEAD)
    pthread_mutex_consistent(m);
}

/* Anonymous shared memory for a baseline's state. */
static inline void *shared_alloc(size_t n) {
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* The sections, one per file. */
int bench_core(int quick);
int bench_sync(int quick);
int bench_named(int quick);
int bench_grow(int quick);
int bench_dict(int quick);
int bench_list(int quick);
int bench_peers(int quick);
int bench_scaling(int quick);

/* Where the results go, and a data file (for bench/plot.gp) there, or NULL. */
extern const char *bench_out;
FILE *data_file(const char *name);

/* libshmval loops of the core section, reused by the peers: ctx is a shm_value. */
void lib_get(void *ctx, long n);
void lib_set(void *ctx, long n);
void lib_incr(void *ctx, long n);
void lib_incr2(void *ctx, long n);
void lib_create(void *ctx, long n);

/*
 * Named segment loops of the named section, on the segment called seg_name,
 * seg_bytes large. raw_seg_create reserves the space when ctx is not NULL.
 */
extern char seg_name[64];
extern size_t seg_bytes;
void lib_seg_create(void *ctx, long n);
void lib_seg_open(void *ctx, long n);
void raw_seg_create(void *ctx, long n);
void raw_seg_open(void *ctx, long n);

/*
 * The dict section's workload, reused by the peers: a dict in a named segment
 * (and the one-mutex table) holding @p keys 8-byte keys, each its own value,
 * visited in a fixed random order. lib_dget gets the next keys, lib_dset sets
 * them, lib_ddel deletes and sets each again; ctx is a dict_load.
 */
typedef struct dict_load dict_load;
dict_load *dict_load_new(size_t keys);
void dict_load_free(dict_load *l);
int dict_load_failed(const dict_load *l); /* nonzero if an operation went wrong */
void lib_dget(void *ctx, long n);
void lib_dset(void *ctx, long n);
void lib_ddel(void *ctx, long n);

/* A producer process appends @p n 8-byte items to the typed list ctx; this one pops them. */
void lib_queue8(void *ctx, long n);

/* One figure: fn over @p n operations, REPS times. */
stat3 measure_one(bench_fn fn, void *ctx, long n);

/* Run @p fn in this process and a forked twin at the same time. */
extern int bench_side; /* 0 in the parent, 1 in the twin */
void twice(bench_fn fn, void *ctx, long n);

#endif
