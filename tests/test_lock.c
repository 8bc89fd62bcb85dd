/* Locks between threads: recursion, ownership, try, timeouts, contention, thread death. */
#include "helpers.h"

#include <math.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "internal.h"

#include <linux/futex.h>

static shm_value *v;
static shm_lock *lk;

static int setup(void **state) {
  (void)state;
  if (shm_value_create(&v, SHMVAL_LLONG, NULL, NULL) != 0)
    return -1;
  lk = shm_value_get_lock(v);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return shm_value_destroy(v);
}

static void test_recursion(void **state) {
  (void)state;
  assert_false(shm_lock_is_owned(lk));
  assert_ok(shm_lock_acquire(lk));
  assert_ok(shm_lock_acquire(lk));
  assert_ok(shm_lock_try_acquire(lk));
  assert_true(shm_lock_is_owned(lk));
  assert_ok(shm_lock_release(lk));
  assert_ok(shm_lock_release(lk));
  assert_true(shm_lock_is_owned(lk));
  assert_ok(shm_lock_release(lk));
  assert_false(shm_lock_is_owned(lk));
  assert_code(shm_lock_release(lk), SHMVAL_EPERM);
}

static void test_invalid(void **state) {
  (void)state;
  assert_code(shm_lock_acquire(NULL), SHMVAL_EINVAL);
  assert_code(shm_lock_try_acquire(NULL), SHMVAL_EINVAL);
  assert_code(shm_lock_acquire_timeout(NULL, 1), SHMVAL_EINVAL);
  assert_code(shm_lock_release(NULL), SHMVAL_EINVAL);
  assert_int_equal(shm_lock_is_owned(NULL), 0);
  assert_code(shm_lock_acquire_timeout(lk, NAN), SHMVAL_EINVAL);
  assert_false(shm_lock_is_owned(lk));
}

struct probe {
  shm_lock *lock;
  double timeout;
  int rc;
  double waited;
};

static void *probe_thread(void *arg) {
  struct probe *p = arg;
  double t0 = now_s();
  if (p->timeout == -2)
    p->rc = shm_lock_try_acquire(p->lock);
  else if (p->timeout == -3)
    p->rc = shm_lock_release(p->lock);
  else
    p->rc = shm_lock_acquire_timeout(p->lock, p->timeout);
  p->waited = now_s() - t0;
  if (p->rc >= 0 && p->timeout != -3)
    shm_lock_release(p->lock);
  return NULL;
}

static struct probe run_probe(double timeout) {
  struct probe p = {lk, timeout, 0, 0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, probe_thread, &p), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  return p;
}

static void test_held_elsewhere(void **state) {
  (void)state;
  assert_ok(shm_lock_acquire(lk));
  struct probe p = run_probe(-2);
  assert_code(p.rc, SHMVAL_EBUSY);
  p = run_probe(0);
  assert_code(p.rc, SHMVAL_EBUSY);
  p = run_probe(0.1);
  assert_code(p.rc, SHMVAL_ETIMEDOUT);
  assert_true(p.waited >= 0.099);
  assert_true(p.waited < 5);
  p = run_probe(-3); /* a release by a thread that does not hold it */
  assert_code(p.rc, SHMVAL_EPERM);
  assert_true(shm_lock_is_owned(lk));
  assert_ok(shm_lock_release(lk));
  p = run_probe(0.1);
  assert_ok(p.rc);
}

static void test_wait_forever(void **state) {
  (void)state;
  struct probe p = {lk, -1, 0, 0};
  pthread_t t;
  assert_ok(shm_lock_acquire(lk));
  assert_int_equal(pthread_create(&t, NULL, probe_thread, &p), 0);
  sleep_s(0.1);
  assert_ok(shm_lock_release(lk));
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_ok(p.rc);
  assert_true(p.waited >= 0.05);
}

#define THREADS 4
#define ITERS 50000

static void *incr_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < ITERS; i++) {
    if (shm_value_acquire(v) != 0)
      return (void *)1;
    (*(long long *)shm_value_ptr(v))++;
    if (shm_value_release(v) != 0)
      return (void *)1;
  }
  for (int i = 0; i < ITERS; i++) {
    long long x;
    if (shm_value_acquire(v) != 0 || shm_value_get(v, &x) != 0)
      return (void *)1;
    x++;
    if (shm_value_set(v, &x) != 0 || shm_value_release(v) != 0)
      return (void *)1;
  }
  return NULL;
}

static void test_thread_contention(void **state) {
  (void)state;
  pthread_t t[THREADS];
  long long zero = 0, total = -1;
  assert_ok(shm_value_set(v, &zero));
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, incr_thread, NULL), 0);
  for (int i = 0; i < THREADS; i++) {
    void *res;
    assert_int_equal(pthread_join(t[i], &res), 0);
    assert_null(res);
  }
  assert_ok(shm_value_get(v, &total));
  assert_int_equal(total, 2LL * THREADS * ITERS);
}

/* The robust mutex's lock word under lk. */
static int *lock_word(void) {
  shmval__obj *o = shmval__obj_of(v);
  return &((shmval__lock *)(void *)((char *)o + o->lock_rel))->mutex.__data.__lock;
}

struct sleeper {
  pid_t tid;
  int rc, waiters_bit;
};

static void *sleeper_thread(void *arg) {
  struct sleeper *s = arg;
  __atomic_store_n(&s->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
  s->rc = shm_lock_acquire(lk);
  s->waiters_bit = (__atomic_load_n(lock_word(), __ATOMIC_RELAXED) & FUTEX_WAITERS) != 0;
  if (s->rc == 0)
    shm_lock_release(lk);
  return NULL;
}

/*
 * A waiter that slept and then took the lock sets the waiters bit of the lock
 * word again, as glibc's own lock does: another waiter may still sleep on the
 * word, and only the bit makes the next release wake one (without it that one
 * would sleep out its slice, up to 20 ms, on a free lock).
 */
static void test_sleeper_keeps_waiters_bit(void **state) {
  (void)state;
  struct sleeper s = {0, -1, 0};
  pthread_t t;
  assert_ok(shm_lock_acquire(lk));
  assert_int_equal(pthread_create(&t, NULL, sleeper_thread, &s), 0);
  double t0 = now_s();
  while (__atomic_load_n(&s.tid, __ATOMIC_ACQUIRE) == 0 && now_s() - t0 < 5)
    sleep_s(0.001);
  bool slept = seen_in_futex_wait(__atomic_load_n(&s.tid, __ATOMIC_ACQUIRE), 5);
  assert_ok(shm_lock_release(lk));
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(slept); /* it slept on the held lock */
  assert_ok(s.rc);
  assert_true(s.waiters_bit);
}

struct timed_try {
  int rc;
  _Atomic int done;
};

static void *timed_try_thread(void *arg) {
  struct timed_try *t = arg;
  t->rc = shm_lock_acquire_timeout(lk, 0.05);
  atomic_store(&t->done, 1);
  return NULL;
}

/*
 * A damaged lock word that glibc's trylock refuses though no owner is in it
 * (the waiters bit alone): a timed acquire still ends at its deadline rather
 * than trying again without end.
 */
static void test_damaged_word_times_out(void **state) {
  (void)state;
  int *word = lock_word();
  __atomic_store_n(word, (int)FUTEX_WAITERS, __ATOMIC_SEQ_CST);
  struct timed_try t = {0, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, timed_try_thread, &t), 0);
  double t0 = now_s();
  while (!atomic_load(&t.done) && now_s() - t0 < 5)
    sleep_s(0.005);
  bool done = atomic_load(&t.done);
  __atomic_store_n(word, 0, __ATOMIC_SEQ_CST); /* mended: a stuck thread's next try takes it */
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_true(done);
  assert_code(t.rc, SHMVAL_ETIMEDOUT);
  assert_ok(shm_lock_acquire(lk));
  assert_ok(shm_lock_release(lk));
}

static void *die_holding(void *arg) {
  (void)arg;
  shm_lock_acquire(lk);
  shm_lock_acquire(lk); /* a recursive hold: depth 2 */
  return NULL;          /* the thread ends without releasing */
}

static void test_thread_death(void **state) {
  (void)state;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, die_holding, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_false(shm_lock_is_owned(lk));
  assert_code(shm_lock_acquire(lk), SHMVAL_OWNERDEAD);
  assert_true(shm_lock_is_owned(lk));
  /* The dead thread's depth is gone: one release frees the lock. */
  assert_ok(shm_lock_release(lk));
  assert_code(shm_lock_release(lk), SHMVAL_EPERM);
  assert_ok(shm_lock_acquire(lk));
  assert_ok(shm_lock_release(lk));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recursion),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_held_elsewhere),
      cmocka_unit_test(test_wait_forever),
      cmocka_unit_test(test_thread_contention),
      cmocka_unit_test(test_thread_death),
      cmocka_unit_test(test_sleeper_keeps_waiters_bit),
      cmocka_unit_test(test_damaged_word_times_out),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
