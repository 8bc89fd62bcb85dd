/*
 * Segments that grow (shm_segment_opts.max_size): several processes, forked
 * and exec'd, allocating while the segment grows under them; the limits; a
 * damaged header; a /dev/shm too small to grow into.
 */
#include "helpers.h"

#include "grow_work.h"
#include "layout.h" /* header field offsets, for the damaged-header cases */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define PER_PROC 64 /* 1 MiB arrays per process: 4 processes, 256 MiB */

/* The file's apparent size and allocated bytes. */
static void file_sizes(const char *name, size_t *apparent, size_t *allocated) {
  char path[300];
  struct stat st;
  snprintf(path, sizeof path, "/dev/shm%s", name);
  assert_int_equal(stat(path, &st), 0);
  *apparent = (size_t)st.st_size;
  *allocated = (size_t)st.st_blocks * 512u;
}

typedef struct share {
  shm_segment *seg;
  int id;
} share;

static int forked_share(void *arg) {
  share *sh = arg;
  return grow_work(sh->seg, sh->id, PER_PROC);
}

static pid_t exec_share(const char *name, int id) {
  char ids[16], count[16];
  snprintf(ids, sizeof ids, "%d", id);
  snprintf(count, sizeof count, "%d", PER_PROC);
  const char *args[] = {PEER_PATH, "grow", name, ids, count, NULL};
  int to, from;
  pid_t pid = start_peer(args, &to, &from);
  close(to);
  close(from);
  return pid;
}

/*
 * A segment created at 64 KiB with a maximum of 1 GiB: two forked and two
 * exec'd processes allocate until 256 MiB is in use, each writing and then
 * verifying its own pattern. Handles taken before the first grow still work
 * after the last; the file's allocated blocks follow the committed size.
 */
static void test_grow_four_processes(void **state) {
  (void)state;
  char name[96];
  shm_segment *s;
  shm_segment_info info;
  shm_value *count;
  shm_array *early;
  size_t apparent, allocated;
  shm_segment_opts so = {.max_size = GIB};
  test_name(name, sizeof name, "grow4");
  assert_ok(shm_segment_create(&s, name, 64 * KIB, &so));
  assert_ok(shm_segment_stat(s, &info));
  assert_int_equal(info.size, 64 * KIB);
  assert_int_equal(info.max_size, GIB);
  file_sizes(name, &apparent, &allocated);
  assert_int_equal(apparent, GIB);
  assert_true(allocated >= 64 * KIB && allocated <= 128 * KIB);
  shm_opts o = {.segment = s, .name = "count", .flags = SHMVAL_ATOMIC};
  assert_ok(shm_value_create(&count, SHMVAL_LONG, NULL, &o));
  o.name = "early";
  o.flags = 0;
  assert_ok(shm_array_create(&early, SHMVAL_INT, 16, (int[16]){1, 2, 3, 4}, &o));

  share sh[2] = {{s, 0}, {s, 1}};
  pid_t pids[4] = {spawn(forked_share, &sh[0]), spawn(forked_share, &sh[1]), exec_share(name, 2),
                   exec_share(name, 3)};
  for (int i = 0; i < 4; i++) {
    int rc = reap(pids[i]);
    if (rc != 0)
      fail_msg("process %d of the growth test exited with %d", i, rc);
  }

  /* Every handle taken before the first grow still works, and sees everything. */
  long n = 0;
  assert_ok(shm_value_get(count, &n));
  assert_int_equal(n, 4 * PER_PROC);
  int x;
  assert_ok(shm_array_get(early, 3, &x));
  assert_int_equal(x, 4);
  assert_ok(shm_array_set(early, 15, &(int){99}));
  for (int id = 0; id < 4; id++)
    for (int i = 0; i < PER_PROC; i++)
      if (grow_verify(s, id, i) != 0)
        fail_msg("array p%d-%d lost its pattern", id, i);

  assert_ok(shm_segment_stat(s, &info));
  assert_true(info.used >= 256 * MIB);
  assert_true(info.size >= info.used && info.size <= 512 * MIB);
  assert_int_equal(info.max_size, GIB);
  /*
   * The blocks follow the committed size, not the maximum. (Except under
   * valgrind: the leak check of each forked child reads every page mapped,
   * and a read of a hole in a tmpfs file allocates it.)
   */
  file_sizes(name, &apparent, &allocated);
  assert_int_equal(apparent, GIB);
  const char *pre = getenv("LD_PRELOAD");
  bool valgrind = pre != NULL && strstr(pre, "vgpreload") != NULL;
  if (allocated < info.size || (allocated > info.size + MIB && !valgrind))
    fail_msg("%zu bytes allocated for %zu committed", allocated, info.size);
  print_message("4 processes: %zu bytes used, %zu committed, %zu allocated, %zu maximum\n",
                info.used, info.size, allocated, info.max_size);
  shm_check_report r;
  assert_ok(shm_segment_check(s, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

/* Fill @p s with 16 KiB arrays until an allocation fails: how many fitted; *rc the failure. */
static int fill_up(shm_segment *s, int *rc) {
  shm_opts o = {.segment = s, .flags = SHMVAL_RAW};
  shm_array *a;
  int n = 0;
  while ((*rc = shm_array_create(&a, SHMVAL_CHAR, 16 * KIB, NULL, &o)) == 0)
    n++;
  return n;
}

static void test_grow_limits(void **state) {
  (void)state;
  char name[96];
  shm_segment *s;
  shm_segment_info info;
  size_t apparent, allocated;
  test_name(name, sizeof name, "limits");
  /* A maximum below the size, or beyond what is mapped at most. */
  assert_code(shm_segment_create(&s, name, MIB, &(shm_segment_opts){.max_size = MIB / 2}),
              SHMVAL_EINVAL);
  assert_code(shm_segment_create(&s, name, MIB, &(shm_segment_opts){.max_size = (size_t)1 << 41}),
              SHMVAL_EINVAL);
  assert_false(shm_exists(name));

  /* A fixed segment (no maximum) never grows. */
  int rc;
  assert_ok(shm_segment_create(&s, name, 256 * KIB, NULL));
  assert_ok(shm_segment_stat(s, &info));
  assert_int_equal(info.max_size, info.size);
  assert_true(fill_up(s, &rc) > 0);
  assert_code(rc, SHMVAL_ENOSPC);
  assert_ok(shm_segment_stat(s, &info));
  assert_int_equal(info.size, 256 * KIB);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));

  /*
   * A growable one grows to its maximum, not beyond, and keeps working there:
   * a request that cannot fit does not commit the rest; small ones do.
   */
  assert_ok(shm_segment_create(&s, name, 64 * KIB, &(shm_segment_opts){.max_size = MIB + 1}));
  int fitted = fill_up(s, &rc);
  assert_code(rc, SHMVAL_ENOSPC);
  assert_true(fitted > 50); /* 1 MiB + a page of 16 KiB arrays, less the tables */
  assert_ok(shm_segment_stat(s, &info));
  assert_true(info.size <= MIB + 4096);
  shm_value *v;
  shm_opts raw = {.segment = s, .flags = SHMVAL_RAW};
  while ((rc = shm_value_create(&v, SHMVAL_LLONG, NULL, &raw)) == 0)
    ;
  assert_code(rc, SHMVAL_ENOSPC);
  assert_ok(shm_segment_inspect(name, &info));
  assert_int_equal(info.size, MIB + 4096);
  assert_int_equal(info.max_size, MIB + 4096);
  file_sizes(name, &apparent, &allocated);
  assert_int_equal(apparent, MIB + 4096);
  assert_code(shm_value_create(&v, SHMVAL_LLONG, NULL, &(shm_opts){.segment = s, .name = "v"}),
              SHMVAL_ENOSPC);
  shm_check_report r;
  assert_ok(shm_segment_check(s, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

/* Overwrite 8 bytes at @p off of the segment file @p name; the old bytes in *old. */
static void poke(const char *name, size_t off, uint64_t v, uint64_t *old) {
  char path[300];
  snprintf(path, sizeof path, "/dev/shm%s", name);
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  if (old != NULL)
    assert_int_equal(pread(fd, old, 8, (off_t)off), 8);
  assert_int_equal(pwrite(fd, &v, 8, (off_t)off), 8);
  close(fd);
}

/* Sizes out of order in the header: refused at open, reported by inspect. */
static void test_grow_damaged_sizes(void **state) {
  (void)state;
  char name[96];
  shm_segment *s;
  shm_segment_info info;
  test_name(name, sizeof name, "sizes");
  assert_ok(shm_segment_create(&s, name, 64 * KIB, &(shm_segment_opts){.max_size = MIB}));
  assert_ok(shm_segment_close(s));
  struct {
    size_t at;
    uint64_t v;
  } cases[] = {
      {offsetof(shmval__seg, size), 2 * MIB},        /* committed beyond the maximum */
      {offsetof(shmval__seg, size), 8 * KIB},        /* the heap beyond the committed size */
      {offsetof(shmval__seg, heap_end), 128 * KIB},  /* the same, the other way */
      {offsetof(shmval__seg, max_size), MIB - 4096}, /* a maximum that is not the file's size */
      {offsetof(shmval__seg, max_size), (uint64_t)-4096}, /* or beyond the address space */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t old;
    poke(name, cases[i].at, cases[i].v, &old);
    assert_code(shm_segment_open(&s, name, NULL), SHMVAL_ECORRUPT);
    assert_ok(shm_segment_inspect(name, &info));
    assert_int_equal(info.state, SHMVAL_SEG_CORRUPT);
    poke(name, cases[i].at, old, NULL);
  }
  assert_ok(shm_segment_open(&s, name, NULL));
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

#define TINY_FS "size=3m"
#define CHUNK (256 * KIB)

/* In the private /dev/shm: a reader attached before the growth reads every chunk. */
static int tiny_reader(shm_segment *s, int go_fd) {
  char c, name[32];
  if (read(go_fd, &c, 1) != 1)
    return 20;
  int n = c;
  for (int i = 0; i < n; i++) {
    shm_array *a;
    snprintf(name, sizeof name, "c%d", i);
    if (shm_array_open(&a, s, name, SHMVAL_UCHAR) != 0)
      return 21;
    const unsigned char *p = shm_array_ptr(a);
    for (size_t k = 0; k < CHUNK; k += 4096)
      if (p[k] != (unsigned char)i)
        return 22;
  }
  return shm_segment_close(s) == 0 ? 0 : 23;
}

/*
 * In a /dev/shm of 4 MiB: a segment allowed to grow to 64 MiB fills it, and
 * the allocation that finds no room gets SHMVAL_ENOSPC; everything made
 * before stays readable in every process (no SIGBUS), the segment keeps
 * working, and nothing is left behind.
 */
/*
 * In a child: a private /dev/shm of 3 MiB (0), or 77 without the rights to
 * make one. A fault kills the child (cmocka's handler, inherited, would carry
 * on with the parent's tests), so that the parent sees it.
 */
static int private_devshm(void) {
  signal(SIGBUS, SIG_DFL);
  signal(SIGSEGV, SIG_DFL);
  if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", "/dev/shm", "tmpfs", 0, TINY_FS) != 0)
    return 77;
  return 0;
}

static int tiny_devshm_grow(void *arg) {
  (void)arg;
  if (private_devshm() != 0)
    return 77;
  const char *name = "/shmval-test-tiny-grow";
  shm_segment *s;
  int go[2], rc;
  if (pipe(go) != 0 ||
      shm_segment_create(&s, name, 64 * KIB, &(shm_segment_opts){.max_size = 64 * MIB}) != 0)
    return 1;
  pid_t reader = fork();
  if (reader == 0)
    _exit(tiny_reader(s, go[0]));
  int n = 0;
  char cname[32];
  for (;; n++) {
    shm_array *a;
    snprintf(cname, sizeof cname, "c%d", n);
    rc = shm_array_create(&a, SHMVAL_UCHAR, CHUNK, NULL,
                          &(shm_opts){.segment = s, .name = cname, .flags = SHMVAL_RAW});
    if (rc != 0)
      break;
    memset(shm_array_ptr(a), n, CHUNK);
  }
  if (rc != SHMVAL_ENOSPC) {
    fprintf(stderr, "tiny /dev/shm: growth failed with %s, not SHMVAL_ENOSPC\n",
            shmval_err_name(rc));
    return 2;
  }
  shm_segment_info info;
  /*
   * Short of room for a whole grow step, a grow commits what the request
   * needs: the space fills (11 chunks; 8 if only whole steps were tried).
   */
  if (shm_segment_stat(s, &info) != 0 || info.size > 3 * MIB || n < 10) {
    fprintf(stderr, "tiny /dev/shm: %d chunks fitted, %zu bytes committed\n", n, info.size);
    return 3;
  }
  if (write(go[1], &(char){(char)n}, 1) != 1 || reap(reader) != 0)
    return 4;
  /* It keeps working: space freed is reused, and it is consistent. */
  shm_array *a;
  shm_check_report r;
  if (shm_object_remove(s, "c0") != 0 ||
      shm_array_create(&a, SHMVAL_UCHAR, CHUNK, NULL,
                       &(shm_opts){.segment = s, .name = "again", .flags = SHMVAL_RAW}) != 0 ||
      shm_segment_check(s, &r) != 0 || r.leaked_blocks != 0)
    return 5;
  if (shm_segment_close(s) != 0 || shm_segment_unlink(name) != 0)
    return 6;
  return access("/dev/shm/shmval-test-tiny-grow", F_OK) == 0 ? 7 : 0;
}

static void test_grow_no_space(void **state) {
  (void)state;
  int rc = reap(spawn(tiny_devshm_grow, NULL));
  if (rc == 77)
    skip(); /* needs root for a private /dev/shm */
  if (rc != 0)
    fail_msg("the tiny /dev/shm child exited with %d%s", rc, rc == 128 + SIGBUS ? " (SIGBUS)" : "");
}

/*
 * Space freed in a named segment stays reserved: a big block destroyed and
 * made again while another file took the rest of /dev/shm is written without
 * SIGBUS (its pages were given back to the file system until layout 6).
 */
static int tiny_devshm_reuse(void *arg) {
  (void)arg;
  if (private_devshm() != 0)
    return 77;
  const char *name = "/shmval-test-tiny-reuse";
  shm_segment *s;
  shm_array *a;
  shm_opts o = {.flags = SHMVAL_RAW};
  size_t apparent, before, after;
  if (shm_segment_create(&s, name, 2 * MIB, NULL) != 0)
    return 1;
  o.segment = s;
  file_sizes(name, &apparent, &before);
  if (shm_array_create(&a, SHMVAL_UCHAR, MIB, NULL, &o) != 0 || shm_array_destroy(a) != 0)
    return 2;
  file_sizes(name, &apparent, &after);
  if (after < before) {
    fprintf(stderr, "freeing 1 MiB gave %zu bytes of the segment's file back\n", before - after);
    return 3;
  }
  /* Another file takes what is left of /dev/shm. */
  int fd = shm_open("/shmval-test-tiny-filler", O_RDWR | O_CREAT | O_EXCL, 0600);
  for (size_t chunk = MIB; fd >= 0 && chunk >= 4096; chunk /= 2) {
    struct stat st;
    while (fstat(fd, &st) == 0 && posix_fallocate(fd, st.st_size, (off_t)chunk) == 0) {
    }
  }
  if (fd < 0 || shm_array_create(&a, SHMVAL_UCHAR, MIB, NULL, &o) != 0)
    return 4;
  memset(shm_array_ptr(a), 0x5a, MIB);
  close(fd);
  shm_unlink("/shmval-test-tiny-filler");
  return shm_segment_close(s) == 0 && shm_segment_unlink(name) == 0 ? 0 : 5;
}

static void test_freed_space_stays_reserved(void **state) {
  (void)state;
  int rc = reap(spawn(tiny_devshm_reuse, NULL));
  if (rc == 77)
    skip(); /* needs root for a private /dev/shm */
  if (rc != 0)
    fail_msg("the tiny /dev/shm child exited with %d%s", rc, rc == 128 + SIGBUS ? " (SIGBUS)" : "");
}

/* Threads of one process: writers grow the segment while readers open and read by name. */
#define T_WRITERS 3
#define T_ARRAYS 24
#define T_LEN (64 * 1024) /* ints: 256 KiB an array */

typedef struct thread_ctx {
  shm_segment *seg;
  int id, failures;
  _Atomic int *done;
} thread_ctx;

static void *writer_thread(void *arg) {
  thread_ctx *c = arg;
  char name[32];
  for (int i = 0; i < T_ARRAYS; i++) {
    shm_array *a;
    snprintf(name, sizeof name, "t%d-%d", c->id, i);
    shm_opts o = {.segment = c->seg, .name = name};
    if (shm_array_create(&a, SHMVAL_INT, T_LEN, NULL, &o) != 0 ||
        shm_array_set(a, T_LEN - 1, &(int){c->id * 1000 + i}) != 0)
      c->failures++;
  }
  atomic_fetch_add(c->done, 1);
  return NULL;
}

static void *reader_thread(void *arg) {
  thread_ctx *c = arg;
  char name[32];
  unsigned r = (unsigned)c->id;
  while (atomic_load(c->done) < T_WRITERS) {
    r = r * 1103515245u + 12345u;
    int w = (int)(r >> 8) % T_WRITERS, i = (int)(r >> 16) % T_ARRAYS, x = -1;
    shm_array *a;
    snprintf(name, sizeof name, "t%d-%d", w, i);
    if (shm_array_open(&a, c->seg, name, SHMVAL_INT) != 0)
      continue; /* not made yet */
    if (shm_array_length(a) != T_LEN || shm_array_get(a, T_LEN - 1, &x) != 0 ||
        (x != 0 && x != w * 1000 + i))
      c->failures++;
  }
  return NULL;
}

static void test_grow_threads(void **state) {
  (void)state;
  char name[96];
  shm_segment *s;
  _Atomic int done = 0;
  pthread_t t[T_WRITERS + 2];
  thread_ctx c[T_WRITERS + 2];
  test_name(name, sizeof name, "threads");
  assert_ok(shm_segment_create(&s, name, 64 * KIB, &(shm_segment_opts){.max_size = 256 * MIB}));
  for (int i = 0; i < T_WRITERS + 2; i++) {
    c[i] = (thread_ctx){s, i, 0, &done};
    assert_int_equal(
        pthread_create(&t[i], NULL, i < T_WRITERS ? writer_thread : reader_thread, &c[i]), 0);
  }
  for (int i = 0; i < T_WRITERS + 2; i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(c[i].failures, 0);
  }
  shm_segment_info info;
  assert_ok(shm_segment_stat(s, &info));
  assert_true(info.size >= T_WRITERS * T_ARRAYS * T_LEN * sizeof(int));
  shm_check_report r;
  assert_ok(shm_segment_check(s, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grow_limits),
      cmocka_unit_test(test_grow_threads),
      cmocka_unit_test(test_grow_damaged_sizes),
      cmocka_unit_test(test_grow_no_space),
      cmocka_unit_test(test_freed_space_stays_reserved),
      cmocka_unit_test(test_grow_four_processes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
