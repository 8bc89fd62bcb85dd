/*
 * Shared lists: the sequence operations, exact bytes items, typed lists
 * (extend, slices, sort), growth and giving memory back, pop_wait (timeouts,
 * signals, a destroyed list, a killed waiter), a 4 x 4 process queue with
 * per-producer order, batches (append_many, pop_many) and a 4 x 4 queue of
 * them, named lists and their type checks, read-only handles.
 */
#include "helpers.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#define S(str) (str), strlen(str)

static shm_list *mk(shm_type t) {
  shm_list *l = NULL;
  shm_opts o = {.max_size = (size_t)256 << 20};
  if (shm_list_create(&l, t, &o) != 0)
    fail_msg("shm_list_create failed");
  return l;
}

static size_t len_of(shm_list *l) {
  size_t n = 0;
  assert_ok(shm_list_len(l, &n));
  return n;
}

/* Item @p i of a bytes list equals the C string @p want. */
static void expect(shm_list *l, long i, const char *want) {
  char buf[64];
  size_t n = 0;
  assert_ok(shm_list_get(l, i, buf, sizeof buf, &n));
  assert_int_equal(n, strlen(want));
  assert_memory_equal(buf, want, n);
}

static void test_sequence(void **state) {
  (void)state;
  shm_list *l = mk(0);
  char buf[64];
  size_t n = 99, at;
  assert_int_equal(len_of(l), 0);
  assert_code(shm_list_get(l, 0, buf, sizeof buf, &n), SHMVAL_ERANGE);
  assert_code(shm_list_pop(l, -1, buf, sizeof buf, &n), SHMVAL_ERANGE);
  assert_int_equal(n, 99); /* untouched on IndexError */
  assert_ok(shm_list_append(l, S("b")));
  assert_ok(shm_list_append(l, S("c")));
  assert_ok(shm_list_insert(l, 0, S("a")));   /* the front: O(1) */
  assert_ok(shm_list_insert(l, 99, S("e")));  /* clamped to the end */
  assert_ok(shm_list_insert(l, -1, S("d")));  /* before the last */
  assert_ok(shm_list_insert(l, -99, S("0"))); /* clamped to the front */
  const char *want[] = {"0", "a", "b", "c", "d", "e"};
  assert_int_equal(len_of(l), 6);
  for (long i = 0; i < 6; i++) {
    expect(l, i, want[i]);
    expect(l, i - 6, want[i]);
  }
  assert_code(shm_list_get(l, 6, buf, sizeof buf, &n), SHMVAL_ERANGE);
  assert_code(shm_list_get(l, -7, buf, sizeof buf, &n), SHMVAL_ERANGE);
  assert_ok(shm_list_set(l, 2, S("B")));
  expect(l, 2, "B");
  assert_ok(shm_list_index(l, S("c"), &at));
  assert_int_equal(at, 3);
  assert_code(shm_list_index(l, S("zz"), &at), SHMVAL_ENOENT);
  assert_ok(shm_list_remove(l, S("c")));
  assert_code(shm_list_remove(l, S("c")), SHMVAL_ENOENT);
  /* Pops: the middle, the back, the front. */
  assert_ok(shm_list_pop(l, 2, buf, sizeof buf, &n));
  assert_memory_equal(buf, "B", n);
  assert_ok(shm_list_pop(l, -1, buf, sizeof buf, &n));
  assert_memory_equal(buf, "e", n);
  assert_ok(shm_list_pop(l, 0, buf, sizeof buf, &n));
  assert_memory_equal(buf, "0", n);
  expect(l, 0, "a");
  expect(l, 1, "d");
  assert_int_equal(len_of(l), 2);
  assert_ok(shm_list_reverse(l));
  expect(l, 0, "d");
  assert_code(shm_list_sort(l, NULL), SHMVAL_ETYPE);
  assert_code(shm_list_extend(l, "x", 1), SHMVAL_ETYPE);
  assert_code(shm_list_read(l, 0, 1, buf), SHMVAL_ETYPE);
  assert_ok(shm_list_clear(l));
  assert_int_equal(len_of(l), 0);
  assert_ok(shm_list_destroy(l));
  assert_ok(shm_list_destroy(NULL));
}

/* Exact bytes: empty items, NUL bytes, trailing NULs, a 1 MiB item; ENOBUFS. */
static void test_bytes_exact(void **state) {
  (void)state;
  shm_list *l = mk(0);
  char nuls[5] = {'a', 0, 'b', 0, 0}, buf[16];
  size_t n = 0;
  assert_ok(shm_list_append(l, "", 0));
  assert_ok(shm_list_append(l, nuls, sizeof nuls));
  size_t big = (size_t)1 << 20;
  char *b = malloc(big), *back = malloc(big);
  assert_non_null(b);
  assert_non_null(back);
  for (size_t i = 0; i < big; i++)
    b[i] = (char)(i * 31 + 7);
  assert_ok(shm_list_append(l, b, big));
  assert_ok(shm_list_get(l, 0, NULL, 0, &n));
  assert_int_equal(n, 0);
  assert_ok(shm_list_get(l, 1, buf, sizeof buf, &n));
  assert_int_equal(n, sizeof nuls);
  assert_memory_equal(buf, nuls, sizeof nuls);
  /* Too small: the size needed, nothing removed. */
  n = 0;
  assert_code(shm_list_pop(l, -1, buf, sizeof buf, &n), SHMVAL_ENOBUFS);
  assert_int_equal(n, big);
  assert_int_equal(len_of(l), 3);
  assert_code(shm_list_pop_wait(l, -1, 1.0, buf, sizeof buf, &n), SHMVAL_ENOBUFS);
  assert_int_equal(len_of(l), 3);
  assert_ok(shm_list_pop(l, -1, back, big, &n));
  assert_int_equal(n, big);
  assert_memory_equal(back, b, big);
  assert_code(shm_list_get(l, 0, NULL, 1, &n), SHMVAL_EINVAL);
  assert_code(shm_list_append(l, NULL, 3), SHMVAL_EINVAL);
  free(b);
  free(back);
  assert_ok(shm_list_destroy(l));
}

static int desc(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x < y) - (x > y);
}

typedef struct rec {
  int id;
  double w;
  char tag[20];
} rec;

static void test_typed(void **state) {
  (void)state;
  shm_list *l = mk(SHMVAL_LONG);
  long v[] = {5, -3, 9, 0, 7}, out[5], x;
  size_t n, size = 0;
  assert_int_equal(shm_list_item_type(l, &size), SHMVAL_LONG);
  assert_int_equal(size, sizeof(long));
  assert_code(shm_list_append(l, &x, 4), SHMVAL_EINVAL);
  assert_ok(shm_list_extend(l, v, 5));
  assert_ok(shm_list_read(l, 0, 5, out));
  assert_memory_equal(out, v, sizeof v);
  assert_ok(shm_list_read(l, -2, 2, out));
  assert_int_equal(out[0], 0);
  assert_int_equal(out[1], 7);
  assert_code(shm_list_read(l, 3, 3, out), SHMVAL_ERANGE); /* no clamping */
  assert_code(shm_list_read(l, -6, 1, out), SHMVAL_ERANGE);
  assert_ok(shm_list_read(l, 5, 0, out)); /* the empty slice at the end */
  assert_ok(shm_list_sort(l, NULL));
  assert_ok(shm_list_read(l, 0, 5, out));
  long sorted[] = {-3, 0, 5, 7, 9};
  assert_memory_equal(out, sorted, sizeof sorted);
  assert_ok(shm_list_sort(l, desc));
  assert_ok(shm_list_get(l, 0, &x, sizeof x, &n));
  assert_int_equal(x, 9);
  assert_ok(shm_list_reverse(l));
  assert_ok(shm_list_get(l, 0, &x, sizeof x, &n));
  assert_int_equal(x, -3);
  x = 42;
  assert_ok(shm_list_set(l, -1, &x, sizeof x));
  assert_ok(shm_list_pop(l, -1, &x, sizeof x, &n));
  assert_int_equal(x, 42);
  assert_ok(shm_list_destroy(l));
  /* Records, larger than the record's inline room for a set. */
  shm_list *r;
  assert_ok(shm_list_create_record(&r, sizeof(rec), _Alignof(rec), NULL));
  rec a, b, got;
  memset(&a, 0, sizeof a); /* padding included: compared byte for byte */
  memset(&b, 0, sizeof b);
  a.id = 1, a.w = 0.5, b.id = 2, b.w = 1.5;
  memcpy(a.tag, "one", 4);
  memcpy(b.tag, "two", 4);
  assert_ok(shm_list_append(r, &a, sizeof a));
  assert_ok(shm_list_append(r, &b, sizeof b));
  assert_code(shm_list_sort(r, NULL), SHMVAL_EINVAL);
  assert_ok(shm_list_set(r, 0, &b, sizeof b));
  assert_ok(shm_list_get(r, 0, &got, sizeof got, &n));
  assert_memory_equal(&got, &b, sizeof b);
  assert_ok(shm_list_destroy(r));
  assert_ok(shm_list_create_record(&r, 200, 8, NULL)); /* past the inline room */
  char big[200], big2[200];
  memset(big, 'x', sizeof big);
  assert_ok(shm_list_append(r, big, sizeof big));
  memset(big, 'y', sizeof big);
  assert_ok(shm_list_set(r, 0, big, sizeof big));
  assert_ok(shm_list_get(r, 0, big2, sizeof big2, &n));
  assert_memory_equal(big, big2, sizeof big);
  assert_ok(shm_list_destroy(r));
}

/* A FIFO through a ring that grows, wraps and shrinks; memory comes back. */
static void test_grow_and_drain(void **state) {
  (void)state;
  char name[96];
  shm_segment *seg;
  shm_list *l;
  shm_segment_info empty, full, drained;
  shm_check_report rep;
  test_name(name, sizeof name, "lgrow");
  shm_segment_opts so = {.max_size = (size_t)64 << 20};
  assert_ok(shm_segment_create(&seg, name, 1 << 16, &so));
  assert_ok(shm_list_create(&l, 0, &(shm_opts){.segment = seg, .name = "q"}));
  assert_ok(shm_segment_stat(seg, &empty));
  long head = 0, tail = 0, got;
  size_t n;
  /* Interleaved: the ring wraps many times while it grows. */
  for (int round = 0; round < 200; round++) {
    for (int k = 0; k < 500; k++, tail++)
      assert_ok(shm_list_append(l, &tail, sizeof tail));
    for (int k = 0; k < 250; k++, head++) {
      assert_ok(shm_list_pop(l, 0, &got, sizeof got, &n));
      assert_int_equal(got, head);
    }
  }
  assert_int_equal(len_of(l), (size_t)(tail - head));
  assert_ok(shm_segment_stat(seg, &full));
  assert_true(full.used > empty.used + (size_t)(tail - head) * 8);
  while (head < tail) {
    assert_ok(shm_list_pop(l, 0, &got, sizeof got, &n));
    assert_int_equal(got, head++);
  }
  assert_ok(shm_segment_stat(seg, &drained));
  /* Drained: the ring is back to its least size (RING_MIN offsets). */
  assert_true(drained.used <= empty.used + 256);
  assert_ok(shm_segment_check(seg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  assert_ok(shm_list_destroy(l));
  assert_ok(shm_segment_check(seg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  assert_int_equal(rep.objects, 0);
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

static void on_alarm(int sig) { (void)sig; }

static void test_pop_wait_timeouts(void **state) {
  (void)state;
  shm_list *l = mk(SHMVAL_INT);
  int x = 0;
  size_t n;
  assert_code(shm_list_pop_wait(l, 0, 0, &x, sizeof x, &n), SHMVAL_ETIMEDOUT);
  assert_code(shm_list_pop_wait(l, 1, 0.1, &x, sizeof x, &n), SHMVAL_EINVAL);
  double t0 = now_s();
  assert_code(shm_list_pop_wait(l, 0, 0.2, &x, sizeof x, &n), SHMVAL_ETIMEDOUT);
  double took = now_s() - t0;
  assert_true(took >= 0.2 && took < 1.0);
  /* A signal handler runs meanwhile: the wait goes on to its deadline. */
  struct sigaction sa = {0}, old;
  sa.sa_handler = on_alarm; /* no SA_RESTART */
  sigaction(SIGALRM, &sa, &old);
  ualarm(50000, 0);
  t0 = now_s();
  assert_code(shm_list_pop_wait(l, -1, 0.3, &x, sizeof x, &n), SHMVAL_ETIMEDOUT);
  took = now_s() - t0;
  sigaction(SIGALRM, &old, NULL);
  assert_true(took >= 0.3 && took < 1.5);
  x = 7;
  assert_ok(shm_list_append(l, &x, sizeof x));
  x = 0;
  assert_ok(shm_list_pop_wait(l, 0, 0, &x, sizeof x, &n));
  assert_int_equal(x, 7);
  assert_ok(shm_list_destroy(l));
}

static void *waiter(void *arg) {
  int x;
  size_t n;
  intptr_t rc = shm_list_pop_wait(arg, 0, -1, &x, sizeof x, &n);
  return (void *)rc;
}

/* Destroyed under a waiter: it wakes with ESTALE. */
static void test_destroy_wakes_waiter(void **state) {
  (void)state;
  shm_list *l = mk(SHMVAL_INT);
  pthread_t t;
  void *res;
  assert_int_equal(pthread_create(&t, NULL, waiter, l), 0);
  sleep_s(0.1);
  assert_ok(shm_list_destroy(l));
  assert_int_equal(pthread_join(t, &res), 0);
  assert_int_equal((int)(intptr_t)res, SHMVAL_ESTALE);
}

/* A consumer killed while waiting costs nothing: the next one gets every item. */
static int wait_forever(void *arg) {
  int x;
  size_t n;
  return shm_list_pop_wait(arg, 0, -1, &x, sizeof x, &n) == 0 ? 0 : 1;
}

static void test_killed_waiter(void **state) {
  (void)state;
  shm_list *l = mk(SHMVAL_INT);
  pid_t p = spawn(wait_forever, l);
  sleep_s(0.1);
  kill(p, SIGKILL);
  assert_int_equal(reap(p), 128 + SIGKILL);
  int x = 3;
  size_t n;
  assert_ok(shm_list_append(l, &x, sizeof x));
  x = 0;
  assert_ok(shm_list_pop_wait(l, 0, 1.0, &x, sizeof x, &n));
  assert_int_equal(x, 3);
  assert_int_equal(len_of(l), 0);
  assert_ok(shm_list_destroy(l));
}

/* ------------------------------------------------------------------------ */
/* 4 producers x 4 consumers. */

#define NPROD 4
#define NCONS 4
#define PER 100000 /* items per producer (a tenth under valgrind) */

typedef struct qctx {
  shm_list *q;
  int who;
  _Atomic unsigned char *seen; /* NPROD * PER counters, shared */
} qctx;

static uint32_t per_producer(void) { return under_valgrind() ? PER / 10 : PER; }

static int producer(void *arg) {
  qctx *c = arg;
  for (uint32_t i = 0; i < per_producer(); i++) {
    uint64_t item = ((uint64_t)c->who << 32) | i;
    int rc = shm_list_append(c->q, &item, sizeof item);
    if (rc != 0) {
      fprintf(stderr, "producer %d: append %u: %s\n", c->who, i, shmval_err_name(rc));
      return 1;
    }
  }
  return 0;
}

/* Pop from the front until the sentinel: each producer's items in order. */
static int consumer(void *arg) {
  qctx *c = arg;
  int64_t last[NPROD];
  for (int i = 0; i < NPROD; i++)
    last[i] = -1;
  for (;;) {
    uint64_t item;
    size_t n;
    int rc = shm_list_pop_wait(c->q, 0, 120.0, &item, sizeof item, &n);
    if (rc != 0 || n != 8) {
      fprintf(stderr, "consumer %d: pop_wait: %s, %zu bytes\n", c->who, shmval_err_name(rc), n);
      return 2;
    }
    uint32_t who = (uint32_t)(item >> 32), seq = (uint32_t)item;
    if (who == 0xffffffffu)
      return 0;
    if (who >= NPROD || seq >= PER || (int64_t)seq <= last[who])
      return 3; /* out of order, or made up */
    last[who] = seq;
    atomic_fetch_add(&c->seen[who * PER + seq], 1);
  }
}

/*
 * NPROD producers and NCONS consumers of @p q; after the producers, one @p stop
 * item per consumer. Every item must have been seen exactly once.
 */
static void run_4x4(shm_list *q, int (*prod)(void *), int (*cons)(void *), const void *stop,
                    size_t stop_len) {
  size_t bytes = NPROD * PER;
  _Atomic unsigned char *seen =
      mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(seen != MAP_FAILED);
  pid_t cons_pid[NCONS], prod_pid[NPROD];
  qctx cc[NCONS], pc[NPROD];
  for (int i = 0; i < NCONS; i++) {
    cc[i] = (qctx){q, i, seen};
    cons_pid[i] = spawn(cons, &cc[i]);
  }
  for (int i = 0; i < NPROD; i++) {
    pc[i] = (qctx){q, i, seen};
    prod_pid[i] = spawn(prod, &pc[i]);
  }
  for (int i = 0; i < NPROD; i++)
    assert_int_equal(reap(prod_pid[i]), 0);
  for (int i = 0; i < NCONS; i++)
    assert_ok(shm_list_append(q, stop, stop_len));
  for (int i = 0; i < NCONS; i++)
    assert_int_equal(reap(cons_pid[i]), 0);
  for (size_t i = 0; i < bytes; i++)
    if (seen[i] != (i % PER < per_producer()))
      fail_msg("item %zu of producer %zu seen %d times", i % PER, i / PER, (int)seen[i]);
  assert_int_equal(len_of(q), 0);
  munmap((void *)seen, bytes);
}

static void test_queue_4x4(void **state) {
  (void)state;
  shm_list *q = mk(SHMVAL_ULLONG);
  uint64_t stop = UINT64_C(0xffffffff) << 32;
  run_4x4(q, producer, consumer, &stop, sizeof stop);
  assert_ok(shm_list_destroy(q));
}

/* ------------------------------------------------------------------------ */
/* Batches: append_many and pop_many. */

static void test_batches_bytes(void **state) {
  (void)state;
  shm_list *l = mk(0);
  /* Five items back to back: "a", "", "b\0c", "dd", "eee". */
  const char data[] = "a"
                      ""
                      "b\0c"
                      "dd"
                      "eee";
  size_t lens[] = {1, 0, 3, 2, 3}, got[8], count = 99;
  char buf[64];
  assert_ok(shm_list_append(l, S("first")));
  assert_ok(shm_list_append_many(l, data, lens, 5));
  assert_ok(shm_list_append_many(l, NULL, NULL, 0)); /* nothing to do */
  assert_int_equal(len_of(l), 6);
  /* From the front: up to 3, in list order. */
  assert_ok(shm_list_pop_many(l, 0, 3, 0, buf, sizeof buf, got, &count));
  assert_int_equal(count, 3);
  assert_int_equal(got[0], 5);
  assert_int_equal(got[1], 1);
  assert_int_equal(got[2], 0);
  assert_memory_equal(buf, "firsta", 6);
  /* From the back: the order repeated pops give; only what fits (4 bytes: "eee"). */
  assert_ok(shm_list_pop_many(l, -1, 8, 0, buf, 4, got, &count));
  assert_int_equal(count, 1);
  assert_int_equal(got[0], 3);
  assert_memory_equal(buf, "eee", 3);
  /* The first item does not fit: nothing removed, its length told. */
  assert_code(shm_list_pop_many(l, -1, 8, 0, buf, 1, got, &count), SHMVAL_ENOBUFS);
  assert_int_equal(count, 0);
  assert_int_equal(got[0], 2);
  assert_int_equal(len_of(l), 2);
  assert_ok(shm_list_pop_many(l, -1, 8, 1.0, buf, sizeof buf, got, &count));
  assert_int_equal(count, 2);
  assert_memory_equal(buf, "ddb\0c", 5);
  /* Empty: a timeout of 0 tries once; a short one waits it out. */
  assert_code(shm_list_pop_many(l, 0, 8, 0, buf, sizeof buf, got, &count), SHMVAL_ETIMEDOUT);
  assert_int_equal(count, 0);
  double t0 = now_s();
  assert_code(shm_list_pop_many(l, 0, 8, 0.1, buf, sizeof buf, got, &count), SHMVAL_ETIMEDOUT);
  assert_true(now_s() - t0 >= 0.09);
  /* Bad arguments. */
  assert_code(shm_list_append_many(l, data, NULL, 5), SHMVAL_EINVAL); /* lengths needed */
  assert_code(shm_list_append_many(l, NULL, lens, 5), SHMVAL_EINVAL);
  assert_code(shm_list_pop_many(l, 0, 8, 0, buf, sizeof buf, NULL, &count), SHMVAL_EINVAL);
  assert_code(shm_list_pop_many(l, 0, 0, 0, buf, sizeof buf, got, &count), SHMVAL_EINVAL);
  assert_code(shm_list_pop_many(l, 1, 8, 0, buf, sizeof buf, got, &count), SHMVAL_EINVAL);
  assert_code(shm_list_pop_many(l, 0, 8, 0, buf, sizeof buf, got, NULL), SHMVAL_EINVAL);
  assert_code(shm_list_pop_many(l, 0, 8, NAN, buf, sizeof buf, got, &count), SHMVAL_EINVAL);
  assert_code(shm_list_pop_many(l, 0, 8, 0, NULL, 8, got, &count), SHMVAL_EINVAL);
  assert_int_equal(len_of(l), 0);
  assert_ok(shm_list_destroy(l));
}

static void test_batches_typed(void **state) {
  (void)state;
  shm_list *l = mk(SHMVAL_LONG);
  long xs[6] = {1, 2, 3, 4, 5, 6}, out[8];
  size_t count, lens[8], bad[2] = {8, 4};
  assert_ok(shm_list_append_many(l, xs, NULL, 6));
  assert_code(shm_list_append_many(l, xs, bad, 2), SHMVAL_EINVAL); /* a 4-byte long */
  assert_int_equal(len_of(l), 6);
  assert_ok(shm_list_pop_many(l, -1, 2, 0, out, sizeof out, NULL, &count));
  assert_int_equal(count, 2);
  assert_int_equal(out[0], 6);
  assert_int_equal(out[1], 5);
  assert_ok(shm_list_pop_many(l, 0, 8, 0, out, 3 * sizeof(long), lens, &count));
  assert_int_equal(count, 3); /* as many as fit */
  assert_int_equal(lens[2], sizeof(long));
  assert_int_equal(out[0], 1);
  assert_int_equal(out[2], 3);
  assert_int_equal(len_of(l), 1);
  assert_ok(shm_list_destroy(l));
}

/* An append_many that runs out of space part-way appends nothing. */
static void test_batch_out_of_space(void **state) {
  (void)state;
  char name[96];
  shm_segment *seg;
  shm_list *l;
  shm_check_report rep;
  test_name(name, sizeof name, "lbatchfull");
  assert_ok(shm_segment_create(&seg, name, 1 << 16, NULL));
  assert_ok(shm_list_create(&l, 0, &(shm_opts){.segment = seg, .name = "q"}));
  assert_ok(shm_list_append(l, S("kept")));
  enum { N = 64, LEN = 2048 };
  char *data = calloc(N, LEN);
  size_t lens[N];
  assert_non_null(data);
  for (int i = 0; i < N; i++)
    lens[i] = LEN;
  shm_segment_info before, after;
  assert_ok(shm_segment_stat(seg, &before));
  assert_code(shm_list_append_many(l, data, lens, N), SHMVAL_ENOSPC); /* 128 KiB > 64 KiB */
  assert_int_equal(len_of(l), 1);
  expect(l, 0, "kept");
  assert_ok(shm_segment_stat(seg, &after));
  assert_true(after.used <= before.used + 256); /* the items taken back were freed */
  assert_ok(shm_segment_check(seg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  free(data);
  assert_ok(shm_list_destroy(l));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

#define BATCH 64

/* A producer of batches: items "<who>:<seq>" of varying lengths. */
static int batch_producer(void *arg) {
  qctx *c = arg;
  char data[BATCH * 24];
  size_t lens[BATCH];
  for (uint32_t i = 0; i < per_producer();) {
    size_t used = 0, k = 0;
    for (; k < BATCH && i < per_producer(); k++, i++) {
      int n = snprintf(data + used, 24, "%d:%u%.*s", c->who, i, (int)(i % 5), "-----");
      lens[k] = (size_t)n;
      used += (size_t)n;
    }
    int rc = shm_list_append_many(c->q, data, lens, k);
    if (rc != 0) {
      fprintf(stderr, "producer %d: append_many: %s\n", c->who, shmval_err_name(rc));
      return 1;
    }
  }
  return 0;
}

/*
 * Take batches until "stop": each producer's items whole and in order. The
 * stops come last, one per consumer; a batch that took more than one puts the
 * others back.
 */
static int batch_consumer(void *arg) {
  qctx *c = arg;
  int64_t last[NPROD];
  char buf[BATCH * 24 + 1];
  size_t lens[BATCH], count;
  for (int i = 0; i < NPROD; i++)
    last[i] = -1;
  for (;;) {
    int rc = shm_list_pop_many(c->q, 0, BATCH, 120.0, buf, sizeof buf - 1, lens, &count);
    if (rc != 0 || count == 0) {
      fprintf(stderr, "consumer %d: pop_many: %s\n", c->who, shmval_err_name(rc));
      return 2;
    }
    size_t at = 0, stops = 0;
    for (size_t k = 0; k < count; at += lens[k++]) {
      char item[32];
      unsigned who, seq;
      int dashes = -1;
      if (lens[k] >= sizeof item)
        return 3;
      memcpy(item, buf + at, lens[k]);
      item[lens[k]] = '\0';
      if (strcmp(item, "stop") == 0) {
        stops++;
        continue;
      }
      if (stops > 0 || sscanf(item, "%u:%u%n", &who, &seq, &dashes) != 2 || who >= NPROD ||
          seq >= PER || (int64_t)seq <= last[who] || lens[k] - (size_t)dashes != seq % 5)
        return 4; /* out of order, torn, or made up */
      last[who] = seq;
      atomic_fetch_add(&c->seen[who * PER + seq], 1);
    }
    for (; stops > 1; stops--)
      if (shm_list_append(c->q, "stop", 4) != 0)
        return 5;
    if (stops == 1)
      return 0;
  }
}

static void test_batch_queue_4x4(void **state) {
  (void)state;
  shm_list *q = mk(0);
  run_4x4(q, batch_producer, batch_consumer, S("stop"));
  assert_ok(shm_list_destroy(q));
}

/* ------------------------------------------------------------------------ */
/* Names, types, read-only handles. */

static int count_lists(const shm_object_info *info, void *ctx) {
  if (info->kind == SHMVAL_OBJ_LIST)
    ++*(int *)ctx;
  return 0;
}

static int collect(size_t i, const void *item, size_t len, void *ctx) {
  char *out = ctx;
  if (len != 1)
    return 5;
  out[i] = *(const char *)item;
  return 0;
}

static void test_named_and_readonly(void **state) {
  (void)state;
  char name[96], got[8] = {0};
  shm_segment *seg, *ro;
  shm_list *l, *again, *rl;
  shm_value *v;
  shm_dict *d;
  size_t n;
  test_name(name, sizeof name, "lnamed");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, NULL));
  shm_opts o = {.segment = seg, .name = "jobs"};
  assert_ok(shm_list_create(&l, 0, &o));
  assert_code(shm_list_create(&again, 0, &o), SHMVAL_EEXIST);
  assert_ok(shm_list_append(l, S("x")));
  assert_ok(shm_list_append(l, S("y")));
  assert_ok(shm_list_open(&again, seg, "jobs"));
  expect(again, 1, "y");
  assert_code(shm_value_open(&v, seg, "jobs", SHMVAL_INT), SHMVAL_ETYPE);
  assert_code(shm_dict_open(&d, seg, "jobs"), SHMVAL_ETYPE);
  assert_ok(shm_dict_create(&d, 0, &(shm_opts){.segment = seg, .name = "d"}));
  assert_code(shm_list_open(&again, seg, "d"), SHMVAL_ETYPE);
  assert_code(shm_list_open(&again, seg, "nope"), SHMVAL_ENOENT);
  int lists = 0;
  assert_ok(shm_segment_foreach(seg, count_lists, &lists));
  assert_int_equal(lists, 1);
  /* Read-only: reads work, writes are refused, nothing changes. */
  shm_segment_opts roo = {.flags = SHMVAL_RDONLY};
  assert_ok(shm_segment_open(&ro, name, &roo));
  assert_ok(shm_list_open(&rl, ro, "jobs"));
  expect(rl, 0, "x");
  assert_int_equal(len_of(rl), 2);
  assert_ok(shm_list_foreach(rl, collect, got));
  assert_memory_equal(got, "xy", 2);
  assert_code(shm_list_append(rl, S("z")), SHMVAL_EACCES);
  assert_code(shm_list_pop(rl, 0, got, sizeof got, &n), SHMVAL_EACCES);
  assert_code(shm_list_pop_wait(rl, 0, 0.1, got, sizeof got, &n), SHMVAL_EACCES);
  assert_code(shm_list_clear(rl), SHMVAL_EACCES);
  assert_code(shm_list_destroy(rl), SHMVAL_EACCES);
  assert_int_equal(len_of(l), 2);
  assert_ok(shm_segment_close(ro));
  shm_check_report rep;
  assert_ok(shm_segment_check(seg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  assert_ok(shm_object_remove(seg, "jobs"));
  assert_code(shm_list_open(&again, seg, "jobs"), SHMVAL_ENOENT);
  assert_ok(shm_object_remove(seg, "d"));
  assert_ok(shm_segment_check(seg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  assert_int_equal(rep.objects, 0);
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

static int stop_at_two(size_t i, const void *item, size_t len, void *ctx) {
  (void)item, (void)len;
  /* The callback may call into the list: it runs on a snapshot. */
  if (shm_list_append(ctx, "z", 1) != 0)
    return 9;
  return i == 1 ? 42 : 0;
}

static void test_foreach(void **state) {
  (void)state;
  shm_list *l = mk(0);
  char got[4] = {0};
  assert_ok(shm_list_foreach(l, collect, got));
  assert_ok(shm_list_append(l, S("a")));
  assert_ok(shm_list_append(l, S("b")));
  assert_ok(shm_list_append(l, S("c")));
  assert_ok(shm_list_foreach(l, collect, got));
  assert_memory_equal(got, "abc", 3);
  assert_int_equal(shm_list_foreach(l, stop_at_two, l), 42);
  assert_int_equal(len_of(l), 5);
  assert_code(shm_list_foreach(l, NULL, NULL), SHMVAL_EINVAL);
  assert_ok(shm_list_destroy(l));
}

/* ------------------------------------------------------------------------ */
/* Lock-free readers beside a writer: never a torn item. */

typedef struct trio {
  long a, b, c; /* b = 3a, c = ~a: a torn record shows */
} trio;

typedef struct tear_ctx {
  shm_list *rec, *bytes;
  atomic_int stop;
  atomic_long reads, torn;
} tear_ctx;

static bool bytes_whole(const unsigned char *p, size_t n) {
  if (n < 2 || p[0] != (unsigned char)n)
    return n == 0;
  for (size_t i = 1; i < n; i++)
    if (p[i] != p[1])
      return false;
  return true;
}

static void *tear_reader(void *arg) {
  tear_ctx *c = arg;
  unsigned char b[300];
  while (!atomic_load(&c->stop)) {
    trio t;
    size_t n, len;
    for (long i = -2; i < 2; i++) {
      if (shm_list_get(c->rec, i, &t, sizeof t, &n) == 0 && (t.b != 3 * t.a || t.c != ~t.a))
        atomic_fetch_add(&c->torn, 1);
      if (shm_list_get(c->bytes, i, b, sizeof b, &n) == 0 && !bytes_whole(b, n))
        atomic_fetch_add(&c->torn, 1);
    }
    trio two[2];
    if (shm_list_read(c->rec, 0, 2, two) == 0 && (two[1].b != 3 * two[1].a))
      atomic_fetch_add(&c->torn, 1);
    (void)shm_list_len(c->rec, &len);
    atomic_fetch_add(&c->reads, 1);
  }
  return NULL;
}

static void test_readers_beside_writer(void **state) {
  (void)state;
  tear_ctx c = {0};
  assert_ok(shm_list_create_record(&c.rec, sizeof(trio), _Alignof(trio), NULL));
  c.bytes = mk(0);
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, tear_reader, &c), 0);
  /* Half a second, and enough read rounds (valgrind runs one thread at a time: fewer). */
  long min_reads = under_valgrind() ? 5 : 50;
  double end = now_s() + 0.5, limit = now_s() + 60;
  unsigned char b[300];
  trio t;
  size_t n;
  for (long k = 0; now_s() < limit && (now_s() < end || atomic_load(&c.reads) < min_reads); k++) {
    /* Grows to a few hundred and drains: the ring is rebuilt under the readers. */
    long burst = 1 + k % 300;
    for (long i = 0; i < burst; i++) {
      long a = k * 1000 + i;
      t = (trio){a, 3 * a, ~a};
      assert_ok(shm_list_append(c.rec, &t, sizeof t));
      size_t len = (size_t)(2 + (a % 250));
      memset(b, (int)(a & 0x7f), len);
      b[0] = (unsigned char)len;
      assert_ok(shm_list_insert(c.bytes, i % 2 ? 0 : -1, b, len));
      if (i % 16 == 0) {
        t = (trio){-a, -3 * a, ~-a};
        assert_ok(shm_list_set(c.rec, 0, &t, sizeof t));
      }
    }
    for (long i = 0; i < burst; i++) {
      assert_ok(shm_list_pop(c.rec, i % 2 ? 0 : -1, &t, sizeof t, &n));
      assert_ok(shm_list_pop(c.bytes, 0, b, sizeof b, &n));
    }
  }
  atomic_store(&c.stop, 1);
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  print_message("%ld lock-free read rounds beside the writer, %ld torn\n", atomic_load(&c.reads),
                atomic_load(&c.torn));
  assert_int_equal(atomic_load(&c.torn), 0);
  assert_true(atomic_load(&c.reads) >= min_reads);
  assert_ok(shm_list_destroy(c.rec));
  assert_ok(shm_list_destroy(c.bytes));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_readers_beside_writer),
      cmocka_unit_test(test_sequence),
      cmocka_unit_test(test_bytes_exact),
      cmocka_unit_test(test_typed),
      cmocka_unit_test(test_grow_and_drain),
      cmocka_unit_test(test_pop_wait_timeouts),
      cmocka_unit_test(test_destroy_wakes_waiter),
      cmocka_unit_test(test_killed_waiter),
      cmocka_unit_test(test_queue_4x4),
      cmocka_unit_test(test_batches_bytes),
      cmocka_unit_test(test_batches_typed),
      cmocka_unit_test(test_batch_out_of_space),
      cmocka_unit_test(test_batch_queue_4x4),
      cmocka_unit_test(test_named_and_readonly),
      cmocka_unit_test(test_foreach),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
