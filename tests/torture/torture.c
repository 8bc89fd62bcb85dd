/*
 * Kill torture: worker processes hammer a named segment with locked
 * increments, atomic adds and object creation and destruction while this
 * program, the supervisor, SIGKILLs random workers at random moments and
 * restarts them. At the end it checks that no committed update was lost, that
 * every lock can still be taken, that the segment passes shm_segment_check(),
 * and that the blocks killed workers left behind are all reclaimed.
 *
 *   torture [--workers K] [--seconds S] [--kills N] [--min-kills M] [--soak] [--seed X]
 *
 * Short mode (the default, what ctest runs): stop after N kills (default
 * 2000) or S seconds (default 20), and fail with fewer than M kills (default
 * 300). --soak runs the whole S seconds whatever the kill count. With
 * TORTURE_KEEP set in the environment, a failed run keeps its segment (its
 * name is printed) for inspection.
 *
 * Accounting. Each worker has a slot of counters that only it writes: for
 * each operation kind, "pending" is set before the shared update and "done"
 * bumped and "pending" cleared after it. An update in flight when the worker
 * is killed may have happened or not: the supervisor counts those kills
 * (pending found set) as the allowed uncertainty, so
 *   sum(done) <= counter <= sum(done) + uncertain
 * must hold exactly for both the locked and the atomic counter.
 *
 * Hangs: a watchdog fails the run if no worker completes an operation for 10
 * seconds, if stopping the workers takes over 10 seconds, or if the whole run
 * takes S + 60 seconds (SIGALRM).
 *
 * Exit status: 0 pass, 1 a check failed, 2 usage, 3 a hang.
 */
#include <shmval.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64

enum phase { IDLE, IN_LOCKED, IN_ATOMIC, IN_CREATE, IN_OPEN, IN_DICT, IN_LIST, PHASES };

/* A worker's counters; written by the worker (and by the supervisor once it died). */
typedef struct slot {
  uint64_t locked_done, locked_pend;
  uint64_t atomic_done, atomic_pend;
  uint64_t creates, ownerdead;
  uint64_t phase, ops;
  uint64_t dict_done, dict_pend; /* additions to the counter dict */
  uint64_t pushed, push_pend;    /* items into the queue list (pending: a batch's size) */
  uint64_t popped, pop_pend;     /* items out of it (pending: the most a batch takes) */
} slot;

static char seg_name[64];
static volatile sig_atomic_t alarm_fired;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !alarm_fired) {
  }
}

/* xorshift64*: a per-process random stream. */
static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}

static void put(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static uint64_t get(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* ------------------------------------------------------------------------ */
/* Workers. */

typedef struct world {
  shm_segment *seg;
  shm_value *locked, *atomic, *stop;
  shm_array *slots;
  shm_dict *counts, *scratch;
  shm_list *queue;
} world;

static int open_world(world *w) {
  int rc = shm_segment_open(&w->seg, seg_name, NULL);
  if (rc == 0)
    rc = shm_value_open(&w->locked, w->seg, "locked", SHMVAL_LLONG);
  if (rc == 0)
    rc = shm_value_open(&w->atomic, w->seg, "atomic", SHMVAL_LLONG);
  if (rc == 0)
    rc = shm_value_open(&w->stop, w->seg, "stop", SHMVAL_INT);
  if (rc == 0)
    rc = shm_array_open(&w->slots, w->seg, "slots", SHMVAL_RECORD);
  if (rc == 0)
    rc = shm_dict_open(&w->counts, w->seg, "counts");
  if (rc == 0)
    rc = shm_dict_open(&w->scratch, w->seg, "scratch");
  if (rc == 0)
    rc = shm_list_open(&w->queue, w->seg, "queue");
  return rc;
}

static int op_locked(world *w, slot *s) {
  int rc = shm_value_acquire(w->locked);
  if (rc == SHMVAL_OWNERDEAD)
    put(&s->ownerdead, s->ownerdead + 1);
  else if (rc != 0)
    return 20;
  long long *p = shm_value_ptr(w->locked);
  put(&s->locked_pend, 1);
  __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
  put(&s->locked_done, s->locked_done + 1);
  put(&s->locked_pend, 0);
  return shm_value_release(w->locked) == 0 ? 0 : 21;
}

static int op_atomic(world *w, slot *s) {
  put(&s->atomic_pend, 1);
  if (shm_value_add(w->atomic, &(long long){1}, NULL) != 0)
    return 30;
  put(&s->atomic_done, s->atomic_done + 1);
  put(&s->atomic_pend, 0);
  return 0;
}

static int failed(int id, const char *what, int rc, int code) {
  fprintf(stderr, "torture: worker %d: %s: %s\n", id, what, shmval_err_name(rc));
  return code;
}

/* Counter keys: short ones live in their slots, long ones in entry blocks. */
static size_t count_key(unsigned i, char *k) {
  return (size_t)snprintf(k, 48, i % 2 ? "c%u" : "a counter key long enough for a block %u", i);
}

/*
 * A scratch value says whether it is whole: its length, then one byte
 * repeated (lengths from 0 to 300: in the slot, in a block, resized).
 */
static size_t scratch_val(unsigned char *v, uint64_t r) {
  size_t n = 8 + (size_t)(r % 300);
  uint64_t len = n;
  memcpy(v, &len, 8);
  memset(v + 8, (int)(r >> 20), n - 8);
  return n;
}

static bool scratch_whole(const unsigned char *v, size_t n) {
  uint64_t len;
  if (n < 8)
    return false;
  memcpy(&len, v, 8);
  for (size_t i = 9; i < n; i++)
    if (v[i] != v[8])
      return false;
  return len == n;
}

typedef struct scratch_arg {
  const unsigned char *v;
  size_t n;
} scratch_arg;

/* shm_dict_update's callback: the value becomes ctx's (a whole one). */
static int scratch_update(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  const scratch_arg *a = ctx;
  if (present && !scratch_whole(val, *vlen))
    return 78; /* torn: reported */
  if (a->n > cap)
    return 77; /* no room to grow this far in one update: refused, nothing changed */
  memcpy(val, a->v, a->n);
  *vlen = a->n;
  return 0;
}

/* An addition to the counter dict (exactly accounted), then scratch writes and reads. */
static int op_dict(world *w, slot *s, int id) {
  char k[48];
  unsigned char v[320];
  size_t n;
  int rc;
  put(&s->dict_pend, 1);
  if ((rc = shm_dict_add(w->counts, k, count_key((unsigned)(rnd() % 64), k), &(long long){1},
                         NULL)) != 0)
    return failed(id, "dict add", rc, 50);
  put(&s->dict_done, s->dict_done + 1);
  put(&s->dict_pend, 0);
  /* The scratch dict grows to a few hundred keys and shrinks again: resizes under kills. */
  for (int i = 0; i < 4; i++) {
    uint64_t r = rnd();
    size_t kl = (size_t)snprintf(k, sizeof k, "s%u", (unsigned)(r % 400));
    unsigned what = (unsigned)(r >> 40) % 16;
    scratch_arg sa = {v, scratch_val(v, r)};
    if (what < 3)
      rc = shm_dict_del(w->scratch, k, kl);
    else if (what < 6)
      rc = shm_dict_set(w->scratch, k, kl, v, sa.n);
    else if (what == 6 && (rc = shm_dict_update(w->scratch, k, kl, scratch_update, &sa)) == 77)
      rc = 0;
    else if (what == 7 && (rc = shm_dict_setdefault(w->scratch, k, kl, v, sa.n, NULL, 0, NULL)) > 0)
      rc = 0;
    else if (what == 8 && (rc = shm_dict_pop(w->scratch, k, kl, v, sizeof v, &n)) == 0 &&
             !scratch_whole(v, n))
      return failed(id, "dict value torn (pop)", rc, 51);
    else if (what == 9 && r % 512 == 0)
      rc = shm_dict_clear(w->scratch); /* now and then: a clear under kills */
    else if (what > 9 && (rc = shm_dict_get(w->scratch, k, kl, v, sizeof v, &n)) == 0 &&
             !scratch_whole(v, n))
      return failed(id, "dict value torn", rc, 51);
    if (rc != 0 && rc != SHMVAL_ENOENT)
      return failed(id, "dict scratch", rc, 52);
  }
  return 0;
}

/*
 * The queue list: items in (at the back, now and then the front or the
 * middle) and out (at the front, the back or the middle), each counted
 * exactly, every item checked whole; the ring grows and shrinks under kills.
 */
static int op_list(world *w, slot *s, int id) {
  unsigned char v[4 * 320];
  size_t n, len, lens[4], k;
  int rc = shm_list_len(w->queue, &len);
  if (rc != 0)
    return failed(id, "list len", rc, 60);
  uint64_t r = rnd();
  unsigned what = (unsigned)(r >> 40) % 16;
  long mid = len > 2 ? (long)(r % len) : 0;
  if (len < 200 && what < 9) {
    /* One item, or (what 6) a batch of 1 to 4 back to back. */
    k = what == 6 ? 1 + r % 4 : 1;
    n = 0;
    for (size_t i = 0; i < k; i++)
      n += lens[i] = scratch_val(v + n, r + i * 0x9E3779B97F4A7C15u);
    put(&s->push_pend, k);
    rc = what == 6  ? shm_list_append_many(w->queue, v, lens, k)
         : what < 7 ? shm_list_append(w->queue, v, n)
         : what < 8 ? shm_list_insert(w->queue, 0, v, n)
                    : shm_list_insert(w->queue, mid, v, n);
    if (rc != 0)
      return failed(id, "list append", rc, 61);
    put(&s->pushed, s->pushed + k);
    put(&s->push_pend, 0);
    return 0;
  }
  if (what == 15 && r % 64 == 0)
    return (rc = shm_list_reverse(w->queue)) == 0 ? 0 : failed(id, "list reverse", rc, 62);
  /* One item, or (what 11) up to 3 from the front. */
  put(&s->pop_pend, what == 11 ? 3 : 1);
  k = 1;
  rc = what == 11  ? shm_list_pop_many(w->queue, 0, 3, 0, v, sizeof v, lens, &k)
       : what < 12 ? shm_list_pop_wait(w->queue, 0, 0, v, sizeof v, &lens[0])
       : what < 14 ? shm_list_pop(w->queue, -1, v, sizeof v, &lens[0])
                   : shm_list_pop(w->queue, mid, v, sizeof v, &lens[0]);
  for (size_t i = 0, at = 0; rc == 0 && i < k; at += lens[i++])
    if (!scratch_whole(v + at, lens[i]))
      return failed(id, "list item torn", rc, 63);
  if (rc == 0)
    put(&s->popped, s->popped + k);
  put(&s->pop_pend, 0);
  return rc == 0 || rc == SHMVAL_ERANGE || rc == SHMVAL_ETIMEDOUT ? 0
                                                                  : failed(id, "list pop", rc, 64);
}

/* A named Value and an unnamed Array of a random size, made and unmade. */
static int op_create(world *w, slot *s, int id) {
  char name[32];
  snprintf(name, sizeof name, "w%d", id);
  shm_opts o = {.segment = w->seg, .name = name};
  shm_value *v;
  shm_array *a;
  int rc = shm_value_create(&v, SHMVAL_INT, &id, &o);
  if (rc == SHMVAL_EEXIST) /* left by this slot's killed predecessor */
    return shm_object_remove(w->seg, name) == 0 ? 0 : 40;
  if (rc != 0) {
    fprintf(stderr, "torture: worker %d: create: %s\n", id, shmval_err_name(rc));
    return 41;
  }
  int x = -1;
  if ((rc = shm_value_get(v, &x)) != 0 || x != id)
    return failed(id, "get", rc, 42);
  o.name = NULL;
  if ((rc = shm_array_create(&a, SHMVAL_DOUBLE, 1 + rnd() % 2000, NULL, &o)) != 0 &&
      rc != SHMVAL_ENOSPC)
    return failed(id, "array create", rc, 43);
  if (rc == 0 && (rc = shm_array_destroy(a)) != 0)
    return failed(id, "array destroy", rc, 44);
  if ((rc = shm_value_destroy(v)) != 0)
    return failed(id, "value destroy", rc, 45);
  put(&s->creates, s->creates + 1);
  return 0;
}

static int worker(int id) {
  world w;
  rng_state = (uint64_t)getpid() * UINT64_C(0x9E3779B97F4A7C15) | 1;
  int rc = open_world(&w);
  if (rc != 0) {
    fprintf(stderr, "torture: worker %d: open: %s\n", id, shmval_strerror(rc));
    return 10;
  }
  slot *s = (slot *)shm_array_ptr(w.slots) + id;
  int stop = 0;
  while (shm_value_get(w.stop, &stop) == 0 && !stop) {
    unsigned r = (unsigned)(rnd() % 12);
    uint64_t ph = r < 4    ? IN_LOCKED
                  : r < 6  ? IN_ATOMIC
                  : r < 8  ? IN_DICT
                  : r < 10 ? IN_LIST
                           : IN_CREATE;
    put(&s->phase, ph);
    rc = ph == IN_LOCKED   ? op_locked(&w, s)
         : ph == IN_ATOMIC ? op_atomic(&w, s)
         : ph == IN_DICT   ? op_dict(&w, s, id)
         : ph == IN_LIST   ? op_list(&w, s, id)
                           : op_create(&w, s, id);
    put(&s->phase, IDLE);
    if (rc != 0) {
      fprintf(stderr, "torture: worker %d: operation failed (%d)\n", id, rc);
      return rc;
    }
    put(&s->ops, s->ops + 1);
  }
  shm_segment_close(w.seg);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The supervisor. */

typedef struct tally {
  uint64_t kills, unc_locked, unc_atomic, unc_dict, unc_push, unc_pop, in_call[PHASES], restarts,
      reclaimed;
} tally;

static pid_t pids[MAX_WORKERS];
static slot *slots;

static pid_t start_worker(int id) {
  put(&slots[id].phase, IN_OPEN);
  pid_t pid = fork();
  if (pid == 0)
    _exit(worker(id));
  return pid;
}

static void kill_all(int k) {
  for (int i = 0; i < k; i++)
    if (pids[i] > 0) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], NULL, 0);
      pids[i] = 0;
    }
}

/* The run took far longer than asked: something hangs. Clean up and fail. */
static void on_alarm(int sig) {
  static const char msg[] = "torture: the run overran its time by 60 s: hung\n";
  (void)sig;
  alarm_fired = 1;
  (void)!write(2, msg, sizeof msg - 1);
  for (int i = 0; i < MAX_WORKERS; i++)
    if (pids[i] > 0)
      kill(pids[i], SIGKILL);
  shm_unlink(seg_name);
  _exit(3);
}

/* Kill worker @p id, note what it was doing, and start it again. */
static int kill_one(int id, tally *t) {
  kill(pids[id], SIGKILL);
  int st;
  if (waitpid(pids[id], &st, 0) != pids[id])
    return 1;
  if (WIFEXITED(st)) {
    fprintf(stderr, "torture: worker %d exited with %d before it was killed\n", id,
            WEXITSTATUS(st));
    pids[id] = 0;
    return 1;
  }
  slot *s = &slots[id];
  t->kills++;
  uint64_t ph = get(&s->phase);
  t->in_call[ph < PHASES ? ph : 0]++;
  /* The dead worker's update in flight may have happened: allow it, once. */
  if (get(&s->locked_pend)) {
    t->unc_locked++;
    put(&s->locked_pend, 0);
  }
  if (get(&s->atomic_pend)) {
    t->unc_atomic++;
    put(&s->atomic_pend, 0);
  }
  if (get(&s->dict_pend)) {
    t->unc_dict++;
    put(&s->dict_pend, 0);
  }
  /* A batch in flight: any number of its items, up to all, went in or out. */
  t->unc_push += get(&s->push_pend);
  put(&s->push_pend, 0);
  t->unc_pop += get(&s->pop_pend);
  put(&s->pop_pend, 0);
  pids[id] = start_worker(id);
  t->restarts++;
  return pids[id] > 0 ? 0 : 1;
}

static uint64_t total_ops(int k) {
  uint64_t n = 0;
  for (int i = 0; i < k; i++)
    n += get(&slots[i].ops);
  return n;
}

/* Say what a hung worker is doing: its phase, its kernel wait, its stack. */
static void describe_hang(int id) {
  char path[64], buf[256];
  printf("torture: worker %d (pid %d) phase %llu\n", id, (int)pids[id],
         (unsigned long long)get(&slots[id].phase));
  const char *files[] = {"wchan", "syscall", "stack"};
  for (int f = 0; f < 3; f++) {
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pids[id], files[f]);
    FILE *fp = fopen(path, "r");
    size_t n = fp != NULL ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    buf[n] = '\0';
    printf("  %s: %s\n", files[f], buf);
    if (fp != NULL)
      fclose(fp);
  }
  fflush(stdout);
  snprintf(buf, sizeof buf,
           "command -v gdb >/dev/null && gdb -p %d -batch -ex 'thread apply all bt' 2>&1 | "
           "grep -E '^#' >&2",
           (int)pids[id]);
  (void)!system(buf);
}

/* Ask the workers to stop and wait for them; 3 if one hangs. */
static int stop_all(int k, shm_value *stop) {
  shm_value_set(stop, &(int){1});
  double deadline = now() + 10;
  for (int i = 0; i < k; i++) {
    int st;
    pid_t r;
    while ((r = waitpid(pids[i], &st, WNOHANG)) == 0 && now() < deadline)
      nap(0.005);
    if (r == 0) {
      fprintf(stderr, "torture: worker %d did not stop within 10 s: hung\n", i);
      describe_hang(i);
      kill_all(k);
      return 3;
    }
    pids[i] = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "torture: worker %d failed (status %d)\n", i, st);
      kill_all(k);
      return 1;
    }
  }
  return 0;
}

static int check_counter(const char *what, shm_value *v, uint64_t done, uint64_t unc) {
  long long c = -1;
  int rc = shm_value_get(v, &c);
  if (rc != 0 && rc != SHMVAL_OWNERDEAD) {
    fprintf(stderr, "torture: %s counter: %s\n", what, shmval_strerror(rc));
    return 1;
  }
  printf("  %-7s counter %lld, completed %llu, in flight at a kill %llu\n", what, c,
         (unsigned long long)done, (unsigned long long)unc);
  if (c < 0 || (uint64_t)c < done || (uint64_t)c > done + unc) {
    fprintf(stderr, "torture: %s counter %lld outside [%llu, %llu]: an update was lost\n", what, c,
            (unsigned long long)done, (unsigned long long)(done + unc));
    return 1;
  }
  return 0;
}

static int sum_counts(const void *k, size_t kl, const void *v, size_t vl, void *ctx) {
  long long x;
  (void)k, (void)kl;
  if (vl != sizeof x)
    return -1;
  memcpy(&x, v, sizeof x);
  *(long long *)ctx += x;
  return 0;
}

static int scratch_ok(const void *k, size_t kl, const void *v, size_t vl, void *ctx) {
  (void)k, (void)kl;
  ++*(size_t *)ctx;
  return scratch_whole(v, vl) ? 0 : -1;
}

/*
 * The counter dict's total equals the completed additions, plus at most the
 * ones a kill caught in flight; every scratch value is whole; the key counts
 * agree with what iteration finds.
 */
static int check_dicts(shm_segment *seg, uint64_t done, uint64_t unc) {
  shm_dict *counts, *scratch;
  long long total = 0;
  size_t n = 0, len = 0, clen = 0;
  int rc = shm_dict_open(&counts, seg, "counts");
  if (rc == 0)
    rc = shm_dict_open(&scratch, seg, "scratch");
  if (rc == 0)
    rc = shm_dict_foreach(counts, sum_counts, &total);
  if (rc == 0)
    rc = shm_dict_foreach(scratch, scratch_ok, &n);
  if (rc == 0)
    rc = shm_dict_len(scratch, &len);
  if (rc == 0)
    rc = shm_dict_len(counts, &clen);
  if (rc != 0) {
    fprintf(stderr, "torture: dicts: %s\n", rc < 0 ? shmval_err_name(rc) : "a value is torn");
    return 1;
  }
  printf("  dict    total %lld, completed %llu, in flight at a kill %llu; %zu counter keys, %zu "
         "scratch keys\n",
         total, (unsigned long long)done, (unsigned long long)unc, clen, n);
  if (total < 0 || (uint64_t)total < done || (uint64_t)total > done + unc) {
    fprintf(stderr, "torture: counter dict total %lld outside [%llu, %llu]\n", total,
            (unsigned long long)done, (unsigned long long)(done + unc));
    return 1;
  }
  if (len != n) {
    fprintf(stderr, "torture: scratch dict says %zu keys, iteration found %zu\n", len, n);
    return 1;
  }
  return 0;
}

static int item_ok(size_t i, const void *item, size_t len, void *ctx) {
  (void)i, (void)ctx;
  return scratch_whole(item, len) ? 0 : -1;
}

/*
 * The queue holds the items pushed less those popped, give or take the ones
 * a kill caught in flight; every item is whole.
 */
static int check_queue(shm_segment *seg, uint64_t pushed, uint64_t popped, const tally *t) {
  shm_list *q;
  size_t len = 0;
  int rc = shm_list_open(&q, seg, "queue");
  if (rc == 0)
    rc = shm_list_len(q, &len);
  if (rc == 0)
    rc = shm_list_foreach(q, item_ok, NULL);
  if (rc != 0) {
    fprintf(stderr, "torture: list: %s\n", rc < 0 ? shmval_err_name(rc) : "an item is torn");
    return 1;
  }
  int64_t lo = (int64_t)pushed - (int64_t)popped - (int64_t)t->unc_pop,
          hi = (int64_t)pushed - (int64_t)popped + (int64_t)t->unc_push;
  printf("  list    %zu items; pushed %llu, popped %llu, in flight at a kill %llu in, %llu out\n",
         len, (unsigned long long)pushed, (unsigned long long)popped,
         (unsigned long long)t->unc_push, (unsigned long long)t->unc_pop);
  if ((int64_t)len < lo || (int64_t)len > hi) {
    fprintf(stderr, "torture: the queue holds %zu items, outside [%lld, %lld]\n", len,
            (long long)lo, (long long)hi);
    return 1;
  }
  return 0;
}

typedef struct config {
  int workers, kills, min_kills;
  double seconds;
  bool soak;
  uint64_t seed;
} config;

/* The end-of-run checks; 0 when everything holds. */
static int verify(const config *c, shm_segment *seg, shm_value *locked, shm_value *atomic,
                  const tally *t, double elapsed) {
  uint64_t ld = 0, ad = 0, dd = 0, creates = 0, od = 0, pushed = 0, popped = 0;
  for (int i = 0; i < c->workers; i++) {
    pushed += slots[i].pushed;
    popped += slots[i].popped;
    dd += slots[i].dict_done;
    ld += slots[i].locked_done;
    ad += slots[i].atomic_done;
    creates += slots[i].creates;
    od += slots[i].ownerdead;
  }
  printf("torture: %d workers, %.1f s, %llu kills (%.0f/s), %llu operations\n", c->workers, elapsed,
         (unsigned long long)t->kills, (double)t->kills / elapsed,
         (unsigned long long)total_ops(c->workers));
  printf("  kills landed: %llu inside a locked increment, %llu inside an atomic add, %llu inside"
         " create/destroy, %llu while opening the segment, %llu between operations\n",
         (unsigned long long)t->in_call[IN_LOCKED], (unsigned long long)t->in_call[IN_ATOMIC],
         (unsigned long long)t->in_call[IN_CREATE], (unsigned long long)t->in_call[IN_OPEN],
         (unsigned long long)t->in_call[IDLE]);
  printf("  and %llu inside a dict operation, %llu inside a list operation\n",
         (unsigned long long)t->in_call[IN_DICT], (unsigned long long)t->in_call[IN_LIST]);
  printf("  lock recovered from a dead owner %llu times; %llu create/destroy cycles\n",
         (unsigned long long)od, (unsigned long long)creates);
  int bad = check_counter("locked", locked, ld, t->unc_locked);
  bad |= check_counter("atomic", atomic, ad, t->unc_atomic);
  bad |= check_dicts(seg, dd, t->unc_dict);
  bad |= check_queue(seg, pushed, popped, t);
  /* Every lock can be taken. */
  int rc = shm_lock_acquire_timeout(shm_value_get_lock(locked), 2.0);
  if (rc != 0 && rc != SHMVAL_OWNERDEAD) {
    fprintf(stderr, "torture: the counter's lock cannot be taken: %s\n", shmval_strerror(rc));
    bad = 1;
  } else {
    shm_lock_release(shm_value_get_lock(locked));
  }
  shm_check_report r;
  rc = shm_segment_check(seg, &r);
  printf("  check: %s; %zu objects, %zu blocks, %zu leaked blocks (%zu bytes) from %llu kills\n",
         rc == 0 ? "ok" : shmval_err_name(rc), r.objects, r.blocks, r.leaked_blocks, r.leaked_bytes,
         (unsigned long long)t->kills);
  if (rc != 0) {
    fprintf(stderr, "torture: integrity check: %s at offset %llu\n",
            r.problem ? r.problem : shmval_strerror(rc), r.problem_offset);
    bad = 1;
  } else if (r.leaked_blocks > t->in_call[IN_CREATE]) {
    /* Only a kill inside create/destroy can leave a block behind. */
    fprintf(stderr, "torture: %zu leaked blocks, more than the %llu kills inside create/destroy\n",
            r.leaked_blocks, (unsigned long long)t->in_call[IN_CREATE]);
    bad = 1;
  }
  /*
   * The dead workers' journals free all they left: the windows the journal
   * does not cover need locks shared by several objects or several threads
   * per attachment, which the workers do not use.
   */
  size_t freed = 0, before = r.leaked_blocks;
  rc = shm_segment_reclaim(seg, &freed, NULL);
  int rc2 = rc == 0 ? shm_segment_check(seg, &r) : rc;
  printf("  reclaim: %zu blocks freed at the end (%llu during the run); %zu leaked blocks left\n",
         freed, (unsigned long long)t->reclaimed, rc2 == 0 ? r.leaked_blocks : before);
  if (rc != 0 || rc2 != 0 || r.leaked_blocks != 0) {
    fprintf(stderr, "torture: reclaim %s, check %s, %zu blocks still leaked\n", shmval_err_name(rc),
            shmval_err_name(rc2), r.leaked_blocks);
    bad = 1;
  }
  shm_segment_info info;
  if (shm_segment_stat(seg, &info) != 0 || info.attached != 1) {
    fprintf(stderr, "torture: %u processes still attached; only the supervisor should be\n",
            info.attached);
    bad = 1;
  }
  if (t->kills < (uint64_t)c->min_kills) {
    fprintf(stderr, "torture: only %llu kills, fewer than %d\n", (unsigned long long)t->kills,
            c->min_kills);
    bad = 1;
  }
  return bad;
}

static int make_world(shm_segment **seg, shm_value **locked, shm_value **atomic, shm_value **stop,
                      int k) {
  /* Growable, from little: the workers' first creations grow it while they are being killed. */
  shm_segment_opts so = {.max_attach = MAX_WORKERS * 2, .max_size = 64u << 20};
  int rc = shm_segment_create(seg, seg_name, 128u << 10, &so);
  if (rc != 0)
    return rc;
  shm_opts o = {.segment = *seg, .name = "locked"};
  shm_array *sa;
  if ((rc = shm_value_create(locked, SHMVAL_LLONG, NULL, &o)) != 0)
    return rc;
  o.name = "atomic";
  o.flags = SHMVAL_ATOMIC;
  if ((rc = shm_value_create(atomic, SHMVAL_LLONG, NULL, &o)) != 0)
    return rc;
  o.name = "stop";
  o.flags = SHMVAL_RAW;
  if ((rc = shm_value_create(stop, SHMVAL_INT, NULL, &o)) != 0)
    return rc;
  o.name = "slots";
  if ((rc = shm_array_create_record(&sa, sizeof(slot), _Alignof(slot), (size_t)k, NULL, &o)) != 0)
    return rc;
  slots = shm_array_ptr(sa);
  shm_dict *d;
  o.flags = 0;
  o.name = "counts";
  if ((rc = shm_dict_create(&d, SHMVAL_LLONG, &o)) != 0)
    return rc;
  o.name = "scratch";
  if ((rc = shm_dict_create(&d, 0, &o)) != 0)
    return rc;
  shm_list *q;
  o.name = "queue";
  return shm_list_create(&q, 0, &o);
}

static int parse(int argc, char **argv, config *c) {
  *c = (config){.workers = 4, .kills = 2000, .min_kills = 300, .seconds = 20, .seed = 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--soak") == 0) {
      c->soak = true;
      continue;
    }
    if (v == NULL)
      return 2;
    i++;
    if (strcmp(a, "--workers") == 0)
      c->workers = atoi(v);
    else if (strcmp(a, "--seconds") == 0)
      c->seconds = atof(v);
    else if (strcmp(a, "--kills") == 0)
      c->kills = atoi(v);
    else if (strcmp(a, "--min-kills") == 0)
      c->min_kills = atoi(v);
    else if (strcmp(a, "--seed") == 0)
      c->seed = strtoull(v, NULL, 0);
    else
      return 2;
  }
  return c->workers < 1 || c->workers > MAX_WORKERS || c->seconds <= 0 ? 2 : 0;
}

/* One world: a fresh segment, workers, kills, then every check. 0 on success. */
static int epoch(const config *c, double seconds, tally *t) {
  shm_segment *seg = NULL;
  shm_value *locked, *atomic, *stop;
  alarm((unsigned)seconds + 60);
  int rc = make_world(&seg, &locked, &atomic, &stop, c->workers);
  if (rc != 0) {
    fprintf(stderr, "torture: setting up: %s\n", shmval_strerror(rc));
    shm_segment_close(seg);
    shm_segment_unlink(seg_name);
    return 1;
  }
  int status = 0;
  for (int i = 0; i < c->workers; i++)
    pids[i] = start_worker(i);
  double t0 = now(), last_progress = t0;
  uint64_t last_ops = 0;
  while (status == 0) {
    double el = now() - t0;
    if (el >= seconds || (!c->soak && t->kills >= (uint64_t)c->kills))
      break;
    nap((double)(rnd() % 10000) / 1e6); /* 0 to 10 ms */
    status = kill_one((int)(rnd() % (uint64_t)c->workers), t);
    if (status == 0 && t->kills % 500 == 0) {
      /* What a supervisor of crash-prone workers would do now and then. */
      size_t freed = 0;
      if (shm_segment_reclaim(seg, &freed, NULL) != 0)
        status = 1;
      t->reclaimed += freed;
    }
    uint64_t ops = total_ops(c->workers);
    if (ops != last_ops) {
      last_ops = ops;
      last_progress = now();
    } else if (now() - last_progress > 10 || alarm_fired) {
      fprintf(stderr, "torture: no operation completed for 10 s: hung\n");
      status = 3;
    }
  }
  double elapsed = now() - t0;
  if (status == 0)
    status = stop_all(c->workers, stop);
  else
    kill_all(c->workers);
  if (status == 0 && alarm_fired)
    status = 3;
  if (status == 0)
    status = verify(c, seg, locked, atomic, t, elapsed);
  shm_segment_close(seg);
  if (status != 0 && getenv("TORTURE_KEEP") != NULL)
    fprintf(stderr, "torture: kept %s\n", seg_name);
  else
    shm_segment_unlink(seg_name);
  alarm(0);
  return status;
}

/*
 * A soak runs as a series of one-minute epochs, each on a fresh segment and
 * each checked in full (the end-of-run checks are the thorough ones), with
 * the unnamed objects that killed workers had created and not yet destroyed
 * (live objects, not leaks) dropped with each segment.
 */
#define SOAK_EPOCH 60.0

int main(int argc, char **argv) {
  config c;
  if (parse(argc, argv, &c) != 0) {
    fprintf(stderr, "usage: torture [--workers K] [--seconds S] [--kills N] [--min-kills M] "
                    "[--soak] [--seed X]\n");
    return 2;
  }
  rng_state = c.seed != 0 ? c.seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("torture: seed %llu\n", (unsigned long long)rng_state);
  rng_state |= 1;
  snprintf(seg_name, sizeof seg_name, "/shmval-torture-%d", (int)getpid());
  signal(SIGALRM, on_alarm);
  if (!c.soak) {
    tally t = {0};
    int status = epoch(&c, c.seconds, &t);
    printf("torture: %s\n", status == 0 ? "PASS" : "FAIL");
    return status;
  }
  config ec = c;
  ec.min_kills = 0;
  double t0 = now();
  uint64_t kills = 0, epochs = 0;
  int status = 0;
  while (status == 0 && now() - t0 < c.seconds) {
    double left = c.seconds - (now() - t0);
    tally t = {0};
    status = epoch(&ec, left < SOAK_EPOCH ? left : SOAK_EPOCH, &t);
    kills += t.kills;
    epochs++;
  }
  printf("torture: soak: %llu epochs, %llu kills in %.0f s\n", (unsigned long long)epochs,
         (unsigned long long)kills, now() - t0);
  if (status == 0 && kills < (uint64_t)c.min_kills)
    status = 1;
  printf("torture: %s\n", status == 0 ? "PASS" : "FAIL");
  return status;
}
