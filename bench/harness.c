/* The benchmarks' harness: rows printed as they are measured, and recorded for
 * bench/results/latest.md and latest.json. */
#include "bench.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ROWS 512

typedef struct row {
  char section[64], name[64], unit[8], target[24];
  stat3 lib, base; /* base.med == 0: no baseline */
  double ratio;
} row;

static row rows[MAX_ROWS];
static int nrows;
static char current[64];

int bench_side;
const char *bench_out = ".";

FILE *data_file(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", bench_out, name);
  FILE *f = fopen(path, "w");
  if (f == NULL)
    fprintf(stderr, "shmval_bench: cannot write %s\n", path);
  return f;
}

void twice(bench_fn fn, void *ctx, long n) {
  pid_t pid = fork();
  if (pid == 0) {
    bench_side = 1;
    fn(ctx, n);
    _exit(0);
  }
  fn(ctx, n);
  waitpid(pid, NULL, 0);
}

static long fork_count;
static pthread_once_t fork_counter = PTHREAD_ONCE_INIT;

static void count_fork(void) { fork_count++; }
static void install_fork_counter(void) { (void)pthread_atfork(count_fork, NULL, NULL); }

/* Forks made by this process so far (a pthread_atfork handler counts them). */
static long bench_forks(void) {
  pthread_once(&fork_counter, install_fork_counter);
  return fork_count;
}

#define SUB_BATCHES 10

int sub_batches(long liters, long biters, bool forks) {
  /* Parts of at least 100 operations, splitting both counts evenly. */
  if (forks || liters % SUB_BATCHES != 0 || biters % SUB_BATCHES != 0 ||
      liters / SUB_BATCHES < 100 || biters / SUB_BATCHES < 100)
    return 1;
  return SUB_BATCHES;
}

pair measure(bench_fn lib, void *lctx, long liters, bench_fn base, void *bctx, long biters) {
  double tl[REPS], tb[REPS], tr[REPS];
  long before = bench_forks();
  lib(lctx, liters / 10 + 1); /* warm up */
  base(bctx, biters / 10 + 1);
  int parts = sub_batches(liters, biters, bench_forks() != before);
  for (int r = 0; r < REPS; r++) {
    tl[r] = tb[r] = 0;
    for (int s = 0; s < parts; s++) {
      tl[r] += run_once(lib, lctx, liters / parts) / parts;
      tb[r] += run_once(base, bctx, biters / parts) / parts;
    }
    tr[r] = tl[r] / tb[r];
  }
  return (pair){summarise(tl), summarise(tb), summarise(tr).med};
}

stat3 measure_one(bench_fn fn, void *ctx, long n) {
  double t[REPS];
  fn(ctx, n / 10 + 1);
  for (int r = 0; r < REPS; r++)
    t[r] = run_once(fn, ctx, n);
  return summarise(t);
}

static void record(const char *name, stat3 lib, stat3 base, double ratio, const char *unit,
                   const char *target) {
  if (nrows == MAX_ROWS)
    return;
  row *r = &rows[nrows++];
  snprintf(r->section, sizeof r->section, "%s", current);
  snprintf(r->name, sizeof r->name, "%s", name);
  snprintf(r->unit, sizeof r->unit, "%s", unit);
  snprintf(r->target, sizeof r->target, "%s", target);
  r->lib = lib;
  r->base = base;
  r->ratio = ratio;
}

/*
 * The machine probe: a fixed loop of loads and stores over 64 KiB (more than
 * a first-level cache holds). On a VM whose virtual CPUs have slow spells
 * (a busy neighbour on the same core), the spells show in it: 1.05 ns a step
 * against 1.45 on the 2-core VM of the committed runs. Code that runs more
 * instructions or touches more lines than its baseline loses more in such a
 * spell, so each section notes the probe beside its ratios.
 */
static uint64_t probe_buf[8192];

static void probe_loop(void *ctx, long n) {
  (void)ctx;
  uint64_t s = 0;
  for (long i = 0; i < n; i++) {
    s += probe_buf[(i * 17) & 8191];
    probe_buf[(i * 31) & 8191] = s;
  }
}

static void probe_row(void) {
  row_single("machine probe (see harness.c)", measure_one(probe_loop, NULL, 2000000), "ns", "-");
}

void section(const char *title, const char *what, const char *lib, const char *base) {
  snprintf(current, sizeof current, "%s", title);
  printf("\n### %s\n\n", title);
  printf("| %-40s | %-24s | %-24s | %-7s | %-14s |\n", what, lib, base, "ratio", "target");
  printf("|%.42s|%.26s|%.26s|%.9s|%.16s|\n", DASHES DASHES, DASHES, DASHES, DASHES, DASHES);
  probe_row();
}

void row_ns(const char *name, pair p, const char *target) {
  printf("| %-40s | %7.1f (%6.1f-%6.1f) | %7.1f (%6.1f-%6.1f) | %*.*fx | %-14s |\n", name,
         p.lib.med, p.lib.min, p.lib.max, p.base.med, p.base.min, p.base.max, 6,
         p.ratio < 0.1 ? 4 : 2, p.ratio, target);
  record(name, p.lib, p.base, p.ratio, "ns", target);
}

void row_gbs(const char *name, pair p, double bytes, const char *target) {
  /* Throughput: bytes per ns is GB/s; the ratio is libshmval / baseline. */
  stat3 lib = {bytes / p.lib.med, bytes / p.lib.max, bytes / p.lib.min};
  stat3 base = {bytes / p.base.med, bytes / p.base.max, bytes / p.base.min};
  printf("| %-40s | %6.2f (%5.2f-%5.2f) | %6.2f (%5.2f-%5.2f) | %6.2fx | %-14s |\n", name, lib.med,
         lib.min, lib.max, base.med, base.min, base.max, 1.0 / p.ratio, target);
  record(name, lib, base, 1.0 / p.ratio, "GB/s", target);
}

/* Decimals for a figure with no baseline: two below 10 (the machine probe's ns). */
static int decimals(double v) { return v < 10 ? 2 : 1; }

void row_single(const char *name, stat3 v, const char *unit, const char *target) {
  int d = decimals(v.med);
  printf("| %-40s | %7.*f (%6.*f-%6.*f) %-3s | %-24s | %-7s | %-14s |\n", name, d, v.med, d, v.min,
         d, v.max, unit, "-", "-", target);
  record(name, v, (stat3){0, 0, 0}, NAN, unit, target);
}

static void md_row(FILE *f, const row *r) {
  int d = decimals(r->lib.med);
  if (r->base.med == 0)
    fprintf(f, "| %s | %.*f %s (%.*f–%.*f) | – | – | %s |\n", r->name, d, r->lib.med, r->unit, d,
            r->lib.min, d, r->lib.max, r->target);
  else
    fprintf(f, "| %s | %.2f %s (%.2f–%.2f) | %.2f %s (%.2f–%.2f) | %.*f× | %s |\n", r->name,
            r->lib.med, r->unit, r->lib.min, r->lib.max, r->base.med, r->unit, r->base.min,
            r->base.max, r->ratio < 0.1 ? 4 : 2, r->ratio, r->target);
}

int write_results(const char *dir, const char *machine) {
  char path[1024];
  snprintf(path, sizeof path, "%s/latest.md", dir);
  FILE *md = fopen(path, "w");
  snprintf(path, sizeof path, "%s/latest.json", dir);
  FILE *js = fopen(path, "w");
  if (md == NULL || js == NULL) {
    fprintf(stderr, "shmval_bench: cannot write results in %s\n", dir);
    if (md != NULL)
      fclose(md);
    if (js != NULL)
      fclose(js);
    return 1;
  }
  fprintf(md,
          "# libshmval benchmark results\n\n%s\n\nMedian of %d runs (min–max); library and "
          "baseline runs alternate, and the ratio is the median of the per-run ratios "
          "(for GB/s rows, library / baseline throughput).\n",
          machine, REPS);
  fprintf(js, "{\n  \"machine\": \"%s\",\n  \"repetitions\": %d,\n  \"rows\": [", machine, REPS);
  const char *sec = "";
  for (int i = 0; i < nrows; i++) {
    const row *r = &rows[i];
    if (strcmp(sec, r->section) != 0) {
      sec = r->section;
      fprintf(md,
              "\n## %s\n\n| operation | libshmval | baseline | ratio | target |\n"
              "|---|---|---|---|---|\n",
              sec);
    }
    md_row(md, r);
    fprintf(js,
            "%s\n    {\"section\": \"%s\", \"name\": \"%s\", \"unit\": \"%s\", "
            "\"median\": %.3f, \"min\": %.3f, \"max\": %.3f",
            i ? "," : "", r->section, r->name, r->unit, r->lib.med, r->lib.min, r->lib.max);
    if (r->base.med != 0)
      fprintf(js,
              ", \"baseline_median\": %.3f, \"baseline_min\": %.3f, \"baseline_max\": %.3f, "
              "\"ratio\": %.4f",
              r->base.med, r->base.min, r->base.max, r->ratio);
    fprintf(js, ", \"target\": \"%s\"}", r->target);
  }
  fprintf(js, "\n  ]\n}\n");
  fclose(md);
  fclose(js);
  printf("\nwrote %s/latest.md and %s/latest.json\n", dir, dir);
  return 0;
}
