/* Arrays: initialisation, bounds, slices, strings, records, large arrays. */
#include "helpers.h"

#include <stdalign.h>
#include <stdint.h>
#include <string.h>
#include <wchar.h>

static void test_zeros_and_init(void **state) {
  (void)state;
  shm_array *z, *a;
  int init[5] = {1, 2, 3, 4, 5}, out[5];
  assert_ok(shm_array_create(&z, SHMVAL_INT, 5, NULL, NULL));
  assert_ok(shm_array_create(&a, SHMVAL_INT, 5, init, NULL));
  assert_int_equal(shm_array_length(a), 5);
  assert_int_equal(shm_array_type(a), SHMVAL_INT);
  assert_int_equal(shm_array_elem_size(a), sizeof(int));
  assert_non_null(shm_array_get_lock(a));
  assert_ok(shm_array_read(z, 0, 5, out));
  for (int i = 0; i < 5; i++)
    assert_int_equal(out[i], 0);
  assert_ok(shm_array_read(a, 0, 5, out));
  assert_memory_equal(out, init, sizeof init);
  assert_memory_equal(shm_array_ptr(a), init, sizeof init);
  assert_ok(shm_array_destroy(z));
  assert_ok(shm_array_destroy(a));
}

static void test_length_zero(void **state) {
  (void)state;
  shm_array *a;
  int x = 0;
  assert_ok(shm_array_create(&a, SHMVAL_DOUBLE, 0, NULL, NULL));
  assert_int_equal(shm_array_length(a), 0);
  assert_non_null(shm_array_ptr(a));
  assert_ok(shm_array_read(a, 0, 0, NULL));
  assert_ok(shm_array_write(a, 0, 0, NULL));
  assert_code(shm_array_get(a, 0, &x), SHMVAL_ERANGE);
  assert_code(shm_array_read(a, 1, 0, NULL), SHMVAL_ERANGE);
  assert_ok(shm_array_destroy(a));
}

static void test_bounds(void **state) {
  (void)state;
  shm_array *a;
  long v = 9, out[8];
  assert_ok(shm_array_create(&a, SHMVAL_LONG, 8, NULL, NULL));
  assert_ok(shm_array_set(a, 7, &v));
  assert_ok(shm_array_get(a, 7, &out[0]));
  assert_int_equal(out[0], 9);
  assert_code(shm_array_set(a, 8, &v), SHMVAL_ERANGE);
  assert_code(shm_array_get(a, 8, &v), SHMVAL_ERANGE);
  assert_code(shm_array_get(a, SIZE_MAX, &v), SHMVAL_ERANGE);
  assert_code(shm_array_read(a, 4, 5, out), SHMVAL_ERANGE);
  assert_code(shm_array_write(a, 1, SIZE_MAX, out), SHMVAL_ERANGE);
  assert_code(shm_array_read(a, SIZE_MAX, 2, out), SHMVAL_ERANGE);
  assert_ok(shm_array_read(a, 8, 0, NULL));
  assert_code(shm_array_get(a, 0, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_set(a, 0, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_read(a, 0, 1, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_write(a, 0, 1, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_get(NULL, 0, &v), SHMVAL_EINVAL);
  /* A failed slice changes nothing. */
  long ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  assert_code(shm_array_write(a, 1, 8, ones), SHMVAL_ERANGE);
  assert_ok(shm_array_read(a, 0, 8, out));
  for (int i = 0; i < 7; i++)
    assert_int_equal(out[i], 0);
  assert_ok(shm_array_destroy(a));
}

static void test_slices(void **state) {
  (void)state;
  shm_array *a;
  short in[4] = {10, 20, 30, 40}, out[10];
  assert_ok(shm_array_create(&a, SHMVAL_SHORT, 10, NULL, NULL));
  assert_ok(shm_array_write(a, 6, 4, in));
  assert_ok(shm_array_read(a, 0, 10, out));
  for (int i = 0; i < 6; i++)
    assert_int_equal(out[i], 0);
  assert_memory_equal(out + 6, in, sizeof in);
  assert_ok(shm_array_read(a, 7, 2, out));
  assert_int_equal(out[0], 20);
  assert_int_equal(out[1], 30);
  assert_ok(shm_array_destroy(a));
}

static void test_create_errors(void **state) {
  (void)state;
  shm_array *a;
  assert_code(shm_array_create(NULL, SHMVAL_INT, 1, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_create(&a, (shm_type)'z', 1, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_create(&a, SHMVAL_RECORD, 1, NULL, NULL), SHMVAL_EINVAL);
  /* length × size overflows, or is beyond what a segment may hold. */
  assert_code(shm_array_create(&a, SHMVAL_DOUBLE, SIZE_MAX / 4, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_create(&a, SHMVAL_DOUBLE, (size_t)1 << 60, NULL, NULL), SHMVAL_EINVAL);
  assert_code(shm_array_create_record(&a, 16, 8, SIZE_MAX / 8, NULL, NULL), SHMVAL_EINVAL);
  assert_int_equal(shm_array_length(NULL), 0);
  assert_int_equal(shm_array_elem_size(NULL), 0);
  assert_int_equal(shm_array_type(NULL), 0);
  assert_null(shm_array_ptr(NULL));
  assert_null(shm_array_get_lock(NULL));
  assert_code(shm_array_acquire(NULL), SHMVAL_EINVAL);
  assert_ok(shm_array_destroy(NULL));
}

static void test_stale(void **state) {
  (void)state;
  shm_array *a;
  int x;
  char buf[4];
  assert_ok(shm_array_create(&a, SHMVAL_CHAR, 3, "ab", NULL));
  assert_ok(shm_array_destroy(a));
  assert_code(shm_array_get(a, 0, &x), SHMVAL_ESTALE);
  assert_code(shm_array_read(a, 0, 1, &x), SHMVAL_ESTALE);
  assert_code(shm_array_get_string(a, buf, sizeof buf), SHMVAL_ESTALE);
  assert_code(shm_array_set_string(a, "x"), SHMVAL_ESTALE);
  assert_code(shm_array_destroy(a), SHMVAL_ESTALE);
  assert_int_equal(shm_array_length(a), 0);
}

static void test_strings(void **state) {
  (void)state;
  shm_array *a, *i;
  char buf[16];
  assert_ok(shm_array_create(&a, SHMVAL_CHAR, 5, NULL, NULL));
  assert_ok(shm_array_get_string(a, buf, sizeof buf));
  assert_string_equal(buf, "");
  assert_ok(shm_array_set_string(a, "hey"));
  assert_ok(shm_array_set_string(a, "hi"));
  assert_ok(shm_array_get_string(a, buf, sizeof buf));
  assert_string_equal(buf, "hi");
  /* Python writes the terminator and leaves the bytes after it alone. */
  assert_memory_equal(shm_array_ptr(a), "hi\0\0\0", 5);
  assert_ok(shm_array_set_string(a, "hello"));
  assert_memory_equal(shm_array_ptr(a), "hello", 5);
  assert_ok(shm_array_get_string(a, buf, 6));
  assert_string_equal(buf, "hello");
  memcpy(buf, "xxxxxxx", 8);
  assert_code(shm_array_get_string(a, buf, 5), SHMVAL_ERANGE);
  assert_string_equal(buf, "xxxxxxx"); /* never a partial write */
  assert_code(shm_array_set_string(a, "hello!"), SHMVAL_ERANGE);
  assert_memory_equal(shm_array_ptr(a), "hello", 5);
  assert_code(shm_array_get_string(a, NULL, 4), SHMVAL_EINVAL);
  assert_code(shm_array_get_string(a, buf, 0), SHMVAL_EINVAL);
  assert_code(shm_array_set_string(a, NULL), SHMVAL_EINVAL);
  assert_ok(shm_array_create(&i, SHMVAL_INT, 4, NULL, NULL));
  assert_code(shm_array_set_string(i, "a"), SHMVAL_ETYPE);
  assert_code(shm_array_get_string(i, buf, sizeof buf), SHMVAL_ETYPE);
  assert_code(shm_array_get_wstring(a, (wchar_t *)buf, 2), SHMVAL_ETYPE);
  assert_ok(shm_array_destroy(i));
  assert_ok(shm_array_destroy(a));
}

static void test_wstrings(void **state) {
  (void)state;
  shm_array *a;
  wchar_t buf[8];
  assert_ok(shm_array_create(&a, SHMVAL_WCHAR, 4, NULL, NULL));
  assert_ok(shm_array_set_wstring(a, L"\u00e9t\u00e9"));
  assert_ok(shm_array_get_wstring(a, buf, 8));
  assert_true(wcscmp(buf, L"\u00e9t\u00e9") == 0);
  assert_ok(shm_array_set_wstring(a, L"abcd"));
  assert_code(shm_array_get_wstring(a, buf, 4), SHMVAL_ERANGE);
  assert_ok(shm_array_get_wstring(a, buf, 5));
  assert_true(wcscmp(buf, L"abcd") == 0);
  assert_code(shm_array_set_wstring(a, L"abcde"), SHMVAL_ERANGE);
  assert_code(shm_array_set_string(a, "a"), SHMVAL_ETYPE);
  assert_code(shm_array_set_wstring(a, NULL), SHMVAL_EINVAL);
  assert_ok(shm_array_destroy(a));
}

struct point {
  float x, y;
  int id;
};

static void test_records(void **state) {
  (void)state;
  struct point pts[3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}, p;
  shm_array *a;
  assert_ok(shm_array_create_record(&a, sizeof p, alignof(struct point), 3, pts, NULL));
  assert_int_equal(shm_array_type(a), SHMVAL_RECORD);
  assert_int_equal(shm_array_elem_size(a), sizeof p);
  assert_ok(shm_array_get(a, 2, &p));
  assert_int_equal(p.id, 9);
  p.id = 42;
  assert_ok(shm_array_set(a, 0, &p));
  assert_int_equal(((struct point *)shm_array_ptr(a))[0].id, 42);
  assert_code(shm_array_create_record(&a, 12, 5, 1, NULL, NULL), SHMVAL_EINVAL);
  assert_ok(shm_array_destroy(a));
}

static void test_raw_array(void **state) {
  (void)state;
  shm_opts raw = {.flags = SHMVAL_RAW};
  shm_array *a;
  unsigned char in[3] = {1, 2, 3}, out[3];
  assert_ok(shm_array_create(&a, SHMVAL_UCHAR, 3, in, &raw));
  assert_null(shm_array_get_lock(a));
  assert_code(shm_array_acquire(a), SHMVAL_ENOLOCK);
  assert_code(shm_array_release(a), SHMVAL_ENOLOCK);
  assert_ok(shm_array_read(a, 0, 3, out));
  assert_memory_equal(in, out, 3);
  assert_ok(shm_array_destroy(a));
}

static void test_alignment(void **state) {
  (void)state;
  shm_array *a[6];
  size_t lens[6] = {1, 7, 8, 9, 100, 1000};
  for (int i = 0; i < 6; i++) {
    assert_ok(shm_array_create(&a[i], SHMVAL_DOUBLE, lens[i], NULL, NULL));
    uintptr_t p = (uintptr_t)shm_array_ptr(a[i]);
    assert_int_equal(p % alignof(double), 0);
    /* A payload of a cache line or more starts on its own line. */
    if (lens[i] * sizeof(double) >= 64)
      assert_int_equal(p % 64, 0);
  }
  for (int i = 0; i < 6; i++)
    assert_ok(shm_array_destroy(a[i]));
}

static void test_large_array(void **state) {
  (void)state;
  const size_t n = (size_t)8 << 20; /* 64 MiB of doubles */
  shm_arena_info before, mid, after;
  shm_array *a;
  assert_ok(shm_arena_stat(&before));
  assert_ok(shm_array_create(&a, SHMVAL_DOUBLE, n, NULL, NULL));
  assert_ok(shm_arena_stat(&mid));
  if (mid.segments != before.segments + 1) /* a segment of its own */
    fail_msg("segments %zu -> %zu", before.segments, mid.segments);
  double *p = shm_array_ptr(a), v = 0;
  for (size_t i = 0; i < n; i += 4096)
    p[i] = (double)i;
  assert_ok(shm_array_get(a, n - 4096, &v));
  assert_true(v == (double)(n - 4096));
  assert_ok(shm_array_destroy(a));
  assert_ok(shm_arena_stat(&after));
  assert_int_equal(after.used, before.used);
  /* The freed segment serves the next large array: no new mapping. */
  assert_ok(shm_array_create(&a, SHMVAL_DOUBLE, n, NULL, NULL));
  assert_ok(shm_arena_stat(&mid));
  assert_int_equal(mid.segments, after.segments);
  assert_true(*(double *)shm_array_ptr(a) == 0.0); /* zeroed again */
  assert_ok(shm_array_destroy(a));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zeros_and_init), cmocka_unit_test(test_length_zero),
      cmocka_unit_test(test_bounds),         cmocka_unit_test(test_slices),
      cmocka_unit_test(test_create_errors),  cmocka_unit_test(test_stale),
      cmocka_unit_test(test_strings),        cmocka_unit_test(test_wstrings),
      cmocka_unit_test(test_records),        cmocka_unit_test(test_raw_array),
      cmocka_unit_test(test_alignment),      cmocka_unit_test(test_large_array),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
