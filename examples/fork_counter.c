/*
 * fork_counter: N child processes increment one shared Value under its lock.
 * The total is exact, and the time per increment is printed.
 *
 *   fork_counter [children] [increments-per-child]
 */
#include <shmval.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int work(shm_value *counter, long n) {
  for (long i = 0; i < n; i++) {
    /* Like Python's `with counter.get_lock(): counter.value += 1`. */
    if (shm_value_acquire(counter) < 0)
      return 1;
    (*(long *)shm_value_ptr(counter))++;
    if (shm_value_release(counter) != 0)
      return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int children = argc > 1 ? atoi(argv[1]) : 4;
  long per_child = argc > 2 ? atol(argv[2]) : 1000000;
  if (children < 1 || children > 1024 || per_child < 0) {
    fprintf(stderr, "usage: %s [children 1..1024] [increments-per-child]\n", argv[0]);
    return 2;
  }
  shm_value *counter;
  int rc = shm_value_create(&counter, SHMVAL_LONG, NULL, NULL);
  if (rc != 0) {
    fprintf(stderr, "shm_value_create: %s\n", shmval_strerror(rc));
    return 1;
  }
  double t0 = now();
  for (int c = 0; c < children; c++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0)
      _exit(work(counter, per_child));
  }
  int failed = 0;
  for (int c = 0; c < children; c++) {
    int st;
    if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      failed++;
  }
  double secs = now() - t0;
  long total = 0;
  shm_value_get(counter, &total);
  long want = (long)children * per_child;
  printf("%d processes x %ld locked increments: total %ld (expected %ld) %s\n", children, per_child,
         total, want, total == want && !failed ? "OK" : "WRONG");
  printf("%.3f s, %.1f ns per increment\n", secs, want ? secs * 1e9 / (double)want : 0.0);
  shm_value_destroy(counter);
  return total == want && !failed ? 0 : 1;
}
