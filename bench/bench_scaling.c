/*
 * The scaling section: how cost grows with work. Contending processes
 * (1 → cores: locked and atomic increments beside their raw equivalents, and
 * the acquire latency's p50/p99) and segment size (1 MiB → 4 GiB: create and
 * open). Objects per segment are in the named section. Each series is also
 * written as a .dat file next to the results, for bench/plot.gp.
 */
#include <shmval.h>

#include "bench.h"

#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct contend {
  int nproc;
  long per; /* operations per process */
  shm_value *locked, *atomic;
  pthread_mutex_t *raw_m;
  long *raw_v;
  float *lat; /* sampled acquire latencies, per process per/16 slots; or NULL */
  _Atomic int *go;
} contend;

/* Fork c->nproc workers running @p body, start them together, wait for all. */
static void in_processes(contend *c, void (*body)(contend *, int)) {
  pid_t pids[256];
  atomic_store(c->go, 0);
  for (int i = 0; i < c->nproc; i++) {
    if ((pids[i] = fork()) == 0) {
      while (!atomic_load(c->go)) {
      }
      body(c, i);
      _exit(0);
    }
  }
  atomic_store(c->go, 1);
  for (int i = 0; i < c->nproc; i++)
    waitpid(pids[i], NULL, 0);
}

static void locked_body(contend *c, int who) {
  long *p = shm_value_ptr(c->locked);
  for (long i = 0; i < c->per; i++) {
    if (c->lat != NULL && (i & 15) == 0) {
      double t0 = now_ns();
      shm_value_acquire(c->locked);
      c->lat[(long)who * (c->per / 16 + 1) + i / 16] = (float)(now_ns() - t0);
    } else {
      shm_value_acquire(c->locked);
    }
    (*p)++;
    shm_value_release(c->locked);
  }
}

static void raw_locked_body(contend *c, int who) {
  (void)who;
  for (long i = 0; i < c->per; i++) {
    robust_lock(c->raw_m);
    (*c->raw_v)++;
    pthread_mutex_unlock(c->raw_m);
  }
}

static void atomic_body(contend *c, int who) {
  (void)who;
  long one = 1;
  for (long i = 0; i < c->per; i++)
    shm_value_add(c->atomic, &one, NULL);
}

static void raw_atomic_body(contend *c, int who) {
  (void)who;
  for (long i = 0; i < c->per; i++)
    __atomic_fetch_add(c->raw_v, 1, __ATOMIC_SEQ_CST);
}

/* bench_fn adapters: n is ignored, the context says how much work. */
#define ADAPT(name, body)                                                                          \
  static void name(void *ctx, long n) {                                                            \
    (void)n;                                                                                       \
    in_processes(ctx, body);                                                                       \
  }
ADAPT(run_locked, locked_body)
ADAPT(run_raw_locked, raw_locked_body)
ADAPT(run_atomic, atomic_body)
ADAPT(run_raw_atomic, raw_atomic_body)

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static int contention(int quick, FILE *dat) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int maxp = (int)(cores < 2 ? 2 : cores > 64 ? 64 : cores);
  long per = quick ? 20000 : 500000;
  contend c = {.per = per};
  shm_opts atomic = {.flags = SHMVAL_ATOMIC};
  c.go = shared_alloc(4096);
  c.raw_m = shared_alloc(4096);
  c.raw_v = (long *)(void *)((char *)c.raw_m + 128);
  size_t lat_bytes = (size_t)maxp * (size_t)(per / 16 + 1) * sizeof(float);
  float *lat = shared_alloc(lat_bytes);
  if (c.go == NULL || c.raw_m == NULL || lat == NULL || robust_mutex_init(c.raw_m) != 0 ||
      shm_value_create(&c.locked, SHMVAL_LONG, NULL, NULL) ||
      shm_value_create(&c.atomic, SHMVAL_LONG, NULL, &atomic))
    return 1;
  section("Scaling: contending processes", "operation (ns per operation, all processes)",
          "libshmval", "raw POSIX baseline");
  fprintf(dat, "# processes lib_locked raw_locked lib_atomic raw_atomic p50_acquire p99_acquire\n");
  for (int np = 1; np <= maxp; np++) {
    char label[64];
    c.nproc = np;
    c.lat = NULL;
    double ops = (double)np * (double)per;
    pair lk = measure(run_locked, &c, 1, run_raw_locked, &c, 1);
    pair at = measure(run_atomic, &c, 1, run_raw_atomic, &c, 1);
    /* measure() divides by n = 1: turn the wall time into ns per operation. */
    stat3 *s[] = {&lk.lib, &lk.base, &at.lib, &at.base};
    for (int i = 0; i < 4; i++) {
      s[i]->med /= ops;
      s[i]->min /= ops;
      s[i]->max /= ops;
    }
    snprintf(label, sizeof label, "%d process%s: locked increment", np, np > 1 ? "es" : "");
    row_ns(label, lk, np == 2 ? ">= 0.90x tput" : "-");
    snprintf(label, sizeof label, "%d process%s: atomic add", np, np > 1 ? "es" : "");
    row_ns(label, at, "-");
    /* One more run with sampled acquire latencies. */
    c.lat = lat;
    memset(lat, 0, lat_bytes);
    in_processes(&c, locked_body);
    size_t nsamp = (size_t)np * (size_t)(per / 16 + 1);
    qsort(lat, nsamp, sizeof *lat, cmp_float);
    /* Slots a worker did not fill stay 0 and sort first: skip them. */
    size_t first = 0;
    while (first < nsamp && lat[first] == 0)
      first++;
    size_t m = nsamp - first;
    stat3 p50 = {lat[first + m / 2], lat[first + m / 2], lat[first + m / 2]};
    stat3 p99 = {lat[first + m * 99 / 100], lat[first + m * 99 / 100], lat[first + m * 99 / 100]};
    snprintf(label, sizeof label, "%d process%s: acquire latency p50", np, np > 1 ? "es" : "");
    row_single(label, p50, "ns", "-");
    snprintf(label, sizeof label, "%d process%s: acquire latency p99", np, np > 1 ? "es" : "");
    row_single(label, p99, "ns", "-");
    fprintf(dat, "%d %.2f %.2f %.2f %.2f %.1f %.1f\n", np, lk.lib.med, lk.base.med, at.lib.med,
            at.base.med, p50.med, p99.med);
  }
  shm_value_destroy(c.locked);
  shm_value_destroy(c.atomic);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Segment size. */

static int segment_sizes(int quick, FILE *dat) {
  section("Scaling: segment size", "operation (ns/op)", "libshmval",
          "shm_open + posix_fallocate + mmap");
  fprintf(dat, "# MiB lib_create raw_create lib_open raw_open_reading_header (ns)\n");
  snprintf(seg_name, sizeof seg_name, "/shmval-bench-size-%d", (int)getpid());
  size_t sizes[] = {1, 16, 256, 4096};
  int count = quick ? 2 : 4;
  for (int i = 0; i < count; i++) {
    char label[64];
    seg_bytes = sizes[i] << 20;
    long n = sizes[i] >= 256 ? 1 : 20;
    snprintf(label, sizeof label, "create + close + unlink, %zu MiB", sizes[i]);
    pair cr = measure(lib_seg_create, NULL, n, raw_seg_create, (void *)1, n);
    row_ns(label, cr, "<= 1.5x");
    shm_segment *s;
    if (shm_segment_create(&s, seg_name, seg_bytes, NULL) != 0)
      return 1;
    /* Like with like: the raw opener reads the header too (the first touch faults). */
    snprintf(label, sizeof label, "open + close vs raw reading its header, %zu MiB", sizes[i]);
    pair op = measure(lib_seg_open, NULL, 50, raw_seg_open, (void *)1, 50);
    row_ns(label, op, "<= 1.5x");
    shm_segment_close(s);
    shm_segment_unlink(seg_name);
    fprintf(dat, "%zu %.0f %.0f %.0f %.0f\n", sizes[i], cr.lib.med, cr.base.med, op.lib.med,
            op.base.med);
  }
  return 0;
}

int bench_scaling(int quick) {
  FILE *a = data_file("scaling_processes.dat"), *b = data_file("scaling_segment_size.dat");
  int rc = a == NULL || b == NULL;
  if (rc == 0)
    rc = contention(quick, a) | segment_sizes(quick, b);
  if (a != NULL)
    fclose(a);
  if (b != NULL)
    fclose(b);
  return rc;
}
