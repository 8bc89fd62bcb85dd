/* Values: every type, initialisation, raw values, records, shared locks, errors. */
#include "helpers.h"

#include <pthread.h>
#include <stdalign.h>
#include <string.h>
#include <wchar.h>

static const struct {
  shm_type type;
  size_t size, align;
} types[] = {
    {SHMVAL_CHAR, sizeof(char), alignof(char)},
    {SHMVAL_SCHAR, sizeof(signed char), alignof(signed char)},
    {SHMVAL_UCHAR, sizeof(unsigned char), alignof(unsigned char)},
    {SHMVAL_BOOL, sizeof(_Bool), alignof(_Bool)},
    {SHMVAL_WCHAR, sizeof(wchar_t), alignof(wchar_t)},
    {SHMVAL_SHORT, sizeof(short), alignof(short)},
    {SHMVAL_USHORT, sizeof(unsigned short), alignof(unsigned short)},
    {SHMVAL_INT, sizeof(int), alignof(int)},
    {SHMVAL_UINT, sizeof(unsigned), alignof(unsigned)},
    {SHMVAL_LONG, sizeof(long), alignof(long)},
    {SHMVAL_ULONG, sizeof(unsigned long), alignof(unsigned long)},
    {SHMVAL_LLONG, sizeof(long long), alignof(long long)},
    {SHMVAL_ULLONG, sizeof(unsigned long long), alignof(unsigned long long)},
    {SHMVAL_FLOAT, sizeof(float), alignof(float)},
    {SHMVAL_DOUBLE, sizeof(double), alignof(double)},
};
#define N_TYPES (sizeof types / sizeof types[0])

static void test_type_sizes(void **state) {
  (void)state;
  for (size_t i = 0; i < N_TYPES; i++)
    assert_int_equal(shm_type_size(types[i].type), types[i].size);
  assert_int_equal(shm_type_size('x'), 0);
  assert_int_equal(shm_type_size(0), 0);
  assert_int_equal(shm_type_size(SHMVAL_RECORD), 0);
}

static void test_every_type_roundtrip(void **state) {
  (void)state;
  unsigned char init[16], out[16], zero[16] = {0};
  for (size_t i = 0; i < N_TYPES; i++) {
    size_t n = types[i].size;
    shm_value *z, *v;
    for (size_t k = 0; k < n; k++)
      init[k] = (unsigned char)(0x11 * (k + 1) + i);
    if (types[i].type == SHMVAL_BOOL)
      init[0] = 1;
    assert_ok(shm_value_create(&z, types[i].type, NULL, NULL));
    assert_ok(shm_value_create(&v, types[i].type, init, NULL));
    assert_int_equal(shm_value_type(v), types[i].type);
    assert_int_equal(shm_value_size(v), n);
    assert_int_equal((uintptr_t)shm_value_ptr(v) % types[i].align, 0);
    memset(out, 0xee, sizeof out);
    assert_ok(shm_value_get(z, out));
    assert_memory_equal(out, zero, n);
    assert_ok(shm_value_get(v, out));
    assert_memory_equal(out, init, n);
    assert_ok(shm_value_set(z, init));
    assert_ok(shm_value_get(z, out));
    assert_memory_equal(out, init, n);
    assert_memory_equal(shm_value_ptr(z), init, n);
    assert_ok(shm_value_destroy(z));
    assert_ok(shm_value_destroy(v));
  }
}

static void test_typed_values(void **state) {
  (void)state;
  shm_value *v;
  double d = 3.25, got = 0;
  assert_ok(shm_value_create(&v, SHMVAL_DOUBLE, &d, NULL));
  assert_ok(shm_value_get(v, &got));
  assert_true(got == 3.25);
  *(double *)shm_value_ptr(v) += 1.0;
  assert_ok(shm_value_get(v, &got));
  assert_true(got == 4.25);
  assert_ok(shm_value_destroy(v));
}

static void test_raw_value(void **state) {
  (void)state;
  shm_opts raw = {.flags = SHMVAL_RAW};
  shm_value *v;
  int x = 42, y = 0;
  assert_ok(shm_value_create(&v, SHMVAL_INT, &x, &raw));
  assert_null(shm_value_get_lock(v));
  assert_code(shm_value_acquire(v), SHMVAL_ENOLOCK);
  assert_code(shm_value_release(v), SHMVAL_ENOLOCK);
  assert_ok(shm_value_get(v, &y));
  assert_int_equal(y, 42);
  x = 7;
  assert_ok(shm_value_set(v, &x));
  assert_int_equal(*(int *)shm_value_ptr(v), 7);
  assert_ok(shm_value_destroy(v));
}

struct rec {
  double x;
  int y;
  char tag[4];
};

static void test_record_value(void **state) {
  (void)state;
  struct rec r = {1.5, -3, "abc"}, out = {0};
  shm_value *v;
  assert_ok(shm_value_create_record(&v, sizeof r, alignof(struct rec), &r, NULL));
  assert_int_equal(shm_value_type(v), SHMVAL_RECORD);
  assert_int_equal(shm_value_size(v), sizeof r);
  assert_int_equal((uintptr_t)shm_value_ptr(v) % alignof(struct rec), 0);
  assert_ok(shm_value_get(v, &out));
  assert_memory_equal(&out, &r, sizeof r);
  out.y = 99;
  assert_ok(shm_value_set(v, &out));
  assert_int_equal(((struct rec *)shm_value_ptr(v))->y, 99);
  assert_ok(shm_value_destroy(v));
  /* A record aligned to a full cache line. */
  struct {
    alignas(64) char c[64];
  } big = {{1}};
  assert_ok(shm_value_create_record(&v, sizeof big, 64, &big, NULL));
  assert_int_equal((uintptr_t)shm_value_ptr(v) % 64, 0);
  assert_ok(shm_value_destroy(v));
  /* Bad sizes and alignments. */
  assert_code(shm_value_create_record(&v, 0, 1, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create_record(&v, 12, 3, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create_record(&v, 12, 8, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create_record(&v, 128, 128, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create_record(&v, (size_t)1 << 31, 8, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create_record(NULL, 8, 8, NULL, NULL), SHMVAL_EINVAL);
}

static void test_create_errors(void **state) {
  (void)state;
  shm_value *v = (shm_value *)0x1, *w;
  shm_opts bad = {.flags = 1u << 7};
  assert_code(shm_value_create(NULL, SHMVAL_INT, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create(&v, (shm_type)'x', NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create(&v, SHMVAL_RECORD, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_create(&v, SHMVAL_INT, NULL, &bad), SHMVAL_EINVAL);
  assert_ptr_equal(v, (shm_value *)0x1); /* unchanged on failure */
  assert_ok(shm_value_create(&w, SHMVAL_INT, NULL, NULL));
  shm_opts conflict = {.flags = SHMVAL_RAW, .lock = shm_value_get_lock(w)};
  assert_code(shm_value_create(&v, SHMVAL_INT, NULL, &conflict), SHMVAL_EINVAL);
  conflict.flags = SHMVAL_NONRECURSIVE;
  assert_code(shm_value_create(&v, SHMVAL_INT, NULL, &conflict), SHMVAL_EINVAL);
  /* Bad arguments to accessors. */
  assert_code(shm_value_get(w, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_set(w, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_get(NULL, &v), SHMVAL_EINVAL);
  assert_code(shm_value_set(NULL, &v), SHMVAL_EINVAL);
  assert_code(shm_value_acquire(NULL), SHMVAL_EINVAL);
  assert_null(shm_value_ptr(NULL));
  assert_null(shm_value_get_lock(NULL));
  assert_int_equal(shm_value_type(NULL), 0);
  assert_int_equal(shm_value_size(NULL), 0);
  /* An Array handle is not a Value handle, and the reverse. */
  shm_array *a;
  assert_ok(shm_array_create(&a, SHMVAL_INT, 1, NULL, NULL));
  int x = 0;
  assert_code(shm_value_get((shm_value *)a, &x), SHMVAL_EINVAL);
  assert_code(shm_value_destroy((shm_value *)a), SHMVAL_EINVAL);
  assert_code(shm_array_get((shm_array *)w, 0, &x), SHMVAL_EINVAL);
  assert_ok(shm_array_destroy(a));
  assert_ok(shm_value_destroy(w));
}

static void test_destroy_and_stale(void **state) {
  (void)state;
  shm_value *v;
  int x = 5;
  assert_ok(shm_value_destroy(NULL));
  assert_ok(shm_value_create(&v, SHMVAL_INT, &x, NULL));
  shm_lock *l = shm_value_get_lock(v);
  assert_ok(shm_value_destroy(v));
  assert_code(shm_value_get(v, &x), SHMVAL_ESTALE);
  assert_code(shm_value_set(v, &x), SHMVAL_ESTALE);
  assert_code(shm_value_acquire(v), SHMVAL_ESTALE);
  assert_code(shm_value_destroy(v), SHMVAL_ESTALE);
  assert_code(shm_lock_acquire(l), SHMVAL_ESTALE);
  assert_null(shm_value_ptr(v));
  assert_null(shm_value_get_lock(v));
  assert_int_equal(shm_value_type(v), 0);
}

static void test_get_set_while_holding(void **state) {
  (void)state;
  shm_value *v;
  int x = 1, y = 0;
  assert_ok(shm_value_create(&v, SHMVAL_INT, &x, NULL));
  assert_ok(shm_value_acquire(v));
  assert_ok(shm_value_acquire(v));
  x = 2;
  assert_ok(shm_value_set(v, &x));
  assert_ok(shm_value_get(v, &y));
  assert_int_equal(y, 2);
  assert_true(shm_lock_is_owned(shm_value_get_lock(v)));
  assert_ok(shm_value_release(v));
  assert_ok(shm_value_release(v));
  assert_false(shm_lock_is_owned(shm_value_get_lock(v)));
  assert_code(shm_value_release(v), SHMVAL_EPERM);
  assert_ok(shm_value_destroy(v));
}

static void test_nonrecursive(void **state) {
  (void)state;
  shm_opts o = {.flags = SHMVAL_NONRECURSIVE};
  shm_value *v;
  int x = 0;
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &o));
  assert_ok(shm_value_get(v, &x));
  assert_ok(shm_value_acquire(v));
  assert_code(shm_value_acquire(v), SHMVAL_EDEADLK);
  assert_code(shm_lock_try_acquire(shm_value_get_lock(v)), SHMVAL_EBUSY);
  assert_code(shm_lock_acquire_timeout(shm_value_get_lock(v), 0.01), SHMVAL_EDEADLK);
  assert_code(shm_value_get(v, &x), SHMVAL_EDEADLK);
  assert_ok(shm_value_release(v));
  assert_code(shm_value_release(v), SHMVAL_EPERM);
  assert_ok(shm_value_destroy(v));
}

static void test_shared_lock(void **state) {
  (void)state;
  shm_value *a, *b;
  shm_array *arr;
  shm_arena_info before, after;
  int x = 1, y = 0;
  assert_ok(shm_value_create(&a, SHMVAL_INT, &x, NULL));
  assert_ok(shm_arena_stat(&before));
  shm_opts share = {.lock = shm_value_get_lock(a)};
  assert_ok(shm_value_create(&b, SHMVAL_INT, NULL, &share));
  assert_ok(shm_array_create(&arr, SHMVAL_INT, 4, NULL, &share));
  assert_ptr_equal(shm_value_get_lock(b), shm_value_get_lock(a));
  assert_ptr_equal(shm_array_get_lock(arr), shm_value_get_lock(a));
  /* Holding the lock through one object covers the others. */
  assert_ok(shm_value_acquire(a));
  assert_ok(shm_value_set(b, &x));
  assert_ok(shm_array_set(arr, 2, &x));
  assert_true(shm_lock_is_owned(shm_array_get_lock(arr)));
  assert_ok(shm_value_release(a));
  /* The lock outlives the object that made it. */
  assert_ok(shm_value_destroy(a));
  assert_code(shm_value_get(a, &y), SHMVAL_ESTALE);
  assert_ok(shm_value_get(b, &y));
  assert_int_equal(y, 1);
  assert_ok(shm_value_acquire(b));
  assert_ok(shm_value_release(b));
  assert_ok(shm_value_destroy(b));
  assert_ok(shm_array_get(arr, 2, &y));
  assert_int_equal(y, 1);
  /* The last user holding the lock may not free it. */
  assert_ok(shm_array_acquire(arr));
  assert_code(shm_array_destroy(arr), SHMVAL_EBUSY);
  assert_ok(shm_array_release(arr));
  assert_ok(shm_array_destroy(arr));
  assert_ok(shm_arena_stat(&after));
  assert_int_equal(after.used + 128, before.used); /* a's block went too */
  /* A destroyed object's lock cannot be shared. */
  assert_code(shm_value_create(&b, SHMVAL_INT, NULL, &share), SHMVAL_ESTALE);
}

static void *hold_lock(void *arg) {
  shm_value *v = arg;
  if (shm_value_acquire(v) != 0)
    return (void *)1;
  sleep_s(0.2);
  return (void *)(intptr_t)shm_value_release(v);
}

static void test_destroy_busy(void **state) {
  (void)state;
  shm_value *v;
  pthread_t t;
  void *res;
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, NULL));
  assert_ok(shm_value_acquire(v));
  assert_code(shm_value_destroy(v), SHMVAL_EBUSY);
  assert_ok(shm_value_release(v));
  assert_int_equal(pthread_create(&t, NULL, hold_lock, v), 0);
  sleep_s(0.05);
  assert_code(shm_value_destroy(v), SHMVAL_EBUSY);
  assert_int_equal(pthread_join(t, &res), 0);
  assert_null(res);
  assert_ok(shm_value_destroy(v));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_type_sizes),        cmocka_unit_test(test_every_type_roundtrip),
      cmocka_unit_test(test_typed_values),      cmocka_unit_test(test_raw_value),
      cmocka_unit_test(test_record_value),      cmocka_unit_test(test_create_errors),
      cmocka_unit_test(test_destroy_and_stale), cmocka_unit_test(test_get_set_while_holding),
      cmocka_unit_test(test_nonrecursive),      cmocka_unit_test(test_shared_lock),
      cmocka_unit_test(test_destroy_busy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
