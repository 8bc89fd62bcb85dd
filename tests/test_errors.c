/* Return codes: every code has a distinct name and message. */
#include "helpers.h"

#include <errno.h>
#include <string.h>

static const int all_codes[] = {SHMVAL_OK, SHMVAL_OWNERDEAD,
#define XX(name, value, msg) SHMVAL_##name,
                                SHMVAL_ERRNO_MAP(XX)
#undef XX
};
#define N_CODES (sizeof all_codes / sizeof all_codes[0])

static void test_every_code_named(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CODES; i++) {
    const char *msg = shmval_strerror(all_codes[i]);
    const char *name = shmval_err_name(all_codes[i]);
    assert_non_null(msg);
    assert_string_not_equal(msg, "unknown error");
    assert_int_equal(strncmp(name, "SHMVAL_", 7), 0);
    assert_string_not_equal(name, "SHMVAL_UNKNOWN");
    for (size_t j = 0; j < i; j++) {
      assert_int_not_equal(all_codes[i], all_codes[j]);
      assert_string_not_equal(msg, shmval_strerror(all_codes[j]));
      assert_string_not_equal(name, shmval_err_name(all_codes[j]));
    }
  }
}

static void test_code_ranges(void **state) {
  (void)state;
  assert_true(SHMVAL_OWNERDEAD > 0);
  for (size_t i = 2; i < N_CODES; i++)
    assert_true(all_codes[i] < 0);
  /* System errors are -errno; the library's own codes are reserved. */
  assert_int_equal(SHMVAL_EINVAL, -EINVAL);
  assert_int_equal(SHMVAL_ETIMEDOUT, -ETIMEDOUT);
  assert_int_equal(SHMVAL_EPERM, -EPERM);
  assert_true(SHMVAL_ENOLOCK <= -30000 && SHMVAL_ENOLOCK > -30100);
  assert_true(SHMVAL_ESTALE <= -30000 && SHMVAL_ETYPE <= -30000);
  assert_string_equal(shmval_err_name(SHMVAL_ESTALE), "SHMVAL_ESTALE");
  assert_string_equal(shmval_err_name(SHMVAL_OWNERDEAD), "SHMVAL_OWNERDEAD");
}

static void test_unknown_codes(void **state) {
  (void)state;
  assert_string_equal(shmval_strerror(12345), "unknown error");
  assert_string_equal(shmval_strerror(-29999), "unknown error");
  assert_string_equal(shmval_err_name(-29999), "SHMVAL_UNKNOWN");
  /* A system error outside the table still gets the C library's text. */
  assert_string_not_equal(shmval_strerror(-EROFS), "unknown error");
  assert_string_equal(shmval_err_name(-EROFS), "SHMVAL_UNKNOWN");
  assert_string_equal(shmval_err_name(-EMFILE), "SHMVAL_EMFILE"); /* in the table */
}

static void test_version(void **state) {
  (void)state;
  assert_string_equal(shmval_version(), SHMVAL_VERSION_STRING);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_named),
      cmocka_unit_test(test_code_ranges),
      cmocka_unit_test(test_unknown_codes),
      cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
