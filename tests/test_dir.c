/*
 * The name directory, white-box (src/dir.c): growth, tombstones and their
 * reuse, the lock-free lookup's sequence-lock retry, and the verifier.
 */
#include "helpers.h"

#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

static char nbuf[96];
static shm_segment *seg;

static int setup(void **state) {
  (void)state;
  return shm_segment_create(&seg, test_name(nbuf, sizeof nbuf, "dir"), 4 * MIB, NULL);
}

static int teardown(void **state) {
  (void)state;
  return shm_segment_close(seg) || shm_segment_unlink(nbuf);
}

/* Create the Values n<from>..n<to-1>. */
static void create_names(int from, int to, shm_value **v) {
  char name[32];
  for (int i = from; i < to; i++) {
    snprintf(name, sizeof name, "n%d", i);
    assert_ok(shm_value_create(&v[i], SHMVAL_INT, &i, &(shm_opts){.segment = seg, .name = name}));
  }
}

/* Look n<i> up without the lock: 0 and its object, or the code. */
static int lookup(int i, bool can_lock, shmval__obj **o) {
  char name[32];
  shmval__obj hdr;
  snprintf(name, sizeof name, "n%d", i);
  return shmval__dir_lookup(seg->base, &seg->dir_cache, name, strlen(name), can_lock, o, &hdr);
}

static void verify(uint64_t want_named) {
  uint64_t named = 0;
  shmval__problem pb = {0};
  assert_ok(shmval__dir_lock(seg->base));
  int rc = shmval__dir_verify(seg->base, &named, &pb);
  shmval__dir_unlock(seg->base);
  if (rc != 0)
    fail_msg("directory verify: %s", pb.what);
  assert_int_equal(named, want_named);
}

/* The table doubles as names are added; every name is found after each growth. */
static void test_growth(void **state) {
  (void)state;
  enum { N = 200 };
  shm_value *v[N];
  uint64_t cap0 = seg->base->dir_cap;
  assert_int_equal(cap0, 16); /* DIR_MIN */
  /* Each name is looked up as soon as it is made, through a handle that remembers the table. */
  char name[32];
  for (int i = 0; i < N; i++) {
    shmval__obj *o;
    snprintf(name, sizeof name, "n%d", i);
    assert_ok(shm_value_create(&v[i], SHMVAL_INT, &i, &(shm_opts){.segment = seg, .name = name}));
    assert_ok(lookup(i, false, &o));
    assert_ok(lookup(i / 2, false, &o));
    assert_ptr_equal(o, shmval__obj_of(v[i / 2]));
  }
  assert_true(seg->base->dir_cap >= N * 4 / 3);
  assert_int_equal(seg->base->dir_count, N);
  assert_int_equal(seg->base->dir_gen & 1, 0);
  for (int i = 0; i < N; i++) {
    shmval__obj *o;
    assert_ok(lookup(i, false, &o));
    assert_ptr_equal(o, shmval__obj_of(v[i]));
  }
  verify(N);
  for (int i = 0; i < N; i++)
    assert_ok(shm_value_destroy(v[i]));
  verify(0);
}

/* A removal leaves a tombstone that later probes pass over and an insert reuses. */
static void test_tombstones(void **state) {
  (void)state;
  enum { N = 10 };
  shm_value *v[N];
  shmval__obj *o;
  uint64_t tombs0 = seg->base->dir_tombs;
  create_names(0, N, v);
  uint64_t cap = seg->base->dir_cap;
  for (int i = 0; i < N; i += 2)
    assert_ok(shm_value_destroy(v[i]));
  assert_int_equal(seg->base->dir_tombs, tombs0 + N / 2);
  for (int i = 0; i < N; i++)
    assert_code(lookup(i, false, &o), i % 2 == 0 ? SHMVAL_ENOENT : 0);
  verify(N / 2);
  /* Re-creating the removed names reuses tombstones instead of growing. */
  for (int i = 0; i < N; i += 2) {
    char name[32];
    snprintf(name, sizeof name, "n%d", i);
    assert_ok(shm_value_create(&v[i], SHMVAL_INT, &i, &(shm_opts){.segment = seg, .name = name}));
  }
  assert_int_equal(seg->base->dir_cap, cap);
  assert_true(seg->base->dir_tombs < tombs0 + N / 2);
  verify(N);
  for (int i = 0; i < N; i++)
    assert_ok(shm_value_destroy(v[i]));
}

/*
 * While the generation is odd (a writer mid-change), a lock-free lookup
 * retries, then gives up with EAGAIN; one that may lock takes the lock and
 * finds the name.
 */
static void test_sequence_lock_retry(void **state) {
  (void)state;
  shm_value *v[1];
  shmval__obj *o;
  create_names(0, 1, v);
  assert_ok(lookup(0, false, &o));
  __atomic_fetch_add(&seg->base->dir_gen, 1, __ATOMIC_RELEASE); /* "a writer is at work" */
  assert_code(lookup(0, false, &o), SHMVAL_EAGAIN);
  assert_ok(lookup(0, true, &o));
  assert_ptr_equal(o, shmval__obj_of(v[0]));
  __atomic_fetch_add(&seg->base->dir_gen, 1, __ATOMIC_RELEASE);
  assert_ok(lookup(0, false, &o));
  /* A generation that moves during the probe also makes it retry. */
  assert_ok(shm_value_destroy(v[0]));
  assert_code(lookup(0, false, &o), SHMVAL_ENOENT);
}

/*
 * A lookup remembers the table it checked in the handle, with the generation
 * it read it under (bits 40-63 of the word) and its capacity's log2 (bits
 * 0-5), and uses the word only while the generation is the same: a word from
 * another generation that names a smaller table is not followed.
 */
static void test_table_cache(void **state) {
  (void)state;
  enum { N = 100 };
  shm_value *v[N];
  shmval__obj *o;
  create_names(0, N, v);
  seg->dir_cache = 0;
  assert_ok(lookup(0, false, &o));
  uint64_t c = seg->dir_cache, cap = seg->base->dir_cap;
  assert_true(c != 0);
  assert_int_equal(UINT64_C(1) << (c & 63), cap);
  assert_int_equal(c >> 40, seg->base->dir_gen & 0xffffff);
  /* The same table from a generation before: 16 entries said, which would miss most names. */
  seg->dir_cache = ((c ^ (UINT64_C(2) << 40)) & ~UINT64_C(63)) | 4;
  for (int i = 0; i < N; i++) {
    assert_ok(lookup(i, false, &o));
    assert_ptr_equal(o, shmval__obj_of(v[i]));
  }
  assert_int_equal(seg->dir_cache, c); /* checked again and remembered */
  /*
   * A damaged directory offset that differs from the remembered one only in
   * bits the word keeps elsewhere (each bit from 40 up) is refused, not
   * followed out of the mapping.
   */
  uint64_t off = seg->base->dir_off;
  for (int bit = 40; bit < 64; bit++) {
    seg->base->dir_off = off + (UINT64_C(1) << bit);
    assert_code(lookup(0, false, &o), SHMVAL_EAGAIN);
    seg->dir_cache = c;
  }
  seg->base->dir_off = off;
  assert_ok(lookup(0, false, &o));
  for (int i = 0; i < N; i++)
    assert_ok(shm_value_destroy(v[i]));
}

/* The verifier catches a counter that disagrees with the table. */
static void test_verify_counts(void **state) {
  (void)state;
  shm_value *v[3];
  create_names(0, 3, v);
  verify(3);
  seg->base->dir_tombs++;
  uint64_t named = 0;
  shmval__problem pb = {0};
  assert_ok(shmval__dir_lock(seg->base));
  assert_code(shmval__dir_verify(seg->base, &named, &pb), SHMVAL_ECORRUPT);
  seg->base->dir_tombs--;
  shmval__dir_unlock(seg->base);
  assert_non_null(pb.what);
  verify(3);
  for (int i = 0; i < 3; i++)
    assert_ok(shm_value_destroy(v[i]));
}

/*
 * The hash reads a short tail with overlapping loads: every byte of a name of
 * any length must still count, and so must the length and the seed.
 */
static void test_hash_every_byte(void **state) {
  (void)state;
  char a[48], b[48];
  for (size_t n = 1; n <= 40; n++) {
    for (size_t i = 0; i < n; i++)
      a[i] = (char)('a' + (i * 7) % 26);
    uint64_t h = shmval__hash(0, a, n);
    for (size_t i = 0; i < n; i++) {
      memcpy(b, a, n);
      b[i] = (char)(b[i] ^ 0x20);
      assert_true(shmval__hash(0, b, n) != h);
    }
    assert_true(shmval__hash(0, a, n - 1) != h);
    assert_true(shmval__hash(1, a, n) != h);
  }
}

/* @p len bytes of a name and its terminator, ending at the last byte of page @p page. */
static char *name_at_page_end(char *page, size_t ps, size_t len, char fill) {
  char *at = page + ps - (len + 1);
  for (size_t i = 0; i < len; i++)
    at[i] = (char)(fill + (i * 5) % 23);
  at[len] = '\0';
  return at;
}

/*
 * The lock-free name compare reads the stored name a word at a time and the
 * caller's with loads that overlap: at every length and every alignment in a
 * word it must see every byte, the terminator included, and read neither name
 * past its end (each ends at a page whose neighbour is inaccessible).
 */
static void test_name_compare_every_byte(void **state) {
  (void)state;
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  char *m = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  assert_int_equal(mprotect(m + ps, ps, PROT_NONE), 0);
  assert_int_equal(mprotect(m + 3 * ps, ps, PROT_NONE), 0);
  char *stored_page = m, *user_page = m + 2 * ps;
  for (size_t len = 1; len <= SHMVAL_NAME_MAX; len++) {
    char *user = name_at_page_end(user_page, ps, len, 'a');
    /* Stored at each alignment in a word inside the page, then at the page's end. */
    for (size_t skip = 0; skip <= 8; skip++) {
      char *stored = skip < 8 ? m + 8 + skip : name_at_page_end(stored_page, ps, len, 'a');
      memmove(stored, user, len + 1);
      assert_true(shmval__obj_name_is(stored, user, len));
      for (size_t i = 0; i <= len; i++) {
        char keep = stored[i];
        stored[i] = (char)(keep ^ (i == len ? 'x' : 0x01));
        assert_false(shmval__obj_name_is(stored, user, len));
        stored[i] = keep;
      }
      if (len > 1) {
        char *shorter = name_at_page_end(user_page, ps, len - 1, 'a');
        assert_false(shmval__obj_name_is(stored, shorter, len - 1));
        user = name_at_page_end(user_page, ps, len, 'a');
      }
    }
  }
  munmap(m, 4 * ps);
}

/*
 * Through the API: names that are prefixes of each other, stored after
 * payloads of 1 to 8 bytes (so at every alignment), each found as itself.
 */
static void test_prefix_names(void **state) {
  (void)state;
  char name[SHMVAL_NAME_MAX + 1];
  shm_value *v;
  for (int k = 0; k < 24; k++) {
    unsigned char rec[8] = {(unsigned char)k};
    memset(name, 'p', (size_t)k + 1);
    name[k + 1] = '\0';
    assert_ok(
        shm_value_create_record(&v, (size_t)k % 8 + 1, 1, rec,
                                &(shm_opts){.segment = seg, .name = name, .flags = SHMVAL_RAW}));
  }
  for (int k = 0; k < 24; k++) {
    unsigned char rec[8] = {0};
    memset(name, 'p', (size_t)k + 1);
    name[k + 1] = '\0';
    assert_ok(shm_value_open(&v, seg, name, SHMVAL_RECORD));
    assert_ok(shm_value_get(v, rec));
    assert_int_equal(rec[0], k);
  }
  memset(name, 'p', 25);
  name[25] = '\0';
  assert_int_equal(shm_value_open(&v, seg, name, SHMVAL_RECORD), SHMVAL_ENOENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hash_every_byte),
      cmocka_unit_test(test_name_compare_every_byte),
      cmocka_unit_test_setup_teardown(test_prefix_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_growth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tombstones, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sequence_lock_retry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_table_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_verify_counts, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
