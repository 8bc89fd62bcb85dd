/*
 * Owner death: a process that exits or is SIGKILLed holding a lock never
 * hangs the others. The next acquirer gets SHMVAL_OWNERDEAD and the lock is
 * normal afterwards.
 */
#include "helpers.h"

#include <pthread.h>
#include <string.h>

static shm_value *v;
static shm_array *arr;
static int ready[2];

/* Hold v's lock @p depth times, tell the parent, then wait to be killed. */
static int hold_and_wait(void *arg) {
  int depth = (int)(intptr_t)arg;
  for (int i = 0; i < depth; i++)
    if (shm_value_acquire(v) != 0)
      return 1;
  long x = 123;
  *(long *)shm_value_ptr(v) = x; /* a half-done update */
  if (write(ready[1], "r", 1) != 1)
    return 2;
  for (;;)
    pause();
}

/* Acquire and exit without releasing. */
static int hold_and_exit(void *arg) {
  (void)arg;
  if (shm_array_acquire(arr) != 0)
    return 1;
  return 0;
}

static pid_t start_holder(int depth) {
  char c;
  assert_int_equal(pipe(ready), 0);
  pid_t pid = spawn(hold_and_wait, (void *)(intptr_t)depth);
  assert_true(pid > 0);
  assert_int_equal(read(ready[0], &c, 1), 1);
  close(ready[0]);
  close(ready[1]);
  return pid;
}

static int setup(void **state) {
  (void)state;
  return shm_value_create(&v, SHMVAL_LONG, NULL, NULL) ||
         shm_array_create(&arr, SHMVAL_INT, 16, NULL, NULL);
}

static int teardown(void **state) {
  (void)state;
  return shm_value_destroy(v) || shm_array_destroy(arr);
}

static void test_sigkill_get(void **state) {
  (void)state;
  pid_t pid = start_holder(1);
  assert_int_equal(kill(pid, SIGKILL), 0);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  long x = 0;
  assert_code(shm_value_get(v, &x), SHMVAL_OWNERDEAD);
  assert_int_equal(x, 123); /* the read happened */
  assert_ok(shm_value_get(v, &x));
  assert_ok(shm_value_set(v, &x));
  assert_false(shm_lock_is_owned(shm_value_get_lock(v)));
}

static void test_sigkill_set(void **state) {
  (void)state;
  pid_t pid = start_holder(1);
  kill(pid, SIGKILL);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  long x = 5, y = 0;
  assert_code(shm_value_set(v, &x), SHMVAL_OWNERDEAD);
  assert_ok(shm_value_get(v, &y));
  assert_int_equal(y, 5);
}

static void test_recursive_holder_dies(void **state) {
  (void)state;
  pid_t pid = start_holder(3);
  kill(pid, SIGKILL);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  shm_lock *l = shm_value_get_lock(v);
  assert_code(shm_lock_acquire(l), SHMVAL_OWNERDEAD);
  assert_ok(shm_lock_release(l)); /* one release: the dead depth is gone */
  assert_code(shm_lock_release(l), SHMVAL_EPERM);
  assert_ok(shm_lock_try_acquire(l));
  assert_ok(shm_lock_release(l));
}

static void test_exit_holding(void **state) {
  (void)state;
  pid_t pid = spawn(hold_and_exit, NULL);
  assert_int_equal(reap(pid), 0);
  int in[4] = {1, 2, 3, 4}, out[4];
  assert_code(shm_array_write(arr, 0, 4, in), SHMVAL_OWNERDEAD);
  assert_ok(shm_array_read(arr, 0, 4, out));
  assert_memory_equal(in, out, sizeof in);
  pid = spawn(hold_and_exit, NULL);
  assert_int_equal(reap(pid), 0);
  assert_code(shm_array_get(arr, 0, &out[0]), SHMVAL_OWNERDEAD);
  pid = spawn(hold_and_exit, NULL);
  assert_int_equal(reap(pid), 0);
  assert_code(shm_lock_try_acquire(shm_array_get_lock(arr)), SHMVAL_OWNERDEAD);
  assert_ok(shm_array_release(arr));
  pid = spawn(hold_and_exit, NULL);
  assert_int_equal(reap(pid), 0);
  assert_code(shm_lock_acquire_timeout(shm_array_get_lock(arr), 1.0), SHMVAL_OWNERDEAD);
  assert_ok(shm_array_release(arr));
  pid = spawn(hold_and_exit, NULL);
  assert_int_equal(reap(pid), 0);
  assert_code(shm_array_acquire(arr), SHMVAL_OWNERDEAD);
  assert_ok(shm_array_release(arr));
}

struct waiter {
  shm_lock *lock;
  int rc;
};

static void *wait_for_lock(void *arg) {
  struct waiter *w = arg;
  w->rc = shm_lock_acquire_timeout(w->lock, 10.0);
  if (w->rc >= 0)
    shm_lock_release(w->lock);
  return NULL;
}

static void test_waiter_wakes_on_death(void **state) {
  (void)state;
  /* A thread already blocked on the lock is woken by the holder's death. */
  pid_t pid = start_holder(1);
  struct waiter w = {shm_value_get_lock(v), 99};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, wait_for_lock, &w), 0);
  sleep_s(0.1);
  double t0 = now_s();
  kill(pid, SIGKILL);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(now_s() - t0 < 5.0);
  assert_code(w.rc, SHMVAL_OWNERDEAD);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  assert_ok(shm_value_acquire(v));
  assert_ok(shm_value_release(v));
}

static void test_nonrecursive_and_shared(void **state) {
  (void)state;
  /* A plain lock, shared by a second object, whose holder dies. */
  shm_opts plain = {.flags = SHMVAL_NONRECURSIVE};
  shm_value *saved = v, *other;
  assert_ok(shm_value_create(&v, SHMVAL_LONG, NULL, &plain));
  shm_opts share = {.lock = shm_value_get_lock(v)};
  assert_ok(shm_value_create(&other, SHMVAL_LONG, NULL, &share));
  pid_t pid = start_holder(1);
  kill(pid, SIGKILL);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  long x = 0;
  assert_code(shm_value_get(other, &x), SHMVAL_OWNERDEAD);
  assert_ok(shm_value_acquire(v));
  assert_code(shm_value_acquire(other), SHMVAL_EDEADLK);
  assert_ok(shm_value_release(v));
  assert_ok(shm_value_destroy(other));
  assert_ok(shm_value_destroy(v));
  v = saved;
}

static void test_destroy_after_death(void **state) {
  (void)state;
  /* A lock whose holder died is free for destruction. */
  shm_value *saved = v;
  assert_ok(shm_value_create(&v, SHMVAL_LONG, NULL, NULL));
  pid_t pid = start_holder(2);
  kill(pid, SIGKILL);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  assert_ok(shm_value_destroy(v));
  v = saved;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigkill_get),           cmocka_unit_test(test_sigkill_set),
      cmocka_unit_test(test_recursive_holder_dies), cmocka_unit_test(test_exit_holding),
      cmocka_unit_test(test_waiter_wakes_on_death), cmocka_unit_test(test_nonrecursive_and_shared),
      cmocka_unit_test(test_destroy_after_death),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
