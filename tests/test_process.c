/* Sharing with forked children: exact totals, slices, ownership across fork. */
#include "helpers.h"

#include <string.h>

#define CHILDREN 4
#define ITERS 20000

static int incr_child(void *arg) {
  shm_value *v = arg;
  for (int i = 0; i < ITERS; i++) {
    if (shm_value_acquire(v) != 0)
      return 10;
    (*(long *)shm_value_ptr(v))++;
    if (shm_value_release(v) != 0)
      return 11;
  }
  for (int i = 0; i < ITERS; i++) {
    long x;
    if (shm_value_acquire(v) != 0 || shm_value_get(v, &x) != 0)
      return 12;
    x++;
    if (shm_value_set(v, &x) != 0 || shm_value_release(v) != 0)
      return 13;
  }
  return 0;
}

static void test_no_lost_update(void **state) {
  (void)state;
  shm_value *v;
  pid_t pids[CHILDREN];
  long total = 0;
  assert_ok(shm_value_create(&v, SHMVAL_LONG, NULL, NULL));
  for (int i = 0; i < CHILDREN; i++)
    assert_true((pids[i] = spawn(incr_child, v)) > 0);
  for (int i = 0; i < CHILDREN; i++)
    assert_int_equal(reap(pids[i]), 0);
  assert_ok(shm_value_get(v, &total));
  assert_int_equal(total, 2L * CHILDREN * ITERS);
  assert_ok(shm_value_destroy(v));
}

#define SLICE 10000
static shm_array *slices;
static int worker_index;

static int slice_child(void *arg) {
  (void)arg;
  double buf[SLICE];
  for (int i = 0; i < SLICE; i++)
    buf[i] = worker_index * SLICE + i;
  return shm_array_write(slices, (size_t)worker_index * SLICE, SLICE, buf) == 0 ? 0 : 20;
}

static void test_disjoint_slices(void **state) {
  (void)state;
  pid_t pids[CHILDREN];
  assert_ok(shm_array_create(&slices, SHMVAL_DOUBLE, CHILDREN * SLICE, NULL, NULL));
  for (int i = 0; i < CHILDREN; i++) {
    worker_index = i;
    assert_true((pids[i] = spawn(slice_child, NULL)) > 0);
  }
  for (int i = 0; i < CHILDREN; i++)
    assert_int_equal(reap(pids[i]), 0);
  double sum = 0, *p = shm_array_ptr(slices);
  for (size_t i = 0; i < CHILDREN * SLICE; i++)
    sum += p[i];
  double n = CHILDREN * SLICE;
  assert_true(sum == n * (n - 1) / 2);
  assert_ok(shm_array_destroy(slices));
}

static shm_value *held;

static int child_sees_lock_held(void *arg) {
  (void)arg;
  /* The parent's thread holds the lock; this process does not. */
  if (shm_lock_is_owned(shm_value_get_lock(held)))
    return 30;
  if (shm_value_release(held) != SHMVAL_EPERM)
    return 31;
  if (shm_lock_try_acquire(shm_value_get_lock(held)) != SHMVAL_EBUSY)
    return 32;
  if (shm_lock_acquire_timeout(shm_value_get_lock(held), 0.05) != SHMVAL_ETIMEDOUT)
    return 33;
  /* It sees the value written before the fork. */
  return *(int *)shm_value_ptr(held) == 77 ? 0 : 34;
}

static void test_lock_not_inherited(void **state) {
  (void)state;
  int x = 77;
  assert_ok(shm_value_create(&held, SHMVAL_INT, &x, NULL));
  assert_ok(shm_value_acquire(held));
  pid_t pid = spawn(child_sees_lock_held, NULL);
  assert_true(pid > 0);
  assert_int_equal(reap(pid), 0);
  assert_true(shm_lock_is_owned(shm_value_get_lock(held)));
  assert_ok(shm_value_release(held));
  assert_ok(shm_value_destroy(held));
}

static shm_value *shared_v;

static int child_allocates(void *arg) {
  (void)arg;
  shm_arena_info before, after;
  shm_value *mine;
  if (shm_arena_stat(&before) != 0)
    return 40;
  for (int i = 0; i < 100; i++)
    if (shm_value_create(&mine, SHMVAL_INT, NULL, NULL) != 0)
      return 41;
  if (shm_arena_stat(&after) != 0)
    return 42;
  /* The child's objects went to a segment of its own. */
  if (after.segments != before.segments + 1)
    return 43;
  /* It may still use and destroy what its parent made. */
  int x = 5;
  if (shm_value_set(shared_v, &x) != 0 || shm_value_destroy(shared_v) != 0)
    return 44;
  return 0; /* exits without destroying its 100 values */
}

static void test_child_objects_are_its_own(void **state) {
  (void)state;
  shm_arena_info before, after;
  int x = 0;
  assert_ok(shm_value_create(&shared_v, SHMVAL_INT, NULL, NULL));
  assert_ok(shm_arena_stat(&before));
  pid_t pid = spawn(child_allocates, NULL);
  assert_true(pid > 0);
  assert_int_equal(reap(pid), 0);
  assert_ok(shm_arena_stat(&after));
  /* Nothing the child left behind is in the parent's segments... */
  assert_int_equal(after.segments, before.segments);
  /* ...and the parent's Value was destroyed by the child. */
  assert_int_equal(after.blocks, before.blocks - 1);
  assert_code(shm_value_get(shared_v, &x), SHMVAL_ESTALE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_lost_update),
      cmocka_unit_test(test_disjoint_slices),
      cmocka_unit_test(test_lock_not_inherited),
      cmocka_unit_test(test_child_objects_are_its_own),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
