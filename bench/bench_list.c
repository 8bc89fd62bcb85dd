/*
 * The list section: shm_list as a queue between processes, beside the
 * kernel's queues and the simplest correct C baseline.
 *
 * - 1 producer and 1 consumer process passing N items of 8 and 64 bytes
 *   (the consumer in shm_list_pop_wait): a typed list (8-byte items, 64-byte
 *   records) and a bytes list (64-byte items), each beside a POSIX message
 *   queue (mq_send / mq_receive; the queue holds 10 messages, the system's
 *   default limit) and beside a pipe (fixed-size messages); the bytes list
 *   also in batches of 64 (shm_list_append_many / shm_list_pop_many) beside
 *   itself item by item and beside a pipe written 64 items at a time.
 * - 4 producers and 4 consumers beside a ring in a shared mapping under one
 *   robust mutex, with a semaphore counting its items (consumers sleep in
 *   sem_wait).
 * - get by index of a typed list of 1000 longs beside reading an array under
 *   a robust mutex.
 *
 * Times are ns per item (wall time of the whole transfer / items).
 */
#include <shmval.h>

#include "bench.h"

#include <fcntl.h>
#include <mqueue.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct q1 {
  shm_list *l;
  size_t size; /* item bytes */
  long items;
  int fd[2]; /* the pipe */
  mqd_t mq;
  int failed;
} q1;

/* Fork @p prod and run @p cons here; wait for the producer. */
static void pair_run(q1 *q, int (*prod)(q1 *), int (*cons)(q1 *)) {
  pid_t p = fork();
  if (p == 0)
    _exit(prod(q));
  int rc = cons(q), st = 0;
  if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || rc != 0)
    q->failed = 1;
}

static int lib_prod(q1 *q) {
  char item[64] = {0};
  for (long i = 0; i < q->items; i++) {
    memcpy(item, &i, sizeof i);
    if (shm_list_append(q->l, item, q->size) != 0)
      return 1;
  }
  return 0;
}

static int lib_cons(q1 *q) {
  char item[64];
  size_t n;
  for (long i = 0; i < q->items; i++) {
    long got;
    if (shm_list_pop_wait(q->l, 0, -1, item, sizeof item, &n) != 0 || n != q->size)
      return 1;
    memcpy(&got, item, sizeof got);
    if (got != i)
      return 1;
  }
  return 0;
}

static int mq_prod(q1 *q) {
  char item[64] = {0};
  for (long i = 0; i < q->items; i++) {
    memcpy(item, &i, sizeof i);
    if (mq_send(q->mq, item, q->size, 0) != 0)
      return 1;
  }
  return 0;
}

static int mq_cons(q1 *q) {
  char item[64];
  for (long i = 0; i < q->items; i++) {
    long got;
    if (mq_receive(q->mq, item, sizeof item, NULL) != (ssize_t)q->size)
      return 1;
    memcpy(&got, item, sizeof got);
    if (got != i)
      return 1;
  }
  return 0;
}

static int pipe_prod(q1 *q) {
  char item[64] = {0};
  for (long i = 0; i < q->items; i++) {
    memcpy(item, &i, sizeof i);
    if (write(q->fd[1], item, q->size) != (ssize_t)q->size)
      return 1;
  }
  return 0;
}

static int pipe_cons(q1 *q) {
  char item[64];
  for (long i = 0; i < q->items; i++) {
    long got;
    size_t at = 0;
    while (at < q->size) {
      ssize_t r = read(q->fd[0], item + at, q->size - at);
      if (r <= 0)
        return 1;
      at += (size_t)r;
    }
    memcpy(&got, item, sizeof got);
    if (got != i)
      return 1;
  }
  return 0;
}

/* Batches of QB items: append_many / pop_many, and a pipe written QB items at a time. */
#define QB 64

static int batch_prod(q1 *q) {
  char data[QB * 64] = {0};
  size_t lens[QB];
  for (long i = 0; i < q->items;) {
    size_t k = 0;
    for (; k < QB && i < q->items; k++, i++) {
      memcpy(data + k * q->size, &i, sizeof i);
      lens[k] = q->size;
    }
    if (shm_list_append_many(q->l, data, lens, k) != 0)
      return 1;
  }
  return 0;
}

static int batch_cons(q1 *q) {
  char data[QB * 64];
  size_t lens[QB], k;
  for (long i = 0; i < q->items;) {
    if (shm_list_pop_many(q->l, 0, QB, -1, data, sizeof data, lens, &k) != 0)
      return 1;
    for (size_t j = 0; j < k; j++, i++) {
      long got;
      memcpy(&got, data + j * q->size, sizeof got);
      if (lens[j] != q->size || got != i)
        return 1;
    }
  }
  return 0;
}

static int pipe_batch_prod(q1 *q) {
  char data[QB * 64] = {0};
  for (long i = 0; i < q->items;) {
    size_t k = 0;
    for (; k < QB && i < q->items; k++, i++)
      memcpy(data + k * q->size, &i, sizeof i);
    if (write(q->fd[1], data, k * q->size) != (ssize_t)(k * q->size))
      return 1;
  }
  return 0;
}

static int pipe_batch_cons(q1 *q) {
  char data[QB * 64];
  size_t have = 0;
  for (long i = 0; i < q->items;) {
    ssize_t r = read(q->fd[0], data + have, sizeof data - have);
    if (r <= 0)
      return 1;
    have += (size_t)r;
    size_t j = 0;
    for (; (j + 1) * q->size <= have; j++, i++) {
      long got;
      memcpy(&got, data + j * q->size, sizeof got);
      if (got != i)
        return 1;
    }
    memmove(data, data + j * q->size, have - j * q->size);
    have -= j * q->size;
  }
  return 0;
}

static void run_batches(void *ctx, long n) {
  (void)n;
  pair_run(ctx, batch_prod, batch_cons);
}
static void run_pipe_batches(void *ctx, long n) {
  (void)n;
  pair_run(ctx, pipe_batch_prod, pipe_batch_cons);
}

void lib_queue8(void *ctx, long n) {
  q1 q = {.l = ctx, .size = 8, .items = n};
  pair_run(&q, lib_prod, lib_cons);
}

static void run_lib(void *ctx, long n) {
  (void)n;
  pair_run(ctx, lib_prod, lib_cons);
}
static void run_mq(void *ctx, long n) {
  (void)n;
  pair_run(ctx, mq_prod, mq_cons);
}
static void run_pipe(void *ctx, long n) {
  (void)n;
  pair_run(ctx, pipe_prod, pipe_cons);
}

/* measure() of whole transfers: per item. */
static pair per_item(bench_fn lib, q1 *lq, bench_fn base, q1 *bq) {
  pair p = measure(lib, lq, 1, base, bq, 1);
  stat3 *s[] = {&p.lib, &p.base};
  for (int i = 0; i < 2; i++) {
    s[i]->med /= (double)lq->items;
    s[i]->min /= (double)lq->items;
    s[i]->max /= (double)lq->items;
  }
  return p;
}

static int one_to_one(int quick) {
  char mqname[64];
  snprintf(mqname, sizeof mqname, "/shmval-bench-mq-%d", (int)getpid());
  struct mq_attr at = {.mq_maxmsg = 10, .mq_msgsize = 64};
  mqd_t mq = mq_open(mqname, O_CREAT | O_EXCL | O_RDWR, 0600, &at);
  if (mq == (mqd_t)-1) {
    printf("(skipped: mq_open: %s)\n", strerror(errno));
    return 0;
  }
  mq_unlink(mqname);
  q1 base = {.items = quick ? 20000 : 200000, .mq = mq};
  if (pipe(base.fd) != 0)
    return 1;
  int rc = 0;
  struct {
    const char *label;
    shm_type t;
    size_t size;
  } kinds[] = {{"8-byte items, typed list", SHMVAL_ULLONG, 8},
               {"64-byte items, record list", SHMVAL_RECORD, 64},
               {"64-byte items, bytes list", 0, 64}};
  for (int k = 0; k < 3; k++) {
    q1 lq = base;
    lq.size = base.size = kinds[k].size;
    int c = kinds[k].t == SHMVAL_RECORD ? shm_list_create_record(&lq.l, 64, 8, NULL)
                                        : shm_list_create(&lq.l, kinds[k].t, NULL);
    if (c != 0)
      return 1;
    char label[96];
    snprintf(label, sizeof label, "1 -> 1: %s vs mq", kinds[k].label);
    row_ns(label, per_item(run_lib, &lq, run_mq, &base), ">= 1.0x tput");
    snprintf(label, sizeof label, "1 -> 1: %s vs pipe", kinds[k].label);
    row_ns(label, per_item(run_lib, &lq, run_pipe, &base), "-");
    if (kinds[k].t == 0) {
      /* The bytes list in batches: beside its own item-by-item transfer, and a pipe. */
      q1 item = lq;
      snprintf(label, sizeof label, "1 -> 1: %s, batches of %d vs one by one", kinds[k].label, QB);
      row_ns(label, per_item(run_batches, &lq, run_lib, &item), "-");
      snprintf(label, sizeof label, "1 -> 1: %s, batches of %d vs pipe", kinds[k].label, QB);
      row_ns(label, per_item(run_batches, &lq, run_pipe_batches, &base), "-");
      lq.failed |= item.failed;
    }
    rc |= lq.failed | base.failed | shm_list_destroy(lq.l);
  }
  mq_close(mq);
  close(base.fd[0]);
  close(base.fd[1]);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* 4 producers x 4 consumers. */

#define NP 4
#define RING (1u << 20)

typedef struct base_ring {
  pthread_mutex_t m;
  sem_t items;
  uint64_t head, tail;
  uint64_t v[RING];
} base_ring;

typedef struct q4 {
  shm_list *l;
  base_ring *b;
  long per; /* items per producer */
  bool lib;
  int failed;
} q4;

static int p4_prod(q4 *q, int who) {
  for (long i = 0; i < q->per; i++) {
    uint64_t item = ((uint64_t)who << 32) | (uint64_t)i;
    if (q->lib) {
      if (shm_list_append(q->l, &item, sizeof item) != 0)
        return 1;
    } else {
      robust_lock(&q->b->m);
      q->b->v[q->b->tail++ % RING] = item;
      pthread_mutex_unlock(&q->b->m);
      sem_post(&q->b->items);
    }
  }
  return 0;
}

static int p4_cons(q4 *q) {
  uint64_t item;
  size_t n;
  for (long i = 0; i < q->per; i++) {
    if (q->lib) {
      if (shm_list_pop_wait(q->l, 0, -1, &item, sizeof item, &n) != 0)
        return 1;
    } else {
      while (sem_wait(&q->b->items) != 0) {
      }
      robust_lock(&q->b->m);
      item = q->b->v[q->b->head++ % RING];
      pthread_mutex_unlock(&q->b->m);
    }
  }
  return 0;
}

static void run_4x4(void *ctx, long n) {
  q4 *q = ctx;
  pid_t pids[2 * NP];
  (void)n;
  for (int i = 0; i < 2 * NP; i++)
    if ((pids[i] = fork()) == 0)
      _exit(i < NP ? p4_prod(q, i) : p4_cons(q));
  for (int i = 0; i < 2 * NP; i++) {
    int st = 0;
    if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      q->failed = 1;
  }
}

static int four_by_four(int quick) {
  base_ring *b = shared_alloc(sizeof *b);
  if (b == NULL || robust_mutex_init(&b->m) != 0 || sem_init(&b->items, 1, 0) != 0)
    return 1;
  q4 lq = {.per = quick ? 10000 : 100000, .lib = true, .b = b}, bq = lq;
  bq.lib = false;
  if (shm_list_create(&lq.l, SHMVAL_ULLONG, NULL) != 0)
    return 1;
  pair p = measure(run_4x4, &lq, 1, run_4x4, &bq, 1);
  double items = (double)NP * (double)lq.per;
  stat3 *s[] = {&p.lib, &p.base};
  for (int i = 0; i < 2; i++)
    s[i]->med /= items, s[i]->min /= items, s[i]->max /= items;
  row_ns("4 -> 4 processes, 8-byte items", p, ">= 1.0x tput");
  int rc = lq.failed | bq.failed | shm_list_destroy(lq.l);
  sem_destroy(&b->items);
  munmap(b, sizeof *b);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* get by index. */

#define NGET 1000

typedef struct gctx {
  shm_list *l;
  pthread_mutex_t *m;
  long *arr;
  long sum;
} gctx;

static void lib_lget(void *ctx, long n) {
  gctx *g = ctx;
  long x = 0;
  size_t len;
  for (long i = 0; i < n; i++) {
    shm_list_get(g->l, i % NGET, &x, sizeof x, &len);
    g->sum += x;
  }
}

static void base_lget(void *ctx, long n) {
  gctx *g = ctx;
  for (long i = 0; i < n; i++) {
    robust_lock(g->m);
    long x = g->arr[i % NGET];
    pthread_mutex_unlock(g->m);
    g->sum += x;
  }
}

static int get_rows(int quick) {
  gctx g = {0};
  g.m = shared_alloc(4096 + NGET * sizeof(long));
  if (g.m == NULL || robust_mutex_init(g.m) != 0 || shm_list_create(&g.l, SHMVAL_LONG, NULL) != 0)
    return 1;
  g.arr = (long *)(void *)((char *)g.m + 4096);
  for (long i = 0; i < NGET; i++) {
    g.arr[i] = i;
    if (shm_list_append(g.l, &i, sizeof i) != 0)
      return 1;
  }
  long n = quick ? 200000 : 2000000;
  row_ns("get by index, 1000 longs", measure(lib_lget, &g, n, base_lget, &g, n), "<= 1.2x");
  int rc = shm_list_destroy(g.l);
  munmap(g.m, 4096 + NGET * sizeof(long));
  return rc;
}

int bench_list(int quick) {
  section("Shared list and queue", "operation (ns per item)", "shm_list",
          "mq / pipe / one mutex + semaphore / array under a robust mutex");
  int rc = one_to_one(quick) | four_by_four(quick) | get_rows(quick);
  if (rc != 0)
    fprintf(stderr, "shmval_bench: list: a run failed\n");
  return rc;
}
