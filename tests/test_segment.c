/*
 * Named segments: lifecycle, names, security defaults, validation of what is
 * found in /dev/shm, attachment tracking and lifetime policies, with real
 * unrelated processes (the helper program is exec'd).
 */
#include "helpers.h"

#include "internal.h" /* for the white-box liveness test */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define MIB ((size_t)1 << 20)

static char nbuf[128];
#define NAME(tag) test_name(nbuf, sizeof nbuf, tag)

static void test_create_open_close(void **state) {
  (void)state;
  shm_segment *a, *b;
  shm_segment_info info;
  const char *name = NAME("basic");
  assert_ok(shm_segment_create(&a, name, MIB, NULL));
  assert_true(shm_exists(name));
  assert_string_equal(shm_segment_name(a), name);
  assert_ok(shm_segment_open(&b, name + 1, NULL)); /* "x" and "/x" are the same */
  assert_ok(shm_segment_stat(b, &info));
  assert_int_equal(info.size, MIB);
  assert_int_equal(info.attached, 2);
  assert_int_equal(info.objects, 0);
  assert_int_equal(info.flags, SHMVAL_PERSIST);
  assert_true(info.used + info.free < info.size);
  /* Observers are not counted; objects of every kind are. */
  shm_segment *obs;
  shm_segment_opts observe = {.flags = SHMVAL_OBSERVE};
  assert_ok(shm_segment_open(&obs, name, &observe));
  shm_lock *l;
  shm_sem *sem;
  shm_opts in_a = {.segment = a};
  assert_ok(shm_lock_create(&l, &in_a));
  assert_ok(shm_sem_create(&sem, 1, &in_a));
  assert_ok(shm_segment_stat(obs, &info));
  assert_int_equal(info.attached, 2);
  assert_int_equal(info.objects, 2);
  assert_ok(shm_segment_close(obs));
  assert_ok(shm_lock_destroy(l));
  assert_ok(shm_sem_destroy(sem));
  assert_ok(shm_segment_close(b));
  assert_ok(shm_segment_close(a));
  assert_true(shm_exists(name)); /* the default policy persists */
  assert_ok(shm_segment_unlink(name));
  assert_false(shm_exists(name));
  assert_code(shm_segment_open(&a, name, NULL), SHMVAL_ENOENT);
  assert_code(shm_segment_unlink(name), SHMVAL_ENOENT);
  assert_ok(shm_segment_close(NULL));
  assert_null(shm_segment_name(NULL));
}

/*
 * A named segment's own tables sit right after its header, the directory
 * first, then the attacher table, all in the first page: what every opener
 * reads and writes is in the one page it must touch anyway. The heap's free
 * lists come next, in its state block. The heap ends there at first, so
 * that making a segment writes no page past them; the first
 * allocation that needs more adds the rest of the committed size, and stat
 * counts it free throughout.
 */
static void test_tables_follow_header(void **state) {
  (void)state;
  shm_segment *a;
  shm_array *arr;
  shm_segment_info info;
  const char *name = NAME("tables");
  assert_ok(shm_segment_create(&a, name, 4 * MIB, NULL));
  const shmval__seg *h = a->base;
  assert_int_equal(h->dir_off, h->heap_start + SHMVAL__OBJ_HDR_OFF);
  uint64_t dir_blk = *(const uint64_t *)(const void *)((const char *)h + h->heap_start);
  uint64_t att = h->heap_start + (dir_blk & ~SHMVAL__BLK_FLAGS);
  assert_int_equal(h->attach_off, att + SHMVAL__OBJ_HDR_OFF);
  uint64_t att_blk = *(const uint64_t *)(const void *)((const char *)h + att);
  uint64_t tables_end = att + (att_blk & ~SHMVAL__BLK_FLAGS);
  assert_true(tables_end <= 4096); /* the first page, whatever the page size */
  assert_int_equal(h->heap_end, SHMVAL__HEAP_STATE_END); /* no free block written past it */
  assert_ok(shm_segment_stat(a, &info));
  assert_int_equal(info.used + info.free, 4 * MIB - h->heap_start - SHMVAL__HEAP_STATE_SIZE);
  assert_ok(shm_array_create(&arr, SHMVAL_LONG, 8192, NULL, &(shm_opts){.segment = a}));
  assert_int_equal(h->heap_end, 4 * MIB);
  assert_true((uintptr_t)shmval__obj_of(arr) - (uintptr_t)h > 3 * MIB);
  assert_ok(shm_segment_stat(a, &info));
  assert_int_equal(info.used + info.free, 4 * MIB - h->heap_start - SHMVAL__HEAP_STATE_SIZE);
  assert_ok(shm_array_destroy(arr));
  assert_ok(shm_segment_close(a));
  assert_ok(shm_segment_unlink(name));
}

static void test_exists_and_open_or_create(void **state) {
  (void)state;
  shm_segment *a, *b;
  const char *name = NAME("excl");
  shm_segment_opts ooc = {.flags = SHMVAL_OPEN_OR_CREATE};
  assert_ok(shm_segment_create(&a, name, MIB, &ooc)); /* creates */
  assert_code(shm_segment_create(&b, name, MIB, NULL), SHMVAL_EEXIST);
  assert_ok(shm_segment_create(&b, name, 2 * MIB, &ooc)); /* opens the existing one */
  shm_segment_info info;
  assert_ok(shm_segment_stat(b, &info));
  assert_int_equal(info.size, MIB);
  assert_ok(shm_segment_close(b));
  assert_ok(shm_segment_close(a));
  assert_ok(shm_segment_unlink(name));
}

static void test_bad_arguments(void **state) {
  (void)state;
  shm_segment *s;
  char longname[300];
  memset(longname, 'a', sizeof longname);
  longname[256] = '\0'; /* 256 bytes: one over NAME_MAX */
  const char *bad[] = {"", "/", "//x", "a/b", "/a/b", ".", "/..", longname};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_code(shm_segment_create(&s, bad[i], MIB, NULL), SHMVAL_EINVAL);
    assert_code(shm_segment_open(&s, bad[i], NULL), SHMVAL_EINVAL);
    assert_code(shm_segment_unlink(bad[i]), SHMVAL_EINVAL);
  }
  longname[255] = '\0'; /* exactly NAME_MAX is fine */
  assert_ok(shm_segment_create(&s, longname, MIB, NULL));
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(longname));
  const char *name = NAME("args");
  shm_segment_opts o = {.flags = SHMVAL_RDONLY};
  assert_code(shm_segment_create(NULL, name, MIB, NULL), SHMVAL_EINVAL);
  assert_code(shm_segment_create(&s, NULL, MIB, NULL), SHMVAL_EINVAL);
  assert_code(shm_segment_create(&s, name, 0, NULL), SHMVAL_EINVAL);
  assert_code(shm_segment_create(&s, name, 100, NULL), SHMVAL_EINVAL); /* no room for tables */
  assert_code(shm_segment_create(&s, name, (size_t)1 << 50, NULL), SHMVAL_EINVAL);
  assert_code(shm_segment_create(&s, name, MIB, &o), SHMVAL_EINVAL);
  o = (shm_segment_opts){.mode = 01777};
  assert_code(shm_segment_create(&s, name, MIB, &o), SHMVAL_EINVAL);
  o = (shm_segment_opts){.max_attach = 100000};
  assert_code(shm_segment_create(&s, name, MIB, &o), SHMVAL_EINVAL);
  o = (shm_segment_opts){.flags = SHMVAL_AUTO_UNLINK << 4};
  assert_code(shm_segment_open(&s, name, &o), SHMVAL_EINVAL);
  assert_false(shm_exists(name)); /* no failed create left a file */
  assert_code(shm_segment_stat(NULL, NULL), SHMVAL_EINVAL);
}

static unsigned mode_of(const char *name) {
  char path[300];
  struct stat st;
  snprintf(path, sizeof path, "/dev/shm%s", name);
  return stat(path, &st) == 0 ? (unsigned)(st.st_mode & 0777) : 0u;
}

/* The mode stat and inspect report; 0 if either failed. */
static unsigned reported_mode(shm_segment *s, const char *name) {
  shm_segment_info a, b;
  if (shm_segment_stat(s, &a) != 0 || shm_segment_inspect(name, &b) != 0 || a.mode != b.mode)
    return 0;
  return a.mode;
}

static void test_mode_ignores_umask(void **state) {
  (void)state;
  shm_segment *s;
  mode_t old = umask(0);
  const char *name = NAME("mode");
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  assert_int_equal(mode_of(name), 0600);
  assert_int_equal(reported_mode(s, name), 0600);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
  umask(077);
  static const unsigned modes[] = {0640, 0644};
  for (size_t i = 0; i < 2; i++) {
    shm_segment_opts o = {.mode = modes[i]};
    assert_ok(shm_segment_create(&s, name, MIB, &o));
    assert_int_equal(mode_of(name), modes[i]);
    assert_int_equal(reported_mode(s, name), modes[i]);
    assert_ok(shm_segment_close(s));
    assert_ok(shm_segment_unlink(name));
  }
  umask(old);
}

/* As nobody: a 0600 segment is refused, a 0644 one opens read-only only. */
static int as_nobody(void *arg) {
  const char **names = arg;
  shm_segment *s;
  shm_segment_info info;
  shm_segment_opts ro = {.flags = SHMVAL_RDONLY};
  if (setgid(65534) != 0 || setuid(65534) != 0)
    return 10;
  if (shm_segment_open(&s, names[0], NULL) != SHMVAL_EACCES)
    return 11;
  if (shm_segment_open(&s, names[0], &ro) != SHMVAL_EACCES)
    return 12;
  if (shm_segment_inspect(names[0], &info) != SHMVAL_EACCES)
    return 13;
  if (shm_segment_unlink(names[0]) != SHMVAL_EACCES)
    return 14;
  if (shm_segment_open(&s, names[1], NULL) != SHMVAL_EACCES)
    return 15;
  if (shm_segment_open(&s, names[1], &ro) != 0)
    return 16;
  shm_value *v;
  int x = 0;
  if (shm_value_open(&v, s, "x", SHMVAL_INT) != 0 || shm_value_get(v, &x) != SHMVAL_EACCES)
    return 17; /* a locked Value cannot be read without its lock */
  shm_segment_close(s);
  return 0;
}

static void test_other_uid_refused(void **state) {
  (void)state;
  if (getuid() != 0) {
    print_message("not root: cannot switch to another uid; skipped\n");
    skip();
  }
  char n2[128];
  const char *names[2] = {NAME("private"), test_name(n2, sizeof n2, "public")};
  shm_segment *a, *b;
  shm_segment_opts pub = {.mode = 0644};
  assert_ok(shm_segment_create(&a, names[0], MIB, NULL));
  assert_ok(shm_segment_create(&b, names[1], MIB, &pub));
  shm_opts o = {.segment = b, .name = "x"};
  shm_value *v;
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){5}, &o));
  assert_int_equal(reap(spawn(as_nobody, names)), 0);
  assert_true(shm_exists(names[0]));
  assert_ok(shm_segment_close(a));
  assert_ok(shm_segment_close(b));
  assert_ok(shm_segment_unlink(names[0]));
  assert_ok(shm_segment_unlink(names[1]));
}

/*
 * Out of descriptors: create and open fail with EMFILE, leave no file and no
 * descriptor behind, and work again once descriptors are free.
 */
static int exhaust_fds(void *arg) {
  const char *name = arg;
  char other[160];
  snprintf(other, sizeof other, "%s-new", name);
  int spare[8], n = 0;
  /*
   * valgrind applies its own descriptor limit after the system call: a
   * shm_open(O_CREAT) over the limit creates the file, then valgrind closes
   * the descriptor and reports EMFILE. The kernel refuses before creating.
   */
  const char *pre = getenv("LD_PRELOAD");
  if (pre != NULL && strstr(pre, "vgpreload") != NULL)
    return 77;
  struct rlimit lim; /* a small table, whatever the system allows */
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return 19;
  lim.rlim_cur = 64;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
    return 77; /* valgrind, for one, keeps the limit to itself */
  for (int fd; (fd = open("/dev/null", O_RDONLY)) >= 0;)
    if (n < 8)
      spare[n++] = fd;
  if (errno != EMFILE || n < 2)
    return 20;
  shm_segment *s;
  if (shm_segment_open(&s, name, NULL) != SHMVAL_EMFILE)
    return 21;
  if (shm_segment_create(&s, other, MIB, NULL) != SHMVAL_EMFILE || shm_exists(other))
    return 22;
  shm_segment_info info;
  if (shm_segment_inspect(name, &info) != SHMVAL_EMFILE)
    return 23;
  close(spare[0]); /* one descriptor: enough for an open */
  if (shm_segment_open(&s, name, NULL) != 0)
    return 24;
  if (open("/dev/null", O_RDONLY) >= 0)
    return 25; /* the open used exactly the one descriptor it keeps */
  if (shm_segment_close(s) != 0)
    return 26;
  int fd = open("/dev/null", O_RDONLY); /* and gave it back */
  if (fd < 0)
    return 27;
  close(fd);
  return 0;
}

static void test_descriptor_exhaustion(void **state) {
  (void)state;
  const char *name = NAME("fds");
  shm_segment *s;
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  int rc = reap(spawn(exhaust_fds, (void *)name));
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
  if (rc == 77) {
    print_message("the descriptor limit cannot be lowered or is emulated here; skipped\n");
    skip();
  }
  assert_int_equal(rc, 0);
}

static void test_cloexec(void **state) {
  (void)state;
  shm_segment *s;
  const char *name = NAME("cloexec");
  char path[300];
  struct stat want, st;
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  snprintf(path, sizeof path, "/dev/shm%s", name);
  assert_int_equal(stat(path, &want), 0);
  int found = 0;
  /* The segment's descriptors, found by the file they open. */
  for (int fd = 0; fd < 1024; fd++) {
    if (fstat(fd, &st) != 0)
      continue;
    if (st.st_dev == want.st_dev && st.st_ino == want.st_ino) {
      found++;
      assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    }
  }
  assert_int_equal(found, 1);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

/* ------------------------------------------------------------------------ */
/* Files that are not (valid) segments. */

/* Create a raw shm file holding @p len bytes of @p data. */
static void write_file(const char *name, const void *data, size_t len) {
  int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  close(fd);
}

/* The bytes of a fresh valid segment with a named Value in it. */
static unsigned char *segment_image(size_t *len) {
  shm_segment *s;
  shm_value *v;
  const char *name = NAME("image");
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  shm_opts o = {.segment = s, .name = "v"};
  assert_ok(shm_value_create(&v, SHMVAL_LONG, &(long){42}, &o));
  assert_ok(shm_segment_close(s));
  int fd = shm_open(name, O_RDONLY, 0);
  unsigned char *img = malloc(MIB);
  assert_non_null(img);
  assert_int_equal(read(fd, img, MIB), (ssize_t)MIB);
  close(fd);
  assert_ok(shm_segment_unlink(name));
  *len = MIB;
  return img;
}

/* Mappings of /dev/shm/NAME this process holds (a refused file must leave none). */
static int mappings_of(const char *name) {
  char line[512], want[300];
  int n = 0;
  snprintf(want, sizeof want, "/dev/shm%s", name);
  FILE *f = fopen("/proc/self/maps", "r");
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    n += strstr(line, want) != NULL;
  if (f != NULL)
    fclose(f);
  return n;
}

static void test_foreign_file(void **state) {
  (void)state;
  shm_segment *s;
  shm_segment_info info;
  char junk[4096];
  memset(junk, 'P', sizeof junk); /* what Python's SharedMemory might hold */
  const char *name = NAME("foreign");
  write_file(name, junk, sizeof junk);
  assert_code(shm_segment_open(&s, name, NULL), SHMVAL_ENOTSHMVAL);
  assert_code(shm_segment_inspect(name, &info), SHMVAL_ENOTSHMVAL);
  assert_code(shm_segment_unlink(name), SHMVAL_ENOTSHMVAL);
  assert_true(shm_exists(name));          /* never touched */
  assert_int_equal(mappings_of(name), 0); /* and nothing left mapped */
  write_file(name, junk, 3);
  assert_code(shm_segment_open(&s, name, NULL), SHMVAL_ENOTSHMVAL);
  assert_code(shm_segment_unlink(name), SHMVAL_ENOTSHMVAL);
  shm_unlink(name);
}

static void test_version_abi_truncation(void **state) {
  (void)state;
  size_t len;
  shm_segment *s;
  shm_segment_info info;
  unsigned char *img = segment_image(&len);
  const char *name = NAME("bad");
  /* Layout version (offset 8), header size (12) and ABI fingerprint (16). */
  unsigned char *copy = malloc(len);
  assert_non_null(copy);
  struct {
    size_t at;
    int want;
  } cases[] = {{8, SHMVAL_EVERSION},
               {12, SHMVAL_EVERSION},
               {16, SHMVAL_EABI},
               {24, SHMVAL_ECORRUPT},
               {32, SHMVAL_ECORRUPT}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memcpy(copy, img, len);
    copy[cases[i].at] ^= 0x5a;
    write_file(name, copy, len);
    assert_code(shm_segment_open(&s, name, NULL), cases[i].want);
    assert_ok(shm_segment_inspect(name, &info));
    assert_int_equal(info.state, SHMVAL_SEG_CORRUPT);
    assert_int_equal(info.error, cases[i].want);
  }
  /* A heap that ends before the allocator's state block, which lies past the first page. */
  memcpy(copy, img, len);
  uint64_t short_end = SHMVAL__HEAP_STATE_BLK;
  memcpy(copy + offsetof(shmval__seg, heap_end), &short_end, sizeof short_end);
  write_file(name, copy, len);
  assert_code(shm_segment_open(&s, name, NULL), SHMVAL_ECORRUPT);
  /* A file shorter than its header says: an error, never SIGBUS. */
  write_file(name, img, 4096);
  assert_code(shm_segment_open(&s, name, NULL), SHMVAL_ECORRUPT);
  write_file(name, img, 100);
  assert_code(shm_segment_open(&s, name, NULL), SHMVAL_ECORRUPT);
  /* A corrupt segment can still be removed by name. */
  assert_ok(shm_segment_unlink(name));
  assert_false(shm_exists(name));
  free(copy);
  free(img);
}

/* In a child: leave a segment file as a creator killed mid-way would. */
static int half_created(void *arg) {
  const char *name = arg;
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  struct flock gate = {
      .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)1 << 40, .l_len = 1};
  if (fd < 0 || fcntl(fd, F_OFD_SETLK, &gate) != 0 || ftruncate(fd, MIB) != 0)
    return 1;
  uint64_t init = UINT64_C(0x74696e69564d5300); /* the creator's first word */
  if (write(fd, &init, sizeof init) != sizeof init)
    return 2;
  printf("ready\n");
  fflush(stdout);
  for (;;)
    pause();
}

static void test_killed_creator(void **state) {
  (void)state;
  shm_segment *s;
  shm_segment_info info;
  int pfd[2];
  char line[16];
  const char *name = NAME("halfmade");
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pfd[1], 1);
    _exit(half_created((void *)name));
  }
  close(pfd[1]);
  read_line(pfd[0], line, sizeof line);
  assert_string_equal(line, "ready");
  /* While the creator lives: openers wait (bounded), then give up. */
  shm_segment_opts o = {.timeout = 0.2};
  double t0 = now_s();
  assert_code(shm_segment_open(&s, name, &o), SHMVAL_EUNINIT);
  assert_true(now_s() - t0 >= 0.19);
  assert_ok(shm_segment_inspect(name, &info));
  assert_int_equal(info.state, SHMVAL_SEG_UNINIT);
  /* Killed: still rejected, and now recognised as an orphan. */
  kill(pid, SIGKILL);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  close(pfd[0]);
  assert_code(shm_segment_open(&s, name, &o), SHMVAL_EUNINIT);
  assert_ok(shm_segment_inspect(name, &info));
  assert_int_equal(info.state, SHMVAL_SEG_ORPHANED);
  /* open-or-create does not hang on it either. */
  shm_segment_opts ooc = {.flags = SHMVAL_OPEN_OR_CREATE, .timeout = 0.1};
  assert_code(shm_segment_create(&s, name, MIB, &ooc), SHMVAL_EUNINIT);
  assert_ok(shm_segment_unlink(name));
  assert_false(shm_exists(name));
}

/*
 * A creator killed inside shm_segment_create() (here while 256 MiB are
 * reserved) leaves either no file or a complete segment, which inspect
 * classifies and unlink removes: never a file nothing can remove.
 */
static int create_big(void *arg) {
  shm_segment *s;
  shm_segment_opts o = {.flags = SHMVAL_AUTO_UNLINK};
  if (shm_segment_create(&s, arg, 256 * MIB, &o) != 0)
    return 1;
  for (;;)
    pause();
}

static void test_creator_killed_inside_create(void **state) {
  (void)state;
  static const double delays[] = {0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.04};
  int absent = 0, complete = 0;
  for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
    const char *name = NAME("killedcreate");
    pid_t pid = spawn(create_big, (void *)name);
    sleep_s(delays[i]);
    kill(pid, SIGKILL);
    assert_int_equal(reap(pid), 128 + SIGKILL);
    if (!shm_exists(name)) {
      absent++;
      continue;
    }
    shm_segment_info info;
    assert_ok(shm_segment_inspect(name, &info));
    assert_int_equal(info.state, SHMVAL_SEG_ORPHANED);
    assert_ok(shm_segment_unlink(name));
    assert_false(shm_exists(name));
    complete++;
  }
  print_message("killed creators: %d left no file, %d a complete orphan\n", absent, complete);
}

/* ------------------------------------------------------------------------ */
/* Attachers and lifetime, with exec'd processes. */

typedef struct helper {
  pid_t pid;
  int to, from;
} helper;

static helper attach_helper(const char *name, int ro) {
  const char *args[] = {PEER_PATH, "attach", name, ro ? "ro" : NULL, NULL};
  helper h;
  char line[32];
  h.pid = start_peer(args, &h.to, &h.from);
  assert_true(h.pid > 0);
  read_line(h.from, line, sizeof line);
  assert_string_equal(line, "ready");
  return h;
}

/* Ask the helper to close and exit; its exit code. */
static int finish_helper(helper h) {
  close(h.to);
  close(h.from);
  return reap(h.pid);
}

static void kill_helper(helper h) {
  kill(h.pid, SIGKILL);
  assert_int_equal(reap(h.pid), 128 + SIGKILL);
  close(h.to);
  close(h.from);
}

static unsigned attached(shm_segment *s) {
  shm_segment_info info;
  assert_ok(shm_segment_stat(s, &info));
  return info.attached;
}

static void test_attachers_survive_and_die(void **state) {
  (void)state;
  shm_segment *s;
  const char *name = NAME("attach");
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  helper h[3];
  for (int i = 0; i < 3; i++)
    h[i] = attach_helper(name, i == 2);
  assert_int_equal(attached(s), 4);
  kill_helper(h[0]);
  assert_int_equal(attached(s), 3); /* a dead process is not attached */
  assert_int_equal(finish_helper(h[1]), 0);
  assert_int_equal(attached(s), 2);
  assert_int_equal(finish_helper(h[2]), 0);
  assert_int_equal(attached(s), 1);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

typedef struct fake_slot {
  int32_t pid;
  uint32_t spare;
  uint64_t since_ns;
} fake_slot;

static void test_liveness_ignores_pids(void **state) {
  (void)state;
  /*
   * Liveness comes from the kernel's file locks, not from PIDs: slot entries
   * naming live PIDs (as a recycled PID would) count for nothing, and the slot
   * of a process that died is free although its PID is still recorded.
   */
  shm_segment *s;
  shm_segment_info info;
  const char *name = NAME("pids");
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  shmval__obj *t = (shmval__obj *)(void *)((char *)s->base + s->base->attach_off);
  fake_slot *slots = (fake_slot *)(void *)((char *)t + t->payload_rel);
  for (uint32_t i = 0; i < s->base->max_attach; i++)
    if ((int)i != s->slot)
      slots[i].pid = (int32_t)(i % 2 ? getpid() : 1); /* live processes */
  assert_ok(shm_segment_inspect(name, &info));
  assert_int_equal(info.attached, 1);
  helper h = attach_helper(name, 0);
  kill_helper(h); /* its PID stays in its slot entry */
  assert_ok(shm_segment_stat(s, &info));
  assert_int_equal(info.attached, 1);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

static void test_max_attach(void **state) {
  (void)state;
  shm_segment *s, *t[3];
  shm_segment_opts o = {.max_attach = 3};
  const char *name = NAME("maxatt");
  assert_ok(shm_segment_create(&s, name, MIB, &o));
  assert_ok(shm_segment_open(&t[0], name, NULL));
  assert_ok(shm_segment_open(&t[1], name, NULL));
  assert_code(shm_segment_open(&t[2], name, NULL), SHMVAL_EAGAIN);
  shm_segment_opts obs = {.flags = SHMVAL_OBSERVE};
  assert_ok(shm_segment_open(&t[2], name, &obs)); /* observers take no slot */
  assert_int_equal(attached(t[2]), 3);
  assert_ok(shm_segment_close(t[2]));
  assert_ok(shm_segment_close(t[1]));
  assert_ok(shm_segment_open(&t[1], name, NULL)); /* a freed slot is reused */
  assert_ok(shm_segment_close(t[1]));
  assert_ok(shm_segment_close(t[0]));
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

static void test_auto_unlink(void **state) {
  (void)state;
  shm_segment *s;
  shm_segment_info info;
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  const char *name = NAME("auto");
  /* The last to close unlinks; not before. */
  assert_ok(shm_segment_create(&s, name, MIB, &au));
  helper h = attach_helper(name, 0);
  assert_ok(shm_segment_close(s));
  assert_true(shm_exists(name)); /* the helper is still attached */
  assert_int_equal(finish_helper(h), 0);
  assert_false(shm_exists(name));
  /* The others were SIGKILLed: the last live one still unlinks on close. */
  assert_ok(shm_segment_create(&s, name, MIB, &au));
  helper k1 = attach_helper(name, 0), k2 = attach_helper(name, 1);
  kill_helper(k1);
  kill_helper(k2);
  assert_ok(shm_segment_stat(s, &info));
  assert_int_equal(info.attached, 1);
  assert_int_equal(info.flags, SHMVAL_AUTO_UNLINK);
  assert_ok(shm_segment_close(s));
  assert_false(shm_exists(name));
  /* Everyone was killed: it is an orphan, and inspect says so. */
  assert_ok(shm_segment_create(&s, name, MIB, &au));
  h = attach_helper(name, 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* A process killed while attached never closes. */
    shm_segment *mine;
    if (shm_segment_open(&mine, name, NULL) != 0)
      _exit(1);
    raise(SIGKILL);
  }
  assert_int_equal(reap(pid), 128 + SIGKILL);
  kill_helper(h);
  assert_ok(shm_segment_inspect(name, &info));
  assert_int_equal(info.state, SHMVAL_SEG_OK); /* this process is still attached */
  assert_int_equal(info.attached, 1);
  assert_ok(shm_segment_close(s));
  assert_false(shm_exists(name));
}

static void test_orphan_after_all_killed(void **state) {
  (void)state;
  shm_segment_info info;
  const char *name = NAME("orphan");
  pid_t pid = fork();
  if (pid == 0) {
    shm_segment *mine;
    shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
    if (shm_segment_create(&mine, name, MIB, &au) != 0)
      _exit(1);
    raise(SIGKILL);
  }
  assert_int_equal(reap(pid), 128 + SIGKILL);
  assert_true(shm_exists(name));
  assert_ok(shm_segment_inspect(name, &info));
  assert_int_equal(info.state, SHMVAL_SEG_ORPHANED);
  assert_int_equal(info.attached, 0);
  assert_ok(shm_segment_unlink(name));
}

static void test_open_or_create_race(void **state) {
  (void)state;
  const char *name = NAME("race");
  for (int round = 0; round < 5; round++) {
    const char *args[] = {PEER_PATH, "race", name, "2000", NULL};
    helper h[2];
    for (int i = 0; i < 2; i++)
      h[i].pid = start_peer(args, &h[i].to, &h[i].from);
    for (int i = 0; i < 2; i++)
      assert_int_equal(finish_helper(h[i]), 0);
    /* Both used one segment and one counter. */
    const char *get[] = {PEER_PATH, "get", name, "counter", NULL};
    helper g;
    char line[32];
    g.pid = start_peer(get, &g.to, &g.from);
    read_line(g.from, line, sizeof line);
    assert_int_equal(finish_helper(g), 0);
    assert_string_equal(line, "4000");
    assert_ok(shm_segment_unlink(name));
  }
}

/*
 * Openers take no lock against the last closer of an auto-unlink segment: a
 * child opens and closes in a loop while the parent closes its handle at
 * random moments. Whoever is attached must always find the name in place;
 * the last to close removes it.
 */
static int open_until_gone(void *arg) {
  const char *name = arg;
  for (long n = 0; n < 1000000; n++) {
    shm_segment *s;
    int rc = shm_segment_open(&s, name, NULL);
    if (rc == SHMVAL_ENOENT)
      return 0;
    if (rc != 0)
      return 1;
    int here = shm_exists(name);
    shm_segment_close(s);
    if (!here)
      return 2; /* unlinked while this process was attached */
  }
  return 3;
}

static void test_open_races_last_close(void **state) {
  (void)state;
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  unsigned r = 1;
  for (int round = 0; round < 100; round++) {
    shm_segment *s;
    const char *name = NAME("lastclose");
    assert_ok(shm_segment_create(&s, name, MIB, &au));
    pid_t pid = fork();
    if (pid == 0) {
      /* The inherited handle is the parent's to close: drop this copy. */
      shm_segment_close(s);
      _exit(open_until_gone((void *)name));
    }
    r = r * 1103515245u + 12345u;
    sleep_s((double)(r >> 16 & 255) * 2e-6);
    assert_ok(shm_segment_close(s));
    assert_int_equal(reap(pid), 0);
    assert_false(shm_exists(name));
  }
}

/*
 * The same moment held open, white-box: this process plays a closer that has
 * taken the gate and set CLOSING. An opener must wait for its verdict, then
 * get ENOENT if it unlinked, or attach if it kept the segment.
 */
static int open_after_go(int go, const char *name) {
  char c;
  shm_segment *s;
  if (read(go, &c, 1) != 1)
    return 10;
  double t0 = now_s();
  int rc = shm_segment_open(&s, name, NULL);
  if (now_s() - t0 < 0.04)
    return 11; /* did not wait for the verdict */
  if (rc == 0)
    shm_segment_close(s);
  return rc == 0 ? 0 : rc == SHMVAL_ENOENT ? 1 : 12;
}

static void test_opener_waits_for_closer(void **state) {
  (void)state;
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  for (int unlink_it = 0; unlink_it < 2; unlink_it++) {
    const char *name = NAME("verdict");
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork(); /* before the segment exists: the child inherits no handle */
    if (pid == 0) {
      close(go[1]);
      _exit(open_after_go(go[0], name));
    }
    close(go[0]);
    shm_segment *s;
    assert_ok(shm_segment_create(&s, name, MIB, &au));
    char path[300];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    struct flock gate = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)SHMVAL__GATE_OFF, .l_len = 1};
    assert_int_equal(fcntl(fd, F_OFD_SETLKW, &gate), 0);
    atomic_fetch_or(&s->base->state, SHMVAL__STATE_CLOSING);
    assert_int_equal(write(go[1], "g", 1), 1);
    sleep_s(0.1);
    if (unlink_it) {
      atomic_fetch_or(&s->base->state, SHMVAL__STATE_UNLINKED);
      assert_int_equal(shm_unlink(name), 0);
    }
    atomic_fetch_and(&s->base->state, ~SHMVAL__STATE_CLOSING);
    close(fd); /* releases the gate */
    assert_int_equal(reap(pid), unlink_it ? 1 : 0);
    close(go[1]);
    assert_ok(shm_segment_close(s));
    assert_false(shm_exists(name));
  }
}

/*
 * A read-only attacher closing an auto-unlink segment last: it maps the header
 * writable for the state word, which lies past the first page (the fuzzer
 * found a one-page mapping written past its end).
 */
static void test_read_only_last_closer(void **state) {
  (void)state;
  shm_segment *s, *ro;
  const char *name = NAME("rolast");
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  assert_ok(shm_segment_create(&s, name, MIB, &au));
  shm_segment_opts roo = {.flags = SHMVAL_RDONLY};
  assert_ok(shm_segment_open(&ro, name, &roo));
  assert_ok(shm_segment_close(s));
  assert_true(shm_exists(name)); /* the read-only attacher still counts */
  assert_ok(shm_segment_close(ro));
  assert_false(shm_exists(name)); /* and it unlinked it as the last one */
}

static void test_read_only(void **state) {
  (void)state;
  shm_segment *s, *ro;
  shm_value *v, *rv, *w;
  shm_array *a, *ra;
  const char *name = NAME("ro");
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  shm_opts lo = {.segment = s, .name = "locked"};
  shm_opts rawo = {.segment = s, .name = "raw", .flags = SHMVAL_RAW};
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){5}, &lo));
  assert_ok(shm_array_create(&a, SHMVAL_CHAR, 8, (char[8]){"hello"}, &rawo));
  shm_segment_opts roo = {.flags = SHMVAL_RDONLY};
  assert_ok(shm_segment_open(&ro, name, &roo));
  assert_ok(shm_value_open(&rv, ro, "locked", SHMVAL_INT));
  assert_ok(shm_array_open(&ra, ro, "raw", SHMVAL_CHAR));
  int x = 0;
  char buf[16];
  /* Raw reads work; the payload can be read in place. */
  assert_ok(shm_array_get_string(ra, buf, sizeof buf));
  assert_string_equal(buf, "hello");
  assert_int_equal(*(int *)shm_value_ptr(rv), 5);
  /* Writes and locks are refused. */
  assert_code(shm_value_get(rv, &x), SHMVAL_EACCES); /* it would need the lock */
  assert_code(shm_value_set(rv, &x), SHMVAL_EACCES);
  assert_code(shm_value_acquire(rv), SHMVAL_EACCES);
  assert_code(shm_lock_acquire(shm_value_get_lock(rv)), SHMVAL_EACCES);
  assert_code(shm_lock_try_acquire(shm_value_get_lock(rv)), SHMVAL_EACCES);
  assert_code(shm_array_set(ra, 0, "x"), SHMVAL_EACCES);
  assert_code(shm_array_write(ra, 0, 1, "x"), SHMVAL_EACCES);
  assert_code(shm_array_set_string(ra, "x"), SHMVAL_EACCES);
  assert_code(shm_value_destroy(rv), SHMVAL_EACCES);
  assert_code(shm_object_remove(ro, "raw"), SHMVAL_EACCES);
  shm_opts in_ro = {.segment = ro};
  assert_code(shm_value_create(&w, SHMVAL_INT, NULL, &in_ro), SHMVAL_EACCES);
  assert_ok(shm_segment_close(ro));
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

static int child_attached(void *arg) {
  shm_segment *s = arg;
  shm_segment_info info;
  if (shm_segment_stat(s, &info) != 0 || info.attached != 2)
    return 1;
  /* The parent closes meanwhile; this child keeps it alive. */
  sleep_s(0.3);
  if (!shm_exists(shm_segment_name(s)))
    return 2;
  return shm_segment_close(s) == 0 ? 0 : 3;
}

static void test_fork_child_attaches(void **state) {
  (void)state;
  shm_segment *s;
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  const char *name = NAME("forked");
  assert_ok(shm_segment_create(&s, name, MIB, &au));
  pid_t pid = spawn(child_attached, s);
  sleep_s(0.1);
  assert_ok(shm_segment_close(s));
  assert_int_equal(reap(pid), 0);
  assert_false(shm_exists(name)); /* the child was last and unlinked it */
}

static int tiny_devshm(void *arg) {
  (void)arg;
  if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m") != 0)
    return 77;
  shm_segment *s;
  int rc = shm_segment_create(&s, "/shmval-test-full", 4 * MIB, NULL);
  if (rc != SHMVAL_ENOSPC) {
    fprintf(stderr, "tiny /dev/shm: create returned %s, not SHMVAL_ENOSPC\n", shmval_err_name(rc));
    return 1;
  }
  return access("/dev/shm/shmval-test-full", F_OK) == 0 ? 2 : 0; /* and no file left */
}

/*
 * A process that made a segment once (and saw /proc/self/fd, through which
 * a new segment's unnamed file gets its name) still makes one after /proc
 * is gone: under its name from the start.
 */
static int hidden_proc(void *arg) {
  const char *name = arg;
  shm_segment *s;
  if (shm_segment_create(&s, name, MIB, NULL) != 0 || shm_segment_close(s) != 0 ||
      shm_segment_unlink(name) != 0)
    return 1;
  if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", "/proc", "tmpfs", 0, "size=1m") != 0)
    return 77;
  int rc = shm_segment_create(&s, name, MIB, NULL);
  if (rc != 0) {
    fprintf(stderr, "create without /proc: %s\n", shmval_err_name(rc));
    return 2;
  }
  return shm_segment_close(s) != 0 || shm_segment_unlink(name) != 0 ? 3 : 0;
}

static void test_create_without_proc(void **state) {
  (void)state;
  pid_t pid = spawn(hidden_proc, (void *)NAME("noproc"));
  int rc = reap(pid);
  if (rc == 77)
    skip(); /* needs root for a private mount namespace */
  assert_int_equal(rc, 0);
}

static void test_no_space(void **state) {
  (void)state;
  pid_t pid = spawn(tiny_devshm, NULL);
  int rc = reap(pid);
  if (rc == 77)
    skip(); /* needs root for a private /dev/shm */
  assert_int_equal(rc, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_open_close),
      cmocka_unit_test(test_tables_follow_header),
      cmocka_unit_test(test_create_without_proc),
      cmocka_unit_test(test_exists_and_open_or_create),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_mode_ignores_umask),
      cmocka_unit_test(test_read_only_last_closer),
      cmocka_unit_test(test_other_uid_refused),
      cmocka_unit_test(test_descriptor_exhaustion),
      cmocka_unit_test(test_cloexec),
      cmocka_unit_test(test_foreign_file),
      cmocka_unit_test(test_version_abi_truncation),
      cmocka_unit_test(test_killed_creator),
      cmocka_unit_test(test_creator_killed_inside_create),
      cmocka_unit_test(test_attachers_survive_and_die),
      cmocka_unit_test(test_liveness_ignores_pids),
      cmocka_unit_test(test_max_attach),
      cmocka_unit_test(test_auto_unlink),
      cmocka_unit_test(test_orphan_after_all_killed),
      cmocka_unit_test(test_open_or_create_race),
      cmocka_unit_test(test_open_races_last_close),
      cmocka_unit_test(test_opener_waits_for_closer),
      cmocka_unit_test(test_read_only),
      cmocka_unit_test(test_fork_child_attaches),
      cmocka_unit_test(test_no_space),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
