/*
 * work_queue: a parent puts jobs in a shared list, N forked workers take
 * them with shm_list_pop_wait() (Python's Queue.get(timeout=...)) and append
 * their results to a second list. One worker is SIGKILLed in the middle of
 * the run; the parent then shows that every other job was done exactly once
 * (the one job the killed worker held, at most once).
 *
 *   work_queue [workers] [jobs]
 */
#include <shmval.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct result {
  long job, worker, value;
} result;

#define STOP (-1L)

/* A little work per job, so that the run lasts long enough to kill a worker in it. */
static long work(long job) {
  long x = job;
  for (int i = 0; i < 20000; i++)
    x = x * 6364136223846793005L + 1442695040888963407L;
  return x;
}

static int worker(int id, shm_list *jobs, shm_list *results, long *holding) {
  for (;;) {
    long job;
    size_t n;
    int rc = shm_list_pop_wait(jobs, 0, 10.0, &job, sizeof job, &n);
    if (rc != 0) {
      fprintf(stderr, "worker %d: pop_wait: %s\n", id, shmval_strerror(rc));
      return 1;
    }
    if (job == STOP)
      return 0;
    __atomic_store_n(&holding[id], job, __ATOMIC_SEQ_CST); /* for the parent's account */
    result r = {job, id, work(job)};
    if ((rc = shm_list_append(results, &r, sizeof r)) != 0) {
      fprintf(stderr, "worker %d: append: %s\n", id, shmval_strerror(rc));
      return 1;
    }
    __atomic_store_n(&holding[id], STOP, __ATOMIC_SEQ_CST);
  }
}

int main(int argc, char **argv) {
  int nw = argc > 1 ? atoi(argv[1]) : 4;
  long nj = argc > 2 ? atol(argv[2]) : 4000;
  if (nw < 2 || nw > 64 || nj < 1) {
    fprintf(stderr, "usage: work_queue [workers 2..64] [jobs]\n");
    return 2;
  }
  shm_list *jobs, *results;
  shm_array *held;
  int rc = shm_list_create(&jobs, SHMVAL_LONG, NULL);
  if (rc == 0)
    rc = shm_list_create_record(&results, sizeof(result), _Alignof(result), NULL);
  if (rc == 0)
    rc = shm_array_create(&held, SHMVAL_LONG, (size_t)nw, NULL, &(shm_opts){.flags = SHMVAL_RAW});
  if (rc != 0) {
    fprintf(stderr, "create: %s\n", shmval_strerror(rc));
    return 1;
  }
  long *holding = shm_array_ptr(held);
  for (int i = 0; i < nw; i++)
    holding[i] = STOP;
  for (long j = 0; j < nj && rc == 0; j++)
    rc = shm_list_append(jobs, &j, sizeof j); /* q.put(j) */
  if (rc != 0) {
    fprintf(stderr, "append: %s\n", shmval_strerror(rc));
    return 1;
  }
  pid_t pids[64] = {0};
  for (int i = 0; i < nw; i++)
    if ((pids[i] = fork()) == 0)
      _exit(worker(i, jobs, results, holding));

  /* Kill worker 0 once a quarter of the jobs are done. */
  size_t done = 0;
  while (rc == 0 && (rc = shm_list_len(results, &done)) == 0 && done < (size_t)nj / 4)
    usleep(1000);
  kill(pids[0], SIGKILL);
  waitpid(pids[0], NULL, 0);
  long lost = __atomic_load_n(&holding[0], __ATOMIC_SEQ_CST);
  printf("worker 0 killed after %zu results, holding job %ld\n", done, lost);

  /* The others finish the queue, then stop at the sentinels. */
  for (int i = 1; i < nw && rc == 0; i++)
    rc = shm_list_append(jobs, &(long){STOP}, sizeof(long));
  int bad = rc != 0;
  for (int i = 1; i < nw; i++) {
    int st = 0;
    bad |= waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0;
  }

  /* Every job once, except the killed worker's, which is there at most once. */
  unsigned char *seen = calloc((size_t)nj, 1);
  size_t nres = 0;
  if (seen == NULL || shm_list_len(results, &nres) != 0)
    return 1;
  for (size_t i = 0; i < nres; i++) {
    result r;
    size_t n;
    if (shm_list_get(results, (long)i, &r, sizeof r, &n) != 0 || r.job < 0 || r.job >= nj ||
        r.value != work(r.job))
      bad = 1;
    else if (seen[r.job]++ != 0)
      bad = 1; /* done twice */
  }
  long missing = 0, twice = 0;
  for (long j = 0; j < nj; j++) {
    missing += seen[j] == 0;
    twice += seen[j] > 1;
    /* (killed between its pop and noting the job, it held one it had not noted) */
    if (seen[j] == 0 && lost != STOP && j != lost)
      bad = 1;
  }
  bad |= missing > 1 || twice != 0;
  printf("%ld jobs, %zu results: %ld missing (the killed worker's job %s), %ld done twice\n", nj,
         nres, missing, missing == 0 ? "was done" : "was lost with it", twice);
  free(seen);
  shm_list_destroy(jobs);
  shm_list_destroy(results);
  shm_array_destroy(held);
  printf("%s\n", bad ? "FAILED" : "every other job was done exactly once");
  return bad;
}
