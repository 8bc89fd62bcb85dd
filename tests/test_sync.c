/*
 * Synchronisation primitives, after CPython's _test_multiprocessing.py
 * (_TestLock, _TestSemaphore, _TestCondition, _TestEvent, _TestBarrier), with
 * processes; plus the crash cases and signals.
 */
#include "helpers.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <math.h>
#include <pthread.h>
#include <string.h>

#define T1 0.1 /* CPython's TIMEOUT1..3, shortened */
#define T2 0.2
#define T3 0.3

static int near(double got, double want) { return got >= want - 0.01 && got < want + 1.0; }

/* Run fn(arg) in @p n children and require all to exit 0. */
static void run_children(int n, int (*fn)(void *), void *arg) {
  pid_t pids[32];
  for (int i = 0; i < n; i++)
    assert_true((pids[i] = spawn(fn, arg)) > 0);
  for (int i = 0; i < n; i++)
    assert_int_equal(reap(pids[i]), 0);
}

/* ------------------------------------------------------------------------ */
/* _TestLock */

static void test_lock(void **state) {
  (void)state;
  shm_lock *l;
  shm_opts plain = {.flags = SHMVAL_NONRECURSIVE};
  assert_ok(shm_lock_create(&l, &plain));
  assert_ok(shm_lock_acquire(l));
  assert_code(shm_lock_try_acquire(l), SHMVAL_EBUSY); /* acquire(False) */
  assert_ok(shm_lock_release(l));
  assert_code(shm_lock_release(l), SHMVAL_EPERM);
  assert_ok(shm_lock_destroy(l));
  assert_code(shm_lock_destroy(l), SHMVAL_ESTALE);
  assert_ok(shm_lock_destroy(NULL));
  shm_opts bad = {.flags = SHMVAL_RAW};
  assert_code(shm_lock_create(&l, &bad), SHMVAL_EINVAL);
  assert_code(shm_lock_create(NULL, NULL), SHMVAL_EINVAL);
}

static void test_rlock(void **state) {
  (void)state;
  shm_lock *l;
  assert_ok(shm_lock_create(&l, NULL));
  assert_ok(shm_lock_acquire(l));
  assert_ok(shm_lock_acquire(l));
  assert_ok(shm_lock_acquire(l));
  assert_ok(shm_lock_release(l));
  assert_ok(shm_lock_release(l));
  assert_ok(shm_lock_release(l));
  assert_code(shm_lock_release(l), SHMVAL_EPERM);
  /* A held lock cannot be destroyed; an embedded one never this way. */
  assert_ok(shm_lock_acquire(l));
  assert_code(shm_lock_destroy(l), SHMVAL_EBUSY);
  assert_ok(shm_lock_release(l));
  shm_value *v;
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, NULL));
  assert_code(shm_lock_destroy(shm_value_get_lock(v)), SHMVAL_EINVAL);
  /* Objects can share a standalone lock, which outlives its destroy. */
  shm_value *w;
  shm_opts share = {.lock = l};
  assert_ok(shm_value_create(&w, SHMVAL_INT, NULL, &share));
  assert_ok(shm_lock_destroy(l));
  assert_ok(shm_value_acquire(w));
  assert_ok(shm_value_release(w));
  assert_ok(shm_value_destroy(w));
  assert_ok(shm_value_destroy(v));
}

static shm_lock *shared_lock;

static int child_sees_locked(void *arg) {
  int want = (int)(intptr_t)arg;
  if (shm_lock_locked(shared_lock) != want)
    return 1;
  int rc = shm_lock_try_acquire(shared_lock);
  if (want ? rc != SHMVAL_EBUSY : rc != 0)
    return 2;
  return want ? 0 : shm_lock_release(shared_lock);
}

static void test_lock_locked_2processes(void **state) {
  (void)state;
  assert_ok(shm_lock_create(&shared_lock, NULL));
  assert_int_equal(shm_lock_locked(shared_lock), 0);
  assert_ok(shm_lock_acquire(shared_lock));
  assert_int_equal(shm_lock_locked(shared_lock), 1);
  run_children(1, child_sees_locked, (void *)1);
  assert_ok(shm_lock_release(shared_lock));
  run_children(1, child_sees_locked, (void *)0);
  assert_ok(shm_lock_destroy(shared_lock));
}

static int die_holding_lock(void *arg) {
  if (shm_lock_acquire(arg) != 0)
    return 1;
  raise(SIGKILL);
  return 2;
}

static void test_lock_holder_killed(void **state) {
  (void)state;
  shm_lock *l;
  shm_opts plain = {.flags = SHMVAL_NONRECURSIVE};
  for (int recursive = 0; recursive < 2; recursive++) {
    assert_ok(shm_lock_create(&l, recursive ? NULL : &plain));
    assert_int_equal(reap(spawn(die_holding_lock, l)), 128 + SIGKILL);
    assert_code(shm_lock_acquire(l), SHMVAL_OWNERDEAD);
    assert_ok(shm_lock_release(l));
    assert_ok(shm_lock_acquire(l));
    assert_ok(shm_lock_release(l));
    /* locked() notices the death without swallowing it. */
    assert_int_equal(reap(spawn(die_holding_lock, l)), 128 + SIGKILL);
    assert_int_equal(shm_lock_locked(l), 0);
    assert_code(shm_lock_try_acquire(l), SHMVAL_OWNERDEAD);
    assert_ok(shm_lock_release(l));
    assert_ok(shm_lock_destroy(l));
  }
}

/* ------------------------------------------------------------------------ */
/* _TestSemaphore */

static unsigned sem_value(shm_sem *s) {
  unsigned v = 99;
  assert_ok(shm_sem_value(s, &v));
  return v;
}

static void check_semaphore(shm_sem *s) {
  assert_int_equal(sem_value(s), 2);
  assert_ok(shm_sem_acquire(s, -1));
  assert_int_equal(sem_value(s), 1);
  assert_ok(shm_sem_acquire(s, -1));
  assert_int_equal(sem_value(s), 0);
  assert_code(shm_sem_acquire(s, 0), SHMVAL_EBUSY);
  assert_int_equal(sem_value(s), 0);
  assert_ok(shm_sem_release(s));
  assert_int_equal(sem_value(s), 1);
  assert_ok(shm_sem_release(s));
  assert_int_equal(sem_value(s), 2);
}

static void test_semaphore(void **state) {
  (void)state;
  shm_sem *s;
  assert_ok(shm_sem_create(&s, 2, NULL));
  check_semaphore(s);
  assert_ok(shm_sem_release(s));
  assert_int_equal(sem_value(s), 3);
  assert_ok(shm_sem_release(s));
  assert_int_equal(sem_value(s), 4);
  assert_ok(shm_sem_destroy(s));
  assert_code(shm_sem_create(&s, -1, NULL), SHMVAL_EINVAL);
  assert_code(shm_sem_create(&s, (long)INT32_MAX + 1, NULL), SHMVAL_EINVAL);
  shm_opts bad = {.flags = SHMVAL_RAW};
  assert_code(shm_sem_create(&s, 1, &bad), SHMVAL_EINVAL);
}

static void test_bounded_semaphore(void **state) {
  (void)state;
  shm_sem *s;
  shm_opts bounded = {.flags = SHMVAL_BOUNDED};
  assert_ok(shm_sem_create(&s, 2, &bounded));
  check_semaphore(s);
  assert_code(shm_sem_release(s), SHMVAL_EOVERFLOW);
  assert_int_equal(sem_value(s), 2);
  assert_ok(shm_sem_destroy(s));
}

static void test_semaphore_timeout(void **state) {
  (void)state;
  shm_sem *s;
  assert_ok(shm_sem_create(&s, 0, NULL));
  double t0 = now_s();
  assert_code(shm_sem_acquire(s, 0), SHMVAL_EBUSY);
  assert_true(near(now_s() - t0, 0));
  t0 = now_s();
  assert_code(shm_sem_acquire(s, T2), SHMVAL_ETIMEDOUT);
  assert_true(near(now_s() - t0, T2));
  t0 = now_s();
  assert_code(shm_sem_acquire(s, T3), SHMVAL_ETIMEDOUT);
  assert_true(near(now_s() - t0, T3));
  assert_code(shm_sem_acquire(s, NAN), SHMVAL_EINVAL);
  assert_ok(shm_sem_destroy(s));
}

static shm_sem *sem;

static int sem_worker(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++)
    if (shm_sem_acquire(sem, 10) != 0 || shm_sem_release(sem) != 0)
      return 1;
  return 0;
}

static int sem_taker(void *arg) {
  (void)arg;
  return shm_sem_acquire(sem, 5) == 0 ? 0 : 1; /* waits for the parent's release */
}

static int sem_take_and_die(void *arg) {
  (void)arg;
  if (shm_sem_acquire(sem, 5) != 0)
    return 1;
  raise(SIGKILL);
  return 2;
}

static void test_semaphore_processes(void **state) {
  (void)state;
  assert_ok(shm_sem_create(&sem, 2, NULL));
  run_children(4, sem_worker, NULL);
  assert_int_equal(sem_value(sem), 2);
  assert_ok(shm_sem_acquire(sem, 0));
  assert_ok(shm_sem_acquire(sem, 0));
  pid_t pid = spawn(sem_taker, NULL);
  sleep_s(0.1);
  assert_ok(shm_sem_release(sem));
  assert_int_equal(reap(pid), 0);
  assert_int_equal(sem_value(sem), 0);
  /* A unit taken by a process that dies is not given back: a semaphore has no owner. */
  assert_ok(shm_sem_release(sem));
  assert_int_equal(reap(spawn(sem_take_and_die, NULL)), 128 + SIGKILL);
  assert_int_equal(sem_value(sem), 0);
  assert_ok(shm_sem_destroy(sem));
}

/* ------------------------------------------------------------------------ */
/* _TestCondition */

static shm_cond *cond;
static shm_sem *sleeping, *woken;

static int cond_waiter(void *arg) {
  double timeout = *(double *)arg;
  shm_lock *l = shm_cond_get_lock(cond);
  if (shm_lock_acquire(l) != 0)
    return 1;
  shm_sem_release(sleeping);
  int rc = shm_cond_wait(cond, timeout);
  shm_sem_release(woken);
  shm_lock_release(l);
  /* The wait result: notified (0) for waiters without a timeout. */
  return rc == 0 || (timeout >= 0 && rc == SHMVAL_ETIMEDOUT) ? 0 : 2;
}

static void *cond_waiter_thread(void *arg) { return (void *)(intptr_t)cond_waiter(arg); }

/* Start @p n waiters, half processes and half threads. */
static void start_waiters(int n, double *timeout, pid_t *pids, pthread_t *tids) {
  for (int i = 0; i < n; i++) {
    if (i % 2 == 0)
      pids[i / 2] = spawn(cond_waiter, timeout);
    else
      assert_int_equal(pthread_create(&tids[i / 2], NULL, cond_waiter_thread, timeout), 0);
  }
  for (int i = 0; i < n; i++)
    assert_ok(shm_sem_acquire(sleeping, 5));
  sleep_s(0.05); /* let them reach the wait */
}

static void join_waiters(int n, pid_t *pids, pthread_t *tids) {
  for (int i = 0; i < n; i++) {
    if (i % 2 == 0) {
      assert_int_equal(reap(pids[i / 2]), 0);
    } else {
      void *res;
      assert_int_equal(pthread_join(tids[i / 2], &res), 0);
      assert_null(res);
    }
  }
}

static void notify(unsigned n) {
  shm_lock *l = shm_cond_get_lock(cond);
  assert_ok(shm_lock_acquire(l));
  assert_ok(n == UINT32_MAX ? shm_cond_notify_all(cond) : shm_cond_notify(cond, n));
  assert_ok(shm_lock_release(l));
}

/* Poll woken's value until it reaches @p want (or a second passes). */
static unsigned woken_reaches(unsigned want) {
  unsigned v = 0;
  for (int i = 0; i < 100; i++) {
    v = sem_value(woken);
    if (v >= want)
      break;
    sleep_s(0.01);
  }
  sleep_s(0.05);
  return sem_value(woken);
}

static int setup_cond(void **state) {
  (void)state;
  return shm_cond_create(&cond, NULL, NULL) || shm_sem_create(&sleeping, 0, NULL) ||
         shm_sem_create(&woken, 0, NULL);
}

static int teardown_cond(void **state) {
  (void)state;
  return shm_cond_destroy(cond) || shm_sem_destroy(sleeping) || shm_sem_destroy(woken);
}

static void reset_woken(void) {
  while (shm_sem_acquire(woken, 0) == 0) {
  }
}

static void test_notify(void **state) {
  (void)state;
  double forever = -1;
  pid_t pids[4];
  pthread_t tids[4];
  reset_woken();
  start_waiters(2, &forever, pids, tids);
  assert_int_equal(sem_value(woken), 0);
  notify(1);
  assert_int_equal(woken_reaches(1), 1);
  notify(1);
  assert_int_equal(woken_reaches(2), 2);
  join_waiters(2, pids, tids);
}

static void test_notify_all(void **state) {
  (void)state;
  double t1 = T1, forever = -1;
  pid_t pids[4];
  pthread_t tids[4];
  reset_woken();
  /* Six waiters that time out count as woken too. */
  start_waiters(6, &t1, pids, tids);
  assert_int_equal(woken_reaches(6), 6);
  join_waiters(6, pids, tids);
  reset_woken();
  start_waiters(6, &forever, pids, tids);
  assert_int_equal(sem_value(woken), 0);
  notify(UINT32_MAX);
  assert_int_equal(woken_reaches(6), 6);
  join_waiters(6, pids, tids);
}

static void test_notify_n(void **state) {
  (void)state;
  double forever = -1;
  pid_t pids[4];
  pthread_t tids[4];
  reset_woken();
  start_waiters(6, &forever, pids, tids);
  notify(2);
  assert_int_equal(woken_reaches(2), 2);
  notify(4);
  assert_int_equal(woken_reaches(6), 6);
  notify(3); /* nobody is left: no effect */
  assert_int_equal(woken_reaches(6), 6);
  join_waiters(6, pids, tids);
}

static void test_cond_timeout_and_errors(void **state) {
  (void)state;
  shm_lock *l = shm_cond_get_lock(cond);
  assert_code(shm_cond_wait(cond, T1), SHMVAL_EPERM); /* without the lock */
  assert_code(shm_cond_notify(cond, 1), SHMVAL_EPERM);
  assert_code(shm_cond_notify_all(cond), SHMVAL_EPERM);
  assert_ok(shm_lock_acquire(l));
  assert_ok(shm_lock_acquire(l)); /* a recursive hold, depth 2 */
  double t0 = now_s();
  assert_code(shm_cond_wait(cond, T1), SHMVAL_ETIMEDOUT);
  assert_true(near(now_s() - t0, T1));
  assert_code(shm_cond_wait(cond, 0), SHMVAL_ETIMEDOUT);
  assert_code(shm_cond_wait(cond, NAN), SHMVAL_EINVAL);
  assert_ok(shm_lock_release(l)); /* the depth was restored */
  assert_true(shm_lock_is_owned(l));
  assert_ok(shm_lock_release(l));
  assert_false(shm_lock_is_owned(l));
  assert_null(shm_cond_get_lock(NULL));
}

static shm_value *cstate;

static int state_is(void *ctx) { return *(int *)shm_value_ptr(cstate) == (int)(intptr_t)ctx; }

static int waitfor_child(void *arg) {
  (void)arg;
  shm_lock *l = shm_cond_get_lock(cond);
  shm_lock_acquire(l);
  if (shm_cond_wait_for(cond, state_is, (void *)0, -1, NULL) != 1)
    return 1;
  shm_sem_release(sleeping);
  for (int i = 1; i <= 4; i++) {
    if (shm_cond_wait_for(cond, state_is, (void *)(intptr_t)i, -1, NULL) != 1 ||
        *(int *)shm_value_ptr(cstate) != i)
      return 2;
  }
  /* wait_for with a timeout returns the predicate's last result. */
  double t0 = now_s();
  if (shm_cond_wait_for(cond, state_is, (void *)5, T1, NULL) != 0 || !near(now_s() - t0, T1))
    return 3;
  shm_lock_release(l);
  return 0;
}

/* Make cstate (under the condition's lock), start @p fn and let it reach its wait. */
static pid_t start_state_waiter(int (*fn)(void *)) {
  shm_opts share = {.lock = shm_cond_get_lock(cond)};
  assert_ok(shm_value_create(&cstate, SHMVAL_INT, NULL, &share));
  pid_t pid = spawn(fn, NULL);
  assert_ok(shm_sem_acquire(sleeping, 5));
  return pid;
}

static void test_waitfor(void **state) {
  (void)state;
  pid_t pid = start_state_waiter(waitfor_child);
  for (int i = 1; i <= 4; i++) {
    sleep_s(0.02);
    assert_ok(shm_value_acquire(cstate));
    *(int *)shm_value_ptr(cstate) = i;
    assert_ok(shm_cond_notify(cond, 1));
    assert_ok(shm_value_release(cstate));
  }
  assert_int_equal(reap(pid), 0);
  assert_ok(shm_value_destroy(cstate));
  assert_code(shm_cond_wait_for(cond, state_is, NULL, 1, NULL), SHMVAL_EPERM);
}

static int die_waiting(void *arg) {
  (void)arg;
  shm_lock_acquire(shm_cond_get_lock(cond));
  shm_sem_release(sleeping);
  shm_cond_wait(cond, -1);
  return 1;
}

static int die_holding_cond_lock(void *arg) {
  (void)arg;
  shm_lock_acquire(shm_cond_get_lock(cond));
  raise(SIGKILL);
  return 1;
}

/* Start a child that waits on the condition, and kill it while it waits. */
static void kill_a_waiter(void) {
  shm_lock *l = shm_cond_get_lock(cond);
  pid_t dead = spawn(die_waiting, NULL);
  assert_ok(shm_sem_acquire(sleeping, 5));
  assert_ok(shm_lock_acquire(l)); /* free again only once the child waits */
  assert_ok(shm_lock_release(l));
  kill(dead, SIGKILL);
  assert_int_equal(reap(dead), 128 + SIGKILL);
}

static void test_cond_crashes(void **state) {
  (void)state;
  double forever = -1;
  pid_t pids[4];
  pthread_t tids[4];
  shm_lock *l = shm_cond_get_lock(cond);
  /* A waiter killed while waiting: the others are notified normally. */
  kill_a_waiter();
  reset_woken();
  start_waiters(2, &forever, pids, tids);
  notify(UINT32_MAX);
  assert_int_equal(woken_reaches(2), 2);
  join_waiters(2, pids, tids);
  /* The lock's holder killed: the next acquirer hears of it. */
  assert_int_equal(reap(spawn(die_holding_cond_lock, NULL)), 128 + SIGKILL);
  assert_code(shm_lock_acquire(l), SHMVAL_OWNERDEAD);
  assert_ok(shm_cond_notify_all(cond)); /* normal again */
  assert_ok(shm_lock_release(l));
}

/* A waiter killed while waiting is skipped by notify: nothing is kept for later waiters. */
static void test_cond_dead_waiter_skipped(void **state) {
  (void)state;
  double forever = -1;
  pid_t pids[4];
  pthread_t tids[4];
  shm_lock *l = shm_cond_get_lock(cond);
  kill_a_waiter();
  for (int round = 0; round < 3; round++) {
    assert_ok(shm_lock_acquire(l));
    assert_ok(shm_cond_notify(cond, 1)); /* no live waiter: lost, as in Python */
    double t0 = now_s();
    assert_code(shm_cond_wait(cond, T2), SHMVAL_ETIMEDOUT);
    assert_true(near(now_s() - t0, T2));
    assert_ok(shm_lock_release(l));
  }
  /* A dead older waiter does not swallow the notification of a live one. */
  kill_a_waiter();
  reset_woken();
  start_waiters(1, &forever, pids, tids);
  notify(1);
  assert_int_equal(woken_reaches(1), 1);
  join_waiters(1, pids, tids);
}

/* More waiters than slots: the slotted ones and the rest are notified alike. */
static void test_cond_more_waiters_than_slots(void **state) {
  (void)state;
  enum { W = 20 }; /* 16 slots, 4 on the anonymous count */
  double forever = -1;
  pid_t pids[W];
  reset_woken();
  for (int i = 0; i < W; i++)
    assert_true((pids[i] = spawn(cond_waiter, &forever)) > 0);
  for (int i = 0; i < W; i++)
    assert_ok(shm_sem_acquire(sleeping, 5));
  shm_lock *l = shm_cond_get_lock(cond);
  assert_ok(shm_lock_acquire(l)); /* free again only once the last one waits */
  assert_ok(shm_lock_release(l));
  notify(5);
  assert_int_equal(woken_reaches(5), 5);
  notify(10);
  assert_int_equal(woken_reaches(15), 15);
  notify(UINT32_MAX);
  assert_int_equal(woken_reaches(W), W);
  for (int i = 0; i < W; i++)
    assert_int_equal(reap(pids[i]), 0);
}

/* wait_for tells its caller when the lock's owner died during the wait. */
static int waitfor_ownerdead_child(void *arg) {
  (void)arg;
  shm_lock *l = shm_cond_get_lock(cond);
  if (shm_lock_acquire(l) != 0)
    return 1;
  shm_sem_release(sleeping);
  int died = -1, r = shm_cond_wait_for(cond, state_is, (void *)7, 5, &died);
  shm_lock_release(l);
  return r == 1 && died == 1 ? 0 : 2;
}

static int set_notify_and_die(void *arg) {
  (void)arg;
  if (shm_lock_acquire(shm_cond_get_lock(cond)) != 0)
    return 1;
  *(int *)shm_value_ptr(cstate) = 7;
  shm_cond_notify(cond, 1);
  raise(SIGKILL);
  return 1;
}

static void test_waitfor_ownerdead(void **state) {
  (void)state;
  pid_t waiter = start_state_waiter(waitfor_ownerdead_child);
  assert_int_equal(reap(spawn(set_notify_and_die, NULL)), 128 + SIGKILL);
  assert_int_equal(reap(waiter), 0);
  /* Without a death the flag is 0. */
  shm_lock *l = shm_cond_get_lock(cond);
  int died = -1;
  assert_ok(shm_lock_acquire(l));
  assert_int_equal(shm_cond_wait_for(cond, state_is, (void *)7, 1, &died), 1);
  assert_int_equal(died, 0);
  assert_ok(shm_lock_release(l));
  assert_ok(shm_value_destroy(cstate));
}

/* ------------------------------------------------------------------------ */
/* _TestEvent */

static shm_event *event;

static int set_event_later(void *arg) {
  (void)arg;
  sleep_s(T1);
  return shm_event_set(event);
}

static void test_event(void **state) {
  (void)state;
  assert_ok(shm_event_create(&event, NULL));
  assert_int_equal(shm_event_is_set(event), 0);
  double t0 = now_s();
  assert_code(shm_event_wait(event, 0), SHMVAL_EBUSY);
  assert_true(near(now_s() - t0, 0));
  t0 = now_s();
  assert_code(shm_event_wait(event, T1), SHMVAL_ETIMEDOUT);
  assert_true(near(now_s() - t0, T1));
  assert_ok(shm_event_set(event));
  assert_int_equal(shm_event_is_set(event), 1);
  t0 = now_s();
  assert_ok(shm_event_wait(event, -1));
  assert_ok(shm_event_wait(event, T1));
  assert_true(near(now_s() - t0, 0));
  assert_ok(shm_event_clear(event));
  assert_int_equal(shm_event_is_set(event), 0);
  pid_t pid = spawn(set_event_later, NULL);
  assert_ok(shm_event_wait(event, -1));
  assert_int_equal(reap(pid), 0);
  assert_code(shm_event_wait(event, NAN), SHMVAL_EINVAL);
  assert_ok(shm_event_destroy(event));
  assert_code(shm_event_set(event), SHMVAL_ESTALE);
}

static int wait_event_forever(void *arg) {
  (void)arg;
  shm_sem_release(sleeping);
  shm_event_wait(event, -1);
  return 1;
}

static int wait_event(void *arg) {
  (void)arg;
  return shm_event_wait(event, 5);
}

static void test_event_waiter_killed(void **state) {
  (void)state;
  assert_ok(shm_sem_create(&sleeping, 0, NULL));
  assert_ok(shm_event_create(&event, NULL));
  pid_t dead = spawn(wait_event_forever, NULL);
  assert_ok(shm_sem_acquire(sleeping, 5));
  kill(dead, SIGKILL);
  assert_int_equal(reap(dead), 128 + SIGKILL);
  pid_t live = spawn(wait_event, NULL);
  sleep_s(0.05);
  assert_ok(shm_event_set(event));
  assert_int_equal(reap(live), 0);
  assert_ok(shm_event_destroy(event));
  assert_ok(shm_sem_destroy(sleeping));
}

static volatile sig_atomic_t handled;
static void on_usr1(int sig) {
  (void)sig;
  handled++;
}

static void *poke(void *arg) {
  sleep_s(0.05);
  pthread_kill(*(pthread_t *)arg, SIGUSR1);
  return NULL;
}

static void test_signal_resumes_wait(void **state) {
  (void)state;
  struct sigaction sa = {.sa_handler = on_usr1}, old;
  sigaction(SIGUSR1, &sa, &old);
  assert_ok(shm_event_create(&event, NULL));
  pthread_t self = pthread_self(), t;
  handled = 0;
  assert_int_equal(pthread_create(&t, NULL, poke, &self), 0);
  double t0 = now_s();
  /* The handler runs; the wait goes on for the time that was left. */
  assert_code(shm_event_wait(event, T2), SHMVAL_ETIMEDOUT);
  assert_true(near(now_s() - t0, T2));
  assert_int_equal(handled, 1);
  pthread_join(t, NULL);
  sigaction(SIGUSR1, &old, NULL);
  assert_ok(shm_event_destroy(event));
}

/* ------------------------------------------------------------------------ */
/* _TestBarrier */

#define N 5
static shm_barrier *barrier;
static shm_array *results; /* per pass: arrivals before and after */
static shm_value *actions; /* how many times the action ran */

static void count_action(void *ctx) {
  (void)ctx;
  (*(long *)shm_value_ptr(actions))++;
}

static int barrier_passes(void *arg) {
  int passes = (int)(intptr_t)arg;
  unsigned idx;
  for (int i = 0; i < passes; i++) {
    long *r = shm_array_ptr(results);
    __atomic_fetch_add(&r[2 * i], 1, __ATOMIC_SEQ_CST);
    if (shm_barrier_wait(barrier, &idx) != 0 || idx >= N)
      return 1;
    /* Everyone arrived before anyone left. */
    if (__atomic_load_n(&r[2 * i], __ATOMIC_SEQ_CST) != N)
      return 2;
    __atomic_fetch_add(&r[2 * i + 1], 1, __ATOMIC_SEQ_CST);
  }
  return 0;
}

static void run_barrier(int passes) {
  assert_ok(shm_barrier_create(&barrier, N, 10, count_action, NULL, NULL));
  assert_ok(shm_array_create(&results, SHMVAL_LONG, 2 * (size_t)passes, NULL, NULL));
  assert_ok(shm_value_create(&actions, SHMVAL_LONG, NULL, NULL));
  assert_int_equal(shm_barrier_parties(barrier), N);
  run_children(N, barrier_passes, (void *)(intptr_t)passes);
  long *r = shm_array_ptr(results);
  for (int i = 0; i < passes; i++) {
    assert_int_equal(r[2 * i], N);
    assert_int_equal(r[2 * i + 1], N);
  }
  assert_int_equal(*(long *)shm_value_ptr(actions), passes); /* once per pass */
  assert_int_equal(shm_barrier_n_waiting(barrier), 0);
  assert_int_equal(shm_barrier_broken(barrier), 0);
  assert_ok(shm_barrier_destroy(barrier));
  assert_ok(shm_array_destroy(results));
  assert_ok(shm_value_destroy(actions));
}

static void test_barrier(void **state) {
  (void)state;
  run_barrier(1);
}

static void test_barrier_10(void **state) {
  (void)state;
  run_barrier(10);
}

static void test_barrier_thousand(void **state) {
  (void)state;
  run_barrier(1000); /* five processes, a thousand passes */
}

static int report_index(void *arg) {
  (void)arg;
  unsigned idx;
  if (shm_barrier_wait(barrier, &idx) != 0)
    return 100;
  return (int)idx;
}

static void test_barrier_wait_return(void **state) {
  (void)state;
  pid_t pids[N];
  int seen[N] = {0};
  assert_ok(shm_barrier_create(&barrier, N, 10, NULL, NULL, NULL));
  for (int i = 0; i < N; i++)
    pids[i] = spawn(report_index, NULL);
  for (int i = 0; i < N; i++) {
    int idx = reap(pids[i]);
    assert_true(idx >= 0 && idx < N);
    seen[idx]++;
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(seen[i], 1); /* exactly one party gets each index, 0 included */
  assert_ok(shm_barrier_destroy(barrier));
}

static int wait_expect(void *arg) {
  int want = (int)(intptr_t)arg;
  return shm_barrier_wait(barrier, NULL) == want ? 0 : 1;
}

static void test_barrier_abort(void **state) {
  (void)state;
  pid_t pids[N];
  assert_ok(shm_barrier_create(&barrier, N, 10, NULL, NULL, NULL));
  for (int i = 0; i < N - 2; i++)
    pids[i] = spawn(wait_expect, (void *)(intptr_t)SHMVAL_EBROKEN);
  while (shm_barrier_n_waiting(barrier) < N - 2)
    sleep_s(0.01);
  assert_ok(shm_barrier_abort(barrier));
  for (int i = 0; i < N - 2; i++)
    assert_int_equal(reap(pids[i]), 0);
  assert_int_equal(shm_barrier_broken(barrier), 1);
  assert_code(shm_barrier_wait(barrier, NULL), SHMVAL_EBROKEN);
  /* Reset makes it usable again. */
  assert_ok(shm_barrier_reset(barrier));
  assert_int_equal(shm_barrier_broken(barrier), 0);
  run_children(N, wait_expect, (void *)0);
  assert_ok(shm_barrier_destroy(barrier));
}

static void test_barrier_reset(void **state) {
  (void)state;
  pid_t pids[N];
  assert_ok(shm_barrier_create(&barrier, N, 10, NULL, NULL, NULL));
  for (int i = 0; i < N - 1; i++)
    pids[i] = spawn(wait_expect, (void *)(intptr_t)SHMVAL_EBROKEN);
  while (shm_barrier_n_waiting(barrier) < N - 1)
    sleep_s(0.01);
  assert_ok(shm_barrier_reset(barrier)); /* the waiters leave broken... */
  for (int i = 0; i < N - 1; i++)
    assert_int_equal(reap(pids[i]), 0);
  assert_int_equal(shm_barrier_broken(barrier), 0); /* ...and it is whole again */
  run_children(N, wait_expect, (void *)0);
  assert_ok(shm_barrier_destroy(barrier));
}

static int wait_with_timeout(void *arg) {
  double t = *(double *)arg;
  return shm_barrier_wait_timeout(barrier, t, NULL) == SHMVAL_EBROKEN ? 0 : 1;
}

static void test_barrier_timeout(void **state) {
  (void)state;
  double t = T2;
  pid_t pids[N];
  assert_ok(shm_barrier_create(&barrier, N, -1, NULL, NULL, NULL));
  /* Only N-1 arrive: a timeout breaks the barrier for all of them. */
  double t0 = now_s();
  for (int i = 0; i < N - 1; i++)
    pids[i] = spawn(wait_with_timeout, &t);
  for (int i = 0; i < N - 1; i++)
    assert_int_equal(reap(pids[i]), 0);
  assert_true(now_s() - t0 < 5);
  assert_int_equal(shm_barrier_broken(barrier), 1);
  assert_ok(shm_barrier_destroy(barrier));
  /* The default timeout does the same. */
  assert_ok(shm_barrier_create(&barrier, N, T1, NULL, NULL, NULL));
  t0 = now_s();
  assert_code(shm_barrier_wait(barrier, NULL), SHMVAL_EBROKEN);
  assert_true(near(now_s() - t0, T1));
  assert_ok(shm_barrier_destroy(barrier));
}

/* Fill the stack below the caller with a pattern, so that a read of an unset local shows. */
static __attribute__((noinline)) void paint_stack(void) {
  volatile unsigned char junk[8192];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = 0x7f;
}

/* A zero timeout tries once: the party breaks a 2-party barrier at once. */
static int zero_timeout_child(void *arg) {
  alarm(5); /* a wait that blocks fails the test instead of hanging it */
  for (int round = 0; round < 2; round++) {
    if (shm_barrier_create(&barrier, 2, round == 0 ? -1 : 0, NULL, NULL, NULL) != 0)
      return 1;
    paint_stack();
    double t0 = now_s();
    int rc =
        round == 0 ? shm_barrier_wait_timeout(barrier, 0, NULL) : shm_barrier_wait(barrier, NULL);
    if (rc != SHMVAL_EBROKEN)
      return 10 + round;
    if (now_s() - t0 > 1 || shm_barrier_broken(barrier) != 1)
      return 20 + round;
    if (shm_barrier_destroy(barrier) != 0)
      return 30;
  }
  (void)arg;
  return 0;
}

static void test_barrier_zero_timeout(void **state) {
  (void)state;
  assert_int_equal(reap(spawn(zero_timeout_child, NULL)), 0);
}

static void test_barrier_single_and_errors(void **state) {
  (void)state;
  unsigned idx = 9;
  assert_ok(shm_barrier_create(&barrier, 1, -1, count_action, NULL, NULL));
  assert_ok(shm_value_create(&actions, SHMVAL_LONG, NULL, NULL));
  assert_ok(shm_barrier_wait(barrier, &idx));
  assert_int_equal(idx, 0);
  assert_ok(shm_barrier_wait(barrier, &idx));
  assert_int_equal(*(long *)shm_value_ptr(actions), 2);
  assert_ok(shm_barrier_destroy(barrier));
  assert_ok(shm_value_destroy(actions));
  assert_code(shm_barrier_create(&barrier, 0, -1, NULL, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_barrier_create(&barrier, 2, NAN, NULL, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_barrier_wait(NULL, NULL), SHMVAL_EINVAL);
}

static int die_in_barrier(void *arg) {
  (void)arg;
  shm_barrier_wait_timeout(barrier, -1, NULL);
  return 1;
}

static void test_barrier_party_killed(void **state) {
  (void)state;
  double t = T3;
  assert_ok(shm_barrier_create(&barrier, 3, -1, NULL, NULL, NULL));
  pid_t dead = spawn(die_in_barrier, NULL);
  while (shm_barrier_n_waiting(barrier) < 1)
    sleep_s(0.01);
  kill(dead, SIGKILL);
  assert_int_equal(reap(dead), 128 + SIGKILL);
  /* Too few live parties: they are told it is broken when their timeout expires. */
  double t0 = now_s();
  assert_code(shm_barrier_wait_timeout(barrier, T3, NULL), SHMVAL_EBROKEN);
  assert_true(near(now_s() - t0, T3));
  assert_int_equal(shm_barrier_broken(barrier), 1);
  assert_ok(shm_barrier_destroy(barrier));
  /*
   * Enough live parties: the dead one had arrived, so the pass completes; the
   * next pass has only two live parties of three, and they are told it is
   * broken within their timeout instead of hanging.
   */
  assert_ok(shm_barrier_create(&barrier, 3, -1, NULL, NULL, NULL));
  dead = spawn(die_in_barrier, NULL);
  while (shm_barrier_n_waiting(barrier) < 1)
    sleep_s(0.01);
  kill(dead, SIGKILL);
  assert_int_equal(reap(dead), 128 + SIGKILL);
  pid_t live = spawn(wait_expect, (void *)0);
  assert_ok(shm_barrier_wait_timeout(barrier, 5, NULL));
  assert_int_equal(reap(live), 0);
  t0 = now_s();
  live = spawn(wait_with_timeout, &t);
  assert_code(shm_barrier_wait_timeout(barrier, T3, NULL), SHMVAL_EBROKEN);
  assert_int_equal(reap(live), 0);
  assert_true(now_s() - t0 < 3);
  assert_ok(shm_barrier_destroy(barrier));
}

/*
 * A party that has passed need not run again before the next pass: one
 * stopped (SIGSTOP) while it waits, then passed, holds nobody up. (Python's
 * algorithm made the next pass wait for every party of the last to leave:
 * here the next wait timed out broken, and each pass between two processes
 * cost a second sleep and wake.)
 */
static int pass_within_3s(void *arg) {
  (void)arg;
  return shm_barrier_wait_timeout(barrier, 3.0, NULL) == 0 ? 0 : 1;
}

static void test_barrier_next_pass_does_not_wait(void **state) {
  (void)state;
  assert_ok(shm_barrier_create(&barrier, 2, -1, NULL, NULL, NULL));
  pid_t slow = spawn(pass_within_3s, NULL);
  while (shm_barrier_n_waiting(barrier) < 1)
    sleep_s(0.01);
  kill(slow, SIGSTOP);
  unsigned idx = 9;
  int rc = shm_barrier_wait_timeout(barrier, 5, &idx); /* the pass, with the stopped one */
  double t0 = now_s();
  pid_t next = rc == 0 ? spawn(pass_within_3s, NULL) : -1;
  int rc2 = rc == 0 ? shm_barrier_wait_timeout(barrier, 2.0, NULL) : rc; /* the next, at once */
  kill(slow, SIGCONT); /* before any assert, so that a failure leaves no stopped process */
  assert_ok(rc);
  assert_int_equal(idx, 1);
  assert_ok(rc2);
  assert_int_equal(reap(next), 0);
  assert_true(now_s() - t0 < 1.5);
  assert_int_equal(reap(slow), 0); /* it had passed */
  assert_int_equal(shm_barrier_n_waiting(barrier), 0);
  assert_int_equal(shm_barrier_broken(barrier), 0);
  assert_ok(shm_barrier_destroy(barrier));
}

/*
 * Two parties in step arrive within a few hundred nanoseconds of each other:
 * the first to arrive watches for the pass instead of sleeping, so passes in
 * a row cost (nearly) no context switches. Sleeping on every pass, as the
 * barrier did before it watched, costs a voluntary switch every one or two
 * passes between the two parties. A party preempted by other work makes the
 * other's watch run out, hence the slack (a fifth), up to three tries, and a
 * ctest entry of its own that runs alone.
 */
#define STEP_PASSES 20000

static long voluntary_switches(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nvcsw;
}

/* @p arg: where this party's count of voluntary switches goes (shared memory). */
static int passes_in_step(void *arg) {
  long before = voluntary_switches();
  for (int i = 0; i < STEP_PASSES; i++)
    if (shm_barrier_wait(barrier, NULL) != 0)
      return 1;
  __atomic_store_n((long *)arg, voluntary_switches() - before, __ATOMIC_RELEASE);
  return 0;
}

static void test_barrier_in_step_does_not_sleep(void **state) {
  (void)state;
  long *slept = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(slept != MAP_FAILED);
  assert_ok(shm_barrier_create(&barrier, 2, 10, NULL, NULL, NULL));
  long both = -1;
  int rc = 0, child = 0;
  for (int attempt = 0; attempt < 3 && rc == 0 && child == 0; attempt++) {
    pid_t other = spawn(passes_in_step, &slept[1]);
    rc = passes_in_step(&slept[0]);
    child = reap(other);
    both = slept[0] + slept[1];
    printf("voluntary switches over %d passes: %ld + %ld\n", STEP_PASSES, slept[0], slept[1]);
    if (both <= STEP_PASSES / 5 || under_valgrind()) /* valgrind: far too slow to be in step */
      break;
  }
  assert_ok(shm_barrier_destroy(barrier));
  munmap(slept, 4096);
  assert_ok(rc);
  assert_int_equal(child, 0);
  if (!under_valgrind())
    assert_true(both <= STEP_PASSES / 5);
}

/* ------------------------------------------------------------------------ */
/* Every primitive by name, from an exec'd process. */

static void test_named_from_exec(void **state) {
  (void)state;
  char name[64];
  shm_segment *s;
  shm_lock *l;
  shm_sem *sm;
  shm_cond *c;
  shm_event *e;
  shm_barrier *b;
  shm_value *v;
  test_name(name, sizeof name, "sync");
  assert_ok(shm_segment_create(&s, name, 1 << 20, NULL));
  shm_opts o = {.segment = s, .name = "L"};
  assert_ok(shm_lock_create(&l, &o));
  o.name = "S";
  assert_ok(shm_sem_create(&sm, 0, &o));
  o.name = "C";
  assert_ok(shm_cond_create(&c, NULL, &o));
  o.name = "E";
  assert_ok(shm_event_create(&e, &o));
  o.name = "B";
  assert_ok(shm_barrier_create(&b, 2, 10, NULL, NULL, &o));
  shm_opts vo = {.segment = s, .name = "V", .lock = shm_cond_get_lock(c)};
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &vo));
  /* Type-checked by kind. */
  shm_event *wrong;
  assert_code(shm_event_open(&wrong, s, "S"), SHMVAL_ETYPE);
  assert_code(shm_sem_open(&sm, s, "nothing"), SHMVAL_ENOENT);

  const char *args[] = {PEER_PATH, "sync", name, NULL};
  int to, from;
  char line[32];
  assert_ok(shm_lock_acquire(l)); /* the helper's first step waits for this */
  pid_t pid = start_peer(args, &to, &from);
  read_line(from, line, sizeof line);
  assert_string_equal(line, "opened");
  sleep_s(0.05);
  assert_ok(shm_lock_release(l));
  assert_ok(shm_sem_release(sm));
  assert_ok(shm_event_set(e));
  assert_ok(shm_barrier_wait(b, NULL));
  assert_ok(shm_value_acquire(v));
  *(int *)shm_value_ptr(v) = 1;
  assert_ok(shm_cond_notify_all(c));
  assert_ok(shm_value_release(v));
  close(to);
  close(from);
  assert_int_equal(reap(pid), 0);
  shm_segment_info info;
  assert_ok(shm_segment_stat(s, &info));
  assert_int_equal(info.objects, 6);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lock),
      cmocka_unit_test(test_rlock),
      cmocka_unit_test(test_lock_locked_2processes),
      cmocka_unit_test(test_lock_holder_killed),
      cmocka_unit_test(test_semaphore),
      cmocka_unit_test(test_bounded_semaphore),
      cmocka_unit_test(test_semaphore_timeout),
      cmocka_unit_test(test_semaphore_processes),
      cmocka_unit_test_setup_teardown(test_notify, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_notify_all, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_notify_n, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_cond_timeout_and_errors, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_waitfor, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_cond_crashes, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_cond_dead_waiter_skipped, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_cond_more_waiters_than_slots, setup_cond, teardown_cond),
      cmocka_unit_test_setup_teardown(test_waitfor_ownerdead, setup_cond, teardown_cond),
      cmocka_unit_test(test_event),
      cmocka_unit_test(test_event_waiter_killed),
      cmocka_unit_test(test_signal_resumes_wait),
      cmocka_unit_test(test_barrier),
      cmocka_unit_test(test_barrier_10),
      cmocka_unit_test(test_barrier_thousand),
      cmocka_unit_test(test_barrier_wait_return),
      cmocka_unit_test(test_barrier_abort),
      cmocka_unit_test(test_barrier_reset),
      cmocka_unit_test(test_barrier_timeout),
      cmocka_unit_test(test_barrier_zero_timeout),
      cmocka_unit_test(test_barrier_single_and_errors),
      cmocka_unit_test(test_barrier_party_killed),
      cmocka_unit_test(test_barrier_next_pass_does_not_wait),
      cmocka_unit_test(test_named_from_exec),
  };
  /* Timing: its own ctest entry, run alone (RUN_SERIAL), as other tests' load breaks step. */
  const struct CMUnitTest in_step[] = {
      cmocka_unit_test(test_barrier_in_step_does_not_sleep),
  };
  if (argc > 1 && strcmp(argv[1], "--in-step") == 0)
    return cmocka_run_group_tests(in_step, NULL, NULL);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
