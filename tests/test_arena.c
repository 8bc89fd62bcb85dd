/*
 * The default arena: reuse and coalescing under churn, accounting, per-object
 * sizes, objects that never move, exhaustion.
 */
#include "helpers.h"

#include <pthread.h>
#include <string.h>
#include <sys/resource.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void check_accounting(shm_arena_info *info) {
  assert_ok(shm_arena_stat(info));
  assert_int_equal(info->used + info->free, info->total);
}

#define LIVE 256
#define OPS 20000

struct slot {
  shm_array *a;
  unsigned char pattern;
  size_t len;
};

static int verify(const struct slot *s) {
  const unsigned char *p = shm_array_ptr(s->a);
  if (p == NULL || shm_array_length(s->a) != s->len)
    return 0;
  for (size_t i = 0; i < s->len; i++)
    if (p[i] != (unsigned char)(s->pattern + i))
      return 0;
  return 1;
}

static void test_churn(void **state) {
  (void)state;
  static struct slot slots[LIVE];
  shm_arena_info base, info;
  check_accounting(&base);
  for (int op = 0; op < OPS; op++) {
    struct slot *s = &slots[rng() % LIVE];
    if (s->a != NULL) {
      assert_true(verify(s));
      assert_ok(shm_array_destroy(s->a));
      s->a = NULL;
      continue;
    }
    s->len = (size_t)(rng() % 4096);
    s->pattern = (unsigned char)rng();
    shm_opts raw = {.flags = SHMVAL_RAW};
    assert_ok(shm_array_create(&s->a, SHMVAL_UCHAR, s->len, NULL, rng() % 3 ? NULL : &raw));
    unsigned char *p = shm_array_ptr(s->a);
    for (size_t i = 0; i < s->len; i++)
      p[i] = (unsigned char)(s->pattern + i);
    if (op % 1000 == 0)
      check_accounting(&info);
  }
  for (int i = 0; i < LIVE; i++) {
    if (slots[i].a != NULL) {
      assert_true(verify(&slots[i]));
      assert_ok(shm_array_destroy(slots[i].a));
      slots[i].a = NULL;
    }
  }
  check_accounting(&info);
  /* Back to empty: every block freed and merged again. */
  assert_int_equal(info.used, base.used);
  assert_int_equal(info.blocks, base.blocks);
  /* Each segment's free space: before and after its heap's state block. */
  assert_int_equal(info.free_blocks, 2 * info.segments);
  assert_int_equal(info.largest_free + 0 >= base.largest_free, 1);
}

static void test_block_sizes(void **state) {
  (void)state;
  shm_arena_info a, b;
  shm_value *v;
  shm_array *arr;
  shm_opts raw = {.flags = SHMVAL_RAW};
  check_accounting(&a);
  assert_ok(shm_value_create(&v, SHMVAL_DOUBLE, NULL, NULL));
  check_accounting(&b);
  assert_int_equal(b.used - a.used, 128); /* a locked Value */
  assert_ok(shm_value_destroy(v));
  assert_ok(shm_value_create(&v, SHMVAL_DOUBLE, NULL, &raw));
  check_accounting(&b);
  assert_int_equal(b.used - a.used, 64); /* a raw Value: one cache line */
  assert_ok(shm_value_destroy(v));
  assert_ok(shm_array_create(&arr, SHMVAL_INT, 1, NULL, NULL));
  check_accounting(&b);
  assert_int_equal(b.used - a.used, 128);
  assert_ok(shm_array_destroy(arr));
  check_accounting(&b);
  assert_int_equal(b.used, a.used);
}

static void test_objects_never_move(void **state) {
  (void)state;
  shm_value *vs[1000];
  void *ptrs[1000];
  for (int i = 0; i < 1000; i++) {
    assert_ok(shm_value_create(&vs[i], SHMVAL_INT, &i, NULL));
    ptrs[i] = shm_value_ptr(vs[i]);
  }
  for (int i = 0; i < 1000; i += 2)
    assert_ok(shm_value_destroy(vs[i]));
  shm_array *big;
  assert_ok(shm_array_create(&big, SHMVAL_UCHAR, (size_t)1 << 20, NULL, NULL));
  for (int i = 1; i < 1000; i += 2) {
    int x = -1;
    assert_ptr_equal(shm_value_ptr(vs[i]), ptrs[i]);
    assert_ok(shm_value_get(vs[i], &x));
    assert_int_equal(x, i);
    assert_ok(shm_value_destroy(vs[i]));
  }
  assert_ok(shm_array_destroy(big));
}

static void test_grows_segments(void **state) {
  (void)state;
  /* More small objects than the first segment holds. */
  enum { N = 100000 };
  static shm_value *vs[N];
  shm_arena_info a, b;
  check_accounting(&a);
  for (int i = 0; i < N; i++)
    assert_ok(shm_value_create(&vs[i], SHMVAL_INT, &i, NULL));
  check_accounting(&b);
  assert_true(b.segments > a.segments);
  assert_int_equal(b.blocks - a.blocks, N);
  for (int i = 0; i < N; i++) {
    int x;
    assert_ok(shm_value_get(vs[i], &x));
    assert_int_equal(x, i);
    assert_ok(shm_value_destroy(vs[i]));
  }
  check_accounting(&b);
  assert_int_equal(b.used, a.used);
}

#define TCHURN 4
static void *churn_thread(void *arg) {
  uintptr_t seed = (uintptr_t)arg;
  shm_array *live[32] = {0};
  for (int op = 0; op < 20000; op++) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    int i = (int)((seed >> 33) % 32);
    if (live[i] != NULL) {
      if (shm_array_destroy(live[i]) != 0)
        return (void *)1;
      live[i] = NULL;
    } else if (shm_array_create(&live[i], SHMVAL_INT, (seed >> 40) % 300, NULL, NULL) != 0) {
      return (void *)2;
    }
  }
  for (int i = 0; i < 32; i++)
    if (live[i] != NULL && shm_array_destroy(live[i]) != 0)
      return (void *)3;
  return NULL;
}

static void test_thread_churn(void **state) {
  (void)state;
  pthread_t t[TCHURN];
  shm_arena_info a, b;
  check_accounting(&a);
  for (uintptr_t i = 0; i < TCHURN; i++)
    assert_int_equal(pthread_create(&t[i], NULL, churn_thread, (void *)(i + 1)), 0);
  for (int i = 0; i < TCHURN; i++) {
    void *res;
    assert_int_equal(pthread_join(t[i], &res), 0);
    assert_null(res);
  }
  check_accounting(&b);
  assert_int_equal(b.used, a.used);
}

static int exhaust_child(void *arg) {
  (void)arg;
  struct rlimit lim = {(rlim_t)1 << 30, (rlim_t)1 << 30};
  if (setrlimit(RLIMIT_AS, &lim) != 0)
    return 50;
  shm_array *a;
  int rc = shm_array_create(&a, SHMVAL_UCHAR, (size_t)4 << 30, NULL, NULL);
  if (rc != SHMVAL_ENOMEM)
    return 51;
  /* Smaller objects still work afterwards. */
  shm_value *v;
  if (shm_value_create(&v, SHMVAL_INT, NULL, NULL) != 0 || shm_value_destroy(v) != 0)
    return 52;
  return 0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void test_out_of_memory(void **state) {
  (void)state;
  assert_code(shm_arena_stat(NULL), SHMVAL_EINVAL);
  shmval_arena_info old; /* the deprecated names still work */
  assert_ok(shmval_arena_stat(&old));
#ifdef UNDER_ASAN
  /* ASan and TSan reserve terabytes of address space: RLIMIT_AS cannot work there. */
  skip();
#endif
  pid_t pid = spawn(exhaust_child, NULL);
  assert_true(pid > 0);
  assert_int_equal(reap(pid), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_churn),
      cmocka_unit_test(test_block_sizes),
      cmocka_unit_test(test_objects_never_move),
      cmocka_unit_test(test_grows_segments),
      cmocka_unit_test(test_thread_churn),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
