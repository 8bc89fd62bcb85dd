/*
 * The peers section: the same operations in Python's multiprocessing and
 * Boost.Interprocess, run in the same benchmark run. A peer that is
 * not installed is skipped with a message. Ratios are libshmval / peer.
 */
#include <shmval.h>

#include "bench.h"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SHMVAL_BOOST_PEER
#define SHMVAL_BOOST_PEER ""
#endif
#ifndef SHMVAL_PEERS_DIR
#define SHMVAL_PEERS_DIR "bench/peers"
#endif

typedef struct peer_fig {
  char name[64];
  stat3 v;
} peer_fig;

/* Run a peer command; its "NAME MEDIAN MIN MAX" lines into @p figs. */
static int run_peer(const char *cmd, peer_fig *figs, int cap) {
  FILE *p = popen(cmd, "r");
  int n = 0;
  if (p == NULL)
    return 0;
  while (n < cap && fscanf(p, "%63s %lf %lf %lf", figs[n].name, &figs[n].v.med, &figs[n].v.min,
                           &figs[n].v.max) == 4)
    n++;
  return pclose(p) == 0 ? n : 0;
}

static const stat3 *find(const peer_fig *figs, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(figs[i].name, name) == 0)
      return &figs[i].v;
  return NULL;
}

/* A row: libshmval's figure for @p fn beside the peer's @p name. */
static void peer_row(const char *label, bench_fn fn, void *ctx, long n, const peer_fig *figs,
                     int nfigs, const char *name, const char *target) {
  const stat3 *peer = find(figs, nfigs, name);
  if (peer == NULL)
    return;
  stat3 lib = measure_one(fn, ctx, n);
  row_ns(label, (pair){lib, *peer, lib.med / peer->med}, target);
}

/* The nearest libshmval thing to a Manager().dict() lookup: a named Value by name. */
typedef struct by_name {
  shm_segment *seg;
} by_name;

static void lib_open_get(void *ctx, long n) {
  by_name *b = ctx;
  shm_value *v;
  long x;
  for (long i = 0; i < n; i++)
    if (shm_value_open(&v, b->seg, "key", SHMVAL_LONG) == 0)
      shm_value_get(v, &x);
}

static void lib_open_set(void *ctx, long n) {
  by_name *b = ctx;
  shm_value *v;
  for (long i = 0; i < n; i++)
    if (shm_value_open(&v, b->seg, "key", SHMVAL_LONG) == 0)
      shm_value_set(v, &i);
}

static int python_rows(int quick) {
  peer_fig figs[16];
  char cmd[512];
  snprintf(cmd, sizeof cmd, "python3 %s/python_peer.py%s 2>/dev/null", SHMVAL_PEERS_DIR,
           quick ? " --quick" : "");
  int n = run_peer(cmd, figs, 16);
  section("Peer: Python multiprocessing", "operation (ns/op)", "libshmval", "Python");
  if (n == 0) {
    printf("(skipped: python3 with multiprocessing is not available)\n");
    return 0;
  }
  shm_value *v, *rv, *named;
  shm_opts raw = {.flags = SHMVAL_RAW};
  by_name b;
  char seg[64];
  snprintf(seg, sizeof seg, "/shmval-bench-peer-%d", (int)getpid());
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  if (shm_value_create(&v, SHMVAL_LONG, NULL, NULL) ||
      shm_value_create(&rv, SHMVAL_LONG, NULL, &raw) ||
      shm_segment_create(&b.seg, seg, 1 << 20, &au))
    return 1;
  shm_opts no = {.segment = b.seg, .name = "key"};
  shm_value_create(&named, SHMVAL_LONG, NULL, &no);
  long k = quick ? 20000 : 1000000;
  peer_row("Value get (locked)", lib_get, v, k, figs, n, "locked_get", "-");
  peer_row("Value set (locked)", lib_set, v, k, figs, n, "locked_set", "-");
  peer_row("locked increment", lib_incr, v, k, figs, n, "locked_increment",
           "<= 0.025x (40x faster)");
  peer_row("RawValue get", lib_get, rv, k, figs, n, "raw_get", "-");
  peer_row("Value create + destroy", lib_create, NULL, k / 10, figs, n, "create_destroy", "-");
  peer_row("2 processes: locked increment", lib_incr2, v, k / 10, figs, n,
           "contended2_locked_increment", "-");
  peer_row("by key: named Value vs Manager dict set", lib_open_set, &b, k / 10, figs, n,
           "manager_dict_set", "-");
  peer_row("by key: named Value vs Manager dict get", lib_open_get, &b, k / 10, figs, n,
           "manager_dict_get", "-");
  dict_load *dl = dict_load_new(1000);
  if (dl == NULL)
    return 1;
  peer_row("dict get, 1000 8-byte keys vs Manager().dict()", lib_dget, dl, k, figs, n,
           "manager_dict8_get", "<= 0.001x");
  peer_row("dict set, 1000 8-byte keys vs Manager().dict()", lib_dset, dl, k, figs, n,
           "manager_dict8_set", "<= 0.001x");
  int failed = dict_load_failed(dl);
  dict_load_free(dl);
  shm_list *q;
  if (shm_list_create(&q, SHMVAL_ULLONG, NULL) != 0)
    return 1;
  peer_row("queue, 2 processes: 8-byte items vs mp.Queue", lib_queue8, q, k / 10, figs, n,
           "mp_queue_8", "<= 0.01x");
  peer_row("queue, 2 processes: 8-byte items vs Manager().list()", lib_queue8, q, k / 10, figs, n,
           "manager_list_8", "<= 0.01x");
  failed |= shm_list_destroy(q);
  shm_value_destroy(v);
  shm_value_destroy(rv);
  return shm_segment_close(b.seg) | failed;
}

/* ------------------------------------------------------------------------ */
/* The Python binding beside multiprocessing: both sides are Python, measured by
 * bench/peers/python_binding.py in one run; its lines become this section's rows. */

/* One "pair UNIT 7 numbers NAME|TARGET" or "single ns 3 numbers NAME|TARGET" line. */
static int binding_row(char *line) {
  char kind[8], unit[32];
  double f[7];
  int used = 0;
  line[strcspn(line, "\n")] = '\0';
  if (sscanf(line, "%7s %31s%n", kind, unit, &used) != 2)
    return -1;
  char *p = line + used;
  int nf = strcmp(kind, "pair") == 0 ? 7 : 3;
  for (int i = 0; i < nf; i++) {
    char *end;
    f[i] = strtod(p, &end);
    if (end == p)
      return -1;
    p = end;
  }
  p += strspn(p, " ");
  char *bar = strchr(p, '|');
  if (bar == NULL)
    return -1;
  *bar = '\0';
  if (nf == 3) {
    row_single(p, (stat3){f[0], f[1], f[2]}, "ns", bar + 1);
    return 0;
  }
  pair pr = {{f[0], f[1], f[2]}, {f[3], f[4], f[5]}, f[6]};
  if (strncmp(unit, "gbs:", 4) == 0)
    row_gbs(p, pr, atof(unit + 4), bar + 1);
  else
    row_ns(p, pr, bar + 1);
  return 0;
}

static int binding_rows(int quick) {
  section("Peer: the Python binding vs multiprocessing", "operation (Python code)",
          "shmval (Python)", "multiprocessing");
#ifdef SHMVAL_PY_BINDING
  char cmd[1024], line[512];
  snprintf(cmd, sizeof cmd, "PYTHONPATH='%s' python3 '%s' --rows%s 2>/dev/null", SHMVAL_PY_PATH,
           SHMVAL_PY_BINDING, quick ? " --quick" : "");
  FILE *p = popen(cmd, "r");
  int rows = 0, bad = 0;
  while (p != NULL && fgets(line, sizeof line, p) != NULL)
    if (binding_row(line) == 0)
      rows++;
    else
      bad++;
  int st = p == NULL ? -1 : pclose(p);
  if (rows == 0 || st != 0 || bad != 0) {
    printf("(failed: %s gave %d rows, %d bad lines, status %d)\n", SHMVAL_PY_BINDING, rows, bad,
           st);
    return 1;
  }
#else
  (void)quick;
  (void)binding_row;
  printf("(skipped: the Python package is not built: python3 was not found)\n");
#endif
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Boost.Interprocess. */

#define NAMES 20000

static void lib_named_open(void *ctx, long n) {
  by_name *b = ctx;
  char key[32];
  shm_value *v;
  for (long i = 0; i < n; i++) {
    snprintf(key, sizeof key, "obj-%ld", (i * 7919) % NAMES);
    if (shm_value_open(&v, b->seg, key, SHMVAL_LLONG) != 0)
      abort();
  }
}

static void lib_named_create_remove(void *ctx, long n) {
  by_name *b = ctx;
  char key[32];
  shm_value *v;
  for (long i = 0; i < n; i++) {
    snprintf(key, sizeof key, "new-%ld", i % 1000);
    shm_opts o = {.segment = b->seg, .name = key, .flags = SHMVAL_RAW};
    shm_value_create(&v, SHMVAL_LLONG, NULL, &o);
    shm_object_remove(b->seg, key);
  }
}

static void lib_alloc_free(void *ctx, long n) {
  by_name *b = ctx;
  shm_opts o = {.segment = b->seg, .flags = SHMVAL_RAW};
  shm_value *v;
  for (long i = 0; i < n; i++) {
    shm_value_create(&v, SHMVAL_LLONG, NULL, &o);
    shm_value_destroy(v);
  }
}

/* The same, K at a time: create K Values, then destroy all K (Boost's peer does likewise). */
#define ALLOC_BATCH 1000

static void lib_alloc_free_batch(void *ctx, long n) {
  by_name *b = ctx;
  shm_opts o = {.segment = b->seg, .flags = SHMVAL_RAW};
  static shm_value *v[ALLOC_BATCH];
  for (long done = 0; done < n; done += ALLOC_BATCH) {
    for (int i = 0; i < ALLOC_BATCH; i++)
      if (shm_value_create(&v[i], SHMVAL_LLONG, NULL, &o) != 0)
        abort();
    for (int i = 0; i < ALLOC_BATCH; i++)
      shm_value_destroy(v[i]);
  }
}

/*
 * The Boost peer runs as a server (bench/peers/boost_peer.cpp): asked for K
 * operations of a row, it runs them and answers with its ns per operation.
 * So its batches alternate with the library's, as every other baseline's do.
 */
typedef struct boost_peer {
  FILE *ask, *answer;
  pid_t pid;
} boost_peer;

static int peer_start(boost_peer *bp, const char *exe, int quick) {
  int to[2], from[2];
  if (pipe(to) != 0)
    return -1;
  if (pipe(from) != 0) {
    close(to[0]), close(to[1]);
    return -1;
  }
  fflush(stdout);
  bp->pid = fork();
  if (bp->pid == 0) {
    dup2(to[0], 0);
    dup2(from[1], 1);
    close(to[0]), close(to[1]), close(from[0]), close(from[1]);
    execl(exe, exe, quick ? "--quick" : "--full", (char *)NULL);
    _exit(127);
  }
  close(to[0]), close(from[1]);
  /* A descriptor no stream took is closed here; peer_stop() closes the streams. */
  if (bp->pid < 0 || (bp->ask = fdopen(to[1], "w")) == NULL)
    close(to[1]);
  if (bp->pid < 0 || (bp->answer = fdopen(from[0], "r")) == NULL)
    close(from[0]);
  char line[32];
  if (bp->pid < 0 || bp->ask == NULL || bp->answer == NULL ||
      fgets(line, sizeof line, bp->answer) == NULL || strcmp(line, "ready\n") != 0)
    return -1;
  return 0;
}

/* End of input tells the peer to remove its segments and exit. */
static void peer_stop(boost_peer *bp) {
  if (bp->ask != NULL)
    fclose(bp->ask);
  if (bp->answer != NULL)
    fclose(bp->answer);
  if (bp->pid > 0)
    waitpid(bp->pid, NULL, 0);
}

/* The peer's ns per operation over @p k operations of row @p name; -1 if it failed. */
static double peer_time(boost_peer *bp, const char *name, long k) {
  double ns;
  fprintf(bp->ask, "%s %ld\n", name, k);
  fflush(bp->ask);
  return fscanf(bp->answer, "%lf", &ns) == 1 ? ns : -1;
}

/* A row: libshmval's @p fn and the peer's row @p name, batches alternating. */
static int boost_row(boost_peer *bp, const char *label, bench_fn fn, void *ctx, long n,
                     const char *name, const char *target) {
  double tl[REPS], tb[REPS], tr[REPS];
  fn(ctx, n / 10 + 1); /* warm up */
  if (peer_time(bp, name, n / 10 + 1) < 0)
    goto fail;
  int parts = sub_batches(n, n, false);
  for (int r = 0; r < REPS; r++) {
    tl[r] = tb[r] = 0;
    for (int s = 0; s < parts; s++) {
      tl[r] += run_once(fn, ctx, n / parts) / parts;
      double b = peer_time(bp, name, n / parts);
      if (b <= 0)
        goto fail;
      tb[r] += b / parts;
    }
    tr[r] = tl[r] / tb[r];
  }
  row_ns(label, (pair){summarise(tl), summarise(tb), summarise(tr).med}, target);
  return 0;
fail:
  printf("(failed: the Boost peer gave no figure for %s)\n", name);
  return 1;
}

/* The dict's rows beside Boost's unordered_map under an interprocess_mutex. */
static int boost_dict_rows(boost_peer *bp, int quick) {
  size_t sizes[] = {1000, quick ? 100000 : 1000000};
  const char *ops[] = {"get", "set", "delset"};
  const char *what[] = {"dict get", "dict set (present key)", "dict del + set"};
  bench_fn fns[] = {lib_dget, lib_dset, lib_ddel};
  long k = quick ? 200000 : 1000000;
  int failed = 0;
  for (int s = 0; s < 2; s++) {
    dict_load *dl = dict_load_new(sizes[s]);
    if (dl == NULL)
      return 1;
    for (int o = 0; o < 3; o++) {
      char label[96], peer[32];
      snprintf(label, sizeof label, "%s, %zu keys vs unordered_map", what[o], sizes[s]);
      snprintf(peer, sizeof peer, "dict_%s_%s", ops[o], s == 0 ? "small" : "big");
      failed |= boost_row(bp, label, fns[o], dl, k, peer, "<= 1.0x");
    }
    failed |= dict_load_failed(dl);
    dict_load_free(dl);
  }
  return failed;
}

/* Every row but the dict's; on the fixtures the library's side makes here. */
static int boost_lib_rows(boost_peer *bp, int quick) {
  shm_value *v;
  by_name b;
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  snprintf(seg_name, sizeof seg_name, "/shmval-bench-boost-%d", (int)getpid());
  if (shm_value_create(&v, SHMVAL_LONG, NULL, NULL) ||
      shm_segment_create(&b.seg, seg_name, 64 << 20, &au))
    return 1;
  for (long i = 0; i < NAMES; i++) {
    char key[32];
    shm_value *x;
    snprintf(key, sizeof key, "obj-%ld", i);
    shm_opts o = {.segment = b.seg, .name = key, .flags = SHMVAL_RAW};
    shm_value_create(&x, SHMVAL_LLONG, &(long long){i}, &o);
  }
  long k = quick ? 20000 : 1000000;
  int failed =
      boost_row(bp, "locked increment (robust vs not)", lib_incr, v, k, "locked_increment", "-");
  failed |= boost_row(bp, "locked increment vs a robust mutex in Boost", lib_incr, v, k,
                      "locked_increment_robust", "<= 1.15x");
  failed |=
      boost_row(bp, "open by name, 20k names", lib_named_open, &b, k / 10, "named_open", "<= 1.0x");
  failed |= boost_row(bp, "create + remove by name", lib_named_create_remove, &b, k / 10,
                      "named_create_remove", "<= 1.0x");
  failed |= boost_row(bp, "raw Value create+destroy vs allocate(8)", lib_alloc_free, &b, k,
                      "alloc_free_8", "<= 1.0x");
  failed |= boost_row(bp, "raw Values: 1000 created, then destroyed", lib_alloc_free_batch, &b, k,
                      "alloc_free_8_batch", "<= 1.0x");
  failed |= boost_row(bp, "the same vs Boost under a robust mutex", lib_alloc_free_batch, &b, k,
                      "alloc_free_8_batch_robust", "<= 1.0x");
  shm_segment_close(b.seg);
  shm_value_destroy(v);
  snprintf(seg_name, sizeof seg_name, "/shmval-bench-boost-seg-%d", (int)getpid());
  failed |= boost_row(bp, "segment create + remove, 1 MiB", lib_seg_create, NULL, quick ? 20 : 200,
                      "segment_create_remove", "<= 1.0x");
  shm_segment *s;
  if (shm_segment_create(&s, seg_name, 1 << 20, NULL) != 0)
    return 1;
  failed |= boost_row(bp, "segment open", lib_seg_open, NULL, quick ? 100 : 2000, "segment_open",
                      "<= 1.0x");
  /*
   * The peer opens in a process of its own, whose few mappings make mmap and
   * munmap cheaper than in this one: the raw header-reading open, timed here
   * beside the library's, is the floor in this process. Boost's open takes no
   * lock; the library's takes one byte's lock as its attacher slot (so that its
   * death is seen and the last closer knows it is last), one system call more:
   * the raw open that also takes it is the floor with that guarantee.
   */
  long opens = quick ? 100 : 2000;
  row_ns("segment open vs the raw header-reading open, here",
         measure(lib_seg_open, NULL, opens, raw_seg_open, (void *)1, opens), "<= 1.2x");
  row_ns("floor: vs raw + header + attach lock, here",
         measure(lib_seg_open, NULL, opens, raw_seg_open, (void *)2, opens), "<= 1.2x");
  shm_segment_close(s);
  return failed | shm_segment_unlink(seg_name);
}

/*
 * Run this process and the peer @p pid on one CPU, the one this process is on,
 * keeping the old mask in @p saved. The two sides' batches alternate so that
 * both meet the same machine, but a VM's virtual CPUs slow down one at a time
 * (one ran the allocation batch at 175 ns a pair while the other ran it at
 * 93, in the same second), so two processes left on different CPUs can
 * each meet a different machine. False if the masks could not be set.
 */
static bool same_cpu(pid_t pid, cpu_set_t *saved) {
  int cpu = sched_getcpu();
  cpu_set_t one;
  CPU_ZERO(&one);
  if (cpu < 0 || sched_getaffinity(0, sizeof *saved, saved) != 0)
    return false;
  CPU_SET(cpu, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0)
    return false;
  if (sched_setaffinity(pid, sizeof one, &one) != 0) {
    (void)sched_setaffinity(0, sizeof *saved, saved);
    return false;
  }
  return true;
}

static int boost_rows(int quick) {
  section("Peer: Boost.Interprocess", "operation (ns/op)", "libshmval", "Boost 1.74");
  const char *exe = SHMVAL_BOOST_PEER;
  if (exe[0] == '\0') {
    printf("(skipped: built without Boost.Interprocess; install libboost-dev and a C++ "
           "compiler, then configure again)\n");
    return 0;
  }
  boost_peer bp = {NULL, NULL, -1};
  int failed = 1;
  if (peer_start(&bp, exe, quick) == 0) {
    cpu_set_t saved;
    bool pinned = same_cpu(bp.pid, &saved);
    if (!pinned)
      printf("(the Boost peer and this process could not be kept on one CPU: ratios may be "
             "skewed)\n");
    failed = boost_lib_rows(&bp, quick) | boost_dict_rows(&bp, quick);
    if (pinned)
      (void)sched_setaffinity(0, sizeof saved, &saved);
  } else
    printf("(failed: the Boost peer %s did not start)\n", exe);
  peer_stop(&bp);
  return failed;
}

int bench_peers(int quick) { return python_rows(quick) | binding_rows(quick) | boost_rows(quick); }
