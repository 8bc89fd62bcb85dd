/*
 * The grow section: segments that grow (shm_segment_opts.max_size).
 *
 *   - allocation while growing: a segment made at 64 KiB that grows to
 *     256 MiB as 1 KiB raw Arrays fill it, beside the same allocations in a
 *     segment made at 256 MiB (both timed from create to unlink, so both
 *     reserve the same 256 MiB: growth must be nearly free);
 *   - one grow step: the allocation that finds the heap full and doubles the
 *     committed size, beside a bare posix_fallocate of the same size at the
 *     same offset of a file of the same apparent size.
 */
#include <shmval.h>

#include "bench.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

static char grow_name[64];

typedef struct fill_ctx {
  size_t first, max, bytes; /* sizes: made at, at most, to allocate */
  int failed;               /* a create or an allocation failed: the timing means nothing */
} fill_ctx;

/* Create, allocate ctx->bytes in 1 KiB raw Arrays, close, unlink: n times. */
static void fill_run(void *ctx, long n) {
  fill_ctx *c = ctx;
  for (long r = 0; r < n; r++) {
    shm_segment *s;
    shm_segment_opts so = {.max_size = c->max};
    if (shm_segment_create(&s, grow_name, c->first, &so) != 0) {
      c->failed = 1;
      return;
    }
    shm_opts o = {.segment = s, .flags = SHMVAL_RAW};
    for (size_t done = 0; done < c->bytes; done += KIB) {
      shm_array *a;
      if (shm_array_create(&a, SHMVAL_CHAR, KIB - 64, NULL, &o) != 0) {
        c->failed = 1;
        break;
      }
    }
    shm_segment_close(s);
    shm_segment_unlink(grow_name);
  }
}

/*
 * A segment of @p size committed bytes whose heap is full, so the next
 * allocation grows it: small arrays take the room left in the first page
 * (each goes to the smallest free block that holds it), then one raw array
 * takes all the rest of the free space.
 */
static shm_segment *full_segment(size_t size, size_t max) {
  shm_segment *s;
  shm_segment_info info;
  shm_check_report r;
  shm_array *a;
  shm_segment_opts so = {.max_size = max};
  if (shm_segment_create(&s, grow_name, size, &so) != 0)
    return NULL;
  shm_opts o = {.segment = s, .flags = SHMVAL_RAW};
  int rc;
  while ((rc = shm_segment_check(s, &r)) == 0 && r.free_blocks != 0 &&
         (rc = shm_array_create(&a, SHMVAL_CHAR, 1, NULL, &o)) == 0) {
  }
  /* A payload of 64 bytes or more starts 64 bytes into its block. */
  if (rc != 0 || shm_segment_stat(s, &info) != 0 ||
      shm_array_create(&a, SHMVAL_CHAR, info.free - 64, NULL, &o) != 0 ||
      shm_segment_stat(s, &info) != 0 || info.free != 0) {
    shm_segment_close(s);
    shm_segment_unlink(grow_name);
    return NULL;
  }
  return s;
}

/* The grow step from @p size: ns of the allocation that grows, then of the bare reservation. */
static int time_step(size_t size, double *lib, double *base) {
  shm_segment *s = full_segment(size, 4 * size);
  shm_value *v;
  shm_segment_info info;
  if (s == NULL)
    return 1;
  double t0 = now_ns();
  int rc = shm_value_create(&v, SHMVAL_LONG, NULL, &(shm_opts){.segment = s, .flags = SHMVAL_RAW});
  *lib = now_ns() - t0;
  if (rc == 0)
    rc = shm_segment_stat(s, &info);
  shm_segment_close(s);
  shm_segment_unlink(grow_name);
  if (rc != 0 || info.size != 2 * size)
    return 1;
  int fd = shm_open(grow_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return 1;
  rc = ftruncate(fd, (off_t)(4 * size)) != 0 || posix_fallocate(fd, 0, (off_t)size) != 0;
  t0 = now_ns();
  rc |= posix_fallocate(fd, (off_t)size, (off_t)size) != 0;
  *base = now_ns() - t0;
  close(fd);
  shm_unlink(grow_name);
  return rc;
}

static int step_row(size_t size, const char *label) {
  double tl[REPS], tb[REPS], tr[REPS], l, b;
  if (time_step(size, &l, &b) != 0) /* warm up */
    return 1;
  for (int r = 0; r < REPS; r++) {
    if (time_step(size, &tl[r], &tb[r]) != 0)
      return 1;
    tr[r] = tl[r] / tb[r];
  }
  pair p = {summarise(tl), summarise(tb), summarise(tr).med};
  row_ns(label, p, "<= 1.2x");
  return 0;
}

int bench_grow(int quick) {
  snprintf(grow_name, sizeof grow_name, "/shmval-bench-grow-%d", (int)getpid());
  size_t total = quick ? 64 * MIB : 256 * MIB;
  section("Growable segments", "1 KiB allocation (ns/op)", "grows from 64 KiB",
          "made at full size");
  /* Allocations fill 15/16 of it: what the fixed segment holds with its tables. */
  fill_ctx grow = {64 * KIB, 4 * total, total / 16 * 15, 0}, fixed = {total, 0, total / 16 * 15, 0};
  long allocs = (long)(grow.bytes / KIB);
  pair p = measure(fill_run, &grow, 1, fill_run, &fixed, 1);
  if (grow.failed || fixed.failed) {
    fprintf(stderr, "shmval_bench: grow: an allocation run failed\n");
    return 1;
  }
  p.lib.med /= (double)allocs, p.lib.min /= (double)allocs, p.lib.max /= (double)allocs;
  p.base.med /= (double)allocs, p.base.min /= (double)allocs, p.base.max /= (double)allocs;
  row_ns(quick ? "allocate 60 MiB, growing to 64 MiB" : "allocate 240 MiB, growing to 256 MiB", p,
         "<= 1.1x");
  section("Growable segments: one grow step", "grow (ns)", "allocation that grows",
          "posix_fallocate, same size");
  int rc = step_row(MIB, "grow 1 MiB -> 2 MiB");
  rc |= step_row(64 * MIB, "grow 64 MiB -> 128 MiB");
  return rc;
}
