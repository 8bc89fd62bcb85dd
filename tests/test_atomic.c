/* Atomic Values: every type, the atomic calls, misuse, and exact totals under contention. */
#include "helpers.h"

#include <string.h>

static const shm_opts atomic_opts = {.flags = SHMVAL_ATOMIC};

static void test_integer_types(void **state) {
  (void)state;
  const shm_type types[] = {SHMVAL_CHAR,  SHMVAL_SCHAR,  SHMVAL_UCHAR, SHMVAL_WCHAR,
                            SHMVAL_SHORT, SHMVAL_USHORT, SHMVAL_INT,   SHMVAL_UINT,
                            SHMVAL_LONG,  SHMVAL_ULONG,  SHMVAL_LLONG, SHMVAL_ULLONG};
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    shm_value *v;
    size_t n = shm_type_size(types[t]);
    unsigned char one[8] = {0}, five[8] = {0}, out[8] = {0}, old[8] = {0}, want[8] = {0};
    /* 1 and 5 in the element's own width, whatever its size. */
    long long x1 = 1, x5 = 5;
    memcpy(one, (char *)&x1, n);
    memcpy(five, (char *)&x5, n);
    assert_ok(shm_value_create(&v, types[t], five, &atomic_opts));
    assert_null(shm_value_get_lock(v));
    assert_code(shm_value_acquire(v), SHMVAL_ENOLOCK);
    assert_ok(shm_value_get(v, out));
    assert_memory_equal(out, five, n);
    assert_ok(shm_value_add(v, one, old));
    assert_memory_equal(old, five, n);
    long long x6 = 6;
    memcpy(want, (char *)&x6, n);
    assert_ok(shm_value_get(v, out));
    assert_memory_equal(out, want, n);
    assert_ok(shm_value_exchange(v, one, old));
    assert_memory_equal(old, want, n);
    /* cas: a wrong expectation fails and reports the current value. */
    memcpy(old, five, n);
    assert_int_equal(shm_value_cas(v, old, five), 0);
    assert_memory_equal(old, one, n);
    assert_int_equal(shm_value_cas(v, old, five), 1);
    assert_ok(shm_value_get(v, out));
    assert_memory_equal(out, five, n);
    assert_ok(shm_value_set(v, one));
    assert_ok(shm_value_get(v, out));
    assert_memory_equal(out, one, n);
    assert_ok(shm_value_destroy(v));
  }
}

static void test_wraparound_and_signs(void **state) {
  (void)state;
  shm_value *u, *s;
  unsigned char max = 255, one = 1, old;
  assert_ok(shm_value_create(&u, SHMVAL_UCHAR, &max, &atomic_opts));
  assert_ok(shm_value_add(u, &one, &old));
  assert_int_equal(old, 255);
  assert_ok(shm_value_get(u, &old));
  assert_int_equal(old, 0);
  long long big = -5, minus = -10, got;
  assert_ok(shm_value_create(&s, SHMVAL_LLONG, &big, &atomic_opts));
  assert_ok(shm_value_add(s, &minus, NULL));
  assert_ok(shm_value_get(s, &got));
  assert_int_equal(got, -15);
  assert_ok(shm_value_destroy(u));
  assert_ok(shm_value_destroy(s));
}

static void test_floating(void **state) {
  (void)state;
  shm_value *d, *f;
  double x = 1.5, dx = 0.25, old, got;
  assert_ok(shm_value_create(&d, SHMVAL_DOUBLE, &x, &atomic_opts));
  assert_ok(shm_value_add(d, &dx, &old));
  assert_true(old == 1.5);
  assert_ok(shm_value_get(d, &got));
  assert_true(got == 1.75);
  /* Bit patterns: -0.0 is not 0.0. */
  double zero = 0.0, negzero = -0.0, seven = 7.0;
  assert_ok(shm_value_set(d, &negzero));
  double expect = zero;
  assert_int_equal(shm_value_cas(d, &expect, &seven), 0);
  assert_int_equal(shm_value_cas(d, &expect, &seven), 1);
  float ff = 2.0f, fd = 0.5f, fo;
  assert_ok(shm_value_create(&f, SHMVAL_FLOAT, &ff, &atomic_opts));
  assert_ok(shm_value_add(f, &fd, &fo));
  assert_true(fo == 2.0f);
  assert_ok(shm_value_get(f, &fo));
  assert_true(fo == 2.5f);
  assert_ok(shm_value_destroy(d));
  assert_ok(shm_value_destroy(f));
}

static void test_misuse(void **state) {
  (void)state;
  shm_value *v, *b;
  shm_array *a;
  int one = 1;
  /* Not atomic: the atomic calls refuse it; atomic: no lock to take. */
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, NULL));
  assert_code(shm_value_add(v, &one, NULL), SHMVAL_ENOTATOMIC);
  assert_code(shm_value_exchange(v, &one, NULL), SHMVAL_ENOTATOMIC);
  assert_code(shm_value_cas(v, &one, &one), SHMVAL_ENOTATOMIC);
  shm_opts bad = {.flags = SHMVAL_ATOMIC | SHMVAL_NONRECURSIVE};
  assert_code(shm_value_create(&b, SHMVAL_INT, NULL, &bad), SHMVAL_EINVAL);
  bad = (shm_opts){.flags = SHMVAL_ATOMIC, .lock = shm_value_get_lock(v)};
  assert_code(shm_value_create(&b, SHMVAL_INT, NULL, &bad), SHMVAL_EINVAL);
  assert_code(shm_value_create_record(&b, 16, 8, NULL, &atomic_opts), SHMVAL_EINVAL);
  assert_code(shm_value_create_record(&b, 3, 1, NULL, &atomic_opts), SHMVAL_EINVAL);
  assert_code(shm_array_create(&a, SHMVAL_INT, 4, NULL, &atomic_opts), SHMVAL_EINVAL);
  assert_ok(shm_value_create(&b, SHMVAL_BOOL, NULL, &atomic_opts));
  _Bool t = 1, o;
  assert_code(shm_value_add(b, &t, NULL), SHMVAL_ETYPE);
  assert_ok(shm_value_exchange(b, &t, &o));
  assert_int_equal(o, 0);
  assert_code(shm_value_add(b, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_value_cas(b, NULL, &t), SHMVAL_EINVAL);
  assert_code(shm_value_add(NULL, &one, NULL), SHMVAL_EINVAL);
  assert_ok(shm_value_destroy(b));
  assert_code(shm_value_add(b, &t, NULL), SHMVAL_ESTALE);
  assert_ok(shm_value_destroy(v));
}

#define PROCS 4
#define ITERS 100000
static shm_value *counter;

static int add_child(void *arg) {
  (void)arg;
  long one = 1;
  for (int i = 0; i < ITERS; i++)
    if (shm_value_add(counter, &one, NULL) != 0)
      return 1;
  return 0;
}

static int cas_child(void *arg) {
  (void)arg;
  for (int i = 0; i < ITERS; i++) {
    long cur, next;
    shm_value_get(counter, &cur);
    do
      next = cur + 1;
    while (shm_value_cas(counter, &cur, &next) != 1);
  }
  return 0;
}

static void test_contended_exact(void **state) {
  (void)state;
  pid_t pids[PROCS];
  long total;
  assert_ok(shm_value_create(&counter, SHMVAL_LONG, NULL, &atomic_opts));
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < PROCS; i++)
      pids[i] = spawn(round ? cas_child : add_child, NULL);
    for (int i = 0; i < PROCS; i++)
      assert_int_equal(reap(pids[i]), 0);
  }
  assert_ok(shm_value_get(counter, &total));
  assert_int_equal(total, 2L * PROCS * ITERS); /* no lost update, 2 and more processes */
  assert_ok(shm_value_destroy(counter));
}

static void test_named_atomic(void **state) {
  (void)state;
  char name[64];
  shm_segment *s, *ro;
  shm_value *v, *rv;
  long one = 1, x;
  test_name(name, sizeof name, "atomic");
  assert_ok(shm_segment_create(&s, name, 1 << 20, NULL));
  shm_opts o = {.segment = s, .name = "hits", .flags = SHMVAL_ATOMIC};
  assert_ok(shm_value_create(&v, SHMVAL_LONG, NULL, &o));
  assert_ok(shm_value_add(v, &one, NULL));
  shm_segment_opts roo = {.flags = SHMVAL_RDONLY};
  assert_ok(shm_segment_open(&ro, name, &roo));
  assert_ok(shm_value_open(&rv, ro, "hits", SHMVAL_LONG));
  assert_ok(shm_value_get(rv, &x)); /* an atomic load needs no lock: allowed */
  assert_int_equal(x, 1);
  assert_code(shm_value_add(rv, &one, NULL), SHMVAL_EACCES);
  assert_code(shm_value_set(rv, &one), SHMVAL_EACCES);
  assert_ok(shm_segment_close(ro));
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_integer_types),   cmocka_unit_test(test_wraparound_and_signs),
      cmocka_unit_test(test_floating),        cmocka_unit_test(test_misuse),
      cmocka_unit_test(test_contended_exact), cmocka_unit_test(test_named_atomic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
