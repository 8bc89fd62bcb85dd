/*
 * The sync section: the synchronisation primitives beside their raw POSIX
 * equivalents (robust process-shared pthread mutex, process-shared sem_t,
 * pthread condition variable and barrier), uncontended and with two processes
 * contending, in the same run, as ratios.
 *
 * Contended rows fork a second process that runs the same loop at the same
 * time; the figure is ns per operation of one process.
 */
#include <shmval.h>

#include "bench.h"

#include <semaphore.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* The raw baselines, all in one shared page. */

typedef struct raw {
  pthread_mutex_t m;
  pthread_cond_t c;
  sem_t sem;
  pthread_barrier_t b1, b2;
  int flag, turn;
} raw;

static raw *raw_new(void) {
  raw *r = shared_alloc(sizeof(raw));
  pthread_condattr_t ca;
  pthread_barrierattr_t ba;
  if (r == NULL)
    return NULL;
  robust_mutex_init(&r->m);
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  pthread_cond_init(&r->c, &ca);
  sem_init(&r->sem, 1, 1);
  pthread_barrierattr_init(&ba);
  pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
  pthread_barrier_init(&r->b1, &ba, 1);
  pthread_barrier_init(&r->b2, &ba, 2);
  return r;
}

static void raw_lock(void *ctx, long n) {
  raw *r = ctx;
  for (long i = 0; i < n; i++) {
    robust_lock(&r->m);
    pthread_mutex_unlock(&r->m);
  }
}

static void raw_sem(void *ctx, long n) {
  raw *r = ctx;
  for (long i = 0; i < n; i++) {
    while (sem_wait(&r->sem) != 0) {
    }
    sem_post(&r->sem);
  }
}

static void raw_event_set(void *ctx, long n) {
  raw *r = ctx;
  for (long i = 0; i < n; i++) {
    robust_lock(&r->m);
    r->flag = 1;
    pthread_cond_broadcast(&r->c);
    pthread_mutex_unlock(&r->m);
  }
}

static void raw_notify(void *ctx, long n) {
  raw *r = ctx;
  robust_lock(&r->m);
  for (long i = 0; i < n; i++)
    pthread_cond_signal(&r->c);
  pthread_mutex_unlock(&r->m);
}

static void raw_barrier1(void *ctx, long n) {
  raw *r = ctx;
  for (long i = 0; i < n; i++)
    pthread_barrier_wait(&r->b1);
}

static void raw_barrier2(void *ctx, long n) {
  raw *r = ctx;
  for (long i = 0; i < n; i++)
    pthread_barrier_wait(&r->b2);
}

/* Two processes take turns: each waits for its turn, then passes it on. */
static void raw_pingpong(void *ctx, long n) {
  raw *r = ctx;
  for (long i = 0; i < n; i++) {
    robust_lock(&r->m);
    while (r->turn != bench_side)
      pthread_cond_wait(&r->c, &r->m);
    r->turn = !bench_side;
    pthread_cond_broadcast(&r->c);
    pthread_mutex_unlock(&r->m);
  }
}

/* ------------------------------------------------------------------------ */
/* libshmval. */

typedef struct lib {
  shm_lock *lock, *rlock;
  shm_sem *sem;
  shm_event *event, *ping, *pong;
  shm_cond *cond;
  shm_barrier *b1, *b2;
  shm_value *turn;
} lib;

static void lib_lock(void *ctx, long n) {
  shm_lock *l = ((lib *)ctx)->lock;
  for (long i = 0; i < n; i++) {
    shm_lock_acquire(l);
    shm_lock_release(l);
  }
}

static void lib_rlock(void *ctx, long n) {
  shm_lock *l = ((lib *)ctx)->rlock;
  for (long i = 0; i < n; i++) {
    shm_lock_acquire(l);
    shm_lock_release(l);
  }
}

static void lib_sem(void *ctx, long n) {
  shm_sem *s = ((lib *)ctx)->sem;
  for (long i = 0; i < n; i++) {
    shm_sem_acquire(s, -1);
    shm_sem_release(s);
  }
}

static void lib_event_set(void *ctx, long n) {
  shm_event *e = ((lib *)ctx)->event;
  for (long i = 0; i < n; i++)
    shm_event_set(e);
}

static void lib_notify(void *ctx, long n) {
  shm_cond *c = ((lib *)ctx)->cond;
  shm_lock_acquire(shm_cond_get_lock(c));
  for (long i = 0; i < n; i++)
    shm_cond_notify(c, 1);
  shm_lock_release(shm_cond_get_lock(c));
}

/* Two processes alternate through two events: set the other's, wait for one's own. */
static void lib_event_pingpong(void *ctx, long n) {
  lib *L = ctx;
  shm_event *mine = bench_side ? L->pong : L->ping, *theirs = bench_side ? L->ping : L->pong;
  for (long i = 0; i < n; i++) {
    if (bench_side == 0)
      shm_event_set(theirs);
    shm_event_wait(mine, -1);
    shm_event_clear(mine);
    if (bench_side == 1)
      shm_event_set(theirs);
  }
}

static void lib_barrier1(void *ctx, long n) {
  for (long i = 0; i < n; i++)
    shm_barrier_wait(((lib *)ctx)->b1, NULL);
}

static void lib_barrier2(void *ctx, long n) {
  for (long i = 0; i < n; i++)
    shm_barrier_wait(((lib *)ctx)->b2, NULL);
}

static void lib_pingpong(void *ctx, long n) {
  lib *L = ctx;
  shm_lock *l = shm_cond_get_lock(L->cond);
  int *turn = shm_value_ptr(L->turn);
  for (long i = 0; i < n; i++) {
    shm_lock_acquire(l);
    while (*turn != bench_side)
      shm_cond_wait(L->cond, -1);
    *turn = !bench_side;
    shm_cond_notify_all(L->cond);
    shm_lock_release(l);
  }
}

/* Contended versions: the same loops, run by two processes at once. */
#define TWICE(name, fn)                                                                            \
  static void name(void *ctx, long n) { twice(fn, ctx, n); }
TWICE(lib_lock2, lib_lock)
TWICE(lib_rlock2, lib_rlock)
TWICE(lib_event_pingpong2, lib_event_pingpong)
TWICE(raw_lock2, raw_lock)
TWICE(lib_sem2, lib_sem)
TWICE(raw_sem2, raw_sem)
TWICE(lib_barrier2x, lib_barrier2)
TWICE(raw_barrier2x, raw_barrier2)
TWICE(lib_pingpong2, lib_pingpong)
TWICE(raw_pingpong2, raw_pingpong)

int bench_sync(int quick) {
  long n = quick ? 100000 : 2000000, nc = quick ? 20000 : 300000, np = quick ? 2000 : 30000;
  lib L;
  raw *r = raw_new();
  shm_opts plain = {.flags = SHMVAL_NONRECURSIVE};
  shm_opts share;
  if (r == NULL || shm_lock_create(&L.lock, &plain) || shm_lock_create(&L.rlock, NULL) ||
      shm_sem_create(&L.sem, 1, NULL) || shm_event_create(&L.event, NULL) ||
      shm_event_create(&L.ping, NULL) || shm_event_create(&L.pong, NULL) ||
      shm_cond_create(&L.cond, NULL, NULL) || shm_barrier_create(&L.b1, 1, -1, NULL, NULL, NULL) ||
      shm_barrier_create(&L.b2, 2, -1, NULL, NULL, NULL) ||
      (share = (shm_opts){.lock = shm_cond_get_lock(L.cond)},
       shm_value_create(&L.turn, SHMVAL_INT, NULL, &share))) {
    fprintf(stderr, "shmval_bench: sync: setup failed\n");
    return 1;
  }
  section("Synchronisation, uncontended", "operation (ns/op)", "libshmval", "raw POSIX baseline");
  row_ns("Lock acquire+release vs robust mutex", measure(lib_lock, &L, n, raw_lock, r, n),
         "<= 1.15x");
  row_ns("RLock acquire+release vs robust mutex", measure(lib_rlock, &L, n, raw_lock, r, n),
         "<= 1.15x");
  row_ns("Semaphore acquire+release vs sem_t", measure(lib_sem, &L, n, raw_sem, r, n), "-");
  row_ns("Event set vs mutex+flag+broadcast", measure(lib_event_set, &L, n, raw_event_set, r, n),
         "-");
  row_ns("Condition notify, no waiter", measure(lib_notify, &L, n, raw_notify, r, n), "-");
  row_ns("Barrier(1) wait vs pthread_barrier", measure(lib_barrier1, &L, n, raw_barrier1, r, n),
         "-");
  section("Synchronisation, 2 processes contending", "operation (ns/op, per process)", "libshmval",
          "raw POSIX baseline");
  row_ns("Lock acquire+release", measure(lib_lock2, &L, nc, raw_lock2, r, nc), ">= 0.90x tput");
  row_ns("RLock acquire+release", measure(lib_rlock2, &L, nc, raw_lock2, r, nc), "-");
  row_ns("Semaphore(1) acquire+release", measure(lib_sem2, &L, nc, raw_sem2, r, nc), "-");
  row_ns("Event ping-pong vs condvar (per turn)",
         measure(lib_event_pingpong2, &L, np, raw_pingpong2, r, np), "-");
  row_ns("Condition ping-pong (per turn)", measure(lib_pingpong2, &L, np, raw_pingpong2, r, np),
         "-");
  row_ns("Barrier(2) pass", measure(lib_barrier2x, &L, np, raw_barrier2x, r, np), "<= 1.0x");
  shm_lock_destroy(L.lock);
  shm_lock_destroy(L.rlock);
  shm_sem_destroy(L.sem);
  shm_event_destroy(L.event);
  shm_event_destroy(L.ping);
  shm_event_destroy(L.pong);
  shm_value_destroy(L.turn);
  shm_cond_destroy(L.cond);
  shm_barrier_destroy(L.b1);
  shm_barrier_destroy(L.b2);
  return 0;
}
