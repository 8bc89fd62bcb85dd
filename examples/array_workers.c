/*
 * array_workers: children fill disjoint slices of a shared double Array;
 * the parent sums the whole array and checks the result.
 *
 *   array_workers [workers] [elements]
 */
#include <shmval.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Worker w computes squares for its slice locally, then writes it in one go. */
static int fill(shm_array *a, size_t start, size_t count) {
  double *buf = malloc(count * sizeof *buf + 1);
  if (buf == NULL)
    return 1;
  for (size_t i = 0; i < count; i++)
    buf[i] = (double)(start + i) * (double)(start + i);
  int rc = shm_array_write(a, start, count, buf);
  free(buf);
  return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  int workers = argc > 1 ? atoi(argv[1]) : 4;
  long n = argc > 2 ? atol(argv[2]) : 1000000;
  if (workers < 1 || workers > 256 || n < 0) {
    fprintf(stderr, "usage: %s [workers 1..256] [elements]\n", argv[0]);
    return 2;
  }
  shm_array *a;
  int rc = shm_array_create(&a, SHMVAL_DOUBLE, (size_t)n, NULL, NULL);
  if (rc != 0) {
    fprintf(stderr, "shm_array_create: %s\n", shmval_strerror(rc));
    return 1;
  }
  size_t per = ((size_t)n + (size_t)workers - 1) / (size_t)workers;
  for (int w = 0; w < workers; w++) {
    size_t start = (size_t)w * per;
    size_t count = start >= (size_t)n ? 0 : ((size_t)n - start < per ? (size_t)n - start : per);
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0)
      _exit(fill(a, start, count));
  }
  int failed = 0;
  for (int w = 0; w < workers; w++) {
    int st;
    if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      failed++;
  }
  /* Sum under the lock, reading the payload in place. */
  double sum = 0, want = 0;
  shm_array_acquire(a);
  const double *p = shm_array_ptr(a);
  for (long i = 0; i < n; i++)
    sum += p[i];
  shm_array_release(a);
  for (long i = 0; i < n; i++)
    want += (double)i * (double)i;
  printf("%d workers filled %ld doubles; sum of squares %.0f (expected %.0f) %s\n", workers, n, sum,
         want, sum == want && !failed ? "OK" : "WRONG");
  shm_array_destroy(a);
  return sum == want && !failed ? 0 : 1;
}
