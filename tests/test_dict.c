/*
 * Shared dicts: the mapping operations, typed dicts, growth and shrinking,
 * iteration, named dicts and their type checks, read-only and stale
 * handles, and concurrent use by threads and processes (no torn values).
 */
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define S(str) (str), strlen(str)

static shm_dict *mk(shm_type t) {
  shm_dict *d = NULL;
  shm_opts o = {.max_size = (size_t)256 << 20};
  if (shm_dict_create(&d, t, &o) != 0)
    fail_msg("shm_dict_create failed");
  return d;
}

static size_t len_of(shm_dict *d) {
  size_t n = 0;
  assert_ok(shm_dict_len(d, &n));
  return n;
}

static void test_basic_mapping(void **state) {
  (void)state;
  shm_dict *d = mk(0);
  char buf[64];
  size_t n = 99;
  assert_code(shm_dict_get(d, S("a"), buf, sizeof buf, &n), SHMVAL_ENOENT);
  assert_int_equal(n, 99); /* untouched on KeyError */
  assert_int_equal(shm_dict_contains(d, S("a")), 0);
  assert_ok(shm_dict_set(d, S("a"), "1", 1));
  assert_ok(shm_dict_set(d, S("b"), "two", 3));
  assert_int_equal(shm_dict_contains(d, S("a")), 1);
  assert_ok(shm_dict_get(d, S("b"), buf, sizeof buf, &n));
  assert_int_equal(n, 3);
  assert_memory_equal(buf, "two", 3);
  /* Replace, then a value too long for one slot, then back. */
  const char *big = "a value of more than sixteen bytes";
  assert_ok(shm_dict_set(d, S("b"), big, strlen(big)));
  assert_ok(shm_dict_get(d, S("b"), buf, sizeof buf, &n));
  assert_int_equal(n, strlen(big));
  assert_memory_equal(buf, big, n);
  assert_ok(shm_dict_set(d, S("b"), "x", 1));
  assert_ok(shm_dict_get(d, S("b"), buf, sizeof buf, &n));
  assert_int_equal(n, 1);
  assert_int_equal(len_of(d), 2);
  assert_ok(shm_dict_del(d, S("a")));
  assert_code(shm_dict_del(d, S("a")), SHMVAL_ENOENT);
  assert_int_equal(len_of(d), 1);
  /* Empty keys and values are keys and values. */
  assert_ok(shm_dict_set(d, "", 0, "", 0));
  assert_ok(shm_dict_get(d, "", 0, NULL, 0, &n));
  assert_int_equal(n, 0);
  assert_int_equal(len_of(d), 2);
  assert_ok(shm_dict_clear(d));
  assert_int_equal(len_of(d), 0);
  assert_int_equal(shm_dict_contains(d, S("b")), 0);
  assert_ok(shm_dict_set(d, S("after"), "clear", 5));
  assert_int_equal(len_of(d), 1);
  assert_ok(shm_dict_destroy(d));
  assert_ok(shm_dict_destroy(NULL));
}

/* Keys and values across the slot/entry boundary and up to the limits. */
static void test_sizes(void **state) {
  (void)state;
  shm_dict *d = mk(0);
  static char key[SHMVAL_KEY_MAX + 1], val[40000], out[40000];
  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (char)(i * 7 + 1);
  for (size_t i = 0; i < sizeof val; i++)
    val[i] = (char)(i * 13 + 5);
  size_t klens[] = {0, 1, 7, 8, 9, 15, 16, 17, 100, SHMVAL_KEY_MAX};
  size_t vlens[] = {0, 1, 8, 15, 16, 17, 63, 64, 1000, 40000};
  for (size_t a = 0; a < 10; a++)
    for (size_t b = 0; b < 10; b++) {
      size_t n;
      assert_ok(shm_dict_set(d, key, klens[a], val + b, vlens[b] - (b == 9 ? b : 0)));
      memset(out, 0, sizeof out);
      assert_ok(shm_dict_get(d, key, klens[a], out, sizeof out, &n));
      assert_int_equal(n, vlens[b] - (b == 9 ? b : 0));
      assert_memory_equal(out, val + b, n);
    }
  assert_int_equal(len_of(d), 10);
  assert_code(shm_dict_set(d, key, SHMVAL_KEY_MAX + 1, "v", 1), SHMVAL_EINVAL);
  assert_code(shm_dict_get(d, key, SHMVAL_KEY_MAX + 1, out, 1, NULL), SHMVAL_EINVAL);
  assert_code(shm_dict_set(d, NULL, 1, "v", 1), SHMVAL_EINVAL);
  assert_code(shm_dict_set(d, S("k"), NULL, 1), SHMVAL_EINVAL);
  assert_code(shm_dict_get(d, S("k"), NULL, 4, NULL), SHMVAL_EINVAL);
  assert_ok(shm_dict_destroy(d));
}

/* Making and destroying arena dicts in a loop maps one segment, not one per dict. */
static void test_arena_segment_reused(void **state) {
  (void)state;
  shm_arena_info before, after;
  shm_opts o = {.max_size = (size_t)96 << 20};
  shm_dict *d;
  assert_ok(shm_dict_create(&d, 0, &o)); /* the one segment, mapped once */
  assert_ok(shm_dict_destroy(d));
  assert_ok(shm_arena_stat(&before));
  for (int i = 0; i < 50; i++) {
    assert_ok(shm_dict_create(&d, 0, &o));
    assert_ok(shm_dict_set(d, S("k"), "a value longer than one slot", 28));
    assert_ok(shm_dict_destroy(d));
  }
  assert_ok(shm_arena_stat(&after));
  assert_int_equal(after.segments, before.segments);
}

/* Keys that fill a slot alone (16 bytes, empty values) keep their place through resizes. */
static void test_full_slot_keys(void **state) {
  (void)state;
  shm_dict *d = mk(0);
  char k[17];
  for (int i = 0; i < 300; i++) {
    snprintf(k, sizeof k, "sixteen-byte%04d", i);
    assert_ok(shm_dict_set(d, k, 16, "", 0));
  }
  for (int i = 0; i < 300; i++) {
    snprintf(k, sizeof k, "sixteen-byte%04d", i);
    assert_int_equal(shm_dict_contains(d, k, 16), 1);
  }
  assert_ok(shm_dict_destroy(d));
}

/* A buffer too small: ENOBUFS with the size needed, and nothing changed. */
static void test_enobufs(void **state) {
  (void)state;
  shm_dict *d = mk(0);
  char buf[64];
  size_t n = 0;
  assert_ok(shm_dict_set(d, S("k"), "0123456789abcdefXYZ", 19));
  assert_code(shm_dict_get(d, S("k"), buf, 4, &n), SHMVAL_ENOBUFS);
  assert_int_equal(n, 19);
  n = 0;
  assert_code(shm_dict_pop(d, S("k"), buf, 18, &n), SHMVAL_ENOBUFS);
  assert_int_equal(n, 19);
  assert_int_equal(shm_dict_contains(d, S("k")), 1); /* still there */
  assert_ok(shm_dict_pop(d, S("k"), buf, sizeof buf, &n));
  assert_memory_equal(buf, "0123456789abcdefXYZ", 19);
  assert_int_equal(shm_dict_contains(d, S("k")), 0);
  assert_code(shm_dict_pop(d, S("k"), buf, sizeof buf, &n), SHMVAL_ENOENT);
  /* setdefault: inserted (1), existing (0), and a default that does not fit inserts nothing. */
  assert_int_equal(shm_dict_setdefault(d, S("s"), "first", 5, buf, sizeof buf, &n), 1);
  assert_memory_equal(buf, "first", 5);
  assert_int_equal(shm_dict_setdefault(d, S("s"), "second", 6, buf, sizeof buf, &n), 0);
  assert_int_equal(n, 5);
  assert_memory_equal(buf, "first", 5);
  assert_code(shm_dict_setdefault(d, S("t"), "toolong", 7, buf, 3, &n), SHMVAL_ENOBUFS);
  assert_int_equal(n, 7);
  assert_int_equal(shm_dict_contains(d, S("t")), 0);
  assert_code(shm_dict_setdefault(d, S("s"), "x", 1, buf, 2, &n), SHMVAL_ENOBUFS);
  assert_int_equal(shm_dict_setdefault(d, S("u"), "v", 1, NULL, 0, NULL), 1);
  assert_int_equal(shm_dict_setdefault(d, S("s"), "v", 1, NULL, 0, &n), 0);
  assert_int_equal(n, 5);
  assert_ok(shm_dict_destroy(d));
}

static void test_typed(void **state) {
  (void)state;
  shm_dict *d = mk(SHMVAL_LLONG);
  size_t sz = 0;
  assert_int_equal(shm_dict_value_type(d, &sz), SHMVAL_LLONG);
  assert_int_equal(sz, sizeof(long long));
  long long v = 5, old = -1, got = 0, one = 1;
  assert_code(shm_dict_set(d, S("a"), &v, 4), SHMVAL_EINVAL);
  assert_ok(shm_dict_add(d, S("a"), &one, &old));
  assert_int_equal(old, 0); /* a missing key counts as 0 */
  assert_ok(shm_dict_add(d, S("a"), &v, &old));
  assert_int_equal(old, 1);
  assert_ok(shm_dict_get(d, S("a"), &got, sizeof got, NULL));
  assert_int_equal(got, 6);
  /* A key long enough to need an entry block. */
  const char *lk = "a key that is rather long";
  for (int i = 0; i < 10; i++)
    assert_ok(shm_dict_add(d, S(lk), &one, NULL));
  assert_ok(shm_dict_get(d, S(lk), &got, sizeof got, NULL));
  assert_int_equal(got, 10);
  assert_ok(shm_dict_destroy(d));

  d = mk(SHMVAL_DOUBLE);
  double x = 0.5, y;
  assert_ok(shm_dict_add(d, S("pi"), &x, NULL));
  assert_ok(shm_dict_add(d, S("pi"), &x, NULL));
  assert_ok(shm_dict_get(d, S("pi"), &y, sizeof y, NULL));
  assert_true(y == 1.0);
  assert_ok(shm_dict_destroy(d));

  struct rec {
    int a;
    double b;
    char c[20];
  } r, r2;
  memset(&r, 0, sizeof r); /* the padding too: records are compared whole */
  r.a = 1;
  r.b = 2.5;
  strcpy(r.c, "rec");
  assert_ok(shm_dict_create_record(&d, sizeof r, _Alignof(struct rec), NULL));
  assert_int_equal(shm_dict_value_type(d, &sz), SHMVAL_RECORD);
  assert_int_equal(sz, sizeof r);
  assert_ok(shm_dict_set(d, S("r"), &r, sizeof r));
  assert_ok(shm_dict_get(d, S("r"), &r2, sizeof r2, NULL));
  assert_memory_equal(&r, &r2, sizeof r);
  assert_code(shm_dict_add(d, S("r"), &r, NULL), SHMVAL_ETYPE);
  assert_ok(shm_dict_destroy(d));

  d = mk(0);
  assert_code(shm_dict_add(d, S("a"), &one, NULL), SHMVAL_ETYPE);
  assert_ok(shm_dict_destroy(d));
  assert_code(shm_dict_create(&d, SHMVAL_RECORD, NULL), SHMVAL_EINVAL);
  assert_code(shm_dict_create(&d, (shm_type)'z', NULL), SHMVAL_EINVAL);
  assert_code(shm_dict_create(NULL, 0, NULL), SHMVAL_EINVAL);
  shm_opts bad = {.flags = SHMVAL_RAW};
  assert_code(shm_dict_create(&d, 0, &bad), SHMVAL_EINVAL);
  assert_code(shm_dict_create_record(&d, 12, 3, NULL), SHMVAL_EINVAL);
}

static int append_bang(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  (void)ctx;
  if (!present) {
    memcpy(val, "new", 3);
    *vlen = 3;
    return 0;
  }
  if (*vlen + 1 > cap)
    return 99;
  ((char *)val)[(*vlen)++] = '!';
  return 0;
}

static int refuse(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  (void)val, (void)vlen, (void)cap, (void)present, (void)ctx;
  return 42;
}

static int too_long(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  (void)val, (void)present, (void)ctx;
  *vlen = cap + 1;
  return 0;
}

static int triple(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  (void)present, (void)ctx;
  if (*vlen != sizeof(int) || cap != sizeof(int))
    return 7;
  *(int *)val = *(int *)val * 3 + 1;
  return 0;
}

static void test_update(void **state) {
  (void)state;
  shm_dict *d = mk(0);
  char buf[600];
  size_t n;
  assert_ok(shm_dict_update(d, S("k"), append_bang, NULL));
  assert_ok(shm_dict_get(d, S("k"), buf, sizeof buf, &n));
  assert_int_equal(n, 3);
  for (int i = 0; i < 500; i++)
    assert_ok(shm_dict_update(d, S("k"), append_bang, NULL));
  assert_ok(shm_dict_get(d, S("k"), buf, sizeof buf, &n));
  assert_int_equal(n, 503);
  assert_int_equal(buf[502], '!');
  assert_int_equal(shm_dict_update(d, S("k"), refuse, NULL), 42);
  assert_code(shm_dict_update(d, S("k"), too_long, NULL), SHMVAL_EINVAL);
  assert_ok(shm_dict_get(d, S("k"), buf, sizeof buf, &n));
  assert_int_equal(n, 503); /* unchanged by either */
  assert_int_equal(shm_dict_update(d, S("absent"), refuse, NULL), 42);
  assert_int_equal(shm_dict_contains(d, S("absent")), 0);
  assert_code(shm_dict_update(d, S("k"), NULL, NULL), SHMVAL_EINVAL);
  assert_ok(shm_dict_destroy(d));

  d = mk(SHMVAL_INT);
  int v;
  assert_ok(shm_dict_update(d, S("x"), triple, NULL));
  assert_ok(shm_dict_update(d, S("x"), triple, NULL));
  assert_ok(shm_dict_get(d, S("x"), &v, sizeof v, NULL));
  assert_int_equal(v, 4);
  assert_ok(shm_dict_destroy(d));
}

typedef struct seen {
  shm_dict *d;
  int count;
  long sum;
  bool write_back;
} seen;

static int visit(const void *key, size_t klen, const void *val, size_t vlen, void *ctx) {
  seen *s = ctx;
  int k, v;
  char kb[32];
  memcpy(kb, key, klen);
  kb[klen] = '\0';
  if (sscanf(kb, "key%d", &k) != 1 || vlen != sizeof v)
    return -1000;
  memcpy(&v, val, sizeof v);
  if (v != k * 2)
    return -1001;
  s->count++;
  s->sum += k;
  /* Calling back into the dict is allowed, even writes that resize it. */
  if (s->write_back) {
    char nk[32];
    int nv = (k + 100000) * 2;
    snprintf(nk, sizeof nk, "key%d", k + 100000);
    if (shm_dict_set(s->d, nk, strlen(nk), &nv, sizeof nv) != 0)
      return -1002;
  }
  return 0;
}

static int stop_at_3(const void *key, size_t klen, const void *val, size_t vlen, void *ctx) {
  (void)key, (void)klen, (void)val, (void)vlen;
  return ++*(int *)ctx == 3 ? 77 : 0;
}

static void test_foreach(void **state) {
  (void)state;
  shm_dict *d = mk(SHMVAL_INT);
  char k[32];
  for (int i = 0; i < 1000; i++) {
    int v = i * 2;
    snprintf(k, sizeof k, "key%d", i);
    assert_ok(shm_dict_set(d, k, strlen(k), &v, sizeof v));
  }
  seen s = {.d = d};
  assert_ok(shm_dict_foreach(d, visit, &s));
  assert_int_equal(s.count, 1000);
  assert_int_equal(s.sum, 999L * 1000 / 2);
  s = (seen){.d = d, .write_back = true};
  assert_ok(shm_dict_foreach(d, visit, &s));
  assert_int_equal(s.count, 1000);
  assert_int_equal(len_of(d), 2000);
  int calls = 0;
  assert_int_equal(shm_dict_foreach(d, stop_at_3, &calls), 77);
  assert_int_equal(calls, 3);
  assert_code(shm_dict_foreach(d, NULL, NULL), SHMVAL_EINVAL);
  assert_ok(shm_dict_destroy(d));
}

/* From 8 slots to 200k keys and back: every key readable throughout, memory given back. */
static void test_grow_and_shrink(void **state) {
  (void)state;
  char name[64], k[32];
  shm_segment *sg;
  shm_segment_opts so = {.max_size = (size_t)256 << 20};
  assert_ok(shm_segment_create(&sg, test_name(name, sizeof name, "dgrow"), 1 << 20, &so));
  shm_opts o = {.segment = sg, .name = "big"};
  shm_dict *d;
  assert_ok(shm_dict_create(&d, SHMVAL_LLONG, &o));
  shm_segment_info before, peak, after;
  assert_ok(shm_segment_stat(sg, &before));
  const long long N = 200000;
  for (long long i = 0; i < N; i++) {
    snprintf(k, sizeof k, "k%lld", i);
    assert_ok(shm_dict_set(d, k, strlen(k), &i, sizeof i));
    if (i % 9973 == 0) {
      long long j = i / 2, v = -1;
      snprintf(k, sizeof k, "k%lld", j);
      assert_ok(shm_dict_get(d, k, strlen(k), &v, sizeof v, NULL));
      assert_int_equal(v, j);
    }
  }
  assert_int_equal(len_of(d), N);
  assert_ok(shm_segment_stat(sg, &peak));
  shm_check_report rep;
  assert_ok(shm_segment_check(sg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  for (long long i = 0; i < N; i++) {
    long long v = -1;
    snprintf(k, sizeof k, "k%lld", i);
    assert_ok(shm_dict_get(d, k, strlen(k), &v, sizeof v, NULL));
    assert_int_equal(v, i);
  }
  for (long long i = 10; i < N; i++) {
    snprintf(k, sizeof k, "k%lld", i);
    assert_ok(shm_dict_del(d, k, strlen(k)));
  }
  assert_int_equal(len_of(d), 10);
  assert_ok(shm_segment_stat(sg, &after));
  printf("# dict of %lld keys: %zu bytes used at the peak, %zu after deleting all but 10 (%zu "
         "empty)\n",
         N, peak.used, after.used, before.used);
  assert_true(after.used < before.used + 64 * 1024); /* the table shrank */
  assert_ok(shm_segment_check(sg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  assert_int_equal(rep.objects, 1);
  assert_ok(shm_object_remove(sg, "big"));
  assert_ok(shm_segment_check(sg, &rep));
  assert_int_equal(rep.objects, 0);
  assert_ok(shm_segment_close(sg));
  assert_ok(shm_segment_unlink(name));
}

static int count_kinds(const shm_object_info *info, void *ctx) {
  if (info->kind == SHMVAL_OBJ_DICT)
    ++*(int *)ctx;
  return 0;
}

static void test_named_and_types(void **state) {
  (void)state;
  char name[64];
  shm_segment *sg, *ro;
  assert_ok(shm_segment_create(&sg, test_name(name, sizeof name, "dnamed"), 1 << 20, NULL));
  shm_opts o = {.segment = sg, .name = "d"};
  shm_dict *d, *d2;
  assert_ok(shm_dict_create(&d, 0, &o));
  assert_code(shm_dict_create(&d2, 0, &o), SHMVAL_EEXIST);
  assert_ok(shm_dict_set(d, S("hello"), "world", 5));
  shm_value *v;
  assert_code(shm_value_open(&v, sg, "d", 0), SHMVAL_ETYPE);
  shm_opts vo = {.segment = sg, .name = "v"};
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &vo));
  assert_code(shm_dict_open(&d2, sg, "v"), SHMVAL_ETYPE);
  assert_code(shm_dict_open(&d2, sg, "nope"), SHMVAL_ENOENT);
  assert_ok(shm_dict_open(&d2, sg, "d"));
  char buf[16];
  size_t n;
  assert_ok(shm_dict_get(d2, S("hello"), buf, sizeof buf, &n));
  assert_memory_equal(buf, "world", 5);
  int dicts = 0;
  assert_ok(shm_segment_foreach(sg, count_kinds, &dicts));
  assert_int_equal(dicts, 1);
  shm_segment_info info;
  assert_ok(shm_segment_stat(sg, &info));
  assert_int_equal(info.objects, 2);
  /* Read-only: reads work, writes are refused with nothing changed. */
  shm_segment_opts roo = {.flags = SHMVAL_RDONLY};
  assert_ok(shm_segment_open(&ro, name, &roo));
  shm_dict *dr;
  assert_ok(shm_dict_open(&dr, ro, "d"));
  assert_ok(shm_dict_get(dr, S("hello"), buf, sizeof buf, &n));
  assert_int_equal(shm_dict_contains(dr, S("hello")), 1);
  assert_ok(shm_dict_len(dr, &n));
  assert_int_equal(n, 1);
  assert_code(shm_dict_set(dr, S("x"), "y", 1), SHMVAL_EACCES);
  assert_code(shm_dict_del(dr, S("hello")), SHMVAL_EACCES);
  assert_code(shm_dict_clear(dr), SHMVAL_EACCES);
  assert_code(shm_dict_destroy(dr), SHMVAL_EACCES);
  assert_ok(shm_segment_close(ro));
  /* A destroyed dict's handles are stale. */
  assert_ok(shm_dict_destroy(d));
  assert_code(shm_dict_get(d2, S("hello"), buf, sizeof buf, &n), SHMVAL_ESTALE);
  assert_code(shm_dict_set(d2, S("hello"), "x", 1), SHMVAL_ESTALE);
  assert_code(shm_dict_destroy(d2), SHMVAL_ESTALE);
  assert_code(shm_dict_len((shm_dict *)(void *)v, &n), SHMVAL_EINVAL);
  assert_code(shm_dict_get(NULL, S("a"), buf, 1, NULL), SHMVAL_EINVAL);
  shm_check_report rep;
  assert_ok(shm_segment_check(sg, &rep));
  assert_int_equal(rep.leaked_blocks, 0);
  assert_ok(shm_value_destroy(v));
  assert_ok(shm_segment_close(sg));
  assert_ok(shm_segment_unlink(name));
}

/* ------------------------------------------------------------------------ */
/* Concurrency. */

#define PROCS 4
#define PER_PROC 5000

/* Child @p id writes its keys, reading a neighbour's as they appear. */
static int writer_child(shm_dict *d, int id) {
  char k[32];
  for (int i = 0; i < PER_PROC; i++) {
    long long v = (long long)id * 1000000 + i, got;
    snprintf(k, sizeof k, "p%d-%d", id, i);
    int src = shm_dict_set(d, k, strlen(k), &v, sizeof v);
    if (src != 0) {
      fprintf(stderr, "child %d: set %s: %s\n", id, k, shmval_err_name(src));
      return 1;
    }
    /* Read back a key of this child's own and one of a neighbour's (present or not). */
    if (shm_dict_get(d, k, strlen(k), &got, sizeof got, NULL) != 0 || got != v)
      return 2;
    snprintf(k, sizeof k, "p%d-%d", (id + 1) % PROCS, i / 2);
    int rc = shm_dict_get(d, k, strlen(k), &got, sizeof got, NULL);
    if (rc == 0 && got != (long long)((id + 1) % PROCS) * 1000000 + i / 2)
      return 3;
    if (rc != 0 && rc != SHMVAL_ENOENT)
      return 4;
    if (i % 3 == 0) {
      snprintf(k, sizeof k, "p%d-%d", id, i);
      if (shm_dict_del(d, k, strlen(k)) != 0 || shm_dict_set(d, k, strlen(k), &v, sizeof v) != 0)
        return 5;
    }
  }
  return 0;
}

/* An arena dict shared with forked children: 4 processes write at once, the parent sees all. */
static void test_processes(void **state) {
  (void)state;
  shm_dict *d = mk(SHMVAL_LLONG);
  pid_t pid[PROCS];
  for (int p = 0; p < PROCS; p++) {
    pid[p] = fork();
    if (pid[p] == 0)
      _exit(writer_child(d, p));
  }
  for (int p = 0; p < PROCS; p++)
    assert_int_equal(reap(pid[p]), 0);
  assert_int_equal(len_of(d), PROCS * PER_PROC);
  char k[32];
  for (int p = 0; p < PROCS; p++)
    for (int i = 0; i < PER_PROC; i++) {
      long long v = -1;
      snprintf(k, sizeof k, "p%d-%d", p, i);
      assert_ok(shm_dict_get(d, k, strlen(k), &v, sizeof v, NULL));
      assert_int_equal(v, (long long)p * 1000000 + i);
    }
  assert_ok(shm_dict_destroy(d));
}

/* Counting with shm_dict_add from several processes: nothing lost. */
static void test_concurrent_add(void **state) {
  (void)state;
  shm_dict *d = mk(SHMVAL_LONG);
  pid_t pid[PROCS];
  for (int p = 0; p < PROCS; p++) {
    pid[p] = fork();
    if (pid[p] == 0) {
      long one = 1;
      char k[16];
      for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "w%d", i % 50);
        if (shm_dict_add(d, k, strlen(k), &one, NULL) != 0)
          _exit(1);
      }
      _exit(0);
    }
  }
  for (int p = 0; p < PROCS; p++)
    assert_int_equal(reap(pid[p]), 0);
  long total = 0;
  char k[16];
  for (int i = 0; i < 50; i++) {
    long v;
    snprintf(k, sizeof k, "w%d", i);
    assert_ok(shm_dict_get(d, k, strlen(k), &v, sizeof v, NULL));
    assert_int_equal(v, PROCS * 20000 / 50);
    total += v;
  }
  assert_int_equal(total, PROCS * 20000);
  assert_ok(shm_dict_destroy(d));
}

/* A value that says whether it is whole: every byte equals the first, and the length matches. */
static bool whole(const unsigned char *p, size_t n) {
  if (n < 8)
    return false;
  uint64_t len;
  memcpy(&len, p, 8);
  if (len != n)
    return false;
  for (size_t i = 8; i < n; i++)
    if (p[i] != p[8])
      return false;
  return true;
}

static void fill(unsigned char *p, size_t n, unsigned char b) {
  uint64_t len = n;
  memcpy(p, &len, 8);
  memset(p + 8, b, n - 8);
}

/*
 * No torn values: a 1 MiB blob (and smaller ones, slot-sized included)
 * rewritten in a loop by one process while another reads and checks it.
 */
static void test_no_torn_values(void **state) {
  (void)state;
  const size_t MAX = (size_t)1 << 20;
  shm_dict *d = mk(0);
  static unsigned char w[(size_t)1 << 20]; /* static: a forked child leaks nothing */
  fill(w, MAX, 0);
  assert_ok(shm_dict_set(d, S("blob"), w, MAX));
  pid_t pid = fork();
  if (pid == 0) {
    /* The reader process: 1.5 s of reads, its verdict in the exit code. */
    unsigned char *buf = malloc(MAX);
    long reads = 0, bad = 0;
    double end = now_s() + 1.5;
    while (now_s() < end) {
      size_t n;
      int rc = shm_dict_get(d, S("blob"), buf, MAX, &n);
      if (rc != 0 || !whole(buf, n)) {
        if (bad++ == 0)
          fprintf(stderr, "reader: %s, %zu bytes, whole: %d\n", shmval_err_name(rc), n,
                  rc == 0 && whole(buf, n));
      }
      reads++;
    }
    free(buf); /* valgrind checks the child for leaks too */
    _exit(bad != 0 ? 1 : reads < 3 ? 2 : 0);
  }
  size_t sizes[] = {MAX, 8, 9, 16 - 4, 100, 4096, MAX / 2 + 3};
  double end = now_s() + 1.6;
  for (unsigned i = 0; now_s() < end; i++) {
    size_t n = sizes[i % 7];
    fill(w, n, (unsigned char)i);
    assert_ok(shm_dict_set(d, S("blob"), w, n));
  }
  assert_int_equal(reap(pid), 0);
  assert_ok(shm_dict_destroy(d));
}

/* Threads: readers of keys that writers keep rewriting, deleting and adding (TSan runs this). */
typedef struct th_ctx {
  shm_dict *d;
  _Atomic bool stop;
  _Atomic long bad, reads;
} th_ctx;

static void *th_writer(void *arg) {
  th_ctx *t = arg;
  unsigned char v[200];
  char k[16];
  for (unsigned i = 0; !atomic_load(&t->stop); i++) {
    size_t n = 8 + (i * 37) % 190;
    fill(v, n, (unsigned char)i);
    snprintf(k, sizeof k, "t%u", i % 300);
    if (i % 5 == 4)
      (void)shm_dict_del(t->d, k, strlen(k));
    else if (shm_dict_set(t->d, k, strlen(k), v, n) != 0)
      atomic_fetch_add(&t->bad, 1);
  }
  return NULL;
}

static void *th_reader(void *arg) {
  th_ctx *t = arg;
  unsigned char v[200];
  char k[16];
  for (unsigned i = 0; !atomic_load(&t->stop); i++) {
    size_t n;
    snprintf(k, sizeof k, "t%u", (i * 7) % 300);
    int rc = shm_dict_get(t->d, k, strlen(k), v, sizeof v, &n);
    if ((rc == 0 && !whole(v, n)) || (rc != 0 && rc != SHMVAL_ENOENT))
      atomic_fetch_add(&t->bad, 1);
    atomic_fetch_add(&t->reads, 1);
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  th_ctx t = {.d = mk(0)};
  pthread_t th[4];
  pthread_create(&th[0], NULL, th_writer, &t);
  pthread_create(&th[1], NULL, th_writer, &t);
  pthread_create(&th[2], NULL, th_reader, &t);
  pthread_create(&th[3], NULL, th_reader, &t);
  /* A second, and at least 100 reads (valgrind runs one thread at a time: it may take longer). */
  sleep_s(1.0);
  for (int i = 0; i < 600 && atomic_load(&t.reads) <= 100; i++)
    sleep_s(0.1);
  atomic_store(&t.stop, true);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&t.bad), 0);
  assert_true(atomic_load(&t.reads) > 100);
  assert_ok(shm_dict_destroy(t.d));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic_mapping),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_arena_segment_reused),
      cmocka_unit_test(test_full_slot_keys),
      cmocka_unit_test(test_enobufs),
      cmocka_unit_test(test_typed),
      cmocka_unit_test(test_update),
      cmocka_unit_test(test_foreach),
      cmocka_unit_test(test_grow_and_shrink),
      cmocka_unit_test(test_named_and_types),
      cmocka_unit_test(test_processes),
      cmocka_unit_test(test_concurrent_add),
      cmocka_unit_test(test_no_torn_values),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
