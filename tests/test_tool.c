/* The shmval command, run as a separate program on real segments. */
#include "helpers.h"

#include "internal.h" /* only for the header's layout, to damage it */

#include <string.h>
#include <sys/mman.h>

#define MIB ((size_t)1 << 20)

static char out[1 << 16], err[1 << 14];

/* Read @p fd to its end into @p buf (NUL-terminated). */
static void slurp(int fd, char *buf, size_t cap) {
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
    n += (size_t)r;
  buf[n] = '\0';
  close(fd);
}

/*
 * Run the tool with @p args (NULL-terminated, without argv[0]); its exit
 * code. Its standard output lands in out, its standard error in err.
 */
static int tool(const char *a1, const char *a2, const char *a3, const char *a4) {
  const char *args[] = {TOOL_PATH, a1, a2, a3, a4, NULL};
  int o[2], e[2];
  if (pipe2(o, O_CLOEXEC) != 0 || pipe2(e, O_CLOEXEC) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(o[1], 1);
    dup2(e[1], 2);
    execv(args[0], (char *const *)(uintptr_t)args);
    _exit(127);
  }
  close(o[1]);
  close(e[1]);
  slurp(o[0], out, sizeof out); /* the outputs here are far below a pipe's buffer */
  slurp(e[0], err, sizeof err);
  return reap(pid);
}

/* Lines in @p s. */
static int lines(const char *s) {
  int n = 0;
  for (; *s != '\0'; s++)
    n += *s == '\n';
  return n;
}

static char nbuf[128];

static void test_usage(void **state) {
  (void)state;
  assert_int_equal(tool("--help", NULL, NULL, NULL), 0);
  assert_non_null(strstr(out, "usage: shmval"));
  assert_non_null(strstr(out, "--version"));
  assert_non_null(strstr(out, "gc        remove orphaned segments"));
  assert_int_equal(tool("help", NULL, NULL, NULL), 0);
  assert_non_null(strstr(out, "shmval help COMMAND"));
  /* A mistake gets a hint of a line or three, on stderr, and exit status 2. */
  assert_int_equal(tool(NULL, NULL, NULL, NULL), 2);
  assert_true(lines(err) <= 3 && strstr(err, "shmval help") != NULL);
  assert_int_equal(tool("frobnicate", NULL, NULL, NULL), 2);
  assert_non_null(strstr(err, "'frobnicate' is not a command"));
  assert_true(lines(err) <= 3);
  assert_int_equal(tool("ls", "--bogus", NULL, NULL), 2);
  assert_non_null(strstr(err, "unknown option '--bogus'"));
  assert_non_null(strstr(err, "usage: shmval ls [--json]"));
  assert_true(lines(err) <= 3);
  assert_string_equal(out, "");
  assert_int_equal(tool("show", NULL, NULL, NULL), 2);
  assert_non_null(strstr(err, "usage: shmval show"));
  assert_int_equal(tool("rm", NULL, NULL, NULL), 2);
  assert_int_equal(tool("gc", "now", NULL, NULL), 2);
  /* Help on one command, either way round. */
  assert_int_equal(tool("ls", "--help", NULL, NULL), 0);
  assert_non_null(strstr(out, "usage: shmval ls [--json]"));
  assert_int_equal(tool("show", "-h", NULL, NULL), 0);
  assert_non_null(strstr(out, "--full"));
  assert_int_equal(tool("help", "gc", NULL, NULL), 0);
  assert_non_null(strstr(out, "usage: shmval gc [--dry-run]"));
  assert_int_equal(tool("help", "frobnicate", NULL, NULL), 2);
  assert_int_equal(tool("--version", NULL, NULL, NULL), 0);
  assert_non_null(strstr(out, SHMVAL_VERSION_STRING));
}

static void test_ls_and_show(void **state) {
  (void)state;
  shm_segment *s;
  shm_value *v, *v2;
  shm_array *a, *t;
  const char *name = test_name(nbuf, sizeof nbuf, "tool");
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  shm_opts o = {.segment = s, .name = "answer"};
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){42}, &o));
  o.name = "series";
  double series[100];
  for (int i = 0; i < 100; i++)
    series[i] = i * 0.5;
  assert_ok(shm_array_create(&a, SHMVAL_DOUBLE, 100, series, &o));
  o.name = "two\nlines";
  assert_ok(shm_value_create(&v2, SHMVAL_INT, &(int){7}, &o));
  o.name = "greeting";
  o.flags = SHMVAL_RAW;
  assert_ok(shm_array_create(&t, SHMVAL_CHAR, 16, (char[16]){"hi \"there\""}, &o));

  assert_int_equal(tool("ls", NULL, NULL, NULL), 0);
  char *line = strstr(out, name);
  assert_non_null(line);
  assert_non_null(strstr(line, "persist"));
  assert_non_null(strstr(line, "0600"));
  assert_non_null(strstr(line, " ok"));
  assert_int_equal(tool("ls", "--json", NULL, NULL), 0);
  assert_non_null(strstr(out, "\"size\": 1048576, \"max_size\": 1048576"));
  assert_non_null(strstr(out, "\"objects\": 4, \"attached\": 1"));
  assert_non_null(strstr(out, "\"mode\": \"0600\""));

  assert_int_equal(tool("show", name, NULL, NULL), 0);
  assert_non_null(strstr(out, ": 1.0MiB committed of 1.0MiB at most, "));
  assert_non_null(strstr(out, " used, 4 objects\n"));
  assert_non_null(strstr(out, "answer"));
  assert_non_null(strstr(out, "42"));
  assert_non_null(strstr(out, "[0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, ... 90 more, 49, 49.5]"));
  assert_non_null(strstr(out, "\"hi \\\"there\\\"\""));
  /* A name with a control character stays on its row, escaped. */
  assert_non_null(strstr(out, "two\\x0alines"));
  assert_null(strstr(out, "two\nlines"));
  assert_int_equal(tool("show", "--lock", name, "answer"), 0);
  assert_non_null(strstr(out, "42"));
  assert_null(strstr(out, "series"));
  /* --lock waits for a held lock at most a second, then says so. */
  assert_ok(shm_value_acquire(v));
  assert_int_equal(tool("show", "--lock", "--json", name), 0);
  assert_non_null(strstr(out, "\"lock_error\": \"SHMVAL_ETIMEDOUT\""));
  assert_non_null(strstr(out, "\"name\": \"series\""));
  assert_ok(shm_value_release(v));
  /* Reading did not attach. */
  shm_segment_info info;
  assert_ok(shm_segment_stat(s, &info));
  assert_int_equal(info.attached, 1);
  /* JSON says how much of a long array it left out, unless --full. */
  assert_int_equal(tool("show", "--json", name, "series"), 0);
  assert_non_null(
      strstr(out, "\"value\": [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5], \"truncated\": 90}"));
  assert_int_equal(tool("show", "--json", "--full", name), 0);
  assert_non_null(strstr(out, "48.5, 49, 49.5]}"));
  assert_null(strstr(out, "truncated"));
  assert_non_null(strstr(out, "\"name\": \"answer\""));
  assert_int_equal(tool("show", "--full", name, "series"), 0);
  assert_null(strstr(out, "more"));
  /* A missing object: an error, and no table. */
  assert_int_equal(tool("show", name, "nothing", NULL), 1);
  assert_string_equal(out, "");
  assert_non_null(strstr(err, "no object named 'nothing'"));
  assert_int_equal(tool("show", "--json", name, "nothing"), 1);
  assert_string_equal(out, "");
  assert_int_equal(tool("show", "/shmval-test-no-such", NULL, NULL), 1);
  assert_non_null(strstr(err, "/shmval-test-no-such: no such segment"));
  assert_ok(shm_segment_close(s));
  assert_int_equal(tool("rm", name, NULL, NULL), 0);
  assert_false(shm_exists(name));
  assert_int_equal(tool("rm", name, NULL, NULL), 1);
}

static int die_attached(void *arg) {
  shm_segment *s;
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  if (shm_segment_create(&s, arg, MIB, &au) != 0)
    return 1;
  raise(SIGKILL);
  return 2;
}

static void test_gc(void **state) {
  (void)state;
  char orphan[64], alive[64], foreign[64];
  shm_segment *s;
  test_name(orphan, sizeof orphan, "gc-orphan");
  test_name(alive, sizeof alive, "gc-alive");
  test_name(foreign, sizeof foreign, "gc-foreign");
  pid_t pid = spawn(die_attached, orphan);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  shm_segment_opts au = {.flags = SHMVAL_AUTO_UNLINK};
  assert_ok(shm_segment_create(&s, alive, MIB, &au));
  int fd = shm_open(foreign, O_RDWR | O_CREAT, 0600); /* not ours: never touched */
  assert_true(fd >= 0 && write(fd, "python", 6) == 6);
  close(fd);

  assert_int_equal(tool("gc", "--dry-run", NULL, NULL), 0);
  assert_non_null(strstr(out, "would remove"));
  assert_null(strstr(out, "nothing to remove"));
  assert_non_null(strstr(out, orphan));
  assert_null(strstr(out, alive));
  assert_true(shm_exists(orphan));
  assert_int_equal(tool("ls", NULL, NULL, NULL), 0);
  assert_non_null(strstr(strstr(out, orphan), "orphaned"));
  assert_null(strstr(out, foreign));

  assert_int_equal(tool("gc", NULL, NULL, NULL), 0);
  assert_false(shm_exists(orphan));
  /* Never silent: with no orphan of ours left, it says what it did. */
  assert_int_equal(tool("gc", "--dry-run", NULL, NULL), 0);
  assert_true(strstr(out, "nothing to remove") != NULL || strstr(out, "would remove") != NULL);
  assert_null(strstr(out, orphan));
  assert_true(shm_exists(alive));
  assert_true(shm_exists(foreign));
  assert_int_equal(tool("rm", foreign, NULL, NULL), 1);
  assert_true(shm_exists(foreign)); /* refused, so still there */
  shm_unlink(foreign);
  assert_ok(shm_segment_close(s)); /* auto-unlink */
  assert_false(shm_exists(alive));
}

static void test_check(void **state) {
  (void)state;
  shm_segment *s;
  shm_value *v;
  const char *name = test_name(nbuf, sizeof nbuf, "check");
  assert_ok(shm_segment_create(&s, name, MIB, NULL));
  shm_opts o = {.segment = s, .name = "x"};
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){1}, &o));
  o.name = NULL;
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){2}, &o));
  assert_int_equal(tool("check", name, NULL, NULL), 0);
  assert_non_null(strstr(out, ": ok"));
  assert_non_null(strstr(out, "objects: 2 live, 1 named"));
  assert_non_null(strstr(out, "leaked: 0 blocks"));
  assert_int_equal(tool("check", "--json", name + 1, NULL), 0);
  assert_non_null(strstr(out, "\"ok\":true"));
  assert_non_null(strstr(out, "\"objects\":2,\"named\":1"));

  /* Damage the header's byte counter through a mapping of the file. */
  char path[300];
  snprintf(path, sizeof path, "/dev/shm%s", name);
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  shmval__seg *hdr = mmap(NULL, sizeof *hdr, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  assert_true(hdr != MAP_FAILED);
  close(fd);
  hdr->used += 64;
  assert_int_equal(tool("check", name, NULL, NULL), 1);
  assert_non_null(strstr(out, "CORRUPT"));
  assert_non_null(strstr(out, "counters disagree"));
  assert_int_equal(tool("check", "--json", name, NULL), 1);
  assert_non_null(strstr(out, "\"error\":\"SHMVAL_ECORRUPT\""));
  hdr->used -= 64;
  munmap(hdr, sizeof *hdr);
  assert_int_equal(tool("check", name, NULL, NULL), 0);

  assert_int_equal(tool("reclaim", name, NULL, NULL), 0);
  assert_non_null(strstr(out, "0 blocks (0 bytes) reclaimed"));
  assert_int_equal(tool("reclaim", NULL, NULL, NULL), 2);
  assert_int_equal(tool("reclaim", "/shmval-test-no-such-segment", NULL, NULL), 1);
  assert_int_equal(tool("check", NULL, NULL, NULL), 2);
  assert_int_equal(tool("check", name, name, NULL), 2);
  assert_int_equal(tool("check", "/shmval-test-no-such-segment", NULL, NULL), 1);
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

/* A growable segment: ls and show give its committed and maximum sizes. */
static void test_ls_growable(void **state) {
  (void)state;
  shm_segment *s;
  shm_array *a;
  shm_segment_info info;
  char want[128];
  const char *name = test_name(nbuf, sizeof nbuf, "toolgrow");
  assert_ok(shm_segment_create(&s, name, 64 << 10, &(shm_segment_opts){.max_size = 64 * MIB}));
  assert_ok(shm_array_create(&a, SHMVAL_CHAR, MIB, NULL, &(shm_opts){.segment = s, .name = "a"}));
  assert_ok(shm_segment_stat(s, &info));
  assert_true(info.size > MIB && info.size < 4 * MIB);
  assert_int_equal(tool("ls", NULL, NULL, NULL), 0);
  char *line = strstr(out, name);
  assert_non_null(line);
  assert_non_null(strstr(line, "MiB   64.0MiB "));
  assert_int_equal(tool("ls", "--json", NULL, NULL), 0);
  snprintf(want, sizeof want, "\"size\": %zu, \"max_size\": %zu", info.size, 64 * MIB);
  assert_non_null(strstr(out, want));
  assert_int_equal(tool("show", name, NULL, NULL), 0);
  assert_non_null(strstr(out, "MiB committed of 64.0MiB at most, "));
  assert_ok(shm_segment_close(s));
  assert_ok(shm_segment_unlink(name));
}

/* show prints a dict's keys and values; check verifies its entries. */
static void test_show_dict(void **state) {
  (void)state;
  shm_segment *s;
  shm_dict *d, *c;
  const char *name = test_name(nbuf, sizeof nbuf, "tooldict");
  assert_ok(shm_segment_create(&s, name, 1 << 20, NULL));
  assert_ok(shm_dict_create(&d, 0, &(shm_opts){.segment = s, .name = "names"}));
  assert_ok(shm_dict_create(&c, SHMVAL_LONG, &(shm_opts){.segment = s, .name = "counts"}));
  assert_ok(shm_dict_set(d, "alice", 5, "a value long enough for an entry", 32));
  assert_ok(shm_dict_set(d, "\x01\x02", 2, "\xff", 1));
  for (long i = 0; i < 12; i++) {
    char k[24];
    snprintf(k, sizeof k, "w%ld", i);
    assert_ok(shm_dict_add(c, k, strlen(k), &i, NULL));
  }
  assert_int_equal(tool("show", name, "names", NULL), 0);
  assert_non_null(strstr(out, "names                    dict    bytes         2"));
  assert_non_null(strstr(out, "\"alice\": \"a value long enough for an entry\""));
  assert_non_null(strstr(out, "0x0102: 0xff"));
  assert_int_equal(tool("show", name, "counts", NULL), 0);
  assert_non_null(strstr(out, "counts                   dict    l            12"));
  assert_non_null(strstr(out, "... 4 more}"));
  assert_int_equal(tool("show", "--json", name, "counts"), 0);
  assert_non_null(strstr(out, "{\"key\": \"w11\", \"value\": 11}"));
  assert_int_equal(tool("show", "--json", name, "names"), 0);
  assert_non_null(strstr(out, "{\"key\": {\"hex\": \"0102\"}, \"value\": {\"hex\": \"ff\"}}"));
  assert_int_equal(tool("check", name, NULL, NULL), 0);
  assert_non_null(strstr(out, "leaked: 0 blocks"));
  assert_int_equal(tool("rm", name, NULL, NULL), 0);
  assert_ok(shm_segment_close(s));
}

static void test_show_list(void **state) {
  (void)state;
  shm_segment *s;
  shm_list *q, *t;
  const char *name = test_name(nbuf, sizeof nbuf, "toollist");
  assert_ok(shm_segment_create(&s, name, 1 << 20, NULL));
  assert_ok(shm_list_create(&q, 0, &(shm_opts){.segment = s, .name = "jobs"}));
  assert_ok(shm_list_create(&t, SHMVAL_DOUBLE, &(shm_opts){.segment = s, .name = "temps"}));
  assert_ok(shm_list_append(q, "resize img-1.png", 16));
  assert_ok(shm_list_append(q, "\x00\x01", 2));
  assert_ok(shm_list_append(q, "", 0));
  for (int i = 0; i < 12; i++)
    assert_ok(shm_list_append(t, &(double){i + 0.5}, sizeof(double)));
  assert_int_equal(tool("show", name, "jobs", NULL), 0);
  assert_non_null(strstr(out, "jobs                     list    bytes         3"));
  assert_non_null(strstr(out, "[\"resize img-1.png\", 0x0001, \"\"]"));
  assert_int_equal(tool("show", name, "temps", NULL), 0);
  assert_non_null(strstr(out, "temps                    list    d            12"));
  assert_non_null(strstr(out, "... 4 more]"));
  assert_int_equal(tool("show", "--json", name, "temps"), 0);
  assert_non_null(strstr(out, "\"kind\": \"list\""));
  assert_non_null(strstr(out, "11.5]"));
  assert_int_equal(tool("show", "--json", name, "jobs"), 0);
  assert_non_null(strstr(out, "{\"hex\": \"0001\"}"));
  assert_int_equal(tool("check", name, NULL, NULL), 0);
  assert_non_null(strstr(out, "leaked: 0 blocks"));
  assert_int_equal(tool("rm", name, NULL, NULL), 0);
  assert_ok(shm_segment_close(s));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_show_list),   cmocka_unit_test(test_usage),
      cmocka_unit_test(test_ls_and_show), cmocka_unit_test(test_ls_growable),
      cmocka_unit_test(test_gc),          cmocka_unit_test(test_check),
      cmocka_unit_test(test_show_dict),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
