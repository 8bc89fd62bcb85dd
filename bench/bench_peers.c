/*
 * The peers section: the same operations in Python's multiprocessing (and,
 * later, Boost.Interprocess), run in the same benchmark run. A peer that is
 * not installed is skipped with a message. Ratios are libshmval / peer.
 */
#include <shmval.h>

#include "bench.h"

#include <unistd.h>

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
  shm_value_destroy(v);
  shm_value_destroy(rv);
  return shm_segment_close(b.seg);
}

int bench_peers(int quick) { return python_rows(quick); }
