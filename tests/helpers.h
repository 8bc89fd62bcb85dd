/*
 * Helpers shared by the tests. A forked child never calls a cmocka assert:
 * it _exit()s with a code the parent checks.
 */
#ifndef SHMVAL_TEST_HELPERS_H
#define SHMVAL_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmval.h"

/* Assert a return code, printing both names on failure. */
#define assert_code(expr, want)                                                                    \
  do {                                                                                             \
    int got_ = (expr);                                                                             \
    if (got_ != (want))                                                                            \
      fail_msg("%s returned %s (%d), expected %s", #expr, shmval_err_name(got_), got_,             \
               shmval_err_name(want));                                                             \
  } while (0)

#define assert_ok(expr) assert_code(expr, 0)

/* Fork a child that runs fn(arg) and _exits with its result. */
static inline pid_t spawn(int (*fn)(void *), void *arg) {
  pid_t pid = fork();
  if (pid == 0)
    _exit(fn(arg));
  return pid;
}

/* Wait for a child: its exit code, or 128 + the signal that killed it. */
static inline int reap(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid)
    return -1;
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Whether process (or thread) @p pid is asleep in a futex wait. */
static inline int in_futex_wait(pid_t pid) {
  char path[64], buf[64] = "";
  snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strstr(buf, "futex") != NULL;
}

/*
 * Whether thread or process @p pid is seen asleep in a futex wait within
 * @p timeout seconds. The first sighting counts: a waiter that sleeps in
 * slices is awake for a moment between them, so a second look may miss it.
 */
static inline int seen_in_futex_wait(pid_t pid, double timeout) {
  double t0 = now_s();
  for (;;) {
    if (in_futex_wait(pid))
      return 1;
    if (now_s() - t0 >= timeout)
      return 0;
    sleep_s(0.001);
  }
}

/* A segment name unique to this process and call. */
static inline const char *test_name(char *buf, size_t cap, const char *tag) {
  static int counter;
  snprintf(buf, cap, "/shmval-test-%d-%s-%d", (int)getpid(), tag, counter++);
  return buf;
}

/* Whether this process runs under valgrind (its preload library is in the environment). */
static inline int under_valgrind(void) {
  const char *pre = getenv("LD_PRELOAD");
  return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

/* Whether /dev/shm holds @p name ("/x"). */
static inline int shm_exists(const char *name) {
  char path[300];
  snprintf(path, sizeof path, "/dev/shm%s", name);
  return access(path, F_OK) == 0;
}

/*
 * Start a peer program (tests/peer.c) with @p args; *to_child is a pipe to
 * its stdin and *from_child its stdout.
 */
static inline pid_t start_peer(const char *const *args, int *to_child, int *from_child) {
  int in[2], out[2];
  *to_child = *from_child = -1;
  /* Close-on-exec, so that no peer holds another peer's pipes open. */
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execv(args[0], (char *const *)(uintptr_t)args);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  *to_child = in[1];
  *from_child = out[0];
  return pid;
}

/* Read one line (up to cap-1 bytes) from @p fd. */
static inline int read_line(int fd, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap && read(fd, buf + n, 1) == 1 && buf[n] != '\n')
    n++;
  buf[n] = '\0';
  return (int)n;
}

#endif
