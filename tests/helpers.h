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

#include <signal.h>
#include <stdlib.h>
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

#endif
